"""Running a task's function: the call, and what it came to.

::

    Prepared ─► invoke()  (this thread; ``async def`` on a fresh loop)  ─┐
            └─► ainvoke() (awaited on the running loop)                  ├─► classify() ─► CallResult
                a child process (``worker/processes.py``)              ─┘

One :class:`Attempt` times the call and classifies what it returned or raised,
and sends the task signals around it (:class:`Hooks`, ``sqsq.signals``) in the
thread or process that runs the body; :func:`invoke` and :func:`ainvoke` only
drive it, and differ only in which exceptions are the task's own: on a thread
everything in :data:`TASK_FAILURES` (``KeyboardInterrupt`` on the main thread
excepted), on the loop every ``Exception`` (:func:`guarded` turns what the task
raised from :data:`TASK_EXITS` into :class:`TaskExit`, and a real cancellation —
shutdown — propagates).
A :class:`CallResult` is plain data, so a child process can send it back:
exceptions never cross a process boundary. ``Executor.finish`` turns it into an
outcome.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import limits, signals, soft_time_limit
from .envelope import to_json, too_deep
from .errors import NotSerializable, Reject, ResultNotSerializable, Retry, TimeLimitExceeded

if TYPE_CHECKING:
    from .outcome import Prepared
    from .retry import RetryPolicy
    from .task import Request, Task


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

    def retried(self, policy: RetryPolicy, attempt: int) -> bool:
        """Whether this failure of attempt ``attempt`` (1-based) is retried under
        ``policy`` (False for a success)."""
        return self.retry and not self.final and not self.reject and not policy.exhausted(attempt)


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


class Hooks:
    """The task signals of one run of a body, sent in the thread/process that runs
    it: ``task_prerun`` before, then ``task_success`` / ``task_retry`` /
    ``task_failure``, then ``task_postrun`` (Celery's order). :func:`hooks_for`
    gives None when no receiver is connected, so a run without receivers costs
    one check per signal.

    Args:
        task: the task.
        request: what ``self.request`` would be (id, arguments, attempt, queue).
        given_up: true once the runner reported this run's failure itself (its
            thread passed the time limit): the late outcome signals are not sent,
            ``task_postrun`` still is.
    """

    def __init__(
        self, task: Task[Any, Any], request: Request, given_up: Callable[[], bool] | None = None
    ) -> None:
        self.task = task
        self.request = request
        self.given_up = given_up

    def _common(self) -> dict[str, Any]:
        request = self.request
        return {
            "task_id": request.id,
            "task": self.task,
            "args": request.args,
            "kwargs": request.kwargs,
        }

    def started(self) -> None:
        """``task_prerun``."""
        signals.task_prerun.send(self.task, **self._common())

    def ended(
        self, value: Any, exc: BaseException | None, result: CallResult, runtime_s: float
    ) -> None:
        """The outcome signal that ``result`` calls for, then ``task_postrun``."""
        task = self.task
        if result.error_type is None:
            retval, state = value, "SUCCESS"
            if not self.late():
                signals.task_success.send(
                    task,
                    result=value,
                    runtime=runtime_s,
                    task_id=self.request.id,
                    request=self.request,
                )
        else:
            retval = cause_of(exc, result)
            state = (
                "RETRY" if result.retried(task.retry_policy, self.request.attempt) else "FAILURE"
            )
            if not self.late():
                self.failed(retval, result, state)
        signals.task_postrun.send(task, **self._common(), retval=retval, state=state)

    def failed(self, cause: BaseException, result: CallResult, state: str) -> None:
        """``task_retry`` (``state`` RETRY) or ``task_failure``."""
        if state == "RETRY":
            signals.task_retry.send(
                self.task, request=self.request, reason=cause, einfo=result.traceback
            )
            return
        request = self.request
        signals.task_failure.send(
            self.task,
            task_id=request.id,
            exception=cause,
            args=request.args,
            kwargs=request.kwargs,
            traceback=cause.__traceback__,
            einfo=result.traceback,
        )

    def late(self) -> bool:
        """Whether the runner gave up on this run (see ``given_up``)."""
        return self.given_up is not None and self.given_up()


def hooked() -> bool:
    """Whether any receiver listens to a signal sent around a body (~0.1 µs when none)."""
    return bool(
        signals.task_prerun.receivers
        or signals.task_postrun.receivers
        or signals.task_success.receivers
        or signals.task_retry.receivers
        or signals.task_failure.receivers
    )


def cause_of(exc: BaseException | None, result: CallResult) -> BaseException:
    """The exception a failed call is reported with: what the task raised (the
    cause a :class:`~sqsq.errors.Retry` carries, the original of a
    :class:`TaskExit`), or one made from ``result`` when there is none (a return
    value that is not JSON)."""
    if isinstance(exc, TaskExit):
        exc = exc.exc
    if isinstance(exc, Retry) and exc.exc is not None:
        return exc.exc
    if exc is not None:
        return exc
    return ResultNotSerializable(result.error_message)


#: The tracing hook around each body (``sqsq.tracing``'s ``TaskTracing``, installed by
#: an App when OpenTelemetry's API is installed): ``started(prepared)`` opens the
#: ``process`` span, current in the thread (or task) that runs the body, and returns
#: what :class:`Attempt` ends. None: no tracing, one attribute check per run.
tracing: Any = None


def traced(prepared: Prepared) -> Any:
    """The ``process`` span of a run of ``prepared`` (None when not traced)."""
    return None if tracing is None else tracing.started(prepared)


class Attempt:
    """One call of a task's function, timed from its start: the logic the sync and
    async drivers (and a process-pool child) share. :meth:`ended` classifies what
    the call returned or raised; ``hooks`` sends the task signals around it, inside
    ``span`` (:func:`traced`) when the run is traced."""

    def __init__(self, task: Task[Any, Any], hooks: Hooks | None = None, span: Any = None) -> None:
        self.task = task
        self.hooks = hooks
        self.span = span
        if hooks is not None:
            hooks.started()
        self.started_at = datetime.now(UTC)
        self._start = time.perf_counter()

    def ended(self, value: Any = None, exc: BaseException | None = None) -> Invocation:
        duration_s = time.perf_counter() - self._start
        result = classify(self.task, value, exc)
        if self.hooks is not None:
            self.hooks.ended(value, exc, result, duration_s)
        if self.span is not None:
            self.span.ended(result, cause_of(exc, result) if result.error_type else None)
        return self.started_at, duration_s, result


def hooks_for(prepared: Prepared) -> Hooks | None:
    """The :class:`Hooks` of a run of ``prepared``, or None when no receiver listens."""
    if not hooked():
        return None
    return Hooks(prepared.task, request_of(prepared), lambda: prepared.given_up)


def request_of(prepared: Prepared) -> Request:
    """The :class:`~sqsq.task.Request` of ``prepared`` (``self.request`` of a bound task)."""
    from .task import Request

    envelope = prepared.envelope
    attempt = envelope.retries + prepared.delivery.receive_count
    return Request(
        id=envelope.task_id,
        task=envelope.task,
        args=prepared.args,
        kwargs=prepared.kwargs,
        attempt=attempt,
        retries=attempt - 1,
        queue=prepared.delivery.queue,
        idempotency_key=envelope.idempotency_key,
        message_id=prepared.delivery.message_id,
        scheduled_at=envelope.scheduled_at,
    )


def call_args(prepared: Prepared) -> list[Any]:
    """Positional arguments of the call (a :class:`~sqsq.task.BoundTask` first if ``bind``)."""
    if not prepared.task.bind:
        return prepared.args
    from .task import BoundTask

    return [BoundTask(prepared.task, request_of(prepared)), *prepared.args]


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
    attempt = Attempt(task, hooks_for(prepared), traced(prepared))
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
    attempt = Attempt(prepared.task, hooks_for(prepared), traced(prepared))
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
