"""The execution core: a delivery in, an outcome out.

Shared by the long-poll worker, the Lambda handler and ``task.apply()``::

    Delivery ─► prepare() ─► parse JSON ─► decode envelope ─► look up task ─► bind/validate args
                   │             │           ─► expired? ─► idempotency key
                   │             └ an object without "task": the app's Router (sqsq.events)
                   │               unwraps SNS, routes events to tasks ─► envelope | RESEND | no_route
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

The core never talks to AWS. Runners carry out the :class:`Outcome` through
``settle.py``, which stores it and only then lets the message go.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import logging
import math
import threading
import time
import traceback as tb
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from . import limits, signing
from .dynamodb import item_size, result_item
from .envelope import Envelope, encode, from_json, parse, to_json, too_deep
from .errors import (
    DeadLetter,
    FollowUpFailed,
    IdempotencyConflict,
    InternalError,
    InvalidKey,
    NotSerializable,
    Reject,
    ResultNotSerializable,
    Retry,
    TaskTokenReportFailed,
    TimeLimitExceeded,
    UndecodableMessage,
    UnknownTask,
)
from .idempotency import Claim, key_pk, payload_hash
from .result import ResultRecord, State
from .sqs import DeadLetterNote, is_fifo

if TYPE_CHECKING:
    from .app import App
    from .delivery import Delivery
    from .task import Task

logger = logging.getLogger(__name__)

#: Seconds kept free below SQS's 12 h lease cap for storing the outcome.
LEASE_CAP_MARGIN_S = 60.0


class OutcomeKind(enum.StrEnum):
    """What the runner must do with the message."""

    #: Store the SUCCESS result, then delete the message.
    SUCCESS = "SUCCESS"
    #: The task failed for good: store FAILURE, copy the message to the DLQ with the reason, delete it.
    FAILURE = "FAILURE"
    #: The message cannot be run: store FAILURE with the reason, copy it to the DLQ, delete it.
    DEAD_LETTER = "DEAD_LETTER"
    #: Store RETRY with the error, make the message visible again after ``delay_s``.
    RETRY = "RETRY"
    #: Store REVOKED (revoked or expired), then delete the message.
    REVOKED = "REVOKED"
    #: Not run: another run holds the idempotency key; make it visible after ``delay_s``.
    DEFER = "DEFER"
    #: Not run (shutdown, no time left): make it visible again now.
    RELEASE = "RELEASE"
    #: Not run, due later (an ``eta`` beyond SQS's 900 s, hop mode): send a copy of the
    #: message with DelaySeconds ``delay_s``, then delete this one. No attempt is counted.
    RESEND = "RESEND"


#: Outcomes whose message is deleted (after storing / copying) — or, in Lambda, not listed.
FINAL_KINDS = frozenset(
    {
        OutcomeKind.SUCCESS,
        OutcomeKind.FAILURE,
        OutcomeKind.DEAD_LETTER,
        OutcomeKind.REVOKED,
        OutcomeKind.RESEND,
    }
)
#: Outcomes copied to the DLQ (with their reason) before their message is deleted.
DEAD_KINDS = frozenset({OutcomeKind.FAILURE, OutcomeKind.DEAD_LETTER})
#: Outcomes whose message comes back (its visibility is set to ``delay_s``) — in
#: Lambda, listed in batchItemFailures.
RETURNED_KINDS = frozenset({OutcomeKind.RETRY, OutcomeKind.DEFER, OutcomeKind.RELEASE})


@dataclass
class Outcome:
    """The result of executing one delivery.

    Attributes:
        delivery: the message it came from.
        kind: what the runner must do.
        task_id: the task's id (the MessageId when the body had none).
        record: the result (always set for stored kinds, so ``apply()`` can report it).
        note: the dead-letter reason (FAILURE and DEAD_LETTER).
        duration_s: wall time of the function call, seconds.
        store: whether the runner stores ``record`` (False for ``store_result=False``
            successes; failures, retries and dead letters are always stored).
        delay_s: visibility timeout to set (RETRY, DEFER, RELEASE), seconds.
        idempotency_pk: the claimed key: COMPLETED on SUCCESS, deleted otherwise.
        completed_value: the value to keep under the key (SUCCESS).
        idempotency_ttl_s: how long the key is remembered.
        history: also write an attempt item (retries and final failures).
        stored / copied / followed / reported: set by ``settle`` once the writes / the
            DLQ copy / the follow-ups (``settle.Continuation``) / the Step Functions
            report (``task_tokens``) succeeded, so that retrying a failed delete does
            not repeat them.
        body: RESEND only: the body to send on (None: the delivery's own).
        bodies: RESEND only: send these bodies on instead (a foreign message split
            into one message per event, see ``sqsq.events``); None: ``body``.
        refused: DynamoDB refused its writes once; it was made a dead letter
            (``settle.refused``).
        completed_refused: the body ran to SUCCESS but DynamoDB refused its outcome
            (this reason): its idempotency key is kept COMPLETED without a value, not
            freed, so the dead letter's redrive does not run the body again.
        untrusted: signing refused its body (``signing.py``): nothing of the body is
            acted on — no workflow follow-up, no task token report.
        gave_up: a step after storing (follow-ups, the Step Functions report) spent its
            budget (this reason, :func:`give_up`): the outcome stays what the body
            ended with, the result records the reason, and the message goes to the
            DLQ with it.
    """

    delivery: Delivery
    kind: OutcomeKind
    task_id: str
    record: ResultRecord | None
    note: DeadLetterNote | None = None
    duration_s: float = 0.0
    store: bool = True
    delay_s: float = 0.0
    idempotency_pk: str | None = None
    completed_value: Any = None
    idempotency_ttl_s: float = 0.0
    payload_hash: str | None = None
    history: bool = False
    stored: bool = False
    copied: bool = False
    followed: bool = False
    reported: bool = False
    body: str | None = None
    refused: bool = False
    bodies: tuple[str, ...] | None = None
    completed_refused: str | None = None
    untrusted: bool = False
    gave_up: str | None = None


@dataclass
class Prepared:
    """A delivery whose envelope decoded and whose arguments validated.

    ``idempotency_pk`` is the key's item, set when the task has a key;
    ``claimed`` is set by the runner once its claim succeeded.
    """

    delivery: Delivery
    envelope: Envelope
    task: Task[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    idempotency_pk: str | None = None
    payload_hash: str | None = None
    claimed: bool = False


@dataclass(frozen=True)
class CallResult:
    """What a call produced, classified where the exception lives (a thread,
    the loop, or a child process — exceptions never cross a process boundary).

    Attributes:
        value: the JSON return value (when ``error_type`` is None).
        error_type / error_message / traceback: the exception, formatted.
        retry: the policy (autoretry_for / Retry) asks for a retry.
        countdown_s: explicit retry delay from ``Retry(countdown=...)``.
        reject: the task raised :class:`~sqsq.errors.Reject`.
        final: never retry (time limit, result not serializable).
    """

    value: Any = None
    error_type: str | None = None
    error_message: str = ""
    traceback: str | None = None
    retry: bool = False
    countdown_s: float | None = None
    reject: bool = False
    final: bool = False


#: What a task may raise that is not an ``Exception``: each is the task's own
#: failure (its ``sys.exit()``, its ``raise KeyboardInterrupt``, a generator's exit,
#: a ``CancelledError`` it raised itself), never the worker's.
TASK_EXITS: tuple[type[BaseException], ...] = (
    SystemExit,
    KeyboardInterrupt,
    GeneratorExit,
    asyncio.CancelledError,
)
#: Everything a task's call may raise that is the task's own failure.
TASK_FAILURES: tuple[type[BaseException], ...] = (Exception, *TASK_EXITS)


class TaskExit(Exception):
    """Carries a :data:`TASK_EXITS` exception a task raised across asyncio's
    machinery (which re-raises ``SystemExit``/``KeyboardInterrupt`` out of the event
    loop) to :func:`classify`, which records the original.

    Attributes:
        exc: what the task raised.
    """

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.exc = exc


def type_name(exc: BaseException) -> str:
    """``"ValueError"`` for builtins, ``"module.Qualname"`` otherwise."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


#: Characters of a stored traceback kept from its start and its end (a recursion
#: error's thousand frames are cut in the middle).
TRACEBACK_HEAD_CHARS = 4_000
TRACEBACK_TAIL_CHARS = 8_000


def format_traceback(exc: BaseException) -> str:
    """The traceback of ``exc``, cut in the middle when long."""
    text = "".join(tb.format_exception(exc))
    if len(text) <= TRACEBACK_HEAD_CHARS + TRACEBACK_TAIL_CHARS:
        return text
    cut = len(text) - TRACEBACK_HEAD_CHARS - TRACEBACK_TAIL_CHARS
    return (
        text[:TRACEBACK_HEAD_CHARS]
        + f"\n  ... {cut} characters left out ...\n"
        + text[-TRACEBACK_TAIL_CHARS:]
    )


def _result_json(value: Any) -> Any:
    """The return value as plain JSON, bounded in depth (a value nested deeper than
    ``limits.MAX_JSON_DEPTH``, or containing itself, is not storable)."""
    if too_deep(value):
        raise ResultNotSerializable(
            f"return value is nested deeper than MAX_JSON_DEPTH={limits.MAX_JSON_DEPTH} levels "
            "(or contains itself)"
        )
    try:
        plain = to_json(value, "return value")
    except NotSerializable as error:
        raise ResultNotSerializable(str(error)) from None
    except RecursionError:  # a pydantic model or Enum value that nests without end
        raise ResultNotSerializable("return value nests without end (contains itself)") from None
    if too_deep(plain):
        raise ResultNotSerializable(
            f"return value is nested deeper than MAX_JSON_DEPTH={limits.MAX_JSON_DEPTH} levels"
        )
    return plain


def classify(
    task: Task[Any, Any], value: Any = None, exc: BaseException | None = None
) -> CallResult:
    """Turn a call's return value or exception into a :class:`CallResult`.

    Never raises (except for a bug in sqsq itself): an exception whose ``str()``
    fails is recorded by its type.
    """
    if exc is None:
        try:
            return CallResult(value=_result_json(value))
        except ResultNotSerializable as error:
            exc = error
    if isinstance(exc, TaskExit):
        exc = exc.exc
    cause: BaseException = exc
    retry = False
    countdown = None
    if isinstance(exc, Retry):
        cause = exc.exc or exc
        retry, countdown = True, exc.countdown
    elif isinstance(exc, Exception) and task.retry_policy.should_retry(exc):
        retry = True
    try:
        message = str(cause)[:8192]
    except Exception:  # a __str__ that fails
        message = f"<{type_name(cause)}: str() failed>"
    try:
        traceback: str | None = format_traceback(cause)
    except Exception:
        traceback = None
    return CallResult(
        error_type=type_name(cause),
        error_message=message,
        traceback=traceback,
        retry=retry,
        countdown_s=countdown,
        reject=isinstance(exc, Reject),
        final=isinstance(exc, TimeLimitExceeded | ResultNotSerializable),
    )


async def guarded(awaitable: Any) -> Any:
    """Await a task's coroutine; what it raises from :data:`TASK_EXITS` comes out
    as :class:`TaskExit` — except a ``CancelledError`` that is really this task
    being cancelled (the worker's shutdown, or a time limit), which propagates."""
    try:
        return await awaitable
    except asyncio.CancelledError as exc:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        raise TaskExit(exc) from None
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
        raise TaskExit(exc) from None


#: An ``eta`` this close (seconds) counts as due: clocks differ a little, and a
#: message is never sent on for less.
HOP_TOLERANCE_S = 1.0


def hop_delay_s(envelope: Envelope, now: datetime) -> int | None:
    """The DelaySeconds to send ``envelope`` on with when it is not due yet at ``now``
    (at most ``limits.SQS_MAX_DELAY_S``, 900 s), or None when it is due."""
    if envelope.eta is None:
        return None
    remaining = (envelope.eta - now).total_seconds()
    if remaining <= HOP_TOLERANCE_S:
        return None
    return min(math.ceil(remaining), limits.SQS_MAX_DELAY_S)


#: Envelope header counting how often a message was deferred (sent on unrun).
DEFERRALS_HEADER = "sqsq-deferrals"


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


#: Dead-letter reasons of task failures (``DeadLetterNote.reason``).
REASON_TASK_FAILED = "task_failed"
REASON_MAX_RETRIES = "max_retries_exceeded"
REASON_TIME_LIMIT = "time_limit_exceeded"
REASON_REJECTED = "rejected"
REASON_RESULT = "result_not_serializable"
#: A result item DynamoDB refused (ValidationException: over its item size).
REASON_RESULT_TOO_LARGE = "result_too_large"
#: A key DynamoDB refused (ValidationException: too long, not encodable).
REASON_INVALID_KEY = "invalid_key"
#: A step after the outcome was stored spent its budget (see :func:`give_up`).
REASON_FOLLOWUP_FAILED = FollowUpFailed.reason
REASON_REPORT_FAILED = TaskTokenReportFailed.reason
_STEP_ERRORS: dict[str, type[DeadLetter]] = {
    REASON_FOLLOWUP_FAILED: FollowUpFailed,
    REASON_REPORT_FAILED: TaskTokenReportFailed,
}
_STEP_WHAT = {
    REASON_FOLLOWUP_FAILED: "its follow-ups (next chain step, callbacks, chord counting)",
    REASON_REPORT_FAILED: "its Step Functions report (SendTaskSuccess / SendTaskFailure)",
}


def give_up(outcome: Outcome, reason: str, source_queue: str, detail: str = "") -> None:
    """A step after ``outcome`` was stored (``reason``: :data:`REASON_FOLLOWUP_FAILED`,
    :data:`REASON_REPORT_FAILED`) spent its budget: it is not tried again. The body is
    never run again for it: the outcome keeps its kind and value, its result is
    stored again with ``dead_letter_reason = reason``, and its message is copied to
    the DLQ with that reason (``settle``), then deleted."""
    error = _STEP_ERRORS[reason]
    what = _STEP_WHAT[reason]
    state = outcome.record.state.value if outcome.record is not None else outcome.kind.value
    message = (
        f"{what} could not be made; the outcome ({state}) is stored, the body is not run again"
    )
    if detail:
        message += f": {detail}"
    outcome.gave_up = reason
    outcome.followed = True  # given up (a report may still go out after follow-ups)
    if reason == REASON_REPORT_FAILED:
        outcome.reported = True
    if outcome.record is not None:
        outcome.record = replace(outcome.record, dead_letter_reason=reason)
        outcome.stored, outcome.store = False, True
    outcome.note = DeadLetterNote(
        reason=reason,
        error_type=type_name(error()),
        message=message,
        task_id=outcome.task_id,
        source_queue=source_queue,
        receive_count=outcome.delivery.receive_count,
    )
    outcome.copied = False
    logger.error(
        "task %s: %s; its message goes to the DLQ (%s)",
        outcome.task_id,
        message,
        reason,
        extra={"task_id": outcome.task_id, "queue": outcome.delivery.queue, "reason": reason},
    )


#: DelaySeconds of a message sent on because the signing key could not be read.
KEY_UNAVAILABLE_DELAY_S = 60


class Router(Protocol):
    """What the core asks about a body that is a JSON object without a ``task``
    field — not a sqsq envelope, perhaps a foreign event. ``sqsq.events``
    implements it and installs one on the App (``App.router``); the core knows
    only this protocol, and loads :data:`ROUTER_MODULE` by name when no router is
    installed, so it has no import-time dependency on it.
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


#: Imported by name when a foreign body arrives and the app installed no router.
ROUTER_MODULE = "sqsq.events"


def router_of(app: App) -> Router:
    """The app's :class:`Router`; the first call loads :data:`ROUTER_MODULE`,
    which installs one (``sqsq.events.install``)."""
    if app.router is None:
        importlib.import_module(ROUTER_MODULE).install(app)
    assert app.router is not None, f"{ROUTER_MODULE} installed no router"
    return app.router


class Executor:
    """Turns deliveries into outcomes for one App.

    Args:
        app: the App whose task registry and settings apply.
        worker_id: recorded in results, e.g. ``"host:pid"`` or a Lambda request id.
    """

    def __init__(self, app: App, worker_id: str) -> None:
        self.app = app
        self.worker_id = worker_id

    def on_fifo(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` came from a FIFO queue (no per-message delay there)."""
        return is_fifo(self.app.queue_name(delivery.queue))

    # --- before the call ---------------------------------------------------------

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
        # signing on: the verdict comes first, so that nothing of a body no accepted
        # key signed is taken at its word (its id, workflow, key: see signing.py)
        keys = self.app.verification_keys
        verdict = signing.verify(delivery.body, delivery.message_attributes, keys) if keys else None
        trusted = verdict is None or verdict.signed
        routed = False  # a foreign event a declared route allowed (keys of its own)
        try:
            try:
                raw = parse(delivery.body)
            except UndecodableMessage as exc:
                if not trusted:  # undecodable and unsigned: under its MessageId
                    exc.task_id = None
                raise
            if isinstance(raw, dict) and "task" not in raw:
                found = router_of(self.app).route(delivery, raw)
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
                return self.resend(prepared, hop_s)
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

    def _record(self, delivery: Delivery, task_id: str, **fields: Any) -> ResultRecord:
        now = datetime.now(UTC)
        fields.setdefault("expires_at", int(now.timestamp() + self.app.settings.result_ttl_s))
        return ResultRecord(
            task_id=task_id,
            queue=delivery.queue,
            attempts=fields.pop("attempts", delivery.receive_count),
            worker=self.worker_id,
            message_id=delivery.message_id,
            enqueued_at=fields.pop("enqueued_at", delivery.sent_at),
            finished_at=now,
            **fields,
        )

    def _refused(self, delivery: Delivery, reason: str) -> Outcome:
        """DEAD_LETTER of a body signing refused: under its MessageId, and marked
        ``untrusted`` (its workflow is not followed, its task token not reported)."""
        outcome = self.dead_letter(delivery, _unsigned(reason))
        outcome.untrusted = True
        return outcome

    def dead_letter(
        self, delivery: Delivery, exc: DeadLetter, envelope: Envelope | None = None
    ) -> Outcome:
        """The DEAD_LETTER outcome for a message that cannot be run."""
        task_id = (
            envelope.task_id if envelope else getattr(exc, "task_id", None) or delivery.message_id
        )
        task = envelope.task if envelope else getattr(exc, "task", None)
        note = self._note(delivery, task_id, exc.reason, type_name(exc), str(exc))
        event = getattr(exc, "event", None)
        if event:
            note = replace(note, event=event)
        record = self._record(
            delivery,
            task_id,
            state=State.FAILURE,
            task=task,
            exc_type=note.error_type,
            exc_message=note.message,
            dead_letter_reason=note.reason,
        )
        logger.warning(
            "task %s (message %s) dead-lettered: %s: %s",
            task_id,
            delivery.message_id,
            note.reason,
            note.message,
            extra={"task_id": task_id, "queue": delivery.queue, "reason": note.reason},
        )
        return Outcome(delivery, OutcomeKind.DEAD_LETTER, task_id, record, note)

    def _note(
        self, delivery: Delivery, task_id: str, reason: str, error_type: str, message: str
    ) -> DeadLetterNote:
        return DeadLetterNote(
            reason=reason,
            error_type=error_type,
            message=message,
            task_id=task_id,
            source_queue=self.app.queue_name(delivery.queue),
            receive_count=delivery.receive_count,
        )

    def revoked(self, prepared: Prepared, *, expired: bool = False) -> Outcome:
        """REVOKED: revoked before it ran, or past its ``expires``."""
        envelope = prepared.envelope
        if expired:
            error, message = "sqsq.errors.TaskExpired", f"expired at {envelope.expires}"
        else:
            error, message = "sqsq.errors.TaskRevoked", "revoked before it ran"
        record = self._record(
            prepared.delivery,
            envelope.task_id,
            state=State.REVOKED,
            task=envelope.task,
            exc_type=error,
            exc_message=message,
            enqueued_at=envelope.sent_at or prepared.delivery.sent_at,
        )
        logger.info(
            "task %s[%s] %s",
            envelope.task,
            envelope.task_id,
            "expired" if expired else "revoked",
            extra={
                "task_id": envelope.task_id,
                "task": envelope.task,
                "queue": prepared.delivery.queue,
            },
        )
        return Outcome(prepared.delivery, OutcomeKind.REVOKED, envelope.task_id, record)

    def resend(self, prepared: Prepared, delay_s: int) -> Outcome:
        """RESEND: due later than SQS could delay it (hop mode, see ``sqsq.schedules.eta``)."""
        envelope = prepared.envelope
        logger.debug(
            "task %s[%s] due at %s: sent on with a delay of %d s",
            envelope.task,
            envelope.task_id,
            envelope.eta,
            delay_s,
            extra={"task_id": envelope.task_id, "queue": prepared.delivery.queue},
        )
        return Outcome(
            prepared.delivery,
            OutcomeKind.RESEND,
            envelope.task_id,
            None,
            store=False,
            delay_s=delay_s,
        )

    def duplicate(self, prepared: Prepared, claim: Claim) -> Outcome:
        """SUCCESS without running: the key was COMPLETED by task ``claim.owner``
        (a DEAD_LETTER ``IdempotencyConflict`` when the arguments differ)."""
        envelope = prepared.envelope
        if claim.refused:
            refused = DeadLetter(
                f"{envelope.task}: idempotency key already completed by task {claim.owner}, "
                f"whose outcome DynamoDB refused ({claim.refused}); not run again"
            )
            refused.reason = claim.refused
            return self.dead_letter(prepared.delivery, refused, envelope)
        if claim.failed is not None and not claim.conflicts_with(prepared.payload_hash):
            return self._duplicate_failure(prepared, claim, claim.failed)
        if claim.conflicts_with(prepared.payload_hash):
            conflict = IdempotencyConflict(
                f"{envelope.task}: idempotency key already completed by task {claim.owner} "
                "with other arguments; not run (idempotency_validate=False accepts it)"
            )
            return self.dead_letter(prepared.delivery, conflict, envelope)
        record = self._record(
            prepared.delivery,
            envelope.task_id,
            state=State.SUCCESS,
            task=envelope.task,
            value=claim.value,
            enqueued_at=envelope.sent_at or prepared.delivery.sent_at,
            extra={"duplicate_of": claim.owner},
            expires_at=int(time.time() + prepared.task.result_ttl_s),
        )
        logger.info(
            "task %s[%s] not run: idempotency key completed by %s",
            envelope.task,
            envelope.task_id,
            claim.owner,
            extra={
                "task_id": envelope.task_id,
                "task": envelope.task,
                "queue": prepared.delivery.queue,
            },
        )
        return Outcome(prepared.delivery, OutcomeKind.SUCCESS, envelope.task_id, record)

    def _duplicate_failure(
        self, prepared: Prepared, claim: Claim, failed: dict[str, Any]
    ) -> Outcome:
        """FAILURE without running: the key's run (task ``claim.owner``) failed for good.
        The duplicate resolves to that failure — same error type and message, its
        reason — and goes to the DLQ as the first one did (only sqsq's own retries run
        a body again; a redrive from the DLQ retakes the key). When it is the same
        task id (a chord's body sent twice), its stored result already says so."""
        envelope, delivery = prepared.envelope, prepared.delivery
        exc_type = str(failed.get("exc_type") or "sqsq.errors.TaskFailed")
        exc_message = str(failed.get("exc_message") or "")
        reason = str(failed.get("reason") or REASON_TASK_FAILED)
        note = self._note(
            delivery,
            envelope.task_id,
            reason,
            exc_type,
            f"idempotency key already failed for good by task {claim.owner}; not run again: "
            f"{exc_message}",
        )
        record = self._record(
            delivery,
            envelope.task_id,
            state=State.FAILURE,
            task=envelope.task,
            exc_type=exc_type,
            exc_message=exc_message,
            dead_letter_reason=reason,
            enqueued_at=envelope.sent_at or delivery.sent_at,
            extra={"duplicate_of": claim.owner},
            expires_at=int(time.time() + prepared.task.result_ttl_s),
        )
        logger.warning(
            "task %s[%s] not run: its idempotency key's run %s failed for good (%s)",
            envelope.task,
            envelope.task_id,
            claim.owner,
            reason,
            extra={"task_id": envelope.task_id, "task": envelope.task, "queue": delivery.queue},
        )
        return Outcome(
            delivery,
            OutcomeKind.FAILURE,
            envelope.task_id,
            record,
            note,
            store=claim.owner != envelope.task_id,
        )

    def resume(self, prepared: Prepared, record: ResultRecord | None) -> Outcome | None:
        """The outcome an earlier receive of this very message stored, or None (run it).

        A redelivered message (``receive_count > 1``) whose result item is final
        (SUCCESS or FAILURE) and names this message id was run already: a later step
        (a follow-up, the Step Functions report, the DLQ copy, the delete) failed, or
        the worker died before it. The body is not run again: the stored outcome is
        carried out once more — stored again (with its idempotency key, unless it was
        itself a duplicate), copied to the DLQ if it is a FAILURE, its follow-ups and
        report made — and a step that gave up before (``dead_letter_reason``
        :data:`REASON_FOLLOWUP_FAILED` / :data:`REASON_REPORT_FAILED`) is not tried
        again. A RETRY record is sqsq's own retry: run."""
        delivery, envelope, task = prepared.delivery, prepared.envelope, prepared.task
        if (
            record is None
            or record.message_id != delivery.message_id
            or record.state not in (State.SUCCESS, State.FAILURE)
        ):
            return None
        key = None if "duplicate_of" in record.extra else prepared.idempotency_pk
        logger.warning(
            "task %s[%s] not run again: its %s outcome is stored (receive %d of its message); "
            "the steps after it are made again",
            envelope.task,
            envelope.task_id,
            record.state.value,
            delivery.receive_count,
            extra={"task_id": envelope.task_id, "task": envelope.task, "queue": delivery.queue},
        )
        if record.state is State.SUCCESS:
            outcome = Outcome(delivery, OutcomeKind.SUCCESS, envelope.task_id, record)
            outcome.completed_value = record.value
        else:
            note = self._note(
                delivery,
                envelope.task_id,
                record.dead_letter_reason or REASON_TASK_FAILED,
                record.exc_type or "",
                record.exc_message or "",
            )
            outcome = Outcome(delivery, OutcomeKind.FAILURE, envelope.task_id, record, note)
        outcome.idempotency_pk = key
        outcome.idempotency_ttl_s = task.idempotency_ttl_s
        outcome.payload_hash = prepared.payload_hash
        step = record.dead_letter_reason
        if step in _STEP_ERRORS:
            assert step is not None
            give_up(outcome, step, self.app.queue_name(delivery.queue), "given up on before")
        return outcome

    def defer(self, prepared: Prepared, delay_s: float, why: str = "") -> Outcome:
        """Not run now: its idempotency key is IN_PROGRESS under a live lease, or the
        key could not be claimed (DynamoDB unreachable); look again after ``delay_s``.

        A deferral must not use up the message's receives (SQS's redrive policy
        counts every receive, run or not, and would move it to the DLQ without a
        reason). So on a standard queue the message is **sent on** as a new one with
        DelaySeconds ``delay_s`` (≤ 900 s) and this one deleted (RESEND): its
        ApproximateReceiveCount starts again at 1, its envelope keeps its id (the
        MessageId of a foreign body becomes the ``id``) and counts the receives
        that came before it in ``retries`` and the deferral in ``headers``. On a
        FIFO queue (no per-message delay; the group's order) it is returned with
        its visibility set to ``delay_s`` (DEFER).
        """
        envelope, delivery = prepared.envelope, prepared.delivery
        logger.info(
            "task %s[%s] waits %.0fs: %s",
            envelope.task,
            envelope.task_id,
            delay_s,
            why or "its idempotency key is in progress elsewhere",
            extra={"task_id": envelope.task_id, "queue": delivery.queue},
        )
        if not self.on_fifo(delivery):
            deferrals = _int(envelope.headers.get(DEFERRALS_HEADER)) + 1
            try:
                body = encode(
                    envelope.model_copy(
                        update={
                            "id": envelope.task_id,
                            "retries": envelope.retries + delivery.receive_count - 1,
                            "headers": {**envelope.headers, DEFERRALS_HEADER: str(deferrals)},
                        }
                    )
                )
            except Exception:  # e.g. now over 1 MiB: return it instead
                body = None
            if body is not None:
                return Outcome(
                    delivery,
                    OutcomeKind.RESEND,
                    envelope.task_id,
                    None,
                    store=False,
                    delay_s=min(max(1, math.ceil(delay_s)), limits.SQS_MAX_DELAY_S),
                    body=body,
                )
        return Outcome(
            delivery,
            OutcomeKind.DEFER,
            envelope.task_id,
            None,
            delay_s=min(delay_s, self.lease_room_s(delivery)),
        )

    def key_unavailable(self, delivery: Delivery, permanent: bool) -> Outcome:
        """Not checked: signing is on and its key cannot be read (Secrets Manager or
        SSM unreachable, or refusing). The message is not judged, nor run: on a
        standard queue it is **sent on** unchanged (its signature attribute with
        it) with DelaySeconds :data:`KEY_UNAVAILABLE_DELAY_S` — or the longest SQS
        allows when the error is one no retry fixes (a missing secret, access
        denied: fix the settings) — so its receives are not used; on a FIFO queue
        it is returned (DEFER)."""
        delay_s: float = limits.SQS_MAX_DELAY_S if permanent else KEY_UNAVAILABLE_DELAY_S
        if self.on_fifo(delivery):
            delay_s = min(delay_s, self.lease_room_s(delivery))
            return Outcome(delivery, OutcomeKind.DEFER, delivery.message_id, None, delay_s=delay_s)
        return Outcome(
            delivery, OutcomeKind.RESEND, delivery.message_id, None, store=False, delay_s=delay_s
        )

    @staticmethod
    def release(delivery: Delivery, task_id: str | None = None) -> Outcome:
        """RELEASE: give the message back at once (visibility 0)."""
        return Outcome(delivery, OutcomeKind.RELEASE, task_id or delivery.message_id, None)

    # --- limits ----------------------------------------------------------------------

    @staticmethod
    def lease_room_s(delivery: Delivery) -> float:
        """Seconds this receive's visibility may still be extended (12 h cap)."""
        held = time.monotonic() - delivery.received_monotonic
        return max(0.0, limits.SQS_MAX_VISIBILITY_TIMEOUT_S - held - LEASE_CAP_MARGIN_S)

    def time_limit_s(self, prepared: Prepared) -> float:
        """The effective time limit: the task's ``time_limit``, capped so that the
        lease never needs to pass SQS's 12 h maximum."""
        room = self.lease_room_s(prepared.delivery)
        limit = prepared.task.time_limit_s
        return room if limit is None else min(limit, room)

    def call_args(self, prepared: Prepared) -> list[Any]:
        """Positional arguments of the call (a :class:`BoundTask` first if ``bind``)."""
        if not prepared.task.bind:
            return prepared.args
        from .task import BoundTask, Request

        envelope = prepared.envelope
        request = Request(
            id=envelope.task_id,
            task=envelope.task,
            args=prepared.args,
            kwargs=prepared.kwargs,
            attempt=envelope.retries + prepared.delivery.receive_count,
            retries=envelope.retries + prepared.delivery.receive_count - 1,
            queue=prepared.delivery.queue,
            idempotency_key=envelope.idempotency_key,
            message_id=prepared.delivery.message_id,
            scheduled_at=envelope.scheduled_at,
        )
        return [BoundTask(prepared.task, request), *prepared.args]

    # --- the call ------------------------------------------------------------------

    def invoke(
        self, prepared: Prepared, *, contain_interrupt: bool | None = None
    ) -> tuple[datetime, float, CallResult]:
        """Run the function in this thread (``async def`` ones on a fresh loop, under
        their time limit) and classify what it did. Sync functions are not
        interrupted here: runners enforce ``time_limit`` around this call.

        What the function raises is its own failure, ``BaseException`` subclasses
        (:data:`TASK_EXITS`) included — except ``KeyboardInterrupt`` on the main
        thread (Ctrl-C during ``task.apply()``) unless ``contain_interrupt`` is True
        (Lambda). Off the main thread no signal can raise it, so it is the task's.

        Returns:
            ``(started_at, duration_s, result)`` for :meth:`finish`.
        """
        if contain_interrupt is None:
            contain_interrupt = threading.current_thread() is not threading.main_thread()
        started_at = datetime.now(UTC)
        start = time.perf_counter()
        task = prepared.task
        try:
            if task.is_async:
                value = asyncio.run(self._limited(prepared))
            else:
                value = task.fn(*self.call_args(prepared), **prepared.kwargs)
        except KeyboardInterrupt as exc:
            if not contain_interrupt:
                raise
            result = classify(task, exc=exc)
        except TASK_FAILURES as exc:
            result = classify(task, exc=exc)
        else:
            result = classify(task, value)
        return started_at, time.perf_counter() - start, result

    def call(self, prepared: Prepared, *, contain_interrupt: bool | None = None) -> Outcome:
        """:meth:`invoke`, then :meth:`finish`."""
        return self.finish(prepared, *self.invoke(prepared, contain_interrupt=contain_interrupt))

    async def _limited(self, prepared: Prepared) -> Any:
        limit = self.time_limit_s(prepared)
        try:
            return await asyncio.wait_for(
                guarded(prepared.task.fn(*self.call_args(prepared), **prepared.kwargs)),
                timeout=limit,
            )
        except TimeoutError:
            raise TimeLimitExceeded(
                f"{prepared.task.name} ran past its time limit of {limit:g} s"
            ) from None

    async def acall(self, prepared: Prepared) -> Outcome:
        """Await an ``async def`` task on the running loop; cancelled at its time limit.
        A ``CancelledError`` the task raises itself is its failure; cancelling the
        task that awaits this (shutdown) propagates."""
        started_at = datetime.now(UTC)
        start = time.perf_counter()
        try:
            value = await self._limited(prepared)
        except Exception as exc:
            result = classify(prepared.task, exc=exc)
        else:
            result = classify(prepared.task, value)
        return self.finish(prepared, started_at, time.perf_counter() - start, result)

    # --- after the call ------------------------------------------------------------

    def finish(
        self, prepared: Prepared, started_at: datetime, duration_s: float, result: CallResult
    ) -> Outcome:
        """Apply the retry policy and build the SUCCESS / RETRY / FAILURE outcome."""
        delivery, envelope, task = prepared.delivery, prepared.envelope, prepared.task
        # attempts before this message (a retry sent on as a new one) + SQS's count
        attempt = envelope.retries + delivery.receive_count
        base = self._record(
            delivery,
            envelope.task_id,
            attempts=attempt,
            state=State.SUCCESS,
            task=task.name,
            started_at=started_at,
            enqueued_at=envelope.sent_at or delivery.sent_at,
            expires_at=int(time.time() + task.result_ttl_s),
        )
        key = prepared.idempotency_pk if prepared.claimed else None
        if result.error_type is None:
            record = replace(base, value=result.value)
            if item_size(result_item(record)) <= limits.DYNAMODB_MAX_ITEM_BYTES:
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
        )
        policy = task.retry_policy
        if result.retry and not result.final and not result.reject:
            if not policy.exhausted(attempt):
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
        record = outcome.record
        assert record is not None
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
