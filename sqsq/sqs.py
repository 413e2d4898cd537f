"""The queue transport: queue names and URLs, batch builders, dead-letter copies.

Pure functions build every SQS request (batch entries respect
``limits.SQS_MAX_BATCH_ENTRIES`` and ``limits.SQS_MAX_BATCH_BYTES``);
:class:`QueueDirectory` resolves queue URLs once per process with GetQueueUrl,
for boto3 and aiobotocore alike.

Naming: a *logical* queue (``"default"``, ``"emails"``, ``"orders.fifo"``) becomes
the *physical* SQS queue ``<queue_prefix><logical>``; its dead-letter queue is
``<physical>-dlq`` (``<base>-dlq.fifo`` for FIFO queues, which need a FIFO DLQ).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import limits
from .aws_errors import from_botocore
from .calls import Call, Steps, arun, run
from .errors import AWSError

#: Message attribute carrying the dead-letter reason code (String).
DEAD_LETTER_REASON_ATTRIBUTE = "sqsq-dead-letter-reason"
#: Message attribute carrying dead-letter details as JSON (String).
DEAD_LETTER_DETAILS_ATTRIBUTE = "sqsq-dead-letter"
#: Message attribute ``sqsq dlq redrive`` (fallback path) sets on what it moves back
#: (String: the dead-letter reason), in place of the two above.
REDRIVEN_ATTRIBUTE = "sqsq-redriven"


def redriven(attributes: dict[str, Any]) -> bool:
    """Whether a delivery with these message attributes came back from a DLQ: moved
    by a move task (its ``sqsq-dead-letter*`` attributes kept) or by ``sqsq dlq
    redrive``'s fallback. Such a message may run a key whose run failed for good
    (``idempotency.claim_request(retake=True)``): redriving is asking for a run."""
    return DEAD_LETTER_REASON_ATTRIBUTE in attributes or REDRIVEN_ATTRIBUTE in attributes


#: What ReceiveMessage asks for: every system attribute (ApproximateReceiveCount,
#: SentTimestamp, MessageGroupId, …) and every message attribute.
RECEIVE_ATTRIBUTES: dict[str, Any] = {
    "MessageSystemAttributeNames": ["All"],
    "MessageAttributeNames": ["All"],
}


def is_fifo(name: str) -> bool:
    return name.endswith(".fifo")


def dead_letter_name(physical: str) -> str:
    """The DLQ name for a physical queue name (FIFO stays FIFO)."""
    if is_fifo(physical):
        return physical[: -len(".fifo")] + "-dlq.fifo"
    return physical + "-dlq"


def queue_name_from_arn(arn: str) -> tuple[str, str]:
    """``(account_id, queue_name)`` from ``arn:aws:sqs:<region>:<account>:<name>``."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    return parts[4], parts[5]


# --- sizes and batches -------------------------------------------------------------


def attributes_size(attributes: dict[str, dict[str, Any]]) -> int:
    """Bytes SQS counts for message attributes: name + data type + value
    ("Amazon SQS message attributes")."""
    size = 0
    for name, attr in attributes.items():
        size += len(name.encode()) + len(attr.get("DataType", "").encode())
        if "StringValue" in attr:
            size += len(attr["StringValue"].encode())
        if "BinaryValue" in attr:
            size += len(attr["BinaryValue"])
    return size


def entry_size(entry: dict[str, Any]) -> int:
    """Bytes one SendMessageBatch entry counts against the batch limit."""
    return len(entry["MessageBody"].encode()) + attributes_size(entry.get("MessageAttributes", {}))


