"""Trace context on the wire, at no message attribute's cost.

Two carriers, both outside SQS's 10-message-attribute quota:

* W3C Trace Context (``traceparent``, ``tracestate``) in the envelope's
  ``headers``: part of the body, so covered by the signature when signing is on
  (``sqsq.signing``), and kept by every re-send (a retry sent on, a long ETA's hop,
  a deferral) since those copy the envelope.
* ``AWSTraceHeader``, a *system* attribute of SendMessage(Batch)
  (``MessageSystemAttributes``, "Amazon SQS message system attributes"), in X-Ray's
  form ``Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>``: what Lambda and
  X-Ray read to link traces themselves, and what EventBridge, SNS or S3 put on
  the messages they send to a queue, so a foreign event continues its trace.

On receipt the ``traceparent`` header wins; a body without one continues the
trace of its ``AWSTraceHeader`` (``Delivery.trace_header``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

#: The W3C header names the envelope carries (``Envelope.headers``).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_XRAY = re.compile(
    r"Root=1-(?P<time>[0-9a-f]{8})-(?P<rest>[0-9a-f]{24});Parent=(?P<parent>[0-9a-f]{16})"
    r"(?:;Sampled=(?P<sampled>[01]))?"
)


def to_aws_trace_header(context: SpanContext) -> str:
    """``context`` in X-Ray's header form, e.g.
    ``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1``.

    The trace id's 32 hex digits are split 8 + 24 as X-Ray writes them; X-Ray
    itself keeps only traces whose first 8 digits are a recent epoch time
    (OpenTelemetry's ``AwsXRayIdGenerator`` makes such ids), but SQS and Lambda
    carry any well-formed value.
    """
    trace_id = f"{context.trace_id:032x}"
    sampled = 1 if context.trace_flags.sampled else 0
    return f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={context.span_id:016x};Sampled={sampled}"


def from_aws_trace_header(header: str) -> SpanContext | None:
    """The remote span context of an ``AWSTraceHeader`` value, or None when it has
    no ``Root`` and ``Parent`` in X-Ray's form (a header with only a Root, as a
    sampled-out upstream may send, continues nothing)."""
    found = _XRAY.search(header.replace(" ", ""))
    if found is None:
        return None
    context = SpanContext(
        trace_id=int(found["time"] + found["rest"], 16),
        span_id=int(found["parent"], 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if found["sampled"] == "1" else 0),
    )
    return context if context.is_valid else None


def inject(context: SpanContext, headers: Mapping[str, str] | None) -> dict[str, str]:
    """``headers`` with ``context``'s ``traceparent`` (and ``tracestate``) set, as
    W3C Trace Context writes them (version ``00``)."""
    carrier = dict(headers or {})
    carrier[TRACEPARENT] = (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    )
    if context.trace_state:
        carrier[TRACESTATE] = context.trace_state.to_header()
    return carrier


def parse_traceparent(value: str, tracestate: str | None = None) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent`` value (any version but the
    invalid ``ff``; version ``00`` has exactly four fields), or None when it is
    malformed or all-zero."""
    fields = value.strip().split("-")
    if len(fields) < 4 or len(fields[0]) != 2 or fields[0] == "ff":
        return None
    version, trace_id, span_id, flags = fields[0], fields[1], fields[2], fields[3]
    if (version == "00" and len(fields) != 4) or (len(trace_id), len(span_id)) != (32, 16):
        return None
    if len(flags) != 2:
        return None
    try:
        context = SpanContext(
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(flags, 16)),
            trace_state=TraceState.from_header([tracestate]) if tracestate else None,
        )
    except ValueError:
        return None
    return context if context.is_valid else None


def extract(headers: Mapping[str, str], aws_trace_header: str | None) -> SpanContext | None:
    """The producer's span context: from the envelope's ``traceparent``, else from
    the message's ``AWSTraceHeader``; None when neither carries a valid one."""
    traceparent = headers.get(TRACEPARENT)
    if traceparent is not None:
        context = parse_traceparent(traceparent, headers.get(TRACESTATE))
        if context is not None:
            return context
    if aws_trace_header:
        return from_aws_trace_header(aws_trace_header)
    return None
