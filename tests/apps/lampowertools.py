"""A Lambda function written as a Powertools for AWS Lambda user writes one: its
handler under Powertools' ``Logger.inject_lambda_context`` and
``Metrics.log_metrics``, its task using Powertools' Logger, Metrics and Tracer
inside the body — sqsq's handler in between."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

import sqsq

logger = Logger(service="orders")
metrics = Metrics(namespace="Orders", service="orders")
tracer = Tracer(service="orders")

app = sqsq.App("lampt", lambda_safety_margin_s=0.5)


@app.task(name="lampt.charge")
@tracer.capture_method
def charge(order: str, cents: int) -> int:
    tracer.put_annotation("order", order)
    logger.info("charging", extra={"cents": cents})
    metrics.add_metric(name="OrdersCharged", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ChargedCents", unit=MetricUnit.Count, value=cents)
    return cents


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.lambda_handler(event, context)
