"""The spans, named and shaped as OpenTelemetry's messaging semantic conventions
ask (``messaging.system = "aws_sqs"``), and the two hooks that make them.

::

    caller ── delay() ── send <queue> (PRODUCER) ──────────────────────────┐ context in the
             build(): started, its context into the envelope's headers      │ envelope's headers
             and AWSTraceHeader; ended once SQS acknowledged (or refused)   │ + AWSTraceHeader
                                                                            ▼
    worker / Lambda / apply() ── process <queue> (CONSUMER), around the body: current while it
             runs (the body's own spans and log lines nest under it); parent: the span current
             where it runs (Lambda's invocation span) or else the producer's; always a link to
             the producer's. A retry is the same message (or a copy of its envelope): each
             attempt is one more process span in the same trace.

    worker ── receive <queue> (CLIENT) per ReceiveMessage that brought messages;
              delete / change_visibility <queue> (CLIENT, settle) per batch that let
              messages go — roots, linked to each message's AWSTraceHeader context
    a workflow's follow-ups (settle) ── their send spans follow the finished task's
              (``sqsq.producer.follows``): children of its send span; a chord's
              callback links to every member's

:class:`ProducerTracing` is ``sqsq.producer.tracing``, :class:`TaskTracing`
``sqsq.calling.tracing`` (installed by :func:`sqsq.tracing.install`; the worker's
receive loop and ``sqsq.settle.releasing`` call the latter too).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from .. import producer
from .propagation import (
    TRACEPARENT,
    TRACESTATE,
    extract,
    from_aws_trace_header,
    inject,
    parse_traceparent,
    to_aws_trace_header,
)

if TYPE_CHECKING:
    from ..calling import CallResult
    from ..outcome import Prepared
    from ..producer import OutgoingMessage
    from ..settle import SqsCall
    from ..task_tokens import Report

#: The instrumentation scope of sqsq's spans.
SCOPE = "sqsq"
#: ``messaging.system`` of SQS (OpenTelemetry's messaging semantic conventions).
MESSAGING_SYSTEM = "aws_sqs"
#: At most this many links on a send span (OpenTelemetry's SDK keeps 128 by default):
#: a chord's callback links to its first members.
LINKS_MAX = 128
#: The header that names the EventBridge schedule of a fire (``sqsq.schedules``).
_SCHEDULE_ARN = "sqsq-schedule-arn"


def _tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    from .. import __version__

    return trace.get_tracer(SCOPE, __version__, tracer_provider=provider)


def _no_sdk(provider: trace.TracerProvider | None) -> bool:
    """Whether spans from a tracer of ``provider`` (None: the global one) cannot record:
    the API's no-op provider, or the global one while it is OpenTelemetry's proxy (no
    SDK set yet; it may be set later, so this looks on each call, ~0.3 µs)."""
    if provider is None:
        provider = trace.get_tracer_provider()
    return isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class ProducerTracing:
    """``sqsq.producer.tracing``: one ``send <queue>`` PRODUCER span per message.

    Args:
        tracer_provider: where the spans go (default: OpenTelemetry's global one).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = _tracer(tracer_provider)

    def created(
        self, task_name: str, queue_name: str, task_id: str, headers: dict[str, str] | None
    ) -> tuple[dict[str, str] | None, Any, str | None]:
        """Start the message's span; return the headers carrying its context, the
        span, and its ``AWSTraceHeader`` (the headers unchanged, None and None
        when there is no trace to carry: the API without an SDK)."""
        parent, links = _following()
        span = self.tracer.start_span(
            f"send {queue_name}",
            context=parent,
            links=links,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": queue_name,
                "sqsq.task.name": task_name,
                "sqsq.task.id": task_id,
            },
        )
        context = span.get_span_context()
        if not context.is_valid:
            return headers, None, None
        return inject(context, headers), span, to_aws_trace_header(context)

    @staticmethod
    def sent(messages: Sequence[OutgoingMessage], error: BaseException | None = None) -> None:
        """End the spans of ``messages``: acknowledged by SQS, or not sent (``error``)."""
        for message in messages:
            span = message.span
            if span is None or not span.is_recording():
                continue
            if error is not None:
                _failed(span, error)
            span.end()


def _following() -> tuple[Context | None, list[Link] | None]:
    """The parent and links of a send span built under ``sqsq.producer.follows``
    (a workflow's follow-ups): (None, None) outside one."""
    follows = producer.follows.get()
    if not follows:
        return None, None
    contexts = [c for c in (parse_traceparent(value) for value in follows) if c is not None]
    if not contexts:
        return None, None
    parent = None
    if not trace.get_current_span().get_span_context().is_valid:
        parent = trace.set_span_in_context(NonRecordingSpan(contexts[0]))
    return parent, [Link(context) for context in contexts[:LINKS_MAX]]


