"""The execution core: a delivery in, an outcome out.

Shared by the long-poll worker, the Lambda handler and ``task.apply()``::

    Delivery ─► prepare() ─► decode envelope ─► look up task ─► bind/validate args
                   │                                                   │
                   └── DEAD_LETTER outcome (reason) ◄── any of these fails
                                                                       ▼
                                                     call() / acall() runs the function
                                                                       ▼
                                                 SUCCESS (JSON value) | FAILURE (error)

The core never talks to AWS. Runners act on the :class:`Outcome` through
``settle.py``, which stores it and only then lets the message go.
"""

from __future__ import annotations

import enum
import logging
import time
import traceback as tb
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import limits
from .dynamodb import item_size, result_item
from .envelope import Envelope, decode, to_json
from .errors import DeadLetter, NotSerializable, ResultNotSerializable, UnknownTask
from .result import ResultRecord, State
from .sqs import DeadLetterNote

if TYPE_CHECKING:
    from .app import App
    from .delivery import Delivery
    from .task import Task

logger = logging.getLogger(__name__)


class OutcomeKind(str, enum.Enum):
    """What the runner must do with the message."""

    #: Store the SUCCESS result, then delete the message.
    SUCCESS = "SUCCESS"
    #: Store the FAILURE result, then delete the message.
    FAILURE = "FAILURE"
    #: Store the FAILURE result with the reason, copy the message to the DLQ, delete it.
    DEAD_LETTER = "DEAD_LETTER"


@dataclass
class Outcome:
    """The result of executing one delivery.

    Attributes:
        delivery: the message it came from.
        kind: what the runner must do.
        task_id: the task's id (the MessageId when the body had none).
        record: the result (always set, so ``apply()`` can report it).
        store: whether the runner stores ``record`` (False for ``store_result=False``).
        note: the dead-letter reason (DEAD_LETTER only).
        duration_s: wall time of the function call, seconds.
    """

    delivery: Delivery
    kind: OutcomeKind
    task_id: str
    record: ResultRecord
    note: DeadLetterNote | None = None
    duration_s: float = 0.0
    store: bool = True


@dataclass
class Prepared:
    """A delivery whose envelope decoded and whose arguments validated."""

    delivery: Delivery
    envelope: Envelope
    task: Task[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]


