"""The claim check's call sequences: offload before the send, fetch after the
receive, delete after the message is gone — each written once (``sqsq.calls``),
run by boto3 (producers, Lambda) and by aiobotocore (the worker, async producers).

Requests per offloaded task (measured in ``tests/test_payloads.py``): the producer
1 PutObject (plus 1 GetQueueAttributes per queue and process, for the limit); the
worker or Lambda handler 1 GetObject, and one DeleteObjects call per settled batch
(none with ``payload_delete=False``: the lifecycle rule expires the object). Bytes:
the body once up and once down; the SQS message is the ~150-byte pointer.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import limits
from ..calls import Call, Gather, Steps
from ..dynamodb import VALUE_S3
from ..envelope import dumps
from ..errors import EnqueueError, PayloadMissing, UndecodableMessage
from ..outcome import OutcomeKind
from ..pointer import (
    PAYLOAD_PREFIX,
    Pointer,
    offloaded_size,
    parse,
    payload_task_id,
    size_attribute,
    unannounced,
)
from ..result import READY_STATES, State
from ..sqs import chunks, entry_size

if TYPE_CHECKING:
    from ..app import App
    from ..delivery import Delivery
    from ..outcome import Outcome
    from ..producer import OutgoingMessage
    from ..resources import Change

logger = logging.getLogger(__name__)

#: The key prefix of results: ``sqsq-results/<app>/<date>/<task id>/<sha256>``.
RESULT_PREFIX = "sqsq-results"
#: Room kept under a queue's ``MaximumMessageSize`` for the attributes sqsq adds to a
#: copy of the message (the dead-letter reason and details), bytes.
HEADROOM_BYTES = 4_096
#: The limit assumed when a queue's ``MaximumMessageSize`` cannot be read (no
#: ``sqs:GetQueueAttributes``): the Extended Client's default, 256 KiB.
FALLBACK_LIMIT_BYTES = 262_144
#: Concurrent PutObject / GetObject calls of one batch (aiobotocore).
CONCURRENCY = 10
#: Keys per DeleteObjects call ("DeleteObjects", Amazon S3 API reference).
S3_MAX_DELETE_KEYS = 1_000
#: Outcomes whose message is gone for good with no copy left that points to the
#: object: its object may go. (FAILURE and DEAD_LETTER copy the pointer to the DLQ:
#: the lifecycle rule expires the object after the DLQ's retention.)
DISCARDED_KINDS = frozenset({OutcomeKind.SUCCESS, OutcomeKind.REVOKED})

_SQSQ_KEY = re.compile(rf"^(?:{PAYLOAD_PREFIX}|{RESULT_PREFIX})/.+/([0-9a-f]{{64}})$")
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "404"})


def object_key(prefix: str, parts: Sequence[str], data: bytes) -> str:
    """``<prefix>/<parts but the last>/<today, UTC>/<last part>/<sha256 of data>``:
    ``parts`` end with the task id (see :data:`PAYLOAD_PREFIX`). The sha256 makes the
    key name its content: a pointer cannot be pointed at another object unnoticed,
    and two sends of one task id never overwrite each other's object."""
    *head, task_id = parts
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    return "/".join([prefix, *head, date, task_id, hashlib.sha256(data).hexdigest()])


def key_digest(key: str) -> str | None:
    """The sha256 a key sqsq wrote ends with (None: a key of another writer)."""
    match = _SQSQ_KEY.match(key)
    return match.group(1) if match else None