class TaskTracing:
    """``sqsq.calling.tracing``: one ``process <queue>`` CONSUMER span per run of a body.

    Args:
        tracer_provider: where the spans go (default: OpenTelemetry's global one).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.provider = tracer_provider
        self.tracer = _tracer(tracer_provider)

    def started(self, prepared: Prepared) -> _Run | None:
        """Start the run's span and make it current in this thread (or task); None
        when there is nothing to make current (the API without an SDK, and no
        producer's context to continue)."""
        delivery, envelope, task = prepared.delivery, prepared.envelope, prepared.task
        producer = extract(envelope.headers, delivery.trace_header)
        if producer is None and _no_sdk(self.provider):
            return None  # nothing to record, nothing to pass on
        current = trace.get_current_span()
        parent, links = _continuing(producer, current)
        queue_name = task.app.queue_prefix + delivery.queue  # received from: a valid name
        attempt = envelope.retries + delivery.receive_count
        attributes: dict[str, Any] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": queue_name,
            "messaging.message.id": delivery.message_id,
            "sqsq.task.name": task.name,
            "sqsq.task.id": envelope.task_id,
            "sqsq.task.attempt": attempt,
        }
        if envelope.scheduled_at is not None:  # an EventBridge Scheduler fire
            attributes["sqsq.schedule.scheduled_time"] = envelope.scheduled_at.isoformat()
            arn = envelope.headers.get(_SCHEDULE_ARN, "")
            attributes["sqsq.schedule.name"] = arn.rsplit("/", 1)[-1]
        span = self.tracer.start_span(
            f"process {queue_name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        if not span.is_recording() and (
            parent is None and (span is current or not span.get_span_context().is_valid)
        ):
            return None  # the API's no-op span: the current one, or none at all
        token = otel_context.attach(trace.set_span_in_context(span))
        return _Run(span, token, prepared, attempt)

    @staticmethod
    @contextlib.contextmanager
    def resumed(carrier: dict[str, str]) -> Iterator[None]:
        """The remote span of ``carrier``'s ``traceparent`` current while the block
        runs (a ``--pool processes`` child continuing the worker's ``process`` span;
        ``sqsq.calling.resumed``)."""
        context = parse_traceparent(carrier.get(TRACEPARENT, ""), carrier.get(TRACESTATE))
        if context is None:
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(context)))
        try:
            yield
        finally:
            otel_context.detach(token)

    def reported(self, reports: Sequence[Report], answers: Sequence[Any], started_ns: int) -> None:
        """One ``callback <queue>`` span per Step Functions callback
        (``task_tokens.reporting``: SendTaskSuccess or SendTaskFailure in
        ``sqsq.step_functions.action``; INTERNAL, from
        ``started_ns`` to now), in the task's trace — a child of the span current
        here, else of the producer's context (the body's ``traceparent`` or the
        message's ``AWSTraceHeader``, as Step Functions sends it), with a link to
        that context — with ``sqsq.task.id``, ``sqsq.task.outcome`` and the error
        when Step Functions refused it or the call failed."""
        for report, answer in zip(reports, answers, strict=True):
            outcome = report.outcome
            delivery = outcome.delivery
            parent, links = _continuing(extract(_headers_of(delivery.body), delivery.trace_header))
            action = (
                "SendTaskSuccess" if report.method == "send_task_success" else ("SendTaskFailure")
            )
            queue_name = delivery.queue_url.rstrip("/").rsplit("/", 1)[-1] or delivery.queue
            attributes: dict[str, Any] = {
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.destination.name": queue_name,
                "messaging.message.id": delivery.message_id,
                "sqsq.task.id": outcome.task_id,
                "sqsq.task.outcome": outcome.kind.value,
                "sqsq.step_functions.action": action,
            }
            if outcome.record is not None:
                attributes["sqsq.task.name"] = outcome.record.task
            span = self.tracer.start_span(
                f"callback {queue_name}",
                context=parent,
                kind=SpanKind.INTERNAL,
                start_time=started_ns,
                links=links,
                attributes=attributes,
            )
            if isinstance(answer, Exception):
                _failed(span, answer)
            span.end()

    def received(self, queue_name: str, messages: list[dict[str, Any]], started_ns: int) -> None:
        """A ``receive <queue>`` CLIENT span for one ReceiveMessage that brought
        ``messages`` (a long poll that brought none makes no span), from
        ``started_ns`` (``time.time_ns()``) to now, linked to each message's producer
        context (from its ``AWSTraceHeader``: the body is decoded later)."""
        headers = [m.get("Attributes", {}).get("AWSTraceHeader") for m in messages]
        span = self._batch_span("receive", "receive", queue_name, headers, started_ns)
        span.end()

    def released(self, calls: Sequence[SqsCall], answers: Sequence[Any], started_ns: int) -> None:
        """One settle span per DeleteMessageBatch (``delete <queue>``) or
        ChangeMessageVisibilityBatch (``change_visibility <queue>``: a retry's
        backoff, a deferral) that let messages go, from ``started_ns`` to now:
        ``messaging.operation.type = "settle"``, ``messaging.batch.message_count``,
        the entries SQS refused, and a link to each message's ``AWSTraceHeader``
        context. (``sqsq.settle.releasing`` calls it, the worker's and Lambda's.)"""
        for call, answer in zip(calls, answers, strict=True):
            operation = "delete" if call.method == "delete_message_batch" else "change_visibility"
            queue_name = call.url.rstrip("/").rsplit("/", 1)[-1]
            headers = [outcome.delivery.trace_header for outcome in call.chunk]
            span = self._batch_span("settle", operation, queue_name, headers, started_ns)
            if isinstance(answer, Exception):
                _failed(span, answer)
            elif answer.get("Failed"):
                span.set_attribute("sqsq.settle.failed_count", len(answer["Failed"]))
            span.end()

    def _batch_span(
        self,
        kind: str,
        operation: str,
        queue_name: str,
        aws_trace_headers: list[str | None],
        started_ns: int,
    ) -> trace.Span:
        """The CLIENT span of one batch call on ``queue_name`` (``messaging.operation.type``
        ``kind``, name ``"<operation> <queue>"``), started at ``started_ns``, linked
        to the context of each message's ``AWSTraceHeader``."""
        links = []
        for header in aws_trace_headers:
            context = from_aws_trace_header(header) if header else None
            if context is not None:
                links.append(Link(context))
        return self.tracer.start_span(
            f"{operation} {queue_name}",
            kind=SpanKind.CLIENT,
            start_time=started_ns,
            links=links,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": kind,
                "messaging.operation.name": operation,
                "messaging.destination.name": queue_name,
                "messaging.batch.message_count": len(aws_trace_headers),
            },
        )


