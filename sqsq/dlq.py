"""Dead-letter queue tooling: list, redrive and purge (``sqsq dlq …``).

Listing receives every message with a short visibility timeout and releases them
all at the end (visibility 0), so nothing is consumed.

Redrive has two paths:

- **Move task** (no filters, where the endpoint has it): StartMessageMoveTask with
  an explicit ``DestinationArn`` — the source queue. sqsq copies failed messages
  into the DLQ itself (SendMessageBatch), so they carry no
  ``DeadLetterQueueSourceArn`` and SQS could not find their way back alone
  ("Configure a dead-letter queue redrive" in the SQS Developer Guide). The task
  is then followed with ListMessageMoveTasks until it is COMPLETED, FAILED or
  CANCELLED (:func:`wait_move_task`).
- **Fallback** (filters, no move tasks — moto answers 500 — or signing keys being
  rotated, ``signing_previous_keys``: a move task cannot re-sign): sqsq receives,
  sends to the source queue and only then deletes from the DLQ — an interrupted
  redrive duplicates at worst, never loses. It moves what was in the DLQ when it
  started, each message once: a copy of a task it already moved (the task failed
  again at once while a worker runs) is left in the DLQ, so the command ends.
  Messages that a filter skips are released when it ends. With signing on, a
  message a previous key signed goes back signed with the current key, so that it
  still runs once the previous key is retired; one no accepted key signed goes
  back as it came (and is refused again).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import limits
from .aws_errors import aws_boundary
from .pointer import Offloaded, offloaded, payload_task_id
from .sqs import (
    DEAD_LETTER_DETAILS_ATTRIBUTE,
    DEAD_LETTER_REASON_ATTRIBUTE,
    RECEIVE_ATTRIBUTES,
    REDRIVEN_ATTRIBUTE,
    chunks,
    dead_letter_name,
    delete_entries,
    is_fifo,
    read_dead_letter,
    with_trace_header,
)

#: Seconds listed/redriven messages stay hidden while the command runs.
HOLD_S = 120
#: Reason shown for messages SQS moved itself (maxReceiveCount reached).
REDRIVE_POLICY_REASON = "max_receive_count (moved by the redrive policy)"


def _queue(client: Any, url_or_arn: str, *_: Any, **__: Any) -> str:
    """The queue's name from its URL or ARN (named in an AWSError)."""
    return url_or_arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


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
        age_s: seconds since the time ``age_since`` names; None when the message
            says nothing usable.
        age_since: what ``age_s`` counts from — :data:`AGE_SINCE_DEAD_LETTERED`, or
            :data:`AGE_SINCE_ENQUEUED` for a message without sqsq's dead-letter
            attributes on a standard queue: one SQS's redrive policy moved keeps its
            enqueue time and SQS records no move time, so its age includes the time
            it spent in its own queue.
        payload: where the body is in S3 when the message is a claim check's pointer
            (``ExtendedPayloadSize``, sqsq's or the SQS Extended Client's):
            ``{"url": "s3://bucket/key", "bytes": <payload size>}``; None: the body
            is in the message. A redrive sends the pointer back as it is.
    """

    message_id: str
    task: str | None
    task_id: str | None
    reason: str
    error_type: str | None
    attempts: int | None
    age_s: float | None
    age_since: str | None = None
    payload: Offloaded | None = None


#: ``age_since``: the age counts from when the message was dead-lettered — sqsq's own
#: copies (the ``dead_lettered_at`` it records, else the copy's SentTimestamp: when
#: sqsq sent it to the DLQ), and FIFO messages SQS's redrive policy moved ("For FIFO
#: queues, the enqueue timestamp resets when the message is moved to a dead-letter
#: queue", "Setting-up dead-letter queue retention in Amazon SQS").
AGE_SINCE_DEAD_LETTERED = "dead_lettered"
#: ``age_since``: the age counts from the message's SentTimestamp — a message without
#: sqsq's dead-letter attributes in a standard DLQ: moved there by SQS's redrive
#: policy, which leaves the enqueue time unchanged ("When a message is moved to a
#: dead-letter queue, the enqueue timestamp is unchanged", same page), or sent there
#: by hand.
AGE_SINCE_ENQUEUED = "enqueued"


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
    try:
        body = json.loads(message.get("Body", ""))
        if isinstance(body, dict):
            task = _text(body.get("task"))
            task_id = _text(body.get("id"))
    except (ValueError, TypeError, RecursionError, OverflowError):
        pass
    payload = offloaded(message)
    if payload is not None and task_id is None:  # the task id in sqsq's key
        task_id = payload_task_id(payload["url"].removeprefix("s3://").partition("/")[2])
    since, start = _age_start(system, details)
    return DeadLetterRow(
        message_id=message["MessageId"],
        task=task,
        task_id=_text(details.get("task_id")) or task_id,
        reason=_text(details.get("reason")) or REDRIVE_POLICY_REASON,
        error_type=_text(details.get("error_type")),
        attempts=_count(details.get("receive_count")),
        age_s=None if start is None else max(0.0, now - start),
        age_since=None if start is None else since,
        payload=payload,
    )


def _age_start(system: dict[str, Any], details: dict[str, Any]) -> tuple[str, float | None]:
    """``(age_since, epoch seconds)`` a DLQ message's age counts from (see
    :class:`DeadLetterRow`); the time is None when nothing usable says it."""
    raw = system.get("SentTimestamp")  # epoch milliseconds, as SQS sends it
    sent = int(raw) / 1000 if isinstance(raw, str) and raw.isdigit() and len(raw) < 16 else None
    if details:  # sqsq's own copy (never read on a message SQS moved: see describe)
        return AGE_SINCE_DEAD_LETTERED, _epoch(details.get("dead_lettered_at")) or sent
    fifo = "SequenceNumber" in system  # a fair queue's standard messages carry a group too
    return (AGE_SINCE_DEAD_LETTERED if fifo else AGE_SINCE_ENQUEUED), sent


def _epoch(value: Any) -> float | None:
    """An ISO 8601 time (UTC when it names no zone) as epoch seconds, or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        return None


