"""Producer side: arguments → envelope → SendMessage / SendMessageBatch.

Everything that can be checked before an AWS call is checked here, so a bad
call fails in the producer with a clear error and nothing is sent: the arguments
bind to the task's signature, every value is encodable under the envelope's JSON
rules, the message fits SQS's 1 MiB limit, the delay fits 900 s. Building a
message needs neither pydantic nor botocore (:func:`build` is pure and shared by
the boto3 and aiobotocore senders).

Single calls go through :class:`sqsq.sender.Sender`, which lets concurrent
calls share SendMessageBatch calls; ``delay_many`` sends explicit batches here.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from . import limits, signals
from .calls import Call, QueueUrl, Sleep, Steps, arun, run
from .envelope import encode_fields, new_task_id, to_json
from .errors import EnqueueError
from .retry import full_jitter_s
from .signing import signature_attribute
from .sqs import send_batches

if TYPE_CHECKING:
    from .arguments import Signature
    from .envelope_model import Envelope

logger = logging.getLogger(__name__)

#: Attempts at SendMessageBatch entries that failed with SenderFault=false.
BATCH_ATTEMPTS = 5

#: The producer's tracing hook (``sqsq.tracing``'s ``ProducerTracing``, installed by
#: an App when OpenTelemetry's API is installed): ``created()`` in :func:`build`
#: starts a message's PRODUCER span and puts its context in the envelope's
#: headers (so it is signed with the body), ``sent()`` ends the spans. None: no
#: tracing, one attribute check per message.
tracing: Any = None

#: W3C ``traceparent`` values the send spans built in this context follow
#: (``sqsq.workflows`` sets them around a finished task's follow-ups: a chain's next
#: step, a chord's callback): when no span is current the first is their parent, and
#: each is a link — a chord's callback links to its members' send spans.
follows: ContextVar[tuple[str, ...]] = ContextVar("sqsq_follows", default=())


class ClaimCheck(Protocol):
    """Puts bodies over the queue's size in S3 (``sqsq.payloads.ClaimCheck``, installed
    on the App as ``App.payloads``); the core never imports it."""

    @property
    def bucket(self) -> str | None:
        """Where bodies go (``payload_bucket``); None: nowhere (it only reads pointers)."""
        ...

    def offloading(self, messages: Sequence[OutgoingMessage]) -> Steps[list[OutgoingMessage]]:
        """``messages``, those it put in S3 replaced by their pointer (``wire_body``)."""
        ...


@dataclass(frozen=True)
class OutgoingMessage:
    """A task call encoded and addressed, ready for SendMessage(Batch).

    Attributes:
        task_id: the task id (in the body too).
        task_name: the registered task name.
        body: the encoded envelope (:func:`sqsq.envelope.encode_fields`).
        queue_name: the physical SQS queue name.
        delay_s: DelaySeconds (0–900).
        message_group_id: MessageGroupId: a FIFO queue's ordering group, or a
            standard queue's tenant (SQS fair queues); None on a standard queue
            without one.
        deduplication_id: FIFO queues only.
        attributes: MessageAttributes (the signature; a claim check's size).
        wire_body: the body SQS carries instead of :attr:`body` once the claim check
            put :attr:`body` in S3 (the pointer, ``sqsq.payloads``); None: :attr:`body`.
        claim_check: the App's claim check (``App.payloads``) when it has a
            ``payload_bucket``: the send steps hand it the message before sending
            (:func:`claim_checked`); None: sent as it is.
    """

    task_id: str
    task_name: str
    body: str
    queue_name: str
    delay_s: int
    message_group_id: str | None = None  # FIFO group, or a fair queue's tenant
    deduplication_id: str | None = None  # FIFO queues only
    attributes: dict[str, Any] | None = None  # MessageAttributes (the signature)
    trace_header: str | None = None  # AWSTraceHeader (MessageSystemAttributes), sqsq.tracing
    span: Any = field(default=None, compare=False, repr=False)  # its PRODUCER span, if traced
    wire_body: str | None = None  # the S3 pointer, once offloaded
    claim_check: ClaimCheck | None = field(default=None, compare=False, repr=False)

    @property
    def envelope(self) -> Envelope:
        """The envelope of :attr:`body`, decoded (loads pydantic: not for the hot path)."""
        from .envelope import decode

        return decode(self.body)

    def entry(self, entry_id: str) -> dict[str, Any]:
        """This message as a SendMessage(Batch) entry."""
        body = self.body if self.wire_body is None else self.wire_body
        entry: dict[str, Any] = {"Id": entry_id, "MessageBody": body}
        if self.attributes:
            entry["MessageAttributes"] = self.attributes
        if self.trace_header:  # a system attribute: outside the 10-attribute and size quotas
            entry["MessageSystemAttributes"] = {
                "AWSTraceHeader": {"DataType": "String", "StringValue": self.trace_header}
            }
        if self.delay_s:
            entry["DelaySeconds"] = self.delay_s
        if self.message_group_id is not None:
            entry["MessageGroupId"] = self.message_group_id
        if self.queue_name.endswith(".fifo"):  # a standard queue refuses the parameter
            entry["MessageDeduplicationId"] = self.deduplication_id or self.task_id
        return entry


def delay_seconds(countdown: float | timedelta | None, eta: datetime | None) -> int:
    """DelaySeconds for ``countdown`` (seconds) or ``eta`` (aware datetime).

    Raises:
        EnqueueError: over ``limits.SQS_MAX_DELAY_S`` (900 s, "Amazon SQS message
            quotas" — Delay queue), negative, or both given.
    """
    if countdown is not None and eta is not None:
        raise EnqueueError("pass countdown or eta, not both")
    if isinstance(countdown, timedelta):
        countdown = countdown.total_seconds()
    if eta is not None:
        if eta.tzinfo is None:
            raise EnqueueError("eta must be a timezone-aware datetime (e.g. tzinfo=UTC)")
        countdown = max(0.0, (eta - datetime.now(UTC)).total_seconds())
    if countdown is None:
        return 0
    if countdown < 0 or not math.isfinite(countdown):
        raise EnqueueError(f"countdown must be a finite number of seconds >= 0, got {countdown}")
    if countdown > limits.SQS_MAX_DELAY_S:
        what = (
            f"eta {eta.isoformat()} is {countdown:g} s ahead, which"
            if eta is not None
            else f"countdown of {countdown:g} s"
        )
        raise EnqueueError(
            f"{what} is over SQS_MAX_DELAY_S={limits.SQS_MAX_DELAY_S} "
            "(Amazon SQS message quotas, DelaySeconds)"
        )
    return math.ceil(countdown)


def expiry(expires: float | timedelta | datetime | None, now: datetime) -> datetime | None:
    """The absolute expiry for ``expires`` (seconds from now, timedelta or aware datetime)."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            raise EnqueueError("expires must be a timezone-aware datetime (e.g. tzinfo=UTC)")
        return expires
    if isinstance(expires, timedelta):
        expires = expires.total_seconds()
    if not math.isfinite(expires) or expires <= 0:
        raise EnqueueError(f"expires must be > 0 seconds, got {expires}")
    return now + timedelta(seconds=expires)


#: What SQS accepts in a MessageGroupId ("SendMessage" API reference).
_GROUP_ID = re.compile(r"""^[A-Za-z0-9!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]+$""")


def check_message_group_id(group: str) -> None:
    """A MessageGroupId SQS accepts: 1-128 alphanumerics and punctuation
    (``limits.SQS_MAX_MESSAGE_GROUP_ID_CHARS``). Raises EnqueueError."""
    if len(group) > limits.SQS_MAX_MESSAGE_GROUP_ID_CHARS or not _GROUP_ID.match(group):
        raise EnqueueError(
            f"MessageGroupId {group[:40]!r}{'…' if len(group) > 40 else ''} is not 1-"
            f"{limits.SQS_MAX_MESSAGE_GROUP_ID_CHARS} (SQS_MAX_MESSAGE_GROUP_ID_CHARS) "
            "alphanumerics and punctuation (no spaces)"
        )


def deduplication_id(task_name: str, idempotency_key: str) -> str:
    """FIFO MessageDeduplicationId from an idempotency key (SHA-256 hex, 64 chars,
    within SQS's 128-character limit)."""
    import hashlib

    return hashlib.sha256(f"{task_name}\0{idempotency_key}".encode()).hexdigest()


def build(
    task_name: str,
    args: Sequence[Any] | None,
    kwargs: dict[str, Any] | None,
    *,
    queue: str,
    queue_name: str,
    countdown: float | timedelta | None = None,
    eta: datetime | None = None,
    task_id: str | None = None,
    signature: Signature | None = None,
    headers: dict[str, str] | None = None,
    expires: float | timedelta | datetime | None = None,
    idempotency_key: str | None = None,
    message_group_id: str | None = None,
    parent_id: str | None = None,
    root_id: str | None = None,
    workflow: dict[str, Any] | None = None,
    signing_key: bytes | None = None,
    claim_check: ClaimCheck | None = None,
) -> OutgoingMessage:
    """Check and encode one task call.

    Args:
        task_name: registered task name.
        args / kwargs: the call's arguments.
        queue: logical queue; queue_name: its physical SQS name.
        countdown: delay in seconds (≤ 900); eta: aware datetime instead.
        task_id: a chosen id (default: a new UUID4).
        signature: the task function's signature, to check the arguments bind.
        expires: seconds, timedelta or aware datetime after which it must not run.
        idempotency_key: run the body at most once per key.
        message_group_id: MessageGroupId: on a FIFO queue the ordering group
            (default: the task name); on a standard queue the tenant of SQS fair
            queues (default: none). ≤ 128 characters, alphanumerics and punctuation.
        parent_id / root_id / workflow: a workflow's links (``sqsq.workflows``).
        signing_key: sign the body (``sqsq-signature`` attribute, see ``signing.py``).
        claim_check: the App's ``payloads`` (a ``payload_bucket`` is set): a body of
            any size is accepted here, and the send steps put it in S3 when it is over
            the queue's limit; None: over 1 MiB is ``MessageTooLarge``.

    Raises:
        ArgumentError, NotSerializable, MessageTooLarge, EnqueueError.
    """
    args = list(args or ())
    kwargs = dict(kwargs or {})
    if signature is not None:
        signature.check(args, kwargs)
    if claim_check is not None and claim_check.bucket is None:
        claim_check = None  # installed to read pointers only: no bucket to send through
    delay = delay_seconds(countdown, eta)
    fifo = queue_name.endswith(".fifo")
    if fifo and delay:
        raise EnqueueError(
            f"{queue_name} is a FIFO queue: SQS does not support a per-message delay "
            "(countdown/eta) there"
        )
    if message_group_id is not None:
        check_message_group_id(message_group_id)
    now = datetime.now(UTC)
    if task_id is None and fifo and idempotency_key:
        # SQS drops a FIFO duplicate (same MessageDeduplicationId): both callers must
        # then hold the same task id, or the second one's result never resolves.
        import uuid

        task_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"sqsq:{queue_name}:{task_name}:{idempotency_key}")
        )
    task_id = task_id or new_task_id()
    span = trace_header = None
    if tracing is not None:
        headers, span, trace_header = tracing.created(task_name, queue_name, task_id, headers)
    body = encode_fields(
        id=task_id,
        task=task_name,
        args=to_json(args, "args"),
        kwargs=to_json(kwargs, "kwargs"),
        queue=queue,
        eta=now + timedelta(seconds=delay) if delay else None,
        expires=expiry(expires, now),
        idempotency_key=idempotency_key,
        parent_id=parent_id,
        root_id=root_id,
        workflow=workflow,
        headers=headers,
        sent_at=now,
        max_bytes=None if claim_check is not None else limits.SQS_MAX_MESSAGE_BYTES,
    )
    group = (message_group_id or task_name) if fifo else message_group_id
    dedup = deduplication_id(task_name, idempotency_key) if fifo and idempotency_key else None
    attributes = signature_attribute(body, signing_key) if signing_key else None
    return OutgoingMessage(
        task_id,
        task_name,
        body,
        queue_name,
        delay,
        group,
        dedup,
        attributes,
        trace_header,
        span,
        claim_check=claim_check,
    )


