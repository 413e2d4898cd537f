"""Task: a registered function and the ways to run it.

``@app.task`` returns a :class:`Task`. Calling it calls the function; ``delay`` /
``apply_async`` / ``delay_many`` enqueue it on SQS; ``apply`` runs it here, now,
through the same execution core as a worker. ``adelay`` / ``aapply_async`` are
the asyncio twins (aiobotocore).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from . import producer
from .settings import check_queue_name, seconds
from .signature import Signature

if TYPE_CHECKING:
    from .app import App
    from .result import AsyncResult

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A task function registered in an :class:`~sqsq.App`.

    Attributes:
        name: registered name, ``"module.function"`` by default.
        queue: logical queue it is sent to.
        store_result: whether the worker stores its outcome (one DynamoDB write).
        result_ttl_s: how long the result stays readable, seconds.
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
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.queue = check_queue_name(queue) if queue else app.settings.default_queue
        self.store_result = store_result
        ttl = seconds(result_ttl) if result_ttl is not None else app.settings.result_ttl_s
        if ttl <= 0:
            raise ValueError(f"result_ttl must be > 0 seconds, got {ttl}")
        self.result_ttl_s: float = ttl
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__module__ = fn.__module__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly, in this process (no queue)."""
        return self.fn(*args, **kwargs)

    # --- enqueue ---------------------------------------------------------------

    def _build(
        self,
        args: Iterable[Any] | None,
        kwargs: dict[str, Any] | None,
        countdown: float | timedelta | None,
        eta: datetime | None,
        queue: str | None,
        task_id: str | None,
    ) -> producer.OutgoingMessage:
        logical = check_queue_name(queue) if queue else self.queue
        return producer.build(
            self.name,
            list(args or ()),
            kwargs,
            queue=logical,
            queue_name=self.app.queue_name(logical),
            countdown=countdown,
            eta=eta,
            task_id=task_id,
            signature=self.signature,
        )

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Enqueue ``fn(*args, **kwargs)`` with SendMessage.

        Returns:
            An :class:`~sqsq.AsyncResult` for the new task id.

        Raises:
            ArgumentError: the arguments do not bind to the function.
            NotSerializable: an argument is not encodable (see ``sqsq.envelope``).
            MessageTooLarge: the message is over SQS's 1 MiB limit.
            ConfigurationError: the queue does not exist.
        """
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
    ) -> AsyncResult:
        """Enqueue with options.

        Args:
            args: positional arguments.
            kwargs: keyword arguments.
            countdown: seconds before the task may run (SQS DelaySeconds, ≤ 900,
                ``limits.SQS_MAX_DELAY_S``).
            eta: an aware datetime instead of ``countdown`` (within 900 s).
            queue: a logical queue other than the task's.
            task_id: choose the task id (default: a UUID4).

        Raises:
            The errors of :meth:`delay`, and EnqueueError for a bad countdown/eta.
        """
        message = self._build(args, kwargs, countdown, eta, queue, task_id)
        producer.send_sync(self.app.clients, self.app.directory, [message])
        return self.app.AsyncResult(message.task_id)

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
            The errors of :meth:`delay`; EnqueueError when entries still failed,
            with ``.sent`` (task ids enqueued) and ``.failed`` (id, reason).
        """
        messages = [self._build(args, None, None, None, None, None) for args in arg_tuples]
        if messages:
            producer.send_sync(self.app.clients, self.app.directory, messages)
        return [self.app.AsyncResult(m.task_id) for m in messages]

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Asyncio twin of :meth:`delay` (aiobotocore)."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | timedelta | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
    ) -> AsyncResult:
        """Asyncio twin of :meth:`apply_async` (aiobotocore)."""
        message = self._build(args, kwargs, countdown, eta, queue, task_id)
        await producer.send_async(self.app.clients, self.app.directory, [message])
        return self.app.AsyncResult(message.task_id)

    async def adelay_many(self, arg_tuples: Iterable[Iterable[Any]]) -> list[AsyncResult]:
        """Asyncio twin of :meth:`delay_many`."""
        messages = [self._build(args, None, None, None, None, None) for args in arg_tuples]
        if messages:
            await producer.send_async(self.app.clients, self.app.directory, messages)
        return [self.app.AsyncResult(m.task_id) for m in messages]

    # --- run here ----------------------------------------------------------------

    def apply(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Run the task here and now through the execution core (eager mode).

        The arguments take the same path as on a worker: encoded under the
        envelope's JSON rules, decoded and validated. Nothing is sent to AWS and
        nothing is stored; the returned AsyncResult holds the outcome (SUCCESS
        with its value, or FAILURE with type, message and traceback).

        Raises:
            ArgumentError / NotSerializable: as :meth:`delay` would.
        """
        from .delivery import Delivery
        from .execution import Executor, Prepared
        from .result import AsyncResult

        message = self._build(args, kwargs, None, None, None, None)
        delivery = Delivery(
            message_id=message.task_id, receipt_handle="", body=message.body, queue=self.queue
        )
        executor = Executor(self.app, worker_id="eager")
        prepared = executor.prepare(delivery)
        outcome = executor.call(prepared) if isinstance(prepared, Prepared) else prepared
        return AsyncResult(outcome.task_id, record=outcome.record)