@aws_boundary(_queue)
def queue_counts(client: Any, url: str) -> tuple[int, int]:
    """``(visible, in flight)``: ApproximateNumberOfMessages and
    ApproximateNumberOfMessagesNotVisible (received, not yet deleted or released)."""
    attributes = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
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


@aws_boundary(_queue)
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


def _matches(
    message: dict[str, Any],
    task: str | None,
    error: str | None,
    task_ids: Collection[str] | None = None,
) -> bool:
    row = describe(message)
    if task is not None and row.task != task:
        return False
    if task_ids is not None and row.task_id not in task_ids:
        return False
    if error is None:
        return True
    error_type = row.error_type or ""
    return error in (error_type, error_type.rsplit(".", 1)[-1], row.reason)


def _resend_entry(
    index: int, message: dict[str, Any], fifo: bool, keys: Sequence[bytes] = ()
) -> dict[str, Any]:
    attributes = {
        k: v
        for k, v in message.get("MessageAttributes", {}).items()
        if k not in (DEAD_LETTER_REASON_ATTRIBUTE, DEAD_LETTER_DETAILS_ATTRIBUTE)
    }
    if keys:
        attributes.update(resigned(message["Body"], attributes, keys))
    reason = message.get("MessageAttributes", {}).get(DEAD_LETTER_REASON_ATTRIBUTE, {})
    if len(attributes) < limits.SQS_MAX_MESSAGE_ATTRIBUTES:  # marks it redriven (see sqs.redriven)
        attributes[REDRIVEN_ATTRIBUTE] = {
            "DataType": "String",
            "StringValue": str(reason.get("StringValue") or "redrive")[:256],
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
    return with_trace_header(entry, message.get("Attributes", {}).get("AWSTraceHeader"))


def resigned(
    body: str, attributes: dict[str, Any], keys: Sequence[bytes]
) -> dict[str, dict[str, str]]:
    """The signature attribute to send a redriven message with: the current key's
    (``keys[0]``) over ``body`` when a previous accepted key signed it (in an
    attribute or in the body), else ``{}`` — what the current key signed keeps its
    signature, and what no accepted key signed is never signed (it is refused again
    as it was)."""
    from .signing import signature_attribute, verify

    verdict = verify(body, attributes, keys)
    if verdict.key is None or verdict.key == 0:
        return {}
    return signature_attribute(body, keys[0])


@dataclass
class RedriveReport:
    """What a fallback redrive did.

    Attributes:
        moved: messages sent back to the source queue and deleted from the DLQ.
        skipped: messages left in the DLQ (filtered out, or sending failed).
        again: copies of tasks this redrive already moved (dead-lettered again
            while it ran), left in the DLQ.
    """

    moved: int = 0
    skipped: int = 0
    again: int = 0


def _keys(message: dict[str, Any]) -> set[str]:
    """What identifies a dead-lettered message across copies: its MessageId and
    its task id (envelope id, or the MessageId recorded when it was dead-lettered)."""
    row = describe(message)
    return {message["MessageId"], *([row.task_id] if row.task_id else [])}


@aws_boundary(_queue)
def redrive(
    client: Any,
    dlq_url: str,
    source_url: str,
    *,
    task: str | None = None,
    error: str | None = None,
    progress: Callable[[int], None] | None = None,
    keys: Sequence[bytes] = (),
    task_ids: Collection[str] | None = None,
) -> RedriveReport:
    """Move matching messages from the DLQ back to the source queue, each once.

    ``task_ids``: only messages of these task ids (the dashboard's replay by filter).
    ``progress`` is called after each batch with the number moved (it may sleep: the
    dashboard caps the rate so).

    ``keys``: the app's accepted signing keys, the current one first
    (``App.verification_keys``): a message a previous key signed is sent back
    signed with the current one (:func:`resigned`).

    Each batch is sent (SendMessageBatch) before it is deleted from the DLQ
    (DeleteMessageBatch, only the entries that were sent). A message whose
    MessageId or task id this call already moved — or whose id is one of the
    MessageIds the moved copies got — is a new copy (the task failed again) and
    is left in the DLQ. The call ends at the first receive that returns nothing.

    Returns:
        A :class:`RedriveReport`.
    """
    fifo = is_fifo(source_url.rsplit("/", 1)[-1])
    report = RedriveReport()
    moved_keys: set[str] = set()
    held: dict[str, dict[str, Any]] = {}  # left in the DLQ: released at the end
    try:
        while True:
            batch = _receive(client, dlq_url)
            if not batch:
                break
            wanted: list[dict[str, Any]] = []
            for message in batch:
                if _keys(message) & moved_keys:
                    if message["MessageId"] not in held:
                        report.again += 1
                    held[message["MessageId"]] = message
                elif not _matches(message, task, error, task_ids):
                    if message["MessageId"] not in held:
                        report.skipped += 1
                    held[message["MessageId"]] = message
                else:
                    wanted.append(message)
            if not wanted:
                continue
            entries = [_resend_entry(i, m, fifo, keys) for i, m in enumerate(wanted)]
            response = client.send_message_batch(QueueUrl=source_url, Entries=entries)
            sent = []
            for success in response.get("Successful", []):
                message = wanted[int(success["Id"])]
                sent.append(message)
                moved_keys |= _keys(message) | {success["MessageId"]}
            for failure in response.get("Failed", []):
                message = wanted[int(failure["Id"])]
                report.skipped += message["MessageId"] not in held
                held[message["MessageId"]] = message
            if sent:
                client.delete_message_batch(
                    QueueUrl=dlq_url, Entries=delete_entries(m["ReceiptHandle"] for m in sent)
                )
            report.moved += len(sent)
            if progress:
                progress(len(sent))
    finally:
        _release(client, dlq_url, list(held.values()))
    return report


# --- move tasks ----------------------------------------------------------------------

#: Move-task states that end it (ListMessageMoveTasks ``Status``).
MOVE_TASK_DONE = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class MoveTask:
    """One ListMessageMoveTasks result.

    Attributes:
        status: RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED.
        moved: ApproximateNumberOfMessagesMoved.
        to_move: ApproximateNumberOfMessagesToMove (None until SQS knows).
        failure_reason: FailureReason of a FAILED task.
    """

    status: str
    moved: int
    to_move: int | None
    failure_reason: str | None = None
    #: sqsq cancelled the task once the messages that were in the DLQ at its start
    #: had moved (an implementation that drains until empty — LocalStack — would
    #: otherwise move new dead letters too, again and again while a worker runs).
    stopped_at_count: bool = False

    @property
    def succeeded(self) -> bool:
        """COMPLETED, or stopped by sqsq at the count it started with."""
        return self.status == "COMPLETED" or (self.status == "CANCELLED" and self.stopped_at_count)

    @property
    def failed(self) -> int:
        """Messages not moved by a task that ended (to move − moved)."""
        if self.status not in MOVE_TASK_DONE or self.to_move is None:
            return 0
        return max(0, self.to_move - self.moved)


@aws_boundary(_queue)
def start_move_task(
    client: Any, dlq_arn: str, source_arn: str, rate: int | None = None
) -> str | None:
    """StartMessageMoveTask from the DLQ to ``source_arn`` (the explicit destination).

    Returns:
        The task handle, or None where the endpoint does not have the action
        (moto answers 500): the caller then moves messages itself.

    Raises:
        AWSError: any other refusal (permissions, a move task already running, …).
    """
    kwargs: dict[str, Any] = {"SourceArn": dlq_arn, "DestinationArn": source_arn}
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


@aws_boundary(_queue)
def move_task_status(client: Any, dlq_arn: str) -> MoveTask | None:
    """The most recent move task of the DLQ (ListMessageMoveTasks lists it first)."""
    results = client.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
    if not results:
        return None
    latest = results[0]
    to_move = latest.get("ApproximateNumberOfMessagesToMove")
    return MoveTask(
        status=str(latest.get("Status", "RUNNING")),
        moved=int(latest.get("ApproximateNumberOfMessagesMoved", 0)),
        to_move=None if to_move is None else int(to_move),
        failure_reason=latest.get("FailureReason"),
    )


@aws_boundary(_queue)
def wait_move_task(
    client: Any,
    dlq_arn: str,
    handle: str | None = None,
    *,
    poll_s: float = 0.25,
    progress: Callable[[MoveTask], None] | None = None,
) -> MoveTask:
    """Poll ListMessageMoveTasks every ``poll_s`` seconds until the task ends.

    With ``handle``, a task that has moved as many messages as the DLQ held at its
    start (``ApproximateNumberOfMessagesToMove``) is cancelled
    (CancelMessageMoveTask): what arrives in the DLQ after the start — a task that
    failed again at once — stays there.
    """
    cancelled = False
    while True:
        task = move_task_status(client, dlq_arn)
        if task is not None:
            if progress:
                progress(task)
            if task.status in MOVE_TASK_DONE:
                return dataclasses.replace(task, stopped_at_count=cancelled)
            if (
                handle
                and not cancelled
                and task.status == "RUNNING"
                and task.to_move is not None
                and task.moved >= task.to_move
            ):
                try:
                    client.cancel_message_move_task(TaskHandle=handle)
                    cancelled = True
                except Exception as exc:
                    if getattr(exc, "response", None) is None:
                        raise
                    # refused: it ended meanwhile (the next poll says how)
        time.sleep(poll_s)