# --- sending ---------------------------------------------------------------------------


def _backoff_s(attempt: int) -> float:
    return full_jitter_s(attempt, base_s=0.1, cap_s=5.0)


def _split_failed(
    response: dict[str, Any], batch: dict[str, OutgoingMessage]
) -> tuple[dict[str, OutgoingMessage], dict[str, str]]:
    """Entries to retry (SenderFault=false), and refused ones as ``{entry id: reason}``."""
    retry: dict[str, OutgoingMessage] = {}
    refused: dict[str, str] = {}
    for failure in response.get("Failed", []):
        reason = f"{failure.get('Code')}: {failure.get('Message', '')}"
        if failure.get("SenderFault"):
            refused[failure["Id"]] = reason
        else:
            retry[failure["Id"]] = batch[failure["Id"]]
    return retry, refused


def _batches(messages: Sequence[OutgoingMessage]) -> list[dict[str, OutgoingMessage]]:
    """SendMessageBatch calls for ``messages``: per queue, ≤ 10 entries and ≤ 1 MiB,
    as ``{entry id: message}``."""
    by_queue: dict[str, list[dict[str, Any]]] = {}
    index = {str(i): m for i, m in enumerate(messages)}
    for entry_id, message in index.items():
        by_queue.setdefault(message.queue_name, []).append(message.entry(entry_id))
    return [
        {entry["Id"]: index[entry["Id"]] for entry in batch}
        for entries in by_queue.values()
        for batch in send_batches(entries)
    ]


