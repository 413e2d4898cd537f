"""The Lambda transport: SQS event → deliveries → execution core → batchItemFailures.

For an SQS event source mapping with ``FunctionResponseTypes:
[ReportBatchItemFailures]`` ("Handling errors for an SQS event source in
Lambda"). Lambda deletes every record *not* listed in ``batchItemFailures``, so
a record is listed exactly when SQS must deliver it again:

- its outcome could not be stored (DynamoDB or the DLQ copy failed);
- it was not started because the invocation's remaining time
  (``context.get_remaining_time_in_millis()``) was under the app's
  ``lambda_safety_margin_s``;
- on a FIFO queue, it comes after a listed record of the same message group
  (order must hold).

A record whose outcome is final — SUCCESS, a FAILURE recorded, a message moved
to the DLQ with its reason — is not listed.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .delivery import Delivery
from .execution import Executor, Outcome, Prepared
from .settle import settle
from .sqs import queue_name_from_arn

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)


def _remaining_ms(context: Any) -> float | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return float(getter()) if callable(getter) else None


def handle(app: App, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run one SQS event's records; see the module docstring.

    Args:
        app: the App.
        event: the SQS event (``{"Records": [...]}``).
        context: the Lambda context (``get_remaining_time_in_millis``,
            ``aws_request_id``); None when called outside Lambda.

    Returns:
        ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}``.
    """
    records = event.get("Records") or []
    worker_id = getattr(context, "aws_request_id", None) or f"lambda:{os.getpid()}"
    executor = Executor(app, worker_id=f"lambda:{worker_id}")
    margin_ms = app.settings.lambda_safety_margin_s * 1000
    outcomes: list[Outcome] = []
    retry: list[str] = []
    failed_groups: set[tuple[str, str]] = set()
    for record in records:
        message_id = record.get("messageId", "")
        try:
            owner, physical = queue_name_from_arn(record.get("eventSourceARN", ""))
        except ValueError:
            owner, physical = "", app.queue_name(app.settings.default_queue)
        delivery = Delivery.from_lambda_record(record, app.logical_queue(physical))
        group = (physical, delivery.message_group_id) if delivery.message_group_id else None
        remaining_ms = _remaining_ms(context)
        if (group and group in failed_groups) or (
            remaining_ms is not None and remaining_ms < margin_ms
        ):
            if remaining_ms is not None and remaining_ms < margin_ms:
                logger.warning(
                    "not starting message %s: %.0f ms left, margin %.0f ms",
                    message_id,
                    remaining_ms,
                    margin_ms,
                )
            retry.append(message_id)
            if group:
                failed_groups.add(group)
            continue
        prepared = executor.prepare(delivery)
        outcome = executor.call(prepared) if isinstance(prepared, Prepared) else prepared
        outcomes.append(outcome)
        del owner
    settlement = settle(app, outcomes, delete=False)
    kept = {o.delivery.message_id for o in settlement.kept}
    # FIFO: once a record of a group must come back, so must every later one.
    ordered: list[str] = []
    listed_groups: set[tuple[str, str]] = set()
    for record in records:
        message_id = record.get("messageId", "")
        attributes = record.get("attributes", {})
        group_id = attributes.get("MessageGroupId")
        key = (record.get("eventSourceARN", ""), group_id) if group_id else None
        if message_id in kept or message_id in retry or (key and key in listed_groups):
            ordered.append(message_id)
            if key:
                listed_groups.add(key)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in ordered]}
