"""A test app for ``sqsq.tracing``: with ``SQSQ_TEST_SPANS`` set (in a worker the
test starts), its module sends sqsq's spans to OpenTelemetry's SDK, which writes
each ended span as one JSON line to that file; the test reads them back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import sqsq

app = sqsq.App("traced")
log = logging.getLogger("sqsq.tests.traced")

SPANS_VARIABLE = "SQSQ_TEST_SPANS"
#: Set too: ``opentelemetry-instrumentation-botocore`` instruments boto3 and aiobotocore.
INSTRUMENT_VARIABLE = "SQSQ_TEST_INSTRUMENT_BOTOCORE"


@app.task
def ok(n: int) -> int:
    log.info("doubling %d", n)
    return n * 2


@app.task(autoretry_for=(KeyError,), max_retries=1, default_retry_delay=0)
def flaky(key: str) -> None:
    raise KeyError(key)


@app.task
def total(values: list[int]) -> int:
    return sum(values)


#: Set in a worker's environment: :func:`picky` rejects its message (to the DLQ).
REJECT_VARIABLE = "SQSQ_TEST_REJECT"


@app.task
def picky(n: int) -> int:
    if os.environ.get(REJECT_VARIABLE):
        raise sqsq.Reject("not today")
    return n


@app.task
def nested(n: int) -> str:
    """Makes a span of its own (OpenTelemetry's global tracer): a child of the
    ``process`` span wherever the body runs; returns its parent's span id."""
    from opentelemetry import trace

    with trace.get_tracer("tests.traced").start_as_current_span("inner") as span:
        log.info("inside %d", n)
        parent = getattr(span, "parent", None)
        return f"{parent.span_id:016x}" if parent is not None else ""


def span_line(span: Any) -> dict[str, Any]:
    """One ended span (``opentelemetry.sdk.trace.ReadableSpan``) as plain JSON."""
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent": f"{parent.span_id:016x}" if parent is not None else None,
        "links": [
            [f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}"] for link in span.links
        ],
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


def _export_to_file(path: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    import sqsq.tracing

    class FileExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            with open(path, "a", encoding="utf-8") as out:
                out.writelines(json.dumps(span_line(span)) + "\n" for span in spans)
            return SpanExportResult.SUCCESS

    from opentelemetry import trace

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)  # the bodies' own spans (``nested``) too
    sqsq.tracing.install(tracer_provider=provider)
    if os.environ.get(INSTRUMENT_VARIABLE):  # botocore's instrumentation on too
        from opentelemetry.instrumentation.botocore import (
            AiobotocoreInstrumentor,
            BotocoreInstrumentor,
        )

        BotocoreInstrumentor().instrument(tracer_provider=provider)
        AiobotocoreInstrumentor().instrument(tracer_provider=provider)


if os.environ.get(SPANS_VARIABLE):
    _export_to_file(os.environ[SPANS_VARIABLE])