# --- before_task_publish / after_task_publish (sqsq.signals) -----------------------------

#: Envelope fields copied into the publish signals' ``headers`` (Celery's header names).
_HEADER_FIELDS = ("eta", "expires", "retries", "parent_id", "root_id", "idempotency_key")


def _publish_named(message: OutgoingMessage) -> dict[str, Any]:
    """The keyword arguments of the publish signals for ``message``: ``body`` the
    envelope as JSON (what SQS receives), ``headers`` in Celery's shape (``id``,
    ``task`` and the envelope's routing fields, then the envelope's own headers),
    ``routing_key`` the SQS queue name, ``exchange`` "" (SQS has none). Copies:
    changing them changes nothing that is sent."""
    try:
        body = json.loads(message.body)
    except ValueError:  # Celery's protocol (sqsq.interop): base64, its headers inside
        body = {}
    if not isinstance(body, dict):  # a claim check's pointer (sqsq.payloads): a JSON list
        body = {}
    headers: dict[str, Any] = {"id": message.task_id, "task": message.task_name}
    headers.update((k, body[k]) for k in _HEADER_FIELDS if body.get(k) is not None)
    headers.update(body.get("headers") or {})
    return {"body": body, "exchange": "", "routing_key": message.queue_name, "headers": headers}


def publishing(messages: Sequence[OutgoingMessage]) -> None:
    """Send ``before_task_publish`` once per message (nothing when no receiver)."""
    if not signals.before_task_publish.receivers:
        return
    for m in messages:
        properties = {
            "delay_seconds": m.delay_s,
            "message_group_id": m.message_group_id,
            "deduplication_id": m.deduplication_id,
        }
        signals.before_task_publish.send(
            m.task_name, **_publish_named(m), properties=properties, declare=[], retry_policy=None
        )


