"""The process pool: run task functions in child processes (``--pool processes``).

Built on Pebble's ``ProcessPool``, which kills a child whose task passes its
timeout (``time_limit``) and replaces children after ``max_tasks`` tasks
(``--max-tasks-per-child``). Children are started with ``spawn`` (never ``fork``
from a threaded asyncio process) and import the app themselves from its
``module:attribute`` path.

Only JSON crosses the process boundary: the child validates the envelope's
arguments, runs the function and sends back a :class:`~sqsq.execution.CallResult`
(value, or the exception already formatted and classified). User exceptions are
never pickled. A ``soft_time_limit`` is a ``SIGALRM`` in the child, whose handler
raises ``SoftTimeLimitExceeded`` in the body (as Celery's billiard does); the
hard ``time_limit`` kills the child.

Signals (``sqsq.signals``): each child sends ``worker_process_init`` once it has
imported the app, and the task signals around each body it runs (the receivers
connected by the app's module, imported there too).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from .. import signals
from ..calling import TASK_FAILURES, Attempt, CallResult, Hooks, hooked, resumed, type_name
from ..errors import InvalidArguments
from ..soft_time_limit import guard_async, sync_limit

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ..app import App

_child_app: App | None = None


def _init(app_path: str) -> None:
    global _child_app
    from ..app import load_app

    _child_app = load_app(app_path)
    signals.worker_process_init.send(None)


def run_in_child(
    task_name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    request: dict[str, Any],
    carrier: dict[str, str] | None = None,
) -> CallResult:
    """Runs in the child: validate, call, classify; inside the worker's ``process``
    span when ``carrier`` has its ``traceparent`` (``sqsq.tracing``)."""
    assert _child_app is not None, "pool initializer did not run"
    task = _child_app.tasks[task_name]
    try:
        call_args, call_kwargs = task.signature.validate(args, kwargs)
    except InvalidArguments as exc:
        return CallResult(error_type=type_name(exc), error_message=str(exc), final=True)
    from ..task import BoundTask, Request

    context = Request(**{**request, "args": list(call_args), "kwargs": dict(call_kwargs)})
    if task.bind:
        call_args = [BoundTask(task, context), *call_args]
    soft_s = task.soft_time_limit_s
    attempt = Attempt(task, Hooks(task, context) if hooked() else None)
    try:
        with resumed(carrier):
            if task.is_async:
                import asyncio

                body = task.fn(*call_args, **call_kwargs)
                value = asyncio.run(_awaited(guard_async(body, soft_s, task.name)))
            else:
                with sync_limit(soft_s, task.name):  # SIGALRM: the child's main thread
                    value = task.fn(*call_args, **call_kwargs)
    except TASK_FAILURES as exc:  # a child's sys.exit() is its task's failure
        return attempt.ended(exc=exc)[2]
    return attempt.ended(value)[2]


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class ProcessPool:
    """A pool of ``workers`` child processes for one app.

    Args:
        app_path: ``module:attribute`` of the App, imported by each child.
        workers: number of children.
        max_tasks_per_child: replace a child after this many tasks (0: never).
    """

    def __init__(self, app_path: str, workers: int, max_tasks_per_child: int = 0) -> None:
        from pebble import ProcessPool as PebblePool

        self._pool = PebblePool(
            max_workers=workers,
            max_tasks=max_tasks_per_child,
            initializer=_init,
            initargs=(app_path,),
            context=multiprocessing.get_context("spawn"),
        )

    def submit(
        self,
        task_name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        request: dict[str, Any],
        timeout_s: float | None,
        carrier: dict[str, str] | None = None,
    ) -> Future[CallResult]:
        """Schedule one call (``carrier``: the ``traceparent`` of its ``process``
        span); the future raises ``TimeoutError`` when the child was killed at
        ``timeout_s``, ``pebble.ProcessExpired`` when it died."""
        future: Future[CallResult] = self._pool.schedule(
            run_in_child, args=(task_name, args, kwargs, request, carrier), timeout=timeout_s
        )
        return future

    def close(self, kill: bool = False) -> None:
        """Stop the pool: wait for children to finish their work, or kill them."""
        if kill:
            self._pool.stop()  # type: ignore[no-untyped-call]
        else:
            self._pool.close()  # type: ignore[no-untyped-call]
        self._pool.join(timeout=5)