def send_batches(entries: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group SendMessageBatch entries: ≤ ``SQS_MAX_BATCH_ENTRIES`` per call and
    ≤ ``SQS_MAX_BATCH_BYTES`` of payload per call, order kept."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    current_bytes = 0
    for entry in entries:
        size = entry_size(entry)
        if current and (
            len(current) == limits.SQS_MAX_BATCH_ENTRIES
            or current_bytes + size > limits.SQS_MAX_BATCH_BYTES
        ):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(entry)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


def chunks(items: Sequence[Any], size: int = limits.SQS_MAX_BATCH_ENTRIES) -> list[Sequence[Any]]:
    """``items`` in groups of ``size`` (10 by default: one batch call each)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def delete_entries(receipt_handles: Iterable[str]) -> list[dict[str, str]]:
    """DeleteMessageBatch entries (ids are positions within the batch)."""
    return [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(receipt_handles)]


# --- dead letters ------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterNote:
    """Why a message went to the DLQ; attached to the copy as message attributes.

    Attributes:
        reason: stable code, e.g. ``"unknown_task"`` (see ``errors.DeadLetter``).
        error_type: qualified error type, e.g. ``"sqsq.errors.UnknownTask"``.
        message: human-readable detail.
        task_id: the task id (the MessageId when the body had none).
        source_queue: the physical queue the message came from.
        receive_count: ApproximateReceiveCount when it was dead-lettered.
        event: a foreign event's kind, source and type (reason ``no_route``), else None.
    """

    reason: str
    error_type: str
    message: str
    task_id: str
    source_queue: str
    receive_count: int
    event: dict[str, str] | None = None

    def details(self) -> str:
        details: dict[str, Any] = {
            "reason": self.reason,
            "error_type": self.error_type,
            "message": self.message[:2048],
            "task_id": self.task_id,
            "source_queue": self.source_queue,
            "receive_count": self.receive_count,
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        if self.event:
            details["event"] = {k: v[:256] for k, v in self.event.items()}
        return json.dumps(details, separators=(",", ":"))


def with_trace_header(entry: dict[str, Any], trace_header: str | None) -> dict[str, Any]:
    """``entry`` (a SendMessage(Batch) entry) carrying ``trace_header`` as its
    ``AWSTraceHeader`` system attribute (``MessageSystemAttributes``: outside the
    10-attribute and size quotas), so that a copy of a message (its DLQ copy, a
    redrive) stays in the message's X-Ray / OpenTelemetry trace."""
    if trace_header:
        entry["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": trace_header}
        }
    return entry


def dead_letter_entry(
    entry_id: str,
    body: str,
    attributes: dict[str, dict[str, Any]],
    note: DeadLetterNote,
    message_group_id: str | None = None,
    deduplication_id: str | None = None,
    trace_header: str | None = None,
) -> dict[str, Any]:
    """A SendMessageBatch entry that copies a message to its DLQ with the reason.

    The original message attributes are kept, and its ``AWSTraceHeader``
    (``trace_header``); the two ``sqsq-dead-letter*``
    attributes are added as far as SQS's 10-attribute and 1 MiB limits
    (``limits.SQS_MAX_MESSAGE_ATTRIBUTES``, ``limits.SQS_MAX_MESSAGE_BYTES``) allow —
    the reason is always in the task's result item too.
    """
    ours = {
        DEAD_LETTER_REASON_ATTRIBUTE: {"DataType": "String", "StringValue": note.reason},
        DEAD_LETTER_DETAILS_ATTRIBUTE: {"DataType": "String", "StringValue": note.details()},
    }
    merged = {k: v for k, v in attributes.items() if k not in ours}
    room = limits.SQS_MAX_MESSAGE_BYTES - len((body or " ").encode()) - attributes_size(merged)
    for name, value in ours.items():
        if (
            len(merged) < limits.SQS_MAX_MESSAGE_ATTRIBUTES
            and attributes_size({name: value}) <= room
        ):
            merged[name] = value
            room -= attributes_size({name: value})
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": body or " "}
    if merged:
        entry["MessageAttributes"] = merged
    if message_group_id is not None:
        entry["MessageGroupId"] = message_group_id
        entry["MessageDeduplicationId"] = deduplication_id or entry_id
    return with_trace_header(entry, trace_header)


def read_dead_letter(message_attributes: dict[str, Any]) -> dict[str, Any] | None:
    """The details a dead-lettered message carries, or None."""
    attr = message_attributes.get(DEAD_LETTER_DETAILS_ATTRIBUTE)
    if attr is None:
        reason = message_attributes.get(DEAD_LETTER_REASON_ATTRIBUTE)
        return {"reason": reason["StringValue"]} if reason else None
    try:
        details = json.loads(attr["StringValue"])
    except (KeyError, ValueError):
        return None
    return details if isinstance(details, dict) else None