def _continuing(
    producer: SpanContext | None, current: trace.Span | None = None
) -> tuple[Context | None, list[Link] | None]:
    """The parent and links of a span that continues ``producer``'s trace: a child of
    the span current here (``current`` when the caller has it: Lambda's invocation
    span), else of ``producer``; a link to ``producer``. (None, None) without one."""
    if producer is None:
        return None, None
    parent = None
    if current is None:
        current = trace.get_current_span()
    if not current.get_span_context().is_valid:
        parent = trace.set_span_in_context(NonRecordingSpan(producer))
    return parent, [Link(producer)]


def _failed(span: trace.Span, error: BaseException) -> None:
    """Mark ``span`` failed by ``error`` (status ERROR, ``error.type``)."""
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.set_attribute("error.type", type(error).__name__)


def _headers_of(body: str) -> dict[str, str]:
    """The ``headers`` of a message body (``{}`` when it is not an envelope with some)."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    headers = raw.get("headers") if isinstance(raw, dict) else None
    if not isinstance(headers, dict):
        return {}
    return {k: v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}


class _Run:
    """A run's span while its body runs; :meth:`ended` by ``calling.Attempt``."""

    __slots__ = ("attempt", "prepared", "span", "token")

    def __init__(self, span: trace.Span, token: object, prepared: Prepared, attempt: int) -> None:
        self.span, self.token, self.prepared, self.attempt = span, token, prepared, attempt

    def carrier(self) -> dict[str, str] | None:
        """The span's ``traceparent`` (and ``tracestate``) for a ``--pool processes``
        child (``sqsq.calling.resumed``), or None when it has no valid context."""
        context = self.span.get_span_context()
        return inject(context, None) if context.is_valid else None

    def ended(self, result: CallResult, cause: BaseException | None) -> None:
        """Record the outcome (``sqsq.task.outcome``: SUCCESS, RETRY or FAILURE),
        end the span and make the previous context current again."""
        span = self.span
        try:
            if span.is_recording():
                task = self.prepared.task
                if result.error_type is None:
                    state = "SUCCESS"
                elif result.retried(task.retry_policy, self.attempt):
                    state = "RETRY"
                else:
                    state = "FAILURE"
                span.set_attribute("sqsq.task.outcome", state)
                if result.error_type is not None:
                    span.set_attribute("error.type", result.error_type)
                    if cause is not None:
                        span.record_exception(cause)
                if state == "FAILURE":
                    span.set_status(
                        Status(StatusCode.ERROR, f"{result.error_type}: {result.error_message}")
                    )
        finally:
            otel_context.detach(self.token)  # type: ignore[arg-type,unused-ignore]
            span.end()


def span_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span in W3C hex, or None outside one
    (``sqsq.logs.span_ids``: log lines carry them)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
