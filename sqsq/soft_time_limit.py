"""The soft time limit: :class:`~sqsq.SoftTimeLimitExceeded` raised *inside* a task's
body at its ``soft_time_limit`` (Celery's name), so that it can clean up; the hard
``time_limit`` still stops it for good.

How each kind of call is reached (the body sees the exception at the point named):

==========================  ==================================================  ===============================
call                        mechanism                                           where the body sees it
==========================  ==================================================  ===============================
``async def`` (any pool,    the body's asyncio task is cancelled, and the       its current ``await``, as
Lambda, ``apply()``)        cancellation is turned into SoftTimeLimitExceeded   ``SoftTimeLimitExceeded``
                            before it reaches the body (:func:`guard_async`)
sync, main thread           ``SIGALRM`` (``setitimer``) whose handler raises    the next bytecode; a blocking
(``--pool processes``'      it, as Celery/billiard do                           call (``time.sleep``, a socket
child, Lambda, ``apply()``)                                                     read) is interrupted (PEP 475)
sync, other thread          ``PyThreadState_SetAsyncExc`` from a timer thread   the next bytecode in Python
(``--pool threads``)                                                            code; a blocking C call
                                                                                (``time.sleep``, a socket read)
                                                                                runs to its end first
==========================  ==================================================  ===============================

The main thread uses ``SIGALRM`` only while nothing else handles that signal; when
something does, it falls back to the thread mechanism. A body that catches the
exception and returns normally succeeds; one that lets it escape fails (or is
retried) per the task's retry policy like any exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import threading
from collections.abc import Awaitable, Coroutine, Generator, Iterator
from typing import Any

from .errors import SoftTimeLimitExceeded

_SIGALRM = getattr(signal, "SIGALRM", None)


def _message(name: str, soft_s: float) -> str:
    return f"{name} ran past its soft time limit of {soft_s:g} s"


@contextlib.contextmanager
def sync_limit(soft_s: float | None, name: str) -> Iterator[None]:
    """Raise :class:`SoftTimeLimitExceeded` in this thread once ``soft_s`` seconds
    have passed inside the block (None: no limit). On leaving the block the limit
    is disarmed; an exception it raised while the block was being left is raised
    from the block (the body did pass its limit)."""
    if soft_s is None:
        yield
        return
    main = threading.current_thread() is threading.main_thread()
    if main and _SIGALRM is not None and signal.getsignal(_SIGALRM) is signal.SIG_DFL:
        with _alarm(soft_s, name):
            yield
    else:
        with _async_exc(soft_s, name):
            yield


@contextlib.contextmanager
def _alarm(soft_s: float, name: str) -> Iterator[None]:
    assert _SIGALRM is not None
    armed = [True]

    def handler(signum: int, frame: Any) -> None:
        if armed[0]:
            armed[0] = False
            raise SoftTimeLimitExceeded(_message(name, soft_s))

    signal.signal(_SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, soft_s)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(_SIGALRM, signal.SIG_DFL)


@contextlib.contextmanager
def _async_exc(soft_s: float, name: str) -> Iterator[None]:
    thread_id = ctypes.c_ulong(threading.get_ident())
    kind = _with_message(_message(name, soft_s))
    lock = threading.Lock()
    state = {"armed": True, "fired": False}

    def fire() -> None:
        with lock:
            if state["armed"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(thread_id, ctypes.py_object(kind))

    timer = threading.Timer(soft_s, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["armed"] = False
            if state["fired"]:  # raised already, or still pending: clear a pending one
                ctypes.pythonapi.PyThreadState_SetAsyncExc(thread_id, None)


def _with_message(message: str) -> type[SoftTimeLimitExceeded]:
    """A SoftTimeLimitExceeded whose construction without arguments carries
    ``message``: ``PyThreadState_SetAsyncExc`` takes a class, and raises it so. It
    is named as its base (stored as ``sqsq.errors.SoftTimeLimitExceeded``)."""

    def init(self: SoftTimeLimitExceeded) -> None:
        SoftTimeLimitExceeded.__init__(self, message)

    names = {"__module__": SoftTimeLimitExceeded.__module__, "__init__": init}
    kind = type(SoftTimeLimitExceeded.__name__, (SoftTimeLimitExceeded,), names)
    kind.__qualname__ = SoftTimeLimitExceeded.__qualname__
    return kind


class _SoftLimited:
    """Awaits a coroutine; the cancellation :func:`guard_async` asks for at the soft
    limit is thrown into the coroutine as :class:`SoftTimeLimitExceeded` instead of
    ``CancelledError`` (what ``yield from`` does, with that one exchange)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], soft_s: float, name: str) -> None:
        self.coro = coro
        self.soft_s = soft_s
        self.name = name

    def __await__(self) -> Generator[Any, Any, Any]:
        task = asyncio.current_task()
        assert task is not None
        fired = [False, False]  # the limit fired; its cancellation was exchanged

        def fire() -> None:
            fired[0] = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(self.soft_s, fire)
        send: Any = None
        throw: BaseException | None = None
        try:
            while True:
                try:
                    step = self.coro.throw(throw) if throw is not None else self.coro.send(send)
                except StopIteration as stop:
                    return stop.value
                send, throw = None, None
                try:
                    send = yield step
                except asyncio.CancelledError as exc:
                    if fired[0] and not fired[1]:  # the soft limit's own cancellation
                        fired[1] = True
                        task.uncancel()
                        throw = SoftTimeLimitExceeded(_message(self.name, self.soft_s))
                    else:
                        throw = exc
                except BaseException as exc:
                    throw = exc
        finally:
            handle.cancel()
            self.coro.close()


def guard_async(coro: Coroutine[Any, Any, Any], soft_s: float | None, name: str) -> Awaitable[Any]:
    """``coro``, with :class:`SoftTimeLimitExceeded` raised at its current ``await``
    once it has run ``soft_s`` seconds (None: ``coro`` as it is)."""
    if soft_s is None:
        return coro
    return _SoftLimited(coro, soft_s, name)
