"""Dead-letter queue tooling: list, redrive and purge (``sqsq dlq …``).

Listing receives every message with a short visibility timeout and releases them
all at the end (visibility 0), so nothing is consumed. Redrive without filters
uses SQS's StartMessageMoveTask where the endpoint supports it; otherwise (moto,
or with ``--task`` / ``--error`` filters) it receives, sends to the source queue
and only then deletes from the DLQ — an interrupted redrive duplicates at worst,
never loses. Messages that a filter skips are released when it ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .sqs import (
    DEAD_LETTER_DETAILS_ATTRIBUTE,
    DEAD_LETTER_REASON_ATTRIBUTE,
    RECEIVE_ATTRIBUTES,
    chunks,
    dead_letter_name,
    delete_entries,
    is_fifo,
    read_dead_letter,
)

#: Seconds listed/redriven messages stay hidden while the command runs.
HOLD_S = 120
#: Reason shown for messages SQS moved itself (maxReceiveCount reached).
REDRIVE_POLICY_REASON = "max_receive_count (moved by the redrive policy)"


def queue_pair(name: str) -> tuple[str, str]:
    """``(source, dlq)`` physical names from either of them."""
    for suffix in ("-dlq.fifo", "-dlq"):
        if name.endswith(suffix):
            source = name[: -len(suffix)] + (".fifo" if suffix.endswith(".fifo") else "")
            return source, name
    return name, dead_letter_name(name)


@dataclass(frozen=True)
class DeadLetterRow:
    """One dead-lettered message, as ``sqsq dlq ls`` shows it.

    Attributes:
        message_id: the DLQ message's id.
        task: task name (from the envelope, if it decodes).
        task_id: the task id (envelope id, else the original MessageId).
        reason: dead-letter reason code, or :data:`REDRIVE_POLICY_REASON`.
        error_type: the error type, if sqsq recorded one.
        attempts: receives of the source message when it was dead-lettered.
        age_s: seconds since the task was first enqueued.
    """

    message_id: str
    task: str | None
    task_id: str | None
    reason: str
    error_type: str | None
    attempts: int | None
    age_s: float | None


#: The system attribute SQS sets on a message its redrive policy moved to a DLQ
#: ("Using dead-letter queues in Amazon SQS"). sqsq's own copies never have it, so
#: ``sqsq-dead-letter*`` attributes on such a message came from its producer.
MOVED_BY_REDRIVE_ATTRIBUTE = "DeadLetterQueueSourceArn"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 1_000_000 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 7:
        return int(value)
    return None


def describe(message: dict[str, Any], now: float | None = None) -> DeadLetterRow:
    """A :class:`DeadLetterRow` from a received DLQ message. Never raises on what a
    message carries: attribute values of the wrong type or shape are ignored, and
    on a message SQS's redrive policy moved, ``sqsq-dead-letter*`` attributes are
    forged (sqsq sets them only on its own copies) and ignored."""
    now = time.time() if now is None else now
    system = message.get("Attributes") or {}
    details: dict[str, Any] = {}
    if MOVED_BY_REDRIVE_ATTRIBUTE not in system:
        try:
            details = read_dead_letter(message.get("MessageAttributes") or {}) or {}
        except Exception:  # a forged attribute of an unexpected shape
            details = {}
    task = task_id = None
    sent_at: float | None = None
    try:
        body = json.loads(message.get("Body", ""))
        if isinstance(body, dict):
            task = _text(body.get("task"))
            task_id = _text(body.get("id"))
            if isinstance(body.get("sent_at"), str):
                sent_at = datetime.fromisoformat(body["sent_at"]).astimezone(UTC).timestamp()
    except (ValueError, TypeError, RecursionError, OverflowError):
        pass
    raw_sent = system.get("SentTimestamp")
    if sent_at is None and isinstance(raw_sent, str) and raw_sent.isdigit():
        sent_at = int(raw_sent) / 1000
    return DeadLetterRow(
        message_id=message["MessageId"],
        task=task,
        task_id=_text(details.get("task_id")) or task_id,
        reason=_text(details.get("reason")) or REDRIVE_POLICY_REASON,
        error_type=_text(details.get("error_type")),
        attempts=_count(details.get("receive_count")),
        age_s=None if sent_at is None else max(0.0, now - sent_at),
    )


def _receive(client: Any, url: str) -> list[dict[str, Any]]:
    response = client.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=HOLD_S,
        WaitTimeSeconds=1,
        **RECEIVE_ATTRIBUTES,
    )
    return list(response.get("Messages", []))


def _release(client: Any, url: str, messages: list[dict[str, Any]]) -> None:
    for chunk in chunks(messages):
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(chunk)
        ]
        client.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def peek(client: Any, url: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Every message of the queue (up to ``limit``), released again before returning."""
    seen: dict[str, dict[str, Any]] = {}
    held: list[dict[str, Any]] = []
    try:
        while limit is None or len(seen) < limit:
            batch = _receive(client, url)
            if not batch:
                break
            held += batch
            for message in batch:
                seen.setdefault(message["MessageId"], message)
    finally:
        _release(client, url, held)
    rows = list(seen.values())
    return rows if limit is None else rows[:limit]