def error_code(exc: Exception) -> str:
    """A botocore ClientError's code ("" for other exceptions)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def read(pointer: Pointer, answer: Any) -> bytes | Exception:
    """The bytes of a GetObject ``answer`` (a response, or the call's exception),
    checked against the sha256 in sqsq's key; a missing or different object is
    :class:`~sqsq.PayloadMissing`, any other failure the call's exception."""
    if isinstance(answer, Exception):
        code = error_code(answer)
        if code in _MISSING:
            return PayloadMissing(f"{pointer.url} does not exist ({code})")
        return answer
    data: bytes = answer["Body"]
    digest = key_digest(pointer.key)
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        return PayloadMissing(f"{pointer.url} is not the object sent: its sha256 is not its key's")
    return data


class ClaimCheck:
    """One App's S3 claim check (``App.payloads``).

    Args:
        app: the App; its settings ``payload_bucket``, ``payload_threshold_bytes``,
            ``payload_always_through_s3``, ``payload_delete``, ``payload_kms_key_id``
            and ``payload_result_threshold_bytes`` apply.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._limits: dict[str, int] = {}  # queue name -> MaximumMessageSize

    @property
    def bucket(self) -> str | None:
        """The bucket objects are put in (``payload_bucket``); None: none is."""
        return self.app.settings.payload_bucket

    def put_call(self, key: str, data: bytes, bucket: str | None = None) -> Call:
        """PutObject of ``data`` under ``key`` in ``bucket`` (default: ``payload_bucket``),
        encrypted (SSE-KMS with ``payload_kms_key_id``, else SSE-S3)."""
        kwargs: dict[str, Any] = {
            "Bucket": bucket or self.bucket,
            "Key": key,
            "Body": data,
            "ContentType": "application/json",
        }
        if self.app.settings.payload_kms_key_id:
            kwargs["ServerSideEncryption"] = "aws:kms"
            kwargs["SSEKMSKeyId"] = self.app.settings.payload_kms_key_id
        else:
            kwargs["ServerSideEncryption"] = "AES256"
        return Call("s3", "put_object", kwargs)

    # --- the bucket (``sqsq resources``) ---------------------------------------------

    def plan_bucket(self) -> list[Change]:
        """The bucket's row of ``sqsq resources plan`` (:mod:`sqsq.payloads.bucket`)."""
        from . import bucket

        return bucket.plan(self.app)

    def apply_bucket(self, change: Change) -> None:
        """Carry out the bucket's row (:func:`sqsq.payloads.bucket.apply`)."""
        from . import bucket

        bucket.apply(self.app, change)

    def _putting(self, calls: Sequence[Call], what: str) -> Steps[None]:
        """The PutObject ``calls`` at once (none: no request); a failure raises
        EnqueueError naming ``what``."""
        if not calls:
            return
        answers = yield Gather(tuple(calls), concurrency=CONCURRENCY)
        for answer in answers:
            if isinstance(answer, Exception):
                raise EnqueueError(f"{what} could not be put in S3: {answer}") from answer

    # --- producer: offload ----------------------------------------------------------

    def threshold(self, queue_name: str) -> Steps[int]:
        """Bytes (body + attributes) over which a message to ``queue_name`` goes to
        S3: ``payload_threshold_bytes``, else the queue's ``MaximumMessageSize``
        (one GetQueueAttributes per queue and process) less :data:`HEADROOM_BYTES`."""
        fixed = self.app.settings.payload_threshold_bytes
        if fixed is not None:
            return fixed
        limit = self._limits.get(queue_name)
        if limit is None:
            try:
                response = yield Call(
                    "sqs",
                    "get_queue_attributes",
                    {"AttributeNames": ["MaximumMessageSize"]},
                    queue=queue_name,
                )
                limit = int(response["Attributes"]["MaximumMessageSize"])
            except Exception as exc:  # no permission: the Extended Client's default
                logger.warning(
                    "MaximumMessageSize of %s cannot be read (%s); offloading over %d bytes",
                    queue_name,
                    exc,
                    FALLBACK_LIMIT_BYTES,
                )
                limit = FALLBACK_LIMIT_BYTES
            self._limits[queue_name] = limit
        return max(min(limit, limits.SQS_MAX_MESSAGE_BYTES) - HEADROOM_BYTES, 0)

    def offloading(self, messages: Sequence[OutgoingMessage]) -> Steps[list[OutgoingMessage]]:
        """``messages``, those over their queue's threshold (every one with
        ``payload_always_through_s3``) put in S3 and replaced by their pointer.

        Raises:
            EnqueueError: a PutObject failed (nothing of this call was sent).
        """
        out = list(messages)
        puts: list[tuple[int, Pointer, Call]] = []
        for index, message in enumerate(out):
            if message.wire_body is not None or self.bucket is None:
                continue
            if not self.app.settings.payload_always_through_s3:
                limit = yield from self.threshold(message.queue_name)
                if entry_size(message.entry("0")) <= limit:
                    continue
            data = message.body.encode()
            queue = self.app.logical_queue(message.queue_name)
            key = object_key(PAYLOAD_PREFIX, [self.app.name, queue, message.task_id], data)
            puts.append((index, Pointer(self.bucket, key), self.put_call(key, data)))
        if not puts:
            return out
        answers = yield Gather(tuple(call for _, _, call in puts), concurrency=CONCURRENCY)
        for (index, pointer, _), answer in zip(puts, answers, strict=True):
            message = out[index]
            if isinstance(answer, Exception):
                raise EnqueueError(
                    f"task {message.task_name} ({message.task_id}) was not enqueued: "
                    f"its body could not be put in {pointer.url}: {answer}",
                    failed=[(m.task_id, str(answer)) for m in out],
                ) from answer
            attributes = {**(message.attributes or {}), **size_attribute(len(message.body))}
            out[index] = replace(message, wire_body=pointer.body, attributes=attributes)
        return out

    def offloading_input(self, message: OutgoingMessage, body: str, due_in_s: float) -> Steps[str]:
        """The target Input of the one-time schedule that sends ``message`` (a long
        countdown, ``long_eta="scheduler"``): ``body`` itself, or — over EventBridge
        Scheduler's Input limit (``limits.SCHEDULER_MAX_INPUT_BYTES``, 256 KB), over
        the queue's threshold, or with ``payload_always_through_s3`` — the pointer to
        it, put in S3 (one PutObject). Scheduler's SQS target sets no message
        attribute, so the message carries no ``ExtendedPayloadSize``: workers take a
        pointer to a key of sqsq's without it (:func:`sqsq.pointer.unannounced`).
        The object must outlive the wait (``due_in_s``, seconds) and then the
        message's longest life in its queue and DLQ (``limits.SQS_MAX_RETENTION_S``)
        under the bucket's lifecycle rule (``payload_retention_s``).

        Raises:
            EnqueueError: the wait is too long for ``payload_retention_s``, or the
                PutObject failed (no schedule was made either way).
        """
        if self.bucket is None:
            return body
        limit = yield from self.threshold(message.queue_name)
        data = body.encode()
        always = self.app.settings.payload_always_through_s3
        if not always and len(data) <= min(limit, limits.SCHEDULER_MAX_INPUT_BYTES):
            return body
        retention_s = self.app.settings.payload_retention_s
        if due_in_s + limits.SQS_MAX_RETENTION_S > retention_s:
            raise EnqueueError(
                f"task {message.task_name} ({message.task_id}) was not scheduled: its body "
                f"({len(data):,} bytes) goes through S3, and an object lives "
                f"payload_retention_s={retention_s:.0f} s (the bucket's lifecycle rule), "
                f"less than its wait ({due_in_s:.0f} s) plus a message's longest life in "
                f"its queue (SQS_MAX_RETENTION_S={limits.SQS_MAX_RETENTION_S}); raise "
                "payload_retention_s, or use long_eta='hop'"
            )
        queue = self.app.logical_queue(message.queue_name)
        key = object_key(PAYLOAD_PREFIX, [self.app.name, queue, message.task_id], data)
        yield from self._putting([self.put_call(key, data)], f"task {message.task_id}'s body")
        return Pointer(self.bucket, key).body

    # --- results: values too large for their DynamoDB item -------------------------

    def offloading_results(self, outcomes: Sequence[Outcome]) -> Steps[None]:
        """Put each SUCCESS value whose JSON is over ``payload_result_threshold_bytes``
        in S3 (``sqsq-results/<app>/<date>/<task id>/<sha256>``, PutObject) and leave
        in its record only where it is (``extra["value_s3"]``: bucket, key, bytes,
        sha256), before ``settle`` writes the item. ``AsyncResult.get()`` and chords
        read it back (``sqsq.dynamodb.with_value``); the lifecycle rule expires it
        with the result (``result_ttl``).

        Raises:
            EnqueueError: a PutObject failed (the outcomes are not stored: their
                messages come back).
        """
        if self.bucket is None:
            return
        puts: list[tuple[Outcome, dict[str, Any], Call]] = []
        threshold = self.app.settings.payload_result_threshold_bytes
        for outcome in outcomes:
            record = outcome.record
            if outcome.stored or record is None or not outcome.store:
                continue
            if record.state is not State.SUCCESS or VALUE_S3 in record.extra:
                continue
            data = dumps(record.value).encode()
            if len(data) <= threshold:
                continue
            key = object_key(RESULT_PREFIX, [self.app.name, record.task_id], data)
            where = {
                "bucket": self.bucket,
                "key": key,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            puts.append((outcome, where, self.put_call(key, data)))
        yield from self._putting([call for _, _, call in puts], "a result")
        for outcome, where, _ in puts:
            assert outcome.record is not None
            extra = {**outcome.record.extra, VALUE_S3: where}
            outcome.record = replace(outcome.record, value=None, extra=extra)

    def offloading_resends(self, outcomes: Sequence[Outcome]) -> Steps[None]:
        """Put the new body of each RESEND outcome whose message came through S3 (a
        deferral, a retry or an ETA hop sent on as a new message) in S3 too, and send
        its pointer instead: the copy keeps the size attribute of its delivery, so it
        must be a pointer. The bucket: ``payload_bucket``, else the one the delivery's
        pointer named. The copy is signed over the pointer, whose key names the body's
        sha256 (checked when it is fetched).

        Raises:
            EnqueueError: a PutObject failed (the outcomes are kept: their messages
                come back).
        """
        puts: list[tuple[Outcome, Pointer, Call]] = []
        for outcome in outcomes:
            wire = outcome.delivery.wire_body
            if outcome.kind is not OutcomeKind.RESEND or wire is None or outcome.body is None:
                continue
            if outcome.copied or outcome.body == wire:
                continue
            data = outcome.body.encode()
            bucket = self.bucket or parse(wire).bucket
            key = object_key(
                PAYLOAD_PREFIX, [self.app.name, outcome.delivery.queue, outcome.task_id], data
            )
            puts.append((outcome, Pointer(bucket, key), self.put_call(key, data, bucket)))
        yield from self._putting([call for _, _, call in puts], "a re-sent body")
        for outcome, pointer, _ in puts:
            outcome.body = pointer.body

    # --- worker / Lambda: fetch, then delete ------------------------------------------

    def resolving(self, deliveries: Sequence[Delivery]) -> Steps[list[Delivery]]:
        """``deliveries``, the body of each that points to S3 (the size attribute
        set) fetched: ``body`` the payload, ``wire_body`` the pointer. A missing or
        different object sets ``refusal`` to :class:`~sqsq.PayloadMissing` (dead
        letter), a failed GetObject to its exception (the message comes back), a
        body that is not a pointer to :class:`~sqsq.UndecodableMessage`. No request
        when no delivery points to S3."""
        out = list(deliveries)
        wanted: list[tuple[int, Pointer]] = []
        for index, delivery in enumerate(out):
            if delivery.wire_body is not None or delivery.malformed:
                continue
            if offloaded_size(delivery.message_attributes) is None:
                pointer = unannounced(delivery.body)  # a schedule's Input: no attributes
                if pointer is not None:
                    wanted.append((index, pointer))
                continue
            try:
                wanted.append((index, parse(delivery.body)))
            except ValueError as exc:
                out[index] = replace(delivery, refusal=UndecodableMessage(str(exc)))
        if not wanted:
            return out
        calls = tuple(
            Call("s3", "get_object", {"Bucket": p.bucket, "Key": p.key}) for _, p in wanted
        )
        answers = yield Gather(calls, concurrency=CONCURRENCY)
        deleted: dict[int, str] = {}  # index -> task id: NoSuchKey under sqsq's key scheme
        for (index, pointer), answer in zip(wanted, answers, strict=True):
            delivery = out[index]
            data = read(pointer, answer)
            if isinstance(data, Exception):
                out[index] = replace(delivery, refusal=data)
                task_id = payload_task_id(pointer.key)
                if isinstance(answer, Exception) and error_code(answer) == "NoSuchKey" and task_id:
                    deleted[index] = task_id
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                refusal = UndecodableMessage(f"{pointer.url} is not UTF-8 text")
                out[index] = replace(delivery, refusal=refusal)
                continue
            out[index] = replace(delivery, body=text, wire_body=delivery.body)
        if deleted:
            yield from self._finished(out, deleted)
        return out

    def _finished(self, deliveries: list[Delivery], deleted: dict[int, str]) -> Steps[None]:
        """Mark as :attr:`~sqsq.delivery.Delivery.finished` each delivery of
        ``deleted`` whose task's result is final (one BatchGetItem per 100): a
        duplicate delivery whose object its first run deleted after storing its
        outcome (``payload_delete=True``), let go by the core instead of a false
        ``payload_missing``. No final result: the dead letter stands. The read
        failing: the message comes back (a dead letter is not decided on a guess)."""
        try:
            records = yield from self.app.results.records_getting(list(deleted.values()))
        except Exception as exc:
            for index in deleted:
                deliveries[index] = replace(deliveries[index], refusal=exc)
            return
        for index, task_id in deleted.items():
            record = records.get(task_id)
            if record is not None and record.state in READY_STATES:
                deliveries[index] = replace(deliveries[index], refusal=None, finished=record)

    def discarding(self, outcomes: Sequence[Outcome]) -> Steps[None]:
        """Delete the objects of ``outcomes`` whose messages were just deleted
        (SUCCESS, REVOKED: :data:`DISCARDED_KINDS`; and RESEND whose copy went with
        an object of its own, :meth:`offloading_resends`): DeleteObjects, ≤ 1,000 keys per
        call. An outcome that stored no result (``store_result=False``) keeps its
        object: a duplicate delivery finds no final result to be let go by
        (:meth:`resolving`), so it must still find its body. A failure is logged,
        never raised: the lifecycle rule expires what is left. Nothing with
        ``payload_delete=False``."""
        if not self.app.settings.payload_delete:
            return
        by_bucket: dict[str, list[str]] = {}
        for outcome in outcomes:
            wire = outcome.delivery.wire_body
            if wire is None:
                continue
            sent_on = outcome.kind is OutcomeKind.RESEND and outcome.body not in (None, wire)
            if outcome.kind not in DISCARDED_KINDS and not sent_on:  # a copy points to it
                continue
            if not sent_on and not outcome.store:  # no result tells a duplicate it ended
                continue
            pointer = parse(wire)
            by_bucket.setdefault(pointer.bucket, []).append(pointer.key)
        calls = tuple(
            Call(
                "s3",
                "delete_objects",
                {
                    "Bucket": bucket,
                    "Delete": {"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                },
            )
            for bucket, keys in by_bucket.items()
            for chunk in chunks(keys, S3_MAX_DELETE_KEYS)
        )
        if not calls:
            return
        answers = yield Gather(calls)
        for call, answer in zip(calls, answers, strict=True):
            errors = answer if isinstance(answer, Exception) else answer.get("Errors")
            if errors:
                logger.warning(
                    "payload objects in %s not deleted (the lifecycle rule will): %s",
                    call.kwargs["Bucket"],
                    errors,
                )
