"""Logging setup for the command line (the library itself only adds a NullHandler).

``text``: one readable line per event. ``json``: one JSON object per line with
the record's structured fields (task_id, task, queue, state, duration_s, …),
formatted by python-json-logger. Both carry ``trace_id`` / ``span_id`` while an
OpenTelemetry span is active (``sqsq.tracing``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Literal

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


class SpanIds(logging.Filter):
    """Adds ``trace_id`` / ``span_id`` (W3C hex) to each record logged while an
    OpenTelemetry span is active (see ``sqsq.tracing``); leaves others alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = span_ids() if span_ids is not None else None
        if ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = ids
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
    handler.addFilter(SpanIds())
    root = logging.getLogger("sqsq")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