def type_name(exc: BaseException) -> str:
    """``"ValueError"`` for builtins, ``"module.Qualname"`` otherwise."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


class Executor:
    """Turns deliveries into outcomes for one App.

    Args:
        app: the App whose task registry and settings apply.
        worker_id: recorded in results, e.g. ``"host:pid"`` or a Lambda request id.
    """

    def __init__(self, app: App, worker_id: str) -> None:
        self.app = app
        self.worker_id = worker_id

    # --- before the call ---------------------------------------------------------

    def prepare(self, delivery: Delivery) -> Prepared | Outcome:
        """Decode, look up and validate; a DEAD_LETTER outcome when that fails."""
        envelope: Envelope | None = None
        try:
            envelope = decode(delivery.body, delivery.message_id)
            task = self.app.tasks.get(envelope.task)
            if task is None:
                raise UnknownTask(
                    f"no task named {envelope.task!r} is registered in app {self.app.name!r}"
                )
            args, kwargs = task.signature.validate(envelope.args, envelope.kwargs)
        except DeadLetter as exc:
            return self.dead_letter(delivery, exc, envelope)
        return Prepared(delivery, envelope, task, args, kwargs)

    def dead_letter(
        self, delivery: Delivery, exc: DeadLetter, envelope: Envelope | None = None
    ) -> Outcome:
        """The DEAD_LETTER outcome for a message that cannot be run."""
        task_id = envelope.task_id if envelope else delivery.message_id
        note = DeadLetterNote(
            reason=exc.reason,
            error_type=type_name(exc),
            message=str(exc),
            task_id=task_id,
            source_queue=self.app.queue_name(delivery.queue),
            receive_count=delivery.receive_count,
        )
        now = datetime.now(UTC)
        record = ResultRecord(
            task_id=task_id,
            state=State.FAILURE,
            task=envelope.task if envelope else None,
            queue=delivery.queue,
            exc_type=note.error_type,
            exc_message=note.message,
            dead_letter_reason=note.reason,
            attempts=delivery.receive_count,
            worker=self.worker_id,
            message_id=delivery.message_id,
            enqueued_at=delivery.sent_at,
            finished_at=now,
            expires_at=int(now.timestamp() + self.app.settings.result_ttl_s),
        )
        logger.warning(
            "message %s dead-lettered: %s: %s",
            delivery.message_id,
            note.reason,
            note.message,
            extra={"task_id": task_id, "queue": delivery.queue, "reason": note.reason},
        )
        return Outcome(delivery, OutcomeKind.DEAD_LETTER, task_id, record, note)

    # --- the call ------------------------------------------------------------------

    def call(self, prepared: Prepared) -> Outcome:
        """Run a sync task function in this thread (async ones on a fresh loop)."""
        started_at = datetime.now(UTC)
        start = time.perf_counter()
        try:
            if prepared.task.is_async:
                import asyncio

                value = asyncio.run(prepared.task.fn(*prepared.args, **prepared.kwargs))
            else:
                value = prepared.task.fn(*prepared.args, **prepared.kwargs)
        except Exception as exc:
            return self.finish(prepared, started_at, time.perf_counter() - start, exc=exc)
        return self.finish(prepared, started_at, time.perf_counter() - start, value=value)

    async def acall(self, prepared: Prepared) -> Outcome:
        """Await an ``async def`` task function on the running loop."""
        started_at = datetime.now(UTC)
        start = time.perf_counter()
        try:
            value = await prepared.task.fn(*prepared.args, **prepared.kwargs)
        except Exception as exc:
            return self.finish(prepared, started_at, time.perf_counter() - start, exc=exc)
        return self.finish(prepared, started_at, time.perf_counter() - start, value=value)

    # --- after the call ------------------------------------------------------------

    def finish(
        self,
        prepared: Prepared,
        started_at: datetime,
        duration_s: float,
        *,
        value: Any = None,
        exc: BaseException | None = None,
    ) -> Outcome:
        """Build the SUCCESS or FAILURE outcome of a call."""
        delivery, envelope, task = prepared.delivery, prepared.envelope, prepared.task
        now = datetime.now(UTC)
        base = ResultRecord(
            task_id=envelope.task_id,
            state=State.SUCCESS,
            task=task.name,
            queue=delivery.queue,
            attempts=delivery.receive_count,
            worker=self.worker_id,
            message_id=delivery.message_id,
            enqueued_at=envelope.sent_at or delivery.sent_at,
            started_at=started_at,
            finished_at=now,
            expires_at=int(now.timestamp() + task.result_ttl_s),
        )
        record = base
        if exc is None:
            try:
                json_value = to_json(value, "return value")
                record = _replace(base, value=json_value)
                if item_size(result_item(record)) > limits.DYNAMODB_MAX_ITEM_BYTES:
                    raise ResultNotSerializable(
                        f"return value makes a result item over DYNAMODB_MAX_ITEM_BYTES="
                        f"{limits.DYNAMODB_MAX_ITEM_BYTES} (DynamoDB item size quota)"
                    )
            except (NotSerializable, ResultNotSerializable) as error:
                exc = ResultNotSerializable(str(error)) if isinstance(error, NotSerializable) else error
        if exc is not None:
            record = _replace(
                base,
                state=State.FAILURE,
                exc_type=type_name(exc),
                exc_message=str(exc)[:8192],
                traceback="".join(tb.format_exception(exc)),
            )
        kind = OutcomeKind.SUCCESS if record.state is State.SUCCESS else OutcomeKind.FAILURE
        log = logger.info if kind is OutcomeKind.SUCCESS else logger.error
        log(
            "task %s[%s] %s in %.3fs%s",
            task.name,
            envelope.task_id,
            record.state.value,
            duration_s,
            f": {record.exc_type}: {record.exc_message}" if record.exc_type else "",
            extra={
                "task_id": envelope.task_id,
                "task": task.name,
                "queue": delivery.queue,
                "state": record.state.value,
                "duration_s": round(duration_s, 6),
                "attempt": delivery.receive_count,
            },
        )
        return Outcome(
            delivery,
            kind,
            envelope.task_id,
            record,
            duration_s=duration_s,
            store=task.store_result,
        )


def _replace(record: ResultRecord, **changes: Any) -> ResultRecord:
    from dataclasses import replace

    return replace(record, **changes)
