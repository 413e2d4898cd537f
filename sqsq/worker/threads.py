"""The thread pool for sync task functions (``--pool threads``, the default).

Long-lived daemon threads take calls from one queue, so a task costs no thread
start. A thread cannot be killed: a call that runs past its task's
``time_limit`` is *abandoned* — its thread is replaced at once, so the pool
keeps its size, and the abandoned thread exits when the call finally returns
(or with the process; daemon threads never keep it alive). Before that, a
``soft_time_limit`` raises ``SoftTimeLimitExceeded`` in the call's thread
(``PyThreadState_SetAsyncExc``, armed by ``calling.invoke``: it reaches Python code
at its next bytecode, not a blocking C call; see ``sqsq.soft_time_limit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..calling import TaskExit


class Call:
    """One submitted call: ``fn()`` runs in a pool thread, its result (or the
    exception it let out) resolves ``future`` on the submitting loop."""

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.fn = fn
        self.loop = loop
        self.name = name
        self.future: asyncio.Future[Any] = loop.create_future()
        self.abandoned = False

    def deliver(self, result: Any, error: BaseException | None) -> None:
        if self.future.done():
            return
        if error is not None:
            # SystemExit / KeyboardInterrupt raised in a pool thread are the call's own
            # (signals only reach the main thread); awaited as they are, asyncio would
            # re-raise them out of the event loop and end the worker.
            if not isinstance(error, Exception):
                error = TaskExit(error)
            self.future.set_exception(error)
        else:
            self.future.set_result(result)


class ThreadPool:
    """``size`` threads running :class:`Call`s.

    Args:
        size: threads (the worker's concurrency: one per run slot).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._count = 0
        self.abandoned = 0
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        self._count += 1
        threading.Thread(target=self._serve, name=f"sqsq-task-{self._count}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            threading.current_thread().name = call.name
            try:
                result, error = call.fn(), None
            except BaseException as exc:  # delivered to the awaiting task
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: a late abandoned call
                call.loop.call_soon_threadsafe(call.deliver, result, error)
            if call.abandoned:  # replaced already: leave the pool
                return

    def submit(self, fn: Callable[[], Any], name: str = "sqsq-task") -> Call:
        """Run ``fn`` in a pool thread; await ``call.future`` on the running loop."""
        call = Call(fn, asyncio.get_running_loop(), name)
        self._calls.put(call)
        return call

    def abandon(self, call: Call) -> None:
        """Give up on a running call: a new thread takes its place."""
        if not call.abandoned:
            call.abandoned = True
            self.abandoned += 1
            self._spawn()

    def close(self) -> None:
        """Let idle threads exit (running ones finish their call first)."""
        for _ in range(self._count):
            self._calls.put(None)
