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

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    sqsq.tracing.install(tracer_provider=provider)


if os.environ.get(SPANS_VARIABLE):
    _export_to_file(os.environ[SPANS_VARIABLE])
