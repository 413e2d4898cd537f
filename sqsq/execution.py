"""The execution core: a delivery in, an outcome out.

Shared by the long-poll worker, the Lambda handler and ``task.apply()``::

    Delivery ─► prepare() ─► parse JSON ─► decode envelope ─► look up task ─► bind/validate args
                   │             │           ─► expired? ─► idempotency key
                   │             ├ not an envelope: a Celery message? (App.celery_protocol(),
                   │             │ sqsq.interop) ─► its envelope becomes the body | refused
                   │             └ an object without "task": the app's Router (App.event_router(),
                   │               sqsq.events) unwraps SNS, routes events ─► envelope | RESEND | no_route
                   ├── DEAD_LETTER (reason) ◄── any of these fails
                   └── REVOKED (expired)
                                  runner: revoked? ─► REVOKED
                                  runner: claim key ─► DUPLICATE→SUCCESS | DEFER | run
                                                                          ▼
                                         call() / acall() / a child process runs the function
                                                                          ▼
                                         classify(): value | error, retry?, reject?, time limit?
                                                                          ▼
                            finish(): SUCCESS | RETRY (after backoff) | FAILURE (to the DLQ)

The core is four modules, in the order the data flows:

    outcome.py    Prepared, Outcome, OutcomeKind, dead-letter reasons, give_up()
    decisions.py  outcomes decided without running: dead letters, revoked, resend,
                  duplicates, resume, defer, release (class Decisions)
    calling.py    running the function: invoke() / ainvoke(), classify() -> CallResult
    execution.py  Executor(Decisions): prepare() -> call() / acall() -> finish()

The core never talks to AWS, and never imports a capability (``sqsq.events``,
``sqsq.workflows``, ...): what it needs of one it asks the App for. Runners carry
out the :class:`Outcome` through ``settle.py``, which stores it and only then lets
the message go.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from . import calling, limits, signing
from .calling import TASK_FAILURES, CallResult, Invocation, TaskExit, classify, type_name
from .decisions import HOP_TOLERANCE_S, Decisions, hop_delay_s
from .dynamodb import item_size, result_item
from .envelope import Envelope, encode, from_json, parse
from .errors import (
    DeadLetter,
    InternalError,
    InvalidKey,
    ResultNotSerializable,
    TimeLimitExceeded,
    UndecodableMessage,
    UnknownTask,
)
from .idempotency import key_pk, payload_hash
from .outcome import (
    DEAD_KINDS,
    FINAL_KINDS,
    REASON_MAX_RETRIES,
    REASON_REJECTED,
    REASON_RESULT,
    REASON_TASK_FAILED,
    REASON_TIME_LIMIT,
    RETURNED_KINDS,
    Outcome,
    OutcomeKind,
    Prepared,
    give_up,
)
from .result import ResultRecord, State

if TYPE_CHECKING:
    from .delivery import Delivery

logger = logging.getLogger(__name__)

#: :class:`Executor` and :class:`Router` live here; the other names are re-exported
#: from their homes (``outcome.py``, ``calling.py``, ``decisions.py``) for code
#: written before the core was split. New code imports them from their homes.
__all__ = [
    "DEAD_KINDS",
    "FINAL_KINDS",
    "HOP_TOLERANCE_S",
    "RETURNED_KINDS",
    "TASK_FAILURES",
    "CallResult",
    "Executor",
    "Outcome",
    "OutcomeKind",
    "Prepared",
    "Router",
    "TaskExit",
    "Translator",
    "classify",
    "give_up",
    "hop_delay_s",
    "type_name",
]


#: A message whose S3 payload could not be fetched (S3 unreachable, throttled) comes
#: back after this many seconds (its visibility timeout; SQS's redrive policy counts it).
PAYLOAD_RETRY_S = 10.0


class Router(Protocol):
    """What the core asks about a body that is a JSON object without a ``task``
    field — not a sqsq envelope, perhaps a foreign event. ``sqsq.events``
    implements it and installs one on the App (``App.router``); the core reaches
    it through the App's facade (``App.event_router()``), so it never names
    that package.
    """

    def route(self, delivery: Delivery, body: dict[str, Any]) -> Envelope | Outcome | None:
        """The envelope to run for ``body`` (an SNS notification's message, or a
        routed event as ``{task, args: [event], idempotency_key}``), an outcome to
        carry out instead (RESEND: split into several messages, or dropped), or
        None when ``body`` is none of these (it is then decoded as an envelope
        and fails as one).

        Raises:
            DeadLetter: the body cannot be run, e.g. ``NoRoute`` for an event
                that no declared route matches.
        """
        ...


class Translator(Protocol):
    """What the core asks about a body that is not an envelope before the router:
    is it another task library's message (Celery's protocol v2, as kombu's SQS
    transport writes it)? ``sqsq.interop`` implements it and installs one on the
    App (``App.celery``); the core reaches it through ``App.celery_protocol()``.
    """

    def translate(self, delivery: Delivery, raw: Any) -> Envelope | None:
        """The envelope to run for ``delivery``, or None when it is not such a
        message. ``raw`` is the body's JSON value, or None when it is not JSON.

        Raises:
            DeadLetter: a message of that library that is never run (e.g.
                ``celery_serializer_refused`` for a pickled body, ``unknown_task``).
        """
        ...


class Executor(Decisions):
    """Turns deliveries into outcomes for one App: :meth:`prepare`, then
    :meth:`call` / :meth:`acall` (or a runner's own pool, then :meth:`finish`) —
    or one of the :class:`~sqsq.decisions.Decisions` it inherits.

    Args:
        app: the App whose task registry and settings apply.
        worker_id: recorded in results, e.g. ``"host:pid"`` or a Lambda request id.
    """

    # --- before the call ---------------------------------------------------------

    @property
    def _offloads_results(self) -> bool:
        """Whether a value too large for its result item goes to S3 (the App's claim
        check has a ``payload_bucket``)."""
        return self.app.payloads is not None and self.app.payloads.bucket is not None

    def prepare(self, delivery: Delivery) -> Prepared | Outcome:
        """Decode, look up, validate, check expiry and render the idempotency key.

        Returns a DEAD_LETTER outcome when the message cannot be run (also when
        the delivery is ``malformed``: reason ``undecodable_message``), a REVOKED
        outcome when it expired, else a :class:`Prepared`. A JSON object without a
        ``task`` field is given to the app's :class:`Router` first: a declared
        route is the app's allowance for such an unsigned event, so the signature
        check applies to envelopes only (an SNS notification's message is checked
        by the router against its own attributes).
        """
        envelope: Envelope | None = None
        if delivery.malformed:  # a malformed Lambda record (Delivery.from_lambda_record)
            return self.dead_letter(delivery, UndecodableMessage(delivery.malformed))
        if delivery.finished is not None:  # its S3 payload deleted by its finished run
            return self.finished(delivery, delivery.finished)
        if delivery.refusal is not None:  # its S3 payload (sqsq.payloads) was not fetched
            if isinstance(delivery.refusal, DeadLetter):
                return self.dead_letter(delivery, delivery.refusal)
            logger.warning("message %s: its S3 payload: %r", delivery.message_id, delivery.refusal)
            return replace(self.release(delivery), delay_s=PAYLOAD_RETRY_S)  # back in a while
        # signing on: the verdict comes first, so that nothing of a body no accepted
        # key signed is taken at its word (its id, workflow, key: see signing.py)
        keys = self.app.verification_keys
        verdict = signing.verify(delivery.body, delivery.message_attributes, keys) if keys else None
        if verdict is not None and not verdict.signed and delivery.wire_body is not None:
            # a copy sqsq re-sent through S3 is signed over its pointer, whose key ends
            # with the body's sha256, checked when it was fetched (sqsq.payloads)
            pointer = signing.verify(delivery.wire_body, delivery.message_attributes, keys)
            verdict = pointer if pointer.signed else verdict
        trusted = verdict is None or verdict.signed
        routed = False  # a foreign event a declared route allowed (keys of its own)
        body = delivery.body  # as received (a Celery message is translated in place)
        try:
            try:
                raw = parse(delivery.body)
            except UndecodableMessage as exc:
                raw = self._translated(delivery, None, trusted)  # a Celery message is base64
                if raw is None:
                    if not trusted:  # undecodable and unsigned: under its MessageId
                        exc.task_id = None
                    raise
            else:
                if isinstance(raw, dict) and "task" not in raw:
                    raw = self._translated(delivery, raw, trusted) or raw
            if isinstance(raw, dict) and "task" not in raw:
                found = self.app.event_router().route(delivery, raw)
                if isinstance(found, Outcome):
                    return found
                envelope, routed = found, found is not None
            if envelope is None:
                if verdict is not None and verdict.reason is not None:
                    return self._refused(delivery, verdict.reason)
                if isinstance(raw, dict) and verdict is not None and verdict.signed:
                    raw.pop(signing.BODY_FIELD, None)  # Scheduler's signature, checked
                envelope = from_json(raw, delivery.message_id)
                if not trusted:  # kept when sqsq re-sends it signed (a deferral, a retry)
                    headers = {**envelope.headers, signing.UNSIGNED_HEADER: "1"}
                    envelope = envelope.model_copy(update={"headers": headers})
            # an unsigned call (or sqsq's signed re-send of one) never reaches a signed
            # call's idempotency key: its keys live in a namespace of their own
            unsigned_call = not routed and (
                not trusted or (verdict is not None and signing.UNSIGNED_HEADER in envelope.headers)
            )
            task = self.app.tasks.get(envelope.task)
            if task is None:
                raise UnknownTask(
                    f"no task named {envelope.task!r} is registered in app {self.app.name!r}"
                )
            args, kwargs = task.signature.validate(envelope.args, envelope.kwargs)
            prepared = Prepared(delivery, envelope, task, args, kwargs)
            if envelope.expires is not None and envelope.expires <= datetime.now(UTC):
                return self.revoked(prepared, expired=True)
            hop_s = hop_delay_s(envelope, datetime.now(UTC))
            if hop_s is not None and not self.on_fifo(delivery):
                outcome = self.resend(prepared, hop_s)
                if delivery.body != body:  # translated: sent on as it came, so that the
                    outcome.body = body  # Celery workers that share its queue still read it
                return outcome
            key = envelope.idempotency_key
            if key is None and task.idempotency_key is not None:
                try:
                    key = task.key_for(args, kwargs)
                except Exception as exc:  # a template or key function that fails on these args
                    raise DeadLetter(f"{task.name}: idempotency key: {exc!r}") from None
        except DeadLetter as exc:
            return self.dead_letter(delivery, exc, envelope)
        if key is not None:
            try:
                prepared.idempotency_pk = key_pk(task.name, key)
                if unsigned_call:
                    prepared.idempotency_pk = signing.UNSIGNED_KEY_PREFIX + prepared.idempotency_pk
            except ValueError as exc:
                return self.dead_letter(delivery, InvalidKey(f"{task.name}: {exc}"), envelope)
            if task.idempotency_validate:
                prepared.payload_hash = payload_hash(
                    task.signature.signature.bind(*args, **kwargs).arguments
                )
        return prepared

    def _translated(self, delivery: Delivery, raw: Any, trusted: bool) -> dict[str, Any] | None:
        """A foreign task library's message (:class:`Translator`) as an envelope's
        JSON, which from here on is the delivery's body: a retry, a long ETA's hop
        and the follow-ups read that body, as they read any envelope's.

        Raises:
            DeadLetter: signing is on and the message is unsigned (a Celery message
                carries no sqsq signature; it may hold callbacks, an id, an eta:
                more than an unsigned body may), reason ``unsigned_message``.
        """
        envelope = self.app.celery_protocol().translate(delivery, raw)
        if envelope is None:
            return None
        if not trusted:  # under its MessageId: an unsigned body's id is not taken
            raise _unsigned(signing.UNSIGNED)
        delivery.body = encode(envelope)
        translated: dict[str, Any] = parse(delivery.body)
        return translated

    def prepare_isolated(self, delivery: Delivery) -> Prepared | Outcome:
        """:meth:`prepare`, with any unexpected exception turned into this message's
        own dead letter (reason ``internal_error``), so its neighbours are unaffected."""
        try:
            return self.prepare(delivery)
        except Exception as exc:
            return self.internal(delivery, exc, "decoding")

    def internal(
        self, delivery: Delivery, exc: BaseException, stage: str, prepared: Prepared | None = None
    ) -> Outcome:
        """DEAD_LETTER with reason ``internal_error``: sqsq failed on this one message
        at ``stage`` (a bug, or input it did not foresee). The outcome frees the
        idempotency key if this message had claimed it."""
        logger.error(
            "message %s: %s while %s: %s",
            delivery.message_id,
            type_name(exc),
            stage,
            _safe_str(exc),
            extra={"queue": delivery.queue},
        )
        logger.debug("details", exc_info=exc)
        error = InternalError(f"{type_name(exc)} while {stage}: {_safe_str(exc)}")
        outcome = self.dead_letter(delivery, error, prepared.envelope if prepared else None)
        if prepared is not None and prepared.claimed:
            outcome.idempotency_pk = prepared.idempotency_pk
        return outcome

    def _refused(self, delivery: Delivery, reason: str) -> Outcome:
        """DEAD_LETTER of a body signing refused: under its MessageId, and marked
        ``untrusted`` (its workflow is not followed, its task token not reported)."""
        outcome = self.dead_letter(delivery, _unsigned(reason))
        outcome.untrusted = True
        return outcome

    # --- the call ------------------------------------------------------------------

    def time_limit_s(self, prepared: Prepared) -> float:
        """The effective time limit: the task's ``time_limit``, capped so that the
        lease never needs to pass SQS's 12 h maximum."""
        room = self.lease_room_s(prepared.delivery)
        limit = prepared.task.time_limit_s
        return room if limit is None else min(limit, room)

    def invoke(self, prepared: Prepared, *, contain_interrupt: bool | None = None) -> Invocation:
        """:func:`sqsq.calling.invoke` under this delivery's time limit: run the
        function in this thread and classify what it did.

        Returns:
            ``(started_at, duration_s, result)`` for :meth:`finish`.
        """
        limit_s = self.time_limit_s(prepared)
        return calling.invoke(prepared, limit_s, contain_interrupt=contain_interrupt)

    def call(self, prepared: Prepared, *, contain_interrupt: bool | None = None) -> Outcome:
        """:meth:`invoke`, then :meth:`finish`."""
        return self.finish(prepared, *self.invoke(prepared, contain_interrupt=contain_interrupt))

    async def acall(self, prepared: Prepared) -> Outcome:
        """Await an ``async def`` task on the running loop (:func:`sqsq.calling.ainvoke`,
        cancelled at its time limit), then :meth:`finish`."""
        return self.finish(prepared, *await calling.ainvoke(prepared, self.time_limit_s(prepared)))

    # --- after the call ------------------------------------------------------------

    def finish(
        self, prepared: Prepared, started_at: datetime, duration_s: float, result: CallResult
    ) -> Outcome:
        """Apply the retry policy and build the SUCCESS / RETRY / FAILURE outcome."""
        delivery, envelope, task = prepared.delivery, prepared.envelope, prepared.task
        # attempts before this message (a retry sent on as a new one) + SQS's count
        attempt = envelope.retries + delivery.receive_count
        base = self._task_record(
            prepared, attempts=attempt, state=State.SUCCESS, started_at=started_at
        )
        key = prepared.idempotency_pk if prepared.claimed else None
        if result.error_type is None:
            record = replace(base, value=result.value)
            if (
                item_size(result_item(record)) <= limits.DYNAMODB_MAX_ITEM_BYTES
                or self._offloads_results  # settle puts the value in S3 (sqsq.payloads)
            ):
                return self._logged(
                    Outcome(
                        delivery,
                        OutcomeKind.SUCCESS,
                        envelope.task_id,
                        record,
                        duration_s=duration_s,
                        store=task.store_result,
                        idempotency_pk=key,
                        completed_value=result.value,
                        idempotency_ttl_s=task.idempotency_ttl_s,
                        payload_hash=prepared.payload_hash,
                    )
                )
            result = CallResult(
                error_type=type_name(ResultNotSerializable()),
                error_message=f"return value makes a result item over DYNAMODB_MAX_ITEM_BYTES="
                f"{limits.DYNAMODB_MAX_ITEM_BYTES} (DynamoDB item size quota)",
                final=True,
            )
        record = replace(
            base,
            exc_type=result.error_type,
            exc_message=result.error_message,
            traceback=result.traceback,
            **self.detail(envelope, State.FAILURE, base.idempotency_key),
        )
        policy = task.retry_policy
        if result.retried(policy, attempt):
            wanted = policy.delay_s(attempt, result.countdown_s)
            if wanted > self.lease_room_s(delivery) and not self.on_fifo(delivery):
                return self._retry_later(prepared, record, attempt, wanted, duration_s, key)
            # whole seconds (VisibilityTimeout is an integer), never rounded to 0
            delay = math.ceil(min(wanted, self.lease_room_s(delivery)))
            return self._logged(
                Outcome(
                    delivery,
                    OutcomeKind.RETRY,
                    envelope.task_id,
                    replace(record, state=State.RETRY),
                    duration_s=duration_s,
                    delay_s=delay,
                    idempotency_pk=key,
                    history=True,
                )
            )
        if result.retry and not result.final and not result.reject:
            reason = REASON_MAX_RETRIES
        elif result.reject:
            reason = REASON_REJECTED
        elif result.error_type == type_name(TimeLimitExceeded()):
            reason = REASON_TIME_LIMIT
        elif result.error_type == type_name(ResultNotSerializable()):
            reason = REASON_RESULT
        else:
            reason = REASON_TASK_FAILED
        note = self._note(
            delivery, envelope.task_id, reason, result.error_type or "", result.error_message
        )
        return self._logged(
            Outcome(
                delivery,
                OutcomeKind.FAILURE,
                envelope.task_id,
                replace(record, state=State.FAILURE, dead_letter_reason=reason),
                note,
                duration_s=duration_s,
                idempotency_pk=key,
                idempotency_ttl_s=task.idempotency_ttl_s,  # the failure is kept under the key
                payload_hash=prepared.payload_hash,
                history=attempt > 1,
            )
        )

    def _retry_later(
        self,
        prepared: Prepared,
        record: ResultRecord,
        attempt: int,
        delay_s: float,
        duration_s: float,
        key: str | None,
    ) -> Outcome:
        """A retry backoff longer than this receive's lease can wait (SQS's 12 h
        visibility cap): the envelope is sent on as a new message due after
        ``delay_s`` (hop mode: RESEND), carrying the attempts so far in ``retries``."""
        envelope = prepared.envelope
        due = datetime.now(UTC) + timedelta(seconds=delay_s)
        body = encode(envelope.model_copy(update={"eta": due, "retries": attempt}))
        return self._logged(
            Outcome(
                prepared.delivery,
                OutcomeKind.RESEND,
                envelope.task_id,
                replace(record, state=State.RETRY),
                duration_s=duration_s,
                delay_s=min(math.ceil(delay_s), limits.SQS_MAX_DELAY_S),
                idempotency_pk=key,
                history=True,
                body=body,
            )
        )

    @staticmethod
    def _logged(outcome: Outcome) -> Outcome:
        """Log a SUCCESS / RETRY / FAILURE the call came to (each has a record)."""
        record = outcome.record
        if record is None:  # never: finish() builds each with its record
            return outcome
        level = logging.INFO if outcome.kind is OutcomeKind.SUCCESS else logging.WARNING
        if outcome.kind is OutcomeKind.FAILURE:
            level = logging.ERROR
        retry = f", retry in {outcome.delay_s:.1f}s" if outcome.kind is OutcomeKind.RETRY else ""
        logger.log(
            level,
            "task %s[%s] %s in %.3fs%s%s",
            record.task,
            record.task_id,
            record.state.value,
            outcome.duration_s,
            f": {record.exc_type}: {record.exc_message}" if record.exc_type else "",
            retry,
            extra={
                "task_id": record.task_id,
                "task": record.task,
                "queue": record.queue,
                "state": record.state.value,
                "duration_s": round(outcome.duration_s, 6),
                "attempt": record.attempts,
            },
        )
        return outcome


def _unsigned(reason: str) -> DeadLetter:
    error = DeadLetter(
        "the sqsq-signature attribute does not match the body"
        if reason == "bad_signature"
        else "signing is on: an unsigned body may only be the minimal form "
        '{"task", "args", "kwargs"} (and a Step Functions "task_token")'
    )
    error.reason = reason
    return error


def _safe_str(exc: BaseException, limit: int = 500) -> str:
    try:
        return str(exc)[:limit]
    except Exception:
        return "<str() failed>"