def _matches(message: dict[str, Any], task: str | None, error: str | None) -> bool:
    row = describe(message)
    if task is not None and row.task != task:
        return False
    if error is None:
        return True
    error_type = row.error_type or ""
    return error in (error_type, error_type.rsplit(".", 1)[-1], row.reason)


def _resend_entry(index: int, message: dict[str, Any], fifo: bool) -> dict[str, Any]:
    attributes = {
        k: v
        for k, v in message.get("MessageAttributes", {}).items()
        if k not in (DEAD_LETTER_REASON_ATTRIBUTE, DEAD_LETTER_DETAILS_ATTRIBUTE)
    }
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
    if attributes:
        entry["MessageAttributes"] = {
            k: {
                key: val
                for key, val in v.items()
                if key in ("DataType", "StringValue", "BinaryValue")
            }
            for k, v in attributes.items()
        }
    if fifo:
        system = message.get("Attributes", {})
        entry["MessageGroupId"] = system.get("MessageGroupId", "sqsq-redrive")
        entry["MessageDeduplicationId"] = f"redrive-{message['MessageId']}"[:128]
    return entry


def redrive(
    client: Any,
    dlq_url: str,
    source_url: str,
    *,
    task: str | None = None,
    error: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Move matching messages from the DLQ back to the source queue.

    Each batch is sent (SendMessageBatch) before it is deleted from the DLQ
    (DeleteMessageBatch, only the entries that were sent).

    Returns:
        ``(moved, skipped)``.
    """
    fifo = is_fifo(source_url.rsplit("/", 1)[-1])
    moved = 0
    skipped: list[dict[str, Any]] = []
    try:
        while True:
            batch = _receive(client, dlq_url)
            if not batch:
                break
            matched = [_matches(m, task, error) for m in batch]
            wanted = [m for m, ok in zip(batch, matched, strict=True) if ok]
            skipped += [m for m, ok in zip(batch, matched, strict=True) if not ok]
            if not wanted:
                continue
            entries = [_resend_entry(i, m, fifo) for i, m in enumerate(wanted)]
            response = client.send_message_batch(QueueUrl=source_url, Entries=entries)
            sent = [wanted[int(s["Id"])] for s in response.get("Successful", [])]
            failed = [wanted[int(f["Id"])] for f in response.get("Failed", [])]
            skipped += failed
            if sent:
                client.delete_message_batch(
                    QueueUrl=dlq_url, Entries=delete_entries(m["ReceiptHandle"] for m in sent)
                )
            moved += len(sent)
            if progress:
                progress(len(sent))
    finally:
        _release(client, dlq_url, skipped)
    return moved, len(skipped)


def start_move_task(client: Any, dlq_arn: str, rate: int | None) -> str | None:
    """StartMessageMoveTask back to the source queue ("Configure a dead-letter queue
    redrive"); None where the endpoint does not support it (moto answers 500) or
    keeps failing server-side — the caller then moves messages itself, which is
    also correct, just slower."""
    kwargs: dict[str, Any] = {"SourceArn": dlq_arn}
    if rate:
        kwargs["MaxNumberOfMessagesPerSecond"] = rate
    try:
        response = client.start_message_move_task(**kwargs)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("UnsupportedOperation", "NotImplemented", "InvalidAction"):
            return None
        if isinstance(status, int) and (status == 404 or status >= 500):
            return None
        raise
    return str(response.get("TaskHandle", ""))