def published(messages: Sequence[OutgoingMessage]) -> None:
    """Send ``after_task_publish`` once per message SQS acknowledged (and end
    their PRODUCER spans)."""
    if tracing is not None:
        tracing.sent(messages)
    if signals.after_task_publish.receivers:
        for m in messages:
            signals.after_task_publish.send(m.task_name, **_publish_named(m))


def created_here(messages: Sequence[OutgoingMessage]) -> None:
    """End the PRODUCER spans of ``messages``, which run in this process instead of
    being sent (``apply()``, ``task_always_eager``)."""
    if tracing is not None:
        tracing.sent(messages)


def unsent(messages: Sequence[OutgoingMessage], error: BaseException) -> None:
    """End the PRODUCER spans of ``messages``, which were not sent (``error``)."""
    if tracing is not None:
        tracing.sent(messages, error)


def _raise_if_failed(messages: Sequence[OutgoingMessage], failed: list[tuple[str, str]]) -> None:
    if failed:
        bad = {task_id for task_id, _ in failed}
        unsent([m for m in messages if m.task_id in bad], EnqueueError(failed[0][1]))
        raise EnqueueError(
            f"{len(failed)} of {len(messages)} messages were not enqueued: {failed[0][1]}",
            sent=[m.task_id for m in messages if m.task_id not in bad],
            failed=failed,
        )


def raise_if_missing_queue(
    directory: Any, messages: Sequence[OutgoingMessage], exc: Exception
) -> None:
    """A cached queue URL whose queue was deleted: forget it, raise the clear error."""
    if directory.is_missing_queue(exc):
        names = {m.queue_name for m in messages}
        for name in names:
            directory.forget(name)
        raise directory.missing_queue(", ".join(sorted(names)), exc) from exc


