"""Task states, the stored result record, and :class:`AsyncResult`.

A result is read from the DynamoDB table (see ``dynamodb.py``). Until the worker
stores an outcome, or after the result's TTL (``result_ttl``) has passed, the
state is PENDING: DynamoDB's TTL deletion is best-effort and lags, so a reader
treats an item past its ``expires_at`` as absent.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from . import limits
from .aws_errors import aws_boundary
from .calls import Sleep, Steps, arun, run
from .errors import (
    ResultError,
    ResultTimeout,
    TaskExpired,
    TaskFailed,
    TaskRevoked,
    failure_class,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable


class State(enum.StrEnum):
    """Task states, named as in Celery."""

    #: Nothing is known: not run yet, unknown id, or the result expired.
    PENDING = "PENDING"
    #: A worker received the message. Celery's name, never written by sqsq: a
    #: message waits in a worker's prefetch buffer for milliseconds, not worth a
    #: write per task; a reader sees PENDING until STARTED or the outcome.
    RECEIVED = "RECEIVED"
    #: A worker started the body (opt-in, ``track_started=True``): the record
    #: carries the worker (``host:pid``) and ``started_at``; the outcome replaces it.
    STARTED = "STARTED"
    #: The task failed and will be retried; the last error is recorded.
    RETRY = "RETRY"
    #: The task returned; ``result`` holds its JSON return value.
    SUCCESS = "SUCCESS"
    #: The task raised, or its message could not be run (dead-lettered).
    FAILURE = "FAILURE"
    #: The task was revoked before it ran.
    REVOKED = "REVOKED"


#: States after which nothing changes.
READY_STATES = frozenset({State.SUCCESS, State.FAILURE, State.REVOKED})


@dataclass(frozen=True)
class ResultRecord:
    """What happened to one task, as stored in its result item.

    Times are UTC datetimes; ``expires_at`` is epoch seconds (the TTL attribute).
    """

    task_id: str
    state: State
    task: str | None = None
    queue: str | None = None
    #: The JSON return value (SUCCESS only).
    value: Any = None
    #: Qualified exception type, e.g. ``"builtins.ValueError"`` (FAILURE/RETRY).
    exc_type: str | None = None
    exc_message: str | None = None
    traceback: str | None = None
    #: Dead-letter reason code when the message went to the DLQ, e.g. ``"unknown_task"``.
    dead_letter_reason: str | None = None
    #: How many times SQS delivered the message (ApproximateReceiveCount).
    attempts: int = 0
    worker: str | None = None
    message_id: str | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The call's arguments, ``{"args": [...], "kwargs": {...}}`` as JSON text, cut at
    #: 4 KB (``sqsq.detail``); kept on FAILURE, RETRY and STARTED (``result_arguments``).
    arguments: str | None = None
    #: Whether ``arguments`` was cut (it is then not valid JSON).
    arguments_truncated: bool = False
    #: The task whose outcome sent this one (workflows), and the workflow's first.
    parent_id: str | None = None
    root_id: str | None = None
    #: What follows it in its workflow (``sqsq.detail.follows``): ``next``, ``links``,
    #: ``errbacks`` (lists of task ids), ``chord`` (``{"id": …, "index": i}``).
    workflow: dict[str, Any] = field(default_factory=dict)
    #: The ``pk`` of the idempotency key item it claimed (``idem#<task>#<key>``).
    idempotency_key: str | None = None

    @property
    def ready(self) -> bool:
        """Whether the state is final (SUCCESS, FAILURE or REVOKED)."""
        return self.state in READY_STATES

    def error(self) -> TaskFailed:
        """The :class:`TaskFailed` this record stands for: a :class:`TaskRevoked` (or
        :class:`TaskExpired`) when REVOKED, a ``ChainError``/``ChordError`` for a
        canvas step that never ran."""
        if self.state is State.REVOKED:
            kind = TaskExpired if self.exc_type == "sqsq.errors.TaskExpired" else TaskRevoked
            return kind(
                self.task_id,
                self.exc_type or "sqsq.errors.TaskRevoked",
                self.exc_message or "revoked",
            )
        return failure_class(self.exc_type)(
            self.task_id,
            self.exc_type or "UnknownError",
            self.exc_message or "",
            self.traceback,
        )


@dataclass(frozen=True)
class Attempt:
    """One try of a task (:meth:`AsyncResult.attempts`). Times are UTC datetimes.

    Attempt items are stored for RETRY and a final FAILURE; the last try is read
    from the result item itself (a SUCCESS, a REVOKED, or a STARTED try still
    running, with ``track_started``).
    """

    #: 1 for the first try; sqsq's own retries and SQS redeliveries both count.
    number: int
    #: How the try ended (RETRY, SUCCESS, FAILURE, REVOKED), or STARTED while it runs.
    state: State
    #: The worker that ran it: ``host:pid``, or ``lambda:<request id>``.
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exc_type: str | None = None
    exc_message: str | None = None
    #: Seconds until the next try (RETRY only).
    retry_delay_s: float | None = None

    @classmethod
    def of(cls, record: ResultRecord) -> Attempt:
        """The try a result record stands for (its latest)."""
        return cls(
            number=record.attempts,
            state=record.state,
            worker=record.worker,
            started_at=record.started_at,
            finished_at=record.finished_at,
            exc_type=record.exc_type,
            exc_message=record.exc_message,
        )


class ResultBackend(Protocol):
    """What :class:`AsyncResult` needs: look a record up by task id, revoke a task."""

    #: The client factory the call sequences run with (``sqsq.clients.Clients``).
    clients: Any

    def getting(self, task_id: str) -> Steps[ResultRecord | None]: ...

    def timeline_steps(self, task_id: str) -> Steps[list[Attempt]]: ...

    def revoke(self, task_id: str, ttl_s: float) -> None: ...

    def arevoke(self, task_id: str, ttl_s: float) -> Awaitable[None]: ...


def _table(result: AsyncResult, *_: Any, **__: Any) -> str | None:
    """The table an AsyncResult reads (named in its AWSError)."""
    return getattr(result._backend, "table", None)


class AsyncResult:
    """A handle on one task's result.

    Args:
        task_id: the task's id.
        backend: where results are read (the App's result store).
        record: a known record (``apply()`` results carry theirs; no AWS call is made).

    Every property that needs the stored state makes one consistent GetItem
    unless the result is already final (then it is cached).
    """

    def __init__(
        self, task_id: str, backend: ResultBackend | None = None, record: ResultRecord | None = None
    ) -> None:
        self.id = task_id
        self._backend = backend
        self._record = record
        #: The previous step's result in a chain (Celery's ``parent``), when known.
        self.parent: AsyncResult | Any = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # --- reading --------------------------------------------------------------

    @aws_boundary(_table)
    def _fetch(self) -> ResultRecord | None:
        return run(self._fetching(), self._clients())

    def _fetching(self) -> Steps[ResultRecord | None]:
        if self._record is not None and self._record.ready:
            return self._record
        if self._backend is None:
            return self._record
        record = yield from self._backend.getting(self.id)
        if record is not None:
            self._record = record
        return record

    def _clients(self) -> Any:
        return None if self._backend is None else self._backend.clients

    @property
    def record(self) -> ResultRecord | None:
        """The stored record, or None while PENDING."""
        return self._fetch()

    @property
    def state(self) -> State:
        """The current :class:`State` (PENDING when nothing is stored)."""
        record = self._fetch()
        return record.state if record else State.PENDING

    @property
    def status(self) -> State:
        """Alias of :attr:`state` (Celery)."""
        return self.state

    def ready(self) -> bool:
        """True once the task is SUCCESS, FAILURE or REVOKED."""
        return self.state in READY_STATES

    def successful(self) -> bool:
        """Whether the task succeeded (state SUCCESS)."""
        return self.state is State.SUCCESS

    def failed(self) -> bool:
        """Whether the task failed (state FAILURE)."""
        return self.state is State.FAILURE

    @property
    def result(self) -> Any:
        """The return value when SUCCESS; a :class:`TaskFailed` when FAILURE/RETRY;
        None otherwise. Never raises the task's error (use :meth:`get`)."""
        record = self._fetch()
        if record is None:
            return None
        if record.state is State.SUCCESS:
            return record.value
        if record.state in (State.FAILURE, State.RETRY):
            return record.error()
        return None

    @property
    def traceback(self) -> str | None:
        """The worker's formatted traceback of the failure, if any."""
        record = self._fetch()
        return record.traceback if record else None

    @aws_boundary(_table)
    def attempts(self) -> list[Attempt]:
        """Each try of the task, oldest first: its worker, start and finish times,
        and how it ended (one consistent Query; see :class:`Attempt`).

        Returns:
            ``[]`` while PENDING (or after the result's TTL); an eager
            (``apply()``) result gives its own record's try.

        Raises:
            AWSError: DynamoDB could not be read.
        """
        if self._backend is None:
            return [Attempt.of(self._record)] if self._record is not None else []
        return run(self._backend.timeline_steps(self.id), self._clients())

    @aws_boundary(_table)
    async def aattempts(self) -> list[Attempt]:
        """Asyncio twin of :meth:`attempts`."""
        if self._backend is None:
            return [Attempt.of(self._record)] if self._record is not None else []
        return await arun(self._backend.timeline_steps(self.id), self._clients())

    # --- revoking --------------------------------------------------------------

    @aws_boundary(_table)
    def revoke(self, ttl: float = limits.SQS_MAX_RETENTION_S) -> None:
        """Revoke the task: a worker that receives it later does not run it, records
        REVOKED and deletes its message. A task already running is not stopped.

        Args:
            ttl: seconds the revocation is kept (default 14 days, the longest an
                SQS message can wait, ``limits.SQS_MAX_RETENTION_S``).

        Raises:
            ResultError: this result has no backend (an ``apply()`` result).
        """
        if self._backend is None:
            raise ResultError("an eager (apply) result cannot be revoked")
        self._backend.revoke(self.id, ttl)

    @aws_boundary(_table)
    async def arevoke(self, ttl: float = limits.SQS_MAX_RETENTION_S) -> None:
        """Asyncio twin of :meth:`revoke`."""
        if self._backend is None:
            raise ResultError("an eager (apply) result cannot be revoked")
        await self._backend.arevoke(self.id, ttl)

    # --- waiting --------------------------------------------------------------

    def _outcome(self, record: ResultRecord | None, propagate: bool) -> Any:
        assert record is not None
        if record.state is State.SUCCESS:
            return record.value
        error = record.error()
        if propagate:
            raise error
        return error

    @aws_boundary(_table)
    def get(
        self, timeout: float | None = None, interval: float = 0.5, propagate: bool = True
    ) -> Any:
        """Wait for the task to finish and return its value.

        Args:
            timeout: seconds to wait; None waits forever.
            interval: seconds between polls (one GetItem each).
            propagate: raise the task's error (default) or return it.

        Returns:
            The task's JSON return value.

        Raises:
            TaskFailed: the task ended in FAILURE (remote type, message and
                traceback attached); :class:`TaskRevoked` when it was REVOKED.
            ResultTimeout: not ready within ``timeout`` seconds.
            ResultError: an eager (``apply()``) result that is not final — never
                the case since ``apply()`` runs retries in place; an eager result
                never waits.
            AWSError: DynamoDB could not be read (unreachable, throttled, no table:
                :class:`~sqsq.AWSResourceNotFound`); the task's fate is unknown.
        """
        return run(self._waiting(timeout, interval, propagate), self._clients())

    @aws_boundary(_table)
    async def aget(
        self, timeout: float | None = None, interval: float = 0.5, propagate: bool = True
    ) -> Any:
        """Asyncio twin of :meth:`get` (aiobotocore GetItem)."""
        return await arun(self._waiting(timeout, interval, propagate), self._clients())

    def _waiting(self, timeout: float | None, interval: float, propagate: bool) -> Steps[Any]:
        """The polls of :meth:`get` (see :mod:`sqsq.calls`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = yield from self._fetching()
            if record is not None and record.ready:
                return self._outcome(record, propagate)
            if self._backend is None:  # an eager result: nothing will ever change it
                state = record.state.value if record else "PENDING"
                raise ResultError(f"eager result {self.id} is {state} and has nothing to wait for")
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"task {self.id} not ready after {timeout} s")
            wait = interval if deadline is None else min(interval, deadline - time.monotonic())
            yield Sleep(wait)
