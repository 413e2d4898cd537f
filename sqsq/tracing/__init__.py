"""OpenTelemetry tracing: traces that survive the queue (``pip install 'sqsq[otel]'``).

Enabled by installing it: the first :class:`~sqsq.App` of a process looks up
``opentelemetry.trace`` once (``importlib.util.find_spec``, cached) and, when the
API is there and the ``tracing`` setting is not False, calls :func:`install`. With
the API alone (no SDK configured) the spans are OpenTelemetry's no-op ones and
nothing is added to a message; without the API, nothing is imported and each
send or run pays one attribute check.

::

    sqsq.tracing.propagation   traceparent / tracestate in the envelope's headers,
                               AWSTraceHeader (X-Ray form) as a message system attribute
    sqsq.tracing.spans         send <queue> (PRODUCER), process <queue> (CONSUMER),
                               receive <queue> and settle batches (CLIENT); the ids
                               of the current span for log lines

The core reaches it through three slots it leaves None until :func:`install`
fills them: ``sqsq.producer.tracing``, ``sqsq.calling.tracing`` and
``sqsq.logs.span_ids``; ``sqsq.workflows`` sets ``sqsq.producer.follows`` (a
context variable) around a finished task's follow-ups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .propagation import (
    TRACEPARENT,
    TRACESTATE,
    extract,
    from_aws_trace_header,
    inject,
    parse_traceparent,
    to_aws_trace_header,
)
from .spans import MESSAGING_SYSTEM, SCOPE, ProducerTracing, TaskTracing, span_ids

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = [
    "ProducerTracing",
    "TaskTracing",
    "extract",
    "from_aws_trace_header",
    "inject",
    "install",
    "installed",
    "parse_traceparent",
    "span_ids",
    "to_aws_trace_header",
    "uninstall",
]
# also importable, not API: TRACEPARENT, TRACESTATE, MESSAGING_SYSTEM, SCOPE
_CONSTANTS = (TRACEPARENT, TRACESTATE, MESSAGING_SYSTEM, SCOPE)


def install(tracer_provider: TracerProvider | None = None) -> None:
    """Trace every App of this process: fill the core's tracing slots.

    Called (without arguments) by the first App when OpenTelemetry's API is
    installed and the ``tracing`` setting is not False; then it keeps what is
    installed. Call it yourself to send sqsq's spans to a provider other than
    OpenTelemetry's global one (a test's in-memory exporter), or after
    :func:`uninstall`.

    Args:
        tracer_provider: where the spans go; None: the global provider (set by
            ``opentelemetry.trace.set_tracer_provider`` or auto-instrumentation,
            before or after this call).
    """
    from .. import calling, logs, producer

    if tracer_provider is not None or producer.tracing is None:
        producer.tracing = ProducerTracing(tracer_provider)
    if tracer_provider is not None or calling.tracing is None:
        calling.tracing = TaskTracing(tracer_provider)
    logs.span_ids = span_ids


def uninstall() -> None:
    """Stop tracing: empty the core's slots (sends and runs pay one check again)."""
    from .. import calling, logs, producer

    producer.tracing = calling.tracing = logs.span_ids = None


def installed() -> bool:
    """Whether sends and runs are traced in this process."""
    from .. import calling, producer

    return producer.tracing is not None and calling.tracing is not None