# --- queue URLs ----------------------------------------------------------------------


class QueueDirectory:
    """Resolves physical queue names to URLs once per process (GetQueueUrl).

    Args:
        clients: the App's client factory.
    """

    def __init__(self, clients: Any) -> None:
        self.clients = clients
        self._urls: dict[str, str] = {}
        self._attributes: dict[str, QueueSettings] = {}
        self._lock = threading.Lock()

    @staticmethod
    def missing_queue(name: str, exc: Exception) -> AWSError:
        """The error for a queue that does not exist (an AWSResourceNotFound, also a
        ConfigurationError, naming the fix); raise it ``from exc``."""
        return from_botocore(exc, resource=name)

    @staticmethod
    def is_missing_queue(exc: Exception) -> bool:
        """Whether a botocore error says the queue does not exist."""
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        return code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")

    def url(self, name: str, owner: str | None = None) -> str:
        """The URL of queue ``name`` (boto3).

        Raises:
            AWSResourceNotFound: the queue does not exist (a ConfigurationError).
        """
        url = self._urls.get(name)
        return url if url is not None else run(self.looking_up(name, owner), self.clients)

    async def aurl(self, name: str, owner: str | None = None) -> str:
        """The URL of queue ``name`` (aiobotocore)."""
        url = self._urls.get(name)
        return url if url is not None else await arun(self.looking_up(name, owner), self.clients)

    def looking_up(self, name: str, owner: str | None = None) -> Steps[str]:
        """The GetQueueUrl of :meth:`url` (see :mod:`sqsq.calls`); caches the URL."""
        kwargs = {"QueueName": name}
        if owner:
            kwargs["QueueOwnerAWSAccountId"] = owner
        try:
            url: str = (yield Call("sqs", "get_queue_url", kwargs))["QueueUrl"]
        except Exception as exc:
            if self.is_missing_queue(exc):
                raise self.missing_queue(name, exc) from exc
            raise
        with self._lock:
            self._urls[name] = url
        return url

    def forget(self, name: str) -> None:
        self._urls.pop(name, None)
        self._attributes.pop(name, None)

    def _settings_of(self, name: str, attributes: dict[str, str]) -> QueueSettings:
        policy = attributes.get("RedrivePolicy")
        max_receive = None
        if policy:
            try:
                max_receive = int(json.loads(policy)["maxReceiveCount"])
            except (ValueError, KeyError, TypeError):
                max_receive = None
        settings = QueueSettings(
            visibility_timeout_s=float(attributes.get("VisibilityTimeout", 30)),
            max_receive_count=max_receive,
        )
        self._attributes[name] = settings
        return settings

    def settings(self, name: str) -> QueueSettings:
        """The queue's visibility timeout and maxReceiveCount (GetQueueAttributes, cached)."""
        cached = self._attributes.get(name)
        return cached if cached is not None else run(self.reading(name), self.clients, self)

    async def asettings(self, name: str) -> QueueSettings:
        """Asyncio twin of :meth:`settings`."""
        cached = self._attributes.get(name)
        return cached if cached is not None else await arun(self.reading(name), self.clients, self)

    def reading(self, name: str) -> Steps[QueueSettings]:
        """The GetQueueAttributes of :meth:`settings` (see :mod:`sqsq.calls`); caches them."""
        names = ["VisibilityTimeout", "RedrivePolicy"]
        response = yield Call("sqs", "get_queue_attributes", {"AttributeNames": names}, name)
        return self._settings_of(name, response.get("Attributes", {}))


@dataclass(frozen=True)
class QueueSettings:
    """What a runner needs to know of a queue.

    Attributes:
        visibility_timeout_s: the queue's VisibilityTimeout (the default lease), seconds.
        max_receive_count: the redrive policy's maxReceiveCount, None without one.
    """

    visibility_timeout_s: float
    max_receive_count: int | None
