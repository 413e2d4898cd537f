"""Running a task's function: the call, and what it came to.

::

    Prepared ─► invoke()  (this thread; ``async def`` on a fresh loop)  ─┐
            └─► ainvoke() (awaited on the running loop)                  ├─► classify() ─► CallResult
                a child process (``worker/processes.py``)              ─┘

One :class:`_Attempt` times the call and classifies what it returned or raised;
:func:`invoke` and :func:`ainvoke` only drive it, and differ only in which
exceptions are the task's own: on a thread everything in :data:`TASK_FAILURES`
(``KeyboardInterrupt`` on the main thread excepted), on the loop every ``Exception``
(:func:`guarded` turns what the task raised from :data:`TASK_EXITS` into
:class:`TaskExit`, and a real cancellation — shutdown — propagates).
A :class:`CallResult` is plain data, so a child process can send it back:
exceptions never cross a process boundary. ``Executor.finish`` turns it into an
outcome.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback as tb
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import limits, soft_time_limit
from .envelope import to_json, too_deep
from .errors import NotSerializable, Reject, ResultNotSerializable, Retry, TimeLimitExceeded

if TYPE_CHECKING:
    from .outcome import Prepared
    from .task import Task


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


#: What :func:`invoke` and :func:`ainvoke` return: ``(started_at, duration_s, result)``,
#: the arguments of ``Executor.finish`` after the prepared delivery.
Invocation = tuple[datetime, float, CallResult]


class _Attempt:
    """One call of a task's function, timed from its start: the logic the sync and
    async drivers share. :meth:`ended` classifies what the call returned or raised."""

    def __init__(self, task: Task[Any, Any]) -> None:
        self.task = task
        self.started_at = datetime.now(UTC)
        self._start = time.perf_counter()

    def ended(self, value: Any = None, exc: BaseException | None = None) -> Invocation:
        duration_s = time.perf_counter() - self._start
        return self.started_at, duration_s, classify(self.task, value, exc)


def call_args(prepared: Prepared) -> list[Any]:
    """Positional arguments of the call (a :class:`~sqsq.task.BoundTask` first if ``bind``)."""
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


def invoke(
    prepared: Prepared, limit_s: float, *, contain_interrupt: bool | None = None
) -> Invocation:
    """Run the function in this thread (``async def`` ones on a fresh loop, cancelled
    after ``limit_s`` seconds) and classify what it did. Sync functions are not
    interrupted here: runners enforce the time limit around this call.

    What the function raises is its own failure, ``BaseException`` subclasses
    (:data:`TASK_EXITS`) included — except ``KeyboardInterrupt`` on the main
    thread (Ctrl-C during ``task.apply()``) unless ``contain_interrupt`` is True
    (Lambda). Off the main thread no signal can raise it, so it is the task's.
    A ``soft_time_limit`` is raised in the body here (``sqsq.soft_time_limit``).
    """
    if contain_interrupt is None:
        contain_interrupt = threading.current_thread() is not threading.main_thread()
    task = prepared.task
    attempt = _Attempt(task)
    try:
        if task.is_async:
            value = asyncio.run(limited(prepared, limit_s))
        else:
            with soft_time_limit.sync_limit(task.soft_time_limit_s, task.name):
                value = task.fn(*call_args(prepared), **prepared.kwargs)
    except KeyboardInterrupt as exc:
        if not contain_interrupt:
            raise
        return attempt.ended(exc=exc)
    except TASK_FAILURES as exc:
        return attempt.ended(exc=exc)
    return attempt.ended(value)


async def ainvoke(prepared: Prepared, limit_s: float) -> Invocation:
    """Await an ``async def`` task on the running loop, cancelled after ``limit_s``
    seconds, and classify what it did. A ``CancelledError`` the task raises itself
    is its failure; cancelling the task that awaits this (shutdown) propagates."""
    attempt = _Attempt(prepared.task)
    try:
        value = await limited(prepared, limit_s)
    except Exception as exc:
        return attempt.ended(exc=exc)
    return attempt.ended(value)


async def limited(prepared: Prepared, limit_s: float) -> Any:
    """The task's coroutine, :func:`guarded`, cancelled after ``limit_s`` seconds;
    ``SoftTimeLimitExceeded`` raised in it at its ``soft_time_limit``
    (:func:`sqsq.soft_time_limit.guard_async`).

    Raises:
        TimeLimitExceeded: it ran past ``limit_s``.
    """
    task = prepared.task
    body = task.fn(*call_args(prepared), **prepared.kwargs)
    soft_s = task.soft_time_limit_s
    if soft_s is not None and soft_s >= limit_s:  # the hard limit (or the lease's) comes first
        soft_s = None
    try:
        return await asyncio.wait_for(
            guarded(soft_time_limit.guard_async(body, soft_s, task.name)), timeout=limit_s
        )
    except TimeoutError:
        raise TimeLimitExceeded(
            f"{prepared.task.name} ran past its time limit of {limit_s:g} s"
        ) from None
