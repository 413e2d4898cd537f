"""Sender: one App's single sends (``delay``, ``apply_async``, ``send_task`` and
their asyncio twins), concurrent ones sharing SendMessageBatch calls per queue,
by *group commit*:

::

    caller A ──► lane empty, nothing in flight ──► SendMessage(A) ─────────► A returns
    caller B ──► A in flight: B waits ┐
    caller C ──► A in flight: C waits ┴► A acknowledged ──► SendMessageBatch(B, C) ─► B, C return

* a call that finds its queue's lane idle sends at once (a lone sequential
  producer never waits); calls that arrive while a send to the same queue is in
  flight go out together in the next batch, sent by one of them (threads) or by
  a task of their event loop (coroutines: cancelling a caller never cancels the
  others' send);
* a full batch (``limits.SQS_MAX_BATCH_ENTRIES`` entries or
  ``limits.SQS_MAX_BATCH_BYTES``) goes out at once, even while another is in flight;
* once concurrency was seen (within ``CONCURRENCY_MEMORY_S``), a batch that starts
  alone waits up to ``send_linger_s`` (a few ms) for company, or until it is full;
* coroutines yield one loop iteration before sending, so those started together
  share a batch deterministically;
* every caller returns only once SQS acknowledged its own entry (durability is
  that of SendMessage); an entry SQS refuses raises EnqueueError for its caller
  only, SenderFault=false entries are retried with backoff, and an exception of
  the whole call raises for every caller of that batch — except a request error
  (HTTP 400) of a shared batch, after which each entry is sent alone, so that one
  caller's bad message never fails the others.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import limits
from .calls import Steps, arun, run
from .errors import EnqueueError
from .producer import (
    OutgoingMessage,
    is_request_error,
    published,
    publishing,
    raise_if_missing_queue,
    send_async,
    send_sync,
    sending_batch,
    sending_one,
    unsent,
)
from .sqs import entry_size

if TYPE_CHECKING:
    import asyncio

    from .settings import Settings

logger = logging.getLogger(__name__)

#: How long a sign of concurrent sends (a call that found its queue busy, a batch
#: of more than one) makes later sends linger, seconds.
CONCURRENCY_MEMORY_S = 1.0


@dataclass(eq=False)
class _Call:
    """One caller's message, waiting in its queue's lane until SQS answered for it."""

    message: OutgoingMessage
    size: int
    done: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class Lane:
    """The pure state of one queue's coalescer (no I/O, no locking: the sync and
    async twins of :class:`Sender` hold the lock and do the sending).

    Attributes:
        linger_s: how long a batch that starts alone waits for company once
            concurrency was seen, seconds.
        pending: calls not yet taken into a batch, oldest first.
        in_flight: batches sent and not yet answered.
    """

    linger_s: float
    pending: deque[_Call] = field(default_factory=deque)
    in_flight: int = 0
    gather_until: float | None = None
    concurrent_at: float = -math.inf

    def join(self, call: _Call, now: float) -> None:
        """Queue ``call``; finding the lane busy is a sign of concurrency."""
        if self.in_flight or self.pending:
            self.concurrent_at = now
        self.pending.append(call)

    def take(self, now: float) -> tuple[list[_Call] | None, float | None]:
        """The batch to send now, or ``(None, seconds to wait)`` — ``None`` seconds:
        until a batch in flight is answered.

        A full batch goes at once; a partial one only when nothing is in flight,
        after the linger if concurrency was seen lately.
        """
        if not self.pending:
            return None, None
        batch: list[_Call] = []
        size = 0
        for call in self.pending:
            if len(batch) == limits.SQS_MAX_BATCH_ENTRIES or (
                batch and size + call.size > limits.SQS_MAX_BATCH_BYTES
            ):
                break
            batch.append(call)
            size += call.size
        full = len(batch) == limits.SQS_MAX_BATCH_ENTRIES or len(batch) < len(self.pending)
        if not full:
            if self.in_flight:
                return None, None
            recent = now - self.concurrent_at < CONCURRENCY_MEMORY_S
            if self.gather_until is None and self.linger_s > 0 and recent:
                self.gather_until = now + self.linger_s
            if self.gather_until is not None and now < self.gather_until:
                return None, self.gather_until - now
        self.gather_until = None
        for _ in batch:
            self.pending.popleft()
        if len(batch) > 1:
            self.concurrent_at = now
        self.in_flight += 1
        return batch, None

    def abandon(self, call: _Call) -> None:
        """Drop ``call`` if no batch has taken it yet (its caller gave up)."""
        if call in self.pending:
            self.pending.remove(call)

    def finish(self, batch: list[_Call], errors: Sequence[BaseException | None]) -> None:
        """Record the answer for every call of a batch taken with :meth:`take`."""
        self.in_flight -= 1
        for call, error in zip(batch, errors, strict=True):
            call.error = error
            call.done = True


class Sender:
    """Sends single task calls, coalescing concurrent ones into SendMessageBatch
    calls per queue (see the module docstring). One per :class:`~sqsq.App`;
    thread-safe, and usable from any number of event loops.

    Args:
        clients: the App's client factory.
        directory: the App's queue-URL directory.
        settings: the App's settings (``coalesce_sends``, ``send_linger_s``).
    """

    def __init__(self, clients: Any, directory: Any, settings: Settings) -> None:
        self.clients = clients
        self.directory = directory
        self.settings = settings
        self._lock = threading.Lock()
        self._lanes: dict[str, tuple[Lane, threading.Condition]] = {}
        self._alanes: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[Lane, _Wakeup]]
        ] = weakref.WeakKeyDictionary()
        self._sending: set[asyncio.Future[None]] = set()  # batches in flight (asyncio)

    def _call(self, message: OutgoingMessage) -> _Call:
        return _Call(message, entry_size(message.entry("0")))

    # --- threads ---------------------------------------------------------------------

    def send(self, message: OutgoingMessage) -> None:
        """Send one message; return once SQS acknowledged it.

        Raises:
            EnqueueError: SQS refused this message.
            ConfigurationError: the queue does not exist.
            botocore errors of the call that carried it (after botocore's retries).
        """
        if not self.settings.coalesce_sends:
            send_sync(self.clients, self.directory, [message])
            return
        publishing([message])  # in the caller's thread (the batch may go out from another)
        with self._lock:
            lane, cond = self._lanes.get(message.queue_name) or self._lanes.setdefault(
                message.queue_name, (Lane(self.settings.send_linger_s), threading.Condition())
            )
        call = self._call(message)
        with cond:
            lane.join(call, time.monotonic())
            cond.notify_all()  # a lingering batch may be full now
            try:
                while not call.done:
                    batch, wait_s = lane.take(time.monotonic())
                    if batch is None:
                        cond.wait(wait_s)
                        continue
                    cond.release()
                    errors: list[BaseException | None] = []
                    try:
                        errors = self._send_batch([c.message for c in batch])
                    except BaseException as exc:  # KeyboardInterrupt: no waiter may hang
                        errors = [exc] * len(batch)
                        raise
                    finally:
                        cond.acquire()
                        lane.finish(batch, errors)
                        cond.notify_all()
            except BaseException:
                lane.abandon(call)  # interrupted before its batch was taken: never sent
                raise
        if call.error is not None:
            unsent([message], call.error)
            raise call.error
        published([message])

    def _send_batch(self, messages: list[OutgoingMessage]) -> list[BaseException | None]:
        """Send one coalesced batch; the error of each message (None: acknowledged)."""
        return run(_batch(messages, self.directory), self.clients, self.directory)

    # --- asyncio ---------------------------------------------------------------------

    async def asend(self, message: OutgoingMessage) -> None:
        """Asyncio twin of :meth:`send` (aiobotocore); coalesces the coroutines of
        one event loop."""
        import asyncio

        if not self.settings.coalesce_sends:
            await send_async(self.clients, self.directory, [message])
            return
        publishing([message])
        loop = asyncio.get_running_loop()
        lanes = self._alanes.setdefault(loop, {})
        lane, wakeup = lanes.get(message.queue_name) or lanes.setdefault(
            message.queue_name, (Lane(self.settings.send_linger_s), _Wakeup())
        )
        call = self._call(message)
        lane.join(call, time.monotonic())
        wakeup.notify()
        try:
            await asyncio.sleep(0)  # coroutines started together join this batch
            while not call.done:
                batch, wait_s = lane.take(time.monotonic())
                if batch is None:
                    await wakeup.wait(wait_s)
                    continue
                # The batch belongs to the lane, not to this caller: cancelling
                # this coroutine must not cancel the other callers' send.
                sending = asyncio.ensure_future(self._asend_and_finish(lane, wakeup, batch))
                self._sending.add(sending)
                sending.add_done_callback(self._sending.discard)
        except BaseException:
            lane.abandon(call)  # cancelled before its batch was taken: never sent
            raise
        if call.error is not None:
            unsent([message], call.error)
            raise call.error
        published([message])

    async def _asend_and_finish(self, lane: Lane, wakeup: _Wakeup, batch: list[_Call]) -> None:
        errors: list[BaseException | None] = []
        try:
            errors = await self._asend_batch([c.message for c in batch])
        except BaseException as exc:  # the loop is closing: no caller may hang
            errors = [exc] * len(batch)
            raise
        finally:
            lane.finish(batch, errors)
            wakeup.notify()

    async def _asend_batch(self, messages: list[OutgoingMessage]) -> list[BaseException | None]:
        return await arun(_batch(messages, self.directory), self.clients, self.directory)


class _Wakeup:
    """Wakes the coroutines waiting on one lane (an asyncio.Event renewed per change)."""

    def __init__(self) -> None:
        import asyncio

        self._event = asyncio.Event()

    def notify(self) -> None:
        import asyncio

        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout_s: float | None) -> None:
        import asyncio

        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            pass


def _error_of(messages: Sequence[OutgoingMessage], directory: Any, exc: Exception) -> Exception:
    """The error to raise for ``messages`` after ``exc`` (a missing queue named clearly)."""
    try:
        raise_if_missing_queue(directory, messages, exc)
    except Exception as clear:
        return clear
    return exc


def _refusals(
    messages: list[OutgoingMessage], refused: dict[str, str]
) -> list[BaseException | None]:
    errors: list[BaseException | None] = []
    for i, message in enumerate(messages):
        reason = refused.get(str(i))
        errors.append(
            None
            if reason is None
            else EnqueueError(
                f"task {message.task_name} ({message.task_id}) was not enqueued: {reason}",
                failed=[(message.task_id, reason)],
            )
        )
    return errors


def _batch(messages: list[OutgoingMessage], directory: Any) -> Steps[list[BaseException | None]]:
    """The calls of one coalesced batch (see :mod:`sqsq.calls`): SendMessage for one
    message, SendMessageBatch for more — each sent alone after a request error of
    the batch; returns the error of each message (None: acknowledged)."""
    try:
        if len(messages) == 1:
            yield from sending_one(messages[0])
            return [None]
        batch = {str(i): m for i, m in enumerate(messages)}
        return _refusals(messages, (yield from sending_batch(messages[0].queue_name, batch)))
    except Exception as exc:
        if not (len(messages) > 1 and is_request_error(exc)):
            return [_error_of(messages, directory, exc)] * len(messages)
        logger.warning("a shared SendMessageBatch was refused (%s); sending alone", exc)
    errors: list[BaseException | None] = []
    for message in messages:
        try:
            yield from sending_one(message)
            errors.append(None)
        except Exception as exc:
            errors.append(_error_of([message], directory, exc))
    return errors
