"""Task: a registered function, its options, and the ways to run it.

``@app.task`` returns a :class:`Task`. Calling it calls the function; ``delay`` /
``apply_async`` / ``delay_many`` enqueue it on SQS; ``apply`` runs it here, now,
through the same execution core as a worker. ``adelay`` / ``aapply_async`` are
the asyncio twins (aiobotocore).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, overload

from . import limits, producer
from .arguments import Signature
from .aws_errors import aws_boundary
from .calls import Steps, arun, run
from .errors import ConfigurationError, EnqueueError, Retry
from .idempotency import KeySpec, render_key
from .retry import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_BACKOFF_MAX_S,
    DEFAULT_RETRY_DELAY_S,
    RetryPolicy,
)
from .settings import check_queue_name, seconds

if TYPE_CHECKING:
    from .app import App
    from .flow.rates import Rate
    from .result import AsyncResult
    from .workflows import Signature as CanvasSignature
    from .workflows import group

P = ParamSpec("P")
R = TypeVar("R")

#: Default lifetime of idempotency keys, seconds (1 day).
DEFAULT_IDEMPOTENCY_TTL_S = 86_400.0


class TaskOptions(TypedDict, total=False):
    """The options of ``@app.task(...)`` besides ``bind`` (see :meth:`App.task`)."""

    name: str | None
    queue: str | None
    store_result: bool
    result_ttl: float | timedelta | None
    max_retries: int | None
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: bool | float
    retry_backoff_max: float | timedelta
    retry_jitter: bool
    default_retry_delay: float | timedelta
    time_limit: float | timedelta | None
    soft_time_limit: float | timedelta | None
    visibility_timeout: float | timedelta | None
    idempotency_key: str | Callable[..., str] | None
    idempotency_ttl: float | timedelta
    idempotency_validate: bool
    fair_key: str | Callable[..., str] | None
    rate_limit: str | float | None
    rate_key: str | Callable[..., str] | None
    concurrency_limit: int | None
    concurrency_key: str | Callable[..., str] | None
    track_started: bool | None
    protocol: Literal["sqsq", "celery"]


#: Every option ``@app.task(...)`` accepts; anything else fails at declaration.
TASK_OPTIONS = frozenset({*TaskOptions.__annotations__, "bind"})


@dataclass(frozen=True)
class Request:
    """What a ``bind=True`` task knows about the current execution (``self.request``).

    Attributes:
        id: the task id.
        task: the task name.
        args / kwargs: the validated arguments.
        attempt: this attempt's number, 1-based (SQS ApproximateReceiveCount).
        retries: attempts before this one (``attempt - 1``), as Celery's ``request.retries``.
        queue: the logical queue.
        idempotency_key: the call's key, if any.
        message_id: the SQS MessageId.
        scheduled_at: the fire time of the schedule that sent it (periodic tasks), else None.
    """

    id: str
    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    retries: int = 0
    queue: str = ""
    idempotency_key: str | None = None
    message_id: str = ""
    scheduled_at: datetime | None = None


class BoundTask:
    """The ``self`` of a ``bind=True`` task: the task plus the current request."""

    def __init__(self, task: Task[Any, Any], request: Request) -> None:
        self.task = task
        self.request = request
        self.name = task.name
        self.app = task.app

    @property
    def max_retries(self) -> int | None:
        return self.task.retry_policy.max_retries

    def retry(self, exc: BaseException | None = None, countdown: float | None = None) -> Retry:
        """Raise :class:`~sqsq.errors.Retry`: retry after ``countdown`` seconds (or the
        task's backoff), recording ``exc``. Use as ``raise self.retry(exc=exc)`` or call it."""
        raise Retry(exc=exc, countdown=countdown)


def _queue(task: Task[Any, Any], *_: Any, queue: str | None = None, **__: Any) -> str:
    """The SQS queue a send goes to (named in its AWSError)."""
    return task.app.queue_name(queue or task.queue)


class Task(Generic[P, R]):
    """A task function registered in an :class:`~sqsq.App`.

    Attributes:
        name: registered name, ``"module.function"`` by default.
        queue: logical queue it is sent to.
        store_result: whether the worker stores its outcome (one DynamoDB write).
        result_ttl_s: how long the result stays readable, seconds.
        retry_policy: Celery-style retry options (see ``sqsq.retry``).
        time_limit_s: longest run, seconds; None for no limit (12 h lease cap still applies).
        soft_time_limit_s: seconds after which ``SoftTimeLimitExceeded`` is raised in
            the body (see ``sqsq.soft_time_limit``); None for none.
        visibility_timeout_s: lease of its message while it runs, seconds; None
            uses the queue's visibility timeout.
        idempotency_key: template or callable for the idempotency key, or None.
        idempotency_ttl_s: how long a key is remembered, seconds.
        idempotency_validate: a duplicate whose arguments differ from the call that
            completed the key fails with ``IdempotencyConflict`` (default True)
            instead of getting that call's result.
        fair_key: template or callable for the call's tenant (``MessageGroupId``), or None.
        rate_limit: Celery's syntax, ``"100/s"``, ``"10/m"``, ``"1000/h"`` or a number
            per second, shared by every worker and Lambda handler of the app (see
            ``docs/guides/flow-control.md``); None: no limit.
        rate_key: with ``rate_limit``, one bucket per key: a ``str.format`` template
            over the arguments (``"{customer_id}"``) or a callable.
        concurrency_limit: at most this many bodies run at once across all workers
            and Lambda (per ``concurrency_key``); None: no limit.
        concurrency_key: with ``concurrency_limit``, one limit per key (template or
            callable, as ``rate_key``).
        track_started: record STARTED when the body starts (one conditional PutItem
            per attempt); default the app's ``track_started`` setting.
        protocol: ``"celery"``: calls are sent in Celery's protocol v2 (JSON, as
            kombu's SQS transport writes it), for a task still run by Celery
            workers (``sqsq.interop``; ``idempotency_key``, ``fair_key`` and
            ``message_group_id`` do not apply there); default ``"sqsq"``.
        bind: the function receives a :class:`BoundTask` as first argument.
        is_async: the function is ``async def`` (awaited on the worker's loop).
    """

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        queue: str | None = None,
        store_result: bool = True,
        result_ttl: float | timedelta | None = None,
        bind: bool = False,
        max_retries: int | None = DEFAULT_MAX_RETRIES,
        autoretry_for: tuple[type[BaseException], ...] = (),
        retry_backoff: bool | float = False,
        retry_backoff_max: float | timedelta = DEFAULT_RETRY_BACKOFF_MAX_S,
        retry_jitter: bool = True,
        default_retry_delay: float | timedelta = DEFAULT_RETRY_DELAY_S,
        time_limit: float | timedelta | None = None,
        soft_time_limit: float | timedelta | None = None,
        visibility_timeout: float | timedelta | None = None,
        idempotency_key: KeySpec = None,
        idempotency_ttl: float | timedelta = DEFAULT_IDEMPOTENCY_TTL_S,
        idempotency_validate: bool = True,
        fair_key: KeySpec = None,
        rate_limit: str | float | None = None,
        rate_key: KeySpec = None,
        concurrency_limit: int | None = None,
        concurrency_key: KeySpec = None,
        track_started: bool | None = None,
        protocol: Literal["sqsq", "celery"] = "sqsq",
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.queue = check_queue_name(queue) if queue else app.settings.default_queue
        self.store_result = store_result
        self.result_ttl_s = _positive("result_ttl", result_ttl, app.settings.result_ttl_s)
        self.bind = bind
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 or None, got {max_retries}")
        if not isinstance(autoretry_for, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in autoretry_for
        ):
            raise ValueError(
                f"autoretry_for must be a tuple of exception types, got {autoretry_for!r}"
            )
        backoff = float(retry_backoff)  # True means a 1 s base, as in Celery
        self.retry_policy = RetryPolicy(
            max_retries=max_retries,
            autoretry_for=autoretry_for,
            retry_backoff_s=_nonneg("retry_backoff", backoff),
            retry_backoff_max_s=_positive("retry_backoff_max", retry_backoff_max, 0),
            retry_jitter=retry_jitter,
            default_retry_delay_s=_nonneg("default_retry_delay", seconds(default_retry_delay)),
        )
        self.time_limit_s = _positive("time_limit", time_limit, None) if time_limit else None
        self.soft_time_limit_s = (
            _positive("soft_time_limit", soft_time_limit, None) if soft_time_limit else None
        )
        soft, hard = self.soft_time_limit_s, self.time_limit_s
        if soft and hard and soft >= hard:
            raise ValueError(
                f"soft_time_limit ({soft:g} s) must be less than time_limit ({hard:g} s)"
            )
        self.visibility_timeout_s = (
            _positive("visibility_timeout", visibility_timeout, None)
            if visibility_timeout
            else None
        )
        if (
            self.visibility_timeout_s
            and self.visibility_timeout_s > limits.SQS_MAX_VISIBILITY_TIMEOUT_S
        ):
            raise ValueError(
                f"visibility_timeout {self.visibility_timeout_s:g} s is over "
                f"SQS_MAX_VISIBILITY_TIMEOUT_S={limits.SQS_MAX_VISIBILITY_TIMEOUT_S}"
            )
        if idempotency_key is not None and not (
            isinstance(idempotency_key, str) or callable(idempotency_key)
        ):
            raise ValueError("idempotency_key must be a format string or a callable")
        self.idempotency_key = idempotency_key
        self.idempotency_ttl_s = _positive("idempotency_ttl", idempotency_ttl, 0)
        self.idempotency_validate = idempotency_validate
        if fair_key is not None and not (isinstance(fair_key, str) or callable(fair_key)):
            raise ValueError("fair_key must be a format string or a callable")
        self.fair_key = fair_key
        self._flow_options(rate_limit, rate_key, concurrency_limit, concurrency_key)
        self.track_started = (
            app.settings.track_started if track_started is None else bool(track_started)
        )
        if protocol not in ("sqsq", "celery"):
            raise ValueError(f"protocol must be 'sqsq' or 'celery', got {protocol!r}")
        #: The wire format its calls are sent in: "celery" for a task still run by
        #: Celery workers (Celery's protocol v2, see ``sqsq.interop``).
        self.protocol = protocol
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(fn, skip_first=bind)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__module__ = fn.__module__
        self.__wrapped__ = fn

    def _flow_options(
        self,
        rate_limit: str | float | None,
        rate_key: KeySpec,
        concurrency_limit: int | None,
        concurrency_key: KeySpec,
    ) -> None:
        """Check and keep the flow-control options (``sqsq.flow``, loaded only when
        a rate limit is declared)."""
        for option, spec in (("rate_key", rate_key), ("concurrency_key", concurrency_key)):
            if spec is not None and not (isinstance(spec, str) or callable(spec)):
                raise ValueError(f"{option} must be a format string or a callable")
        if rate_key is not None and rate_limit is None:
            raise ValueError("rate_key needs a rate_limit")
        if concurrency_key is not None and concurrency_limit is None:
            raise ValueError("concurrency_key needs a concurrency_limit")
        if concurrency_limit is not None and (
            isinstance(concurrency_limit, bool)
            or not isinstance(concurrency_limit, int)
            or concurrency_limit < 1
        ):
            raise ValueError(f"concurrency_limit must be an int >= 1, got {concurrency_limit!r}")
        self.rate_limit: Rate | None = None
        if rate_limit is not None:
            from .flow.rates import parse_rate

            self.rate_limit = parse_rate(rate_limit)
        self.rate_key = rate_key
        self.concurrency_limit = concurrency_limit
        self.concurrency_key = concurrency_key

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly, in this process (no queue)."""
        return self.fn(*args, **kwargs)

    def key_for(self, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """The idempotency key of a call from the task's ``idempotency_key`` option.

        Raises:
            ValueError: the template cannot be rendered from these arguments.
        """
        return self._render(self.idempotency_key, "idempotency_key", args, kwargs)

    def fair_group_for(self, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """The ``MessageGroupId`` of a call from the task's ``fair_key`` option
        (SQS fair queues on standard queues; the group on FIFO queues).

        Raises:
            ValueError: the template cannot be rendered from these arguments.
        """
        return self._render(self.fair_key, "fair_key", args, kwargs)

    def _render(
        self, spec: KeySpec, option: str, args: list[Any], kwargs: dict[str, Any]
    ) -> str | None:
        if spec is None:
            return None
        bound = self.signature.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return render_key(spec, dict(bound.arguments), args, kwargs, option)

    # --- enqueue ---------------------------------------------------------------

    def _build(
        self,
        args: Iterable[Any] | None,
        kwargs: dict[str, Any] | None,
        *,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        idempotency_key: str | None = None,
        message_group_id: str | None = None,
    ) -> producer.OutgoingMessage:
        try:
            logical = check_queue_name(queue) if queue else self.queue
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        args_list = list(args or ())
        kwargs = dict(kwargs or {})
        self.signature.check(args_list, kwargs)
        try:
            if idempotency_key is None:
                idempotency_key = self.key_for(args_list, kwargs)
            if message_group_id is None:
                message_group_id = self.fair_group_for(args_list, kwargs)
        except ValueError as exc:
            raise EnqueueError(f"{self.name}: {exc}") from None
        if self.protocol == "celery":  # still run by Celery workers (sqsq.interop)
            return self.app.celery_message(
                self.name, args_list, kwargs, logical, countdown, eta, expires, task_id
            )
        return producer.build(
            self.name,
            args_list,
            kwargs,
            queue=logical,
            queue_name=self.app.queue_name(logical),
            countdown=countdown,
            eta=eta,
            expires=expires,
            task_id=task_id,
            idempotency_key=idempotency_key,
            message_group_id=message_group_id,
            signing_key=self.app.signing_key,
            claim_check=self.app.payloads,
        )

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Enqueue ``fn(*args, **kwargs)``; return once SQS acknowledged the message.

        A lone call makes one SendMessage; concurrent calls of this process (threads)
        share SendMessageBatch calls (``coalesce_sends``, see ``sqsq.sender``).

        Returns:
            An :class:`~sqsq.AsyncResult` for the new task id.

        Raises:
            ArgumentError: the arguments do not bind to the function.
            NotSerializable: an argument is not encodable (see ``sqsq.envelope``).
            MessageTooLarge: the message is over SQS's 1 MiB limit.
            EnqueueError: SQS refused the message (``.failed`` says why).
            AWSResourceNotFound: the queue does not exist (also a ConfigurationError).
            AWSError: SQS could not be reached, throttled, or refused the call
                (``.action``, ``.resource``, ``.code``; ``__cause__`` is botocore's).
        """
        return self.apply_async(args, kwargs)

    @aws_boundary(_queue)
    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        idempotency_key: str | None = None,
        message_group_id: str | None = None,
    ) -> AsyncResult:
        """Enqueue with options.

        Args:
            args: positional arguments.
            kwargs: keyword arguments.
            countdown: seconds before the task may run: SQS DelaySeconds up to
                ``limits.SQS_MAX_DELAY_S`` (900 s; not on FIFO queues); longer ones
                go through a one-time EventBridge schedule or, with
                ``long_eta="hop"``, hops of 900 s (see ``sqsq.schedules.eta``).
            eta: an aware datetime instead of ``countdown``.
            expires: seconds, timedelta or aware datetime after which the task is
                not run (recorded REVOKED with TaskExpired).
            queue: a logical queue other than the task's.
            task_id: choose the task id (default: a UUID4).
            idempotency_key: run the body at most once per key (overrides the
                task's template).
            message_group_id: the message's ``MessageGroupId`` (overrides the
                task's ``fair_key``): on a FIFO queue its ordering group (default:
                the task name); on a standard queue its tenant for SQS fair queues
                (default: none). At most 128 characters
                (``limits.SQS_MAX_MESSAGE_GROUP_ID_CHARS``).

        Raises:
            EnqueueError: as :meth:`delay` (the arguments do not bind or encode, the
                envelope is over SQS's 1 MiB), or a bad countdown/eta/expires.
            TaskFailed: ``task_always_eager`` and ``task_eager_propagates`` are on
                and the task failed.

        With the ``task_always_eager`` setting the task runs here instead, as
        :meth:`apply` (retries in place, no AWS request), and the eager result is
        returned; ``countdown``, ``eta``, ``expires``, ``queue``, ``idempotency_key``
        and ``message_group_id`` are then ignored, as Celery does.
            AWSError: SQS (or, for a long countdown, EventBridge Scheduler) refused
                the send after botocore's retries; nothing was sent.
        """
        if self.app.settings.task_always_eager:  # run here (see sqsq.eager)
            return self._eager(args, kwargs, task_id)
        options = (countdown, eta, expires, queue, task_id, idempotency_key, message_group_id)
        message, long = self._message(args, kwargs, *options)
        if long:
            return self._send_later(message, long)
        self.app.sender.send(message)
        return self.app.AsyncResult(message.task_id)

    def _message(
        self,
        args: Iterable[Any] | None,
        kwargs: dict[str, Any] | None,
        countdown: float | timedelta | None,
        eta: datetime | None,
        expires: float | timedelta | datetime | None,
        queue: str | None,
        task_id: str | None,
        idempotency_key: str | None,
        message_group_id: str | None,
    ) -> tuple[producer.OutgoingMessage, datetime | None]:
        """The message of an :meth:`apply_async` call, and its due time when that is
        over 900 s away (sent by :mod:`sqsq.schedules.eta`; None otherwise)."""
        long = self._long_delay(countdown, eta)
        message = self._build(
            args,
            kwargs,
            countdown=None if long else countdown,
            eta=None if long else eta,
            expires=expires,
            queue=queue,
            task_id=task_id,
            idempotency_key=idempotency_key,
            message_group_id=message_group_id,
        )
        return message, long

    def _eager(
        self, args: Iterable[Any] | None, kwargs: dict[str, Any] | None, task_id: str | None = None
    ) -> AsyncResult:
        """``task_always_eager``: the call runs here, as :meth:`apply`; sending
        options other than ``task_id`` (countdown, eta, expires, queue, keys) are
        ignored, as in Celery."""
        from . import eager

        return eager.apply(self, args, kwargs, task_id=task_id)

    def _send_later(self, message: producer.OutgoingMessage, due: datetime) -> AsyncResult:
        from .schedules.eta import send_later

        return send_later(self.app, message, due)

    @staticmethod
    def _long_delay(countdown: float | timedelta | None, eta: datetime | None) -> datetime | None:
        """Hook for countdowns/ETAs over ``limits.SQS_MAX_DELAY_S`` (900 s): their due
        time, sent by :mod:`sqsq.schedules.eta`; None for every other call."""
        if countdown is None and eta is None:
            return None
        from .schedules.eta import due_time

        return due_time(countdown, eta)

    @aws_boundary(_queue)
    def delay_many(self, arg_tuples: Iterable[Iterable[Any]]) -> list[AsyncResult]:
        """Enqueue one task per argument tuple with SendMessageBatch.

        Like ``itertools.starmap``: ``charge.delay_many([("o-1", 5), ("o-2", 7)])``.
        Batches hold at most 10 entries and 1 MiB (``limits.SQS_MAX_BATCH_ENTRIES``,
        ``limits.SQS_MAX_BATCH_BYTES``); entries SQS reports as failed for its own
        reasons are retried with backoff. Every message is checked before the first
        call, so a bad argument anywhere sends nothing.

        Returns:
            One AsyncResult per tuple, in order.

        Raises:
            EnqueueError: the errors of :meth:`delay`; also when entries still
                failed, with ``.sent`` (task ids enqueued) and ``.failed`` (id, reason).
        """
        if self.app.settings.task_always_eager:
            return [self._eager(args, None) for args in arg_tuples]
        return run(self._sending_many(arg_tuples), self.app.clients, self.app.directory)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Asyncio twin of :meth:`delay` (aiobotocore); coroutines of one event loop
        that enqueue together share SendMessageBatch calls."""
        return await self.aapply_async(args, kwargs)

    @aws_boundary(_queue)
    async def aapply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        idempotency_key: str | None = None,
        message_group_id: str | None = None,
    ) -> AsyncResult:
        """Asyncio twin of :meth:`apply_async` (aiobotocore)."""
        if self.app.settings.task_always_eager:  # run here (see sqsq.eager)
            return self._eager(args, kwargs, task_id)
        options = (countdown, eta, expires, queue, task_id, idempotency_key, message_group_id)
        message, long = self._message(args, kwargs, *options)
        if long:
            import asyncio

            return await asyncio.to_thread(self._send_later, message, long)
        await self.app.sender.asend(message)
        return self.app.AsyncResult(message.task_id)

    @aws_boundary(_queue)
    async def adelay_many(self, arg_tuples: Iterable[Iterable[Any]]) -> list[AsyncResult]:
        """Asyncio twin of :meth:`delay_many`."""
        if self.app.settings.task_always_eager:
            return [self._eager(args, None) for args in arg_tuples]
        return await arun(self._sending_many(arg_tuples), self.app.clients, self.app.directory)

    def _sending_many(self, arg_tuples: Iterable[Iterable[Any]]) -> Steps[list[AsyncResult]]:
        """The calls of :meth:`delay_many` (see :mod:`sqsq.calls`): every message is
        built (and checked) before the first call."""
        messages = [self._build(args, None) for args in arg_tuples]
        if messages:
            yield from producer.sending(self.app.directory, messages)
        return [self.app.AsyncResult(m.task_id) for m in messages]

    # --- canvas (sqsq.workflows, imported on first use) ---------------------------

    def s(self, *args: Any, **kwargs: Any) -> CanvasSignature:
        """A signature of this task (Celery's ``task.s()``); in a chain, the parent's
        result is prepended to ``args``. See ``sqsq.workflows``."""
        from .workflows import Signature as CanvasSignature

        return CanvasSignature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> CanvasSignature:
        """An immutable signature: the parent's result is not prepended (``task.si()``)."""
        from .workflows import Signature as CanvasSignature

        return CanvasSignature(self, args, kwargs, immutable=True)

    def map(self, items: Iterable[Any]) -> group:
        """A group calling the task once per item (``task(item)``). Unlike Celery's
        ``map`` (one message running every call), each call is its own message."""
        from .workflows import group

        return group(self.s(item) for item in items)

    def starmap(self, items: Iterable[Iterable[Any]]) -> group:
        """A group calling ``task(*item)`` per item (see :meth:`map`)."""
        from .workflows import group

        return group(self.s(*item) for item in items)

    def chunks(self, items: Iterable[Iterable[Any]], n: int) -> group:
        """``items`` split into groups of ``n`` starmap calls: the result is a list of
        lists, as Celery's ``chunks``; each call is its own message (see :meth:`map`)."""
        from .workflows import group

        if n < 1:
            raise ValueError(f"chunks need n >= 1, got {n}")
        calls = [list(item) for item in items]
        return group(self.starmap(calls[i : i + n]) for i in range(0, len(calls), n))

    # --- run here ----------------------------------------------------------------

    @overload
    def apply(
        self,
        args: tuple[Any, ...] | list[Any] | None = ...,
        kwargs: dict[str, Any] | None = ...,
        *,
        task_id: str | None = ...,
        throw: bool | None = ...,
        sleep: bool = ...,
    ) -> AsyncResult: ...

    @overload
    def apply(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult: ...

    def apply(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Run the task here and now through the execution core (eager mode),
        retries included.

        Called as the function is (``add.apply(1, 2)``) or in Celery's forms
        (``add.apply((1, 2))``, ``add.apply((1,), {"y": 2})``,
        ``add.apply(args=(1, 2), kwargs={})``): the direct form when the arguments
        fit the function's own signature, else Celery's; a call that fits both is
        refused as ambiguous (the rule in ``sqsq.eager``).

        The arguments take the same path as on a worker: encoded under the
        envelope's JSON rules, decoded and validated. A RETRY (``autoretry_for``,
        ``self.retry()``) runs the function again at once, with the worker's
        policy, until SUCCESS, FAILURE or ``max_retries``. Nothing is sent to AWS
        and nothing is stored; the AsyncResult holds the final outcome, so ``get()``
        never waits; ``result.record.attempts`` counts the runs.

        Keywords of apply's own (unless the function has a parameter of that name):
        ``task_id=`` (the run's id), ``throw=True`` (raise the failure as
        :class:`~sqsq.TaskFailed` at once; default: the ``task_eager_propagates``
        setting), ``sleep=True`` (wait out each retry's countdown, in seconds).

        Raises:
            ArgumentError: the arguments fit neither form (the message names the
                task's signature).
            NotSerializable: as :meth:`delay` would.
            TaskFailed: the task failed, and ``throw`` or ``task_eager_propagates`` is on.
        """
        from . import eager

        call_args, call_kwargs, options = eager.split_call(self, args, dict(kwargs))
        return eager.apply(self, call_args, call_kwargs, **options)


def _positive(name: str, value: float | timedelta | None, default: float | None) -> float:
    result = default if value is None else seconds(value)
    if result is None or result <= 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return float(result)


def _nonneg(name: str, value: float) -> float:
    if value < 0:
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
    return float(value)