def is_request_error(exc: Exception) -> bool:
    """SQS refused the request itself (HTTP 400, not throttling, not a missing
    queue): the same request will not succeed, and a batch may owe it to one entry."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    code = str(response.get("Error", {}).get("Code", ""))
    return status == 400 and "Throttl" not in code and "NonExistentQueue" not in code


def _refused(message: OutgoingMessage, exc: Exception) -> EnqueueError:
    error = exc.response.get("Error", {})  # type: ignore[attr-defined]
    reason = f"{error.get('Code')}: {error.get('Message', '')}"
    return EnqueueError(
        f"task {message.task_name} ({message.task_id}) was not enqueued: {reason}",
        failed=[(message.task_id, reason)],
    )


def _single_kwargs(message: OutgoingMessage) -> dict[str, Any]:
    kwargs = message.entry("0")
    kwargs.pop("Id")
    return kwargs


# --- explicit batches (delay_many) and single sends --------------------------------------


def send_sync(clients: Any, directory: Any, messages: Sequence[OutgoingMessage]) -> None:
    """Send with boto3: SendMessage for one message, SendMessageBatch for more
    (explicit batches: ``delay_many``; one call's concurrent sends go through
    :class:`Sender`).

    Raises:
        EnqueueError: some entries were refused (``.sent`` / ``.failed`` say which).
        ConfigurationError: a queue does not exist.
    """
    run(sending(directory, messages), clients, directory)


async def send_async(clients: Any, directory: Any, messages: Sequence[OutgoingMessage]) -> None:
    """Asyncio twin of :func:`send_sync` (aiobotocore)."""
    await arun(sending(directory, messages), clients, directory)


def sending(directory: Any, messages: Sequence[OutgoingMessage]) -> Steps[None]:
    """The calls of :func:`send_sync` (see :mod:`sqsq.calls`), between the publish
    signals of each message."""
    publishing(messages)
    failed: list[tuple[str, str]] = []
    try:
        wire = yield from claim_checked(messages)
        if len(wire) == 1:
            yield from sending_one(wire[0])
        else:
            for batch in _batches(wire):
                queue = next(iter(batch.values())).queue_name
                refused = yield from sending_batch(queue, batch)
                failed.extend((batch[i].task_id, reason) for i, reason in refused.items())
    except Exception as exc:
        unsent(messages, exc)
        raise_if_missing_queue(directory, messages, exc)
        raise
    bad = {task_id for task_id, _ in failed}
    published([m for m in messages if m.task_id not in bad])
    _raise_if_failed(messages, failed)


def claim_checked(messages: Sequence[OutgoingMessage]) -> Steps[list[OutgoingMessage]]:
    """``messages`` as SQS will carry them: those whose claim check puts them in S3
    (``sqsq.payloads``, over the queue's size) replaced by their pointer. No call
    when no message has a claim check, or all went through it already."""
    check = next(
        (m.claim_check for m in messages if m.claim_check is not None and m.wire_body is None),
        None,
    )
    if check is None:
        return list(messages)
    return (yield from check.offloading(messages))


def sending_one(message: OutgoingMessage) -> Steps[None]:
    """One SendMessage; a request SQS refuses (HTTP 400) raises EnqueueError."""
    (message,) = yield from claim_checked([message])
    url = yield QueueUrl(message.queue_name)
    try:
        yield Call("sqs", "send_message", {"QueueUrl": url, **_single_kwargs(message)})
    except Exception as exc:
        if is_request_error(exc):
            raise _refused(message, exc) from exc
        raise


def sending_batch(queue: str, batch: dict[str, OutgoingMessage]) -> Steps[dict[str, str]]:
    """One SendMessageBatch to ``queue``, retrying SenderFault=false entries with backoff.

    Returns:
        The refused entries, ``{entry id: reason}``.
    """
    refused: dict[str, str] = {}
    wire = yield from claim_checked(list(batch.values()))
    batch = dict(zip(batch, wire, strict=True))
    for attempt in range(BATCH_ATTEMPTS):
        if attempt:
            yield Sleep(_backoff_s(attempt))
        entries = [m.entry(i) for i, m in batch.items()]
        response = yield Call("sqs", "send_message_batch", {"Entries": entries}, queue=queue)
        batch, permanent = _split_failed(response, batch)
        refused.update(permanent)
        if not batch:
            return refused
    refused.update((i, "still failing after retries") for i in batch)
    return refused
