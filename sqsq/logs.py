"""Logging setup for the command line (the library itself only adds a NullHandler).

``text``: one readable line per event. ``json``: one JSON object per line with
the record's structured fields (task_id, task, queue, state, duration_s, …),
formatted by python-json-logger. Both carry ``trace_id`` / ``span_id`` while an
OpenTelemetry span is active (``sqsq.tracing``).

In the Lambda handler every log record made while it runs — sqsq's and the
task's own, through any logger whose records reach the root logger's handlers —
carries the invocation's fields and, while a
record of the batch is handled, that record's (:func:`invocation_fields`,
:func:`record_fields`, :data:`LAMBDA_KEYS`),
named as Powertools for AWS Lambda's Logger names them where it has a name:
``function_request_id``, ``cold_start``, ``xray_trace_id``, ``function_name``,
``function_arn``, ``function_memory_size``; then ``message_id``, ``task_id`` and
``task``. They are added by a :class:`ContextFilter` on the handlers of the root
logger (where Lambda's runtime puts its own) and of every logger with handlers of its
own (:func:`configure`'s, Powertools Logger's); a
JSON formatter writes them as keys (``configure(fmt="json")``, or the function's
JSON log format, ``LoggingConfig: {LogFormat: JSON}``); with ``sqsq.tracing``
installed, also ``trace_id`` / ``span_id`` inside a span.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

#: The keys the Lambda handler adds to log records (see the module docstring).
LAMBDA_KEYS = (
    "function_request_id",
    "function_name",
    "function_arn",
    "function_memory_size",
    "cold_start",
    "xray_trace_id",
    "message_id",
    "task_id",
    "task",
)

#: The invocation's fields: one per process, as Lambda runs one invocation at a
#: time in an execution environment (its background threads' lines carry them too).
_invocation: dict[str, Any] = {}
#: The fields of the record being handled, in the handler's own thread only.
_record: ContextVar[dict[str, Any] | None] = ContextVar("sqsq_log_record", default=None)


def xray_trace_id(header: str | None) -> str | None:
    """The trace id (``Root=…``) of an X-Ray trace header (``_X_AMZN_TRACE_ID``, a
    record's ``AWSTraceHeader``: ``Root=1-…;Parent=…;Sampled=1``), as Powertools
    writes ``xray_trace_id``; None for no header."""
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root" and value:
            return value
    return None


class ContextFilter(logging.Filter):
    """Adds the current invocation's and record's fields to each record a handler handles (a key the
    call set itself, ``extra={...}``, wins); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        for source in (_record.get(), _invocation):
            for key, value in (source or {}).items():
                if key not in record.__dict__:
                    setattr(record, key, value)
        _add_span_ids(record)
        return True


_FILTER = ContextFilter()


def attach(*loggers: logging.Logger) -> None:
    """Put the :class:`ContextFilter` on every handler of ``loggers`` that lacks one.
    Default: the root logger (where Lambda's runtime puts its handler) and every
    logger that has handlers of its own — ``sqsq``'s, and those a library set up, such
    as Powertools for AWS Lambda's ``Logger(service=…)`` (a logger named after the
    service, with its own JSON handler), so their lines carry the keys too."""
    if not loggers:
        known = logging.Logger.manager.loggerDict.values()
        loggers = (
            logging.getLogger(),
            *(lg for lg in known if isinstance(lg, logging.Logger) and lg.handlers),
        )
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, ContextFilter) for f in handler.filters):
                handler.addFilter(_FILTER)


def record_fields(**values: Any) -> None:
    """Set the fields of the record being handled, in this thread (None values left
    out; none at all: no record's fields any more)."""
    _record.set({key: value for key, value in values.items() if value is not None} or None)


@contextmanager
def invocation_fields(**values: Any) -> Iterator[None]:
    """Add ``values`` (None values left out) to every log record made inside the
    block, in every thread, and handled by a handler with the :class:`ContextFilter`
    (:func:`attach`)."""
    saved = dict(_invocation)
    _invocation.update({key: value for key, value in values.items() if value is not None})
    try:
        yield
    finally:
        _invocation.clear()
        _invocation.update(saved)


#: Control characters (C0, DEL, C1) and Unicode line/paragraph separators, written
#: escaped in text logs: a value from a message (a task name, a JSON key, an
#: exception message) can then never start a forged line of its own.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)] if code != 0x09}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_controls(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, …)."""
    return text.translate(_ESCAPES)


#: The active span's ids (``sqsq.tracing`` installs it): returns ``(trace_id,
#: span_id)`` in W3C hex, or None outside a span. None: no tracing.
span_ids: Callable[[], tuple[str, str] | None] | None = None


def _add_span_ids(record: logging.LogRecord) -> None:
    ids = span_ids() if span_ids is not None else None
    if ids is not None and "trace_id" not in record.__dict__:
        record.trace_id, record.span_id = ids


class SpanIds(logging.Filter):
    """Adds ``trace_id`` / ``span_id`` (W3C hex) to each record logged while an
    OpenTelemetry span is active (see ``sqsq.tracing``); leaves others alone. The
    :class:`ContextFilter` of :func:`configure` and the Lambda handler does the
    same: this one is for a handler of your own."""

    def filter(self, record: logging.LogRecord) -> bool:
        _add_span_ids(record)
        return True


class TextFormatter(logging.Formatter):
    """One line per event: the message's control characters are escaped (a
    traceback, appended after it, keeps its lines); ``trace_id=… span_id=…``
    follow the message when the record carries them (:class:`SpanIds`)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        line = super().formatMessage(record)
        trace_id = getattr(record, "trace_id", None)
        if trace_id is not None:
            line += f" trace_id={trace_id} span_id={getattr(record, 'span_id', '')}"
        return line


def configure(level: str = "INFO", fmt: Literal["text", "json"] = "text") -> None:
    """Send sqsq's logs to stderr in the given format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_FILTER)  # the Lambda fields, and the span's ids (:class:`SpanIds`)
    root = logging.getLogger("sqsq")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
