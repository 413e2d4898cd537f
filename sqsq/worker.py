"""The long-poll worker: an asyncio loop on aiobotocore.

::

    receive loop (one per queue) ── ReceiveMessage(MaxNumberOfMessages ≤ free slots,
         │                          WaitTimeSeconds ≤ 20, all attributes)
         ▼
    one asyncio task per message ── execution core (sync functions in a thread
         │                          pool, ``async def`` on the loop)
         ▼
    settler ── outcomes that finish together: BatchWriteItem, then DLQ copies,
               then DeleteMessageBatch (settle.py)

Never more messages in hand than slots (``concurrency``). ``burst`` exits once a
receive on every queue came back empty and nothing is in flight. SIGTERM/SIGINT
stop receiving and let running tasks finish (warm shutdown); a second signal
exits at once (cold shutdown). AWS errors in the receive loop are logged and
retried with capped exponential backoff, so an endpoint that is down for a while
does not crash the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from . import limits
from .delivery import Delivery
from .errors import ConfigurationError
from .execution import Executor, Outcome, OutcomeKind, Prepared
from .settle import asettle
from .sqs import RECEIVE_ATTRIBUTES

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)

#: Exit codes of ``sqsq worker``.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_COLD_SHUTDOWN = 130

#: Seconds the settler waits for more outcomes before a flush (batching window).
SETTLE_LINGER_S = 0.05
#: Flush as soon as this many outcomes wait (one BatchWriteItem).
SETTLE_BATCH = limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS
#: Longest pause between receive attempts while AWS errors persist, seconds.
MAX_ERROR_BACKOFF_S = 30.0
#: Long-poll wait in burst mode, seconds (long polling asks every SQS server).
BURST_WAIT_TIME_S = 1


class Worker:
    """Runs an App's tasks from SQS.

    Args:
        app: the App.
        queues: logical queues to consume (default: every queue the app uses).
        concurrency: tasks run at once, and messages held at most (≥ 1).
        burst: exit when every queue is empty and nothing is in flight.
        wait_time_s: long-polling wait, seconds (≤ 20, ``limits.SQS_MAX_WAIT_TIME_S``);
            default: the app's ``wait_time_s``.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: list[str] | None = None,
        concurrency: int = 10,
        burst: bool = False,
        wait_time_s: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        self.app = app
        self.queues = queues or app.queues()
        self.concurrency = concurrency
        self.burst = burst
        wait = app.settings.wait_time_s if wait_time_s is None else wait_time_s
        self.wait_time_s = int(min(wait, limits.SQS_MAX_WAIT_TIME_S))
        if burst:
            self.wait_time_s = min(self.wait_time_s, BURST_WAIT_TIME_S) or BURST_WAIT_TIME_S
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.executor = Executor(app, self.worker_id)
        self.counters: Counter[str] = Counter()
        self._held = 0  # messages received and not yet settled
        self._slot_freed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._signals = 0
        self._empty: dict[str, bool] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outcomes: list[Outcome] = []
        self._outcome_ready: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closing = False
        self.started_monotonic = 0.0

    # --- entry point ------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or drained, with ``burst``); returns an exit code."""
        return asyncio.run(self.arun())

    async def arun(self) -> int:
        """Asyncio entry point of :meth:`run`."""
        loop = asyncio.get_running_loop()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._outcome_ready = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sqsq-task")
        self.started_monotonic = time.monotonic()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        code = EXIT_OK
        try:
            urls = {q: await self.app.directory.aurl(self.app.queue_name(q)) for q in self.queues}
            logger.info(
                "worker %s consuming %s (concurrency %d%s)",
                self.worker_id,
                ", ".join(self.app.queue_name(q) for q in self.queues),
                self.concurrency,
                ", burst" if self.burst else "",
                extra={"worker": self.worker_id, "queues": self.queues},
            )
            settler = asyncio.create_task(self._settle_loop(), name="sqsq-settler")
            receivers = [
                asyncio.create_task(self._receive_loop(q, url), name=f"sqsq-receive-{q}")
                for q, url in urls.items()
            ]
            await self._stopping.wait()
            for receiver in receivers:
                receiver.cancel()
            await asyncio.gather(*receivers, return_exceptions=True)
            if self._tasks:
                logger.info("waiting for %d running task(s) to finish", len(self._tasks))
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self._closing = True
            self._outcome_ready.set()
            await settler
        except ConfigurationError as exc:
            logger.error("%s", exc)
            code = EXIT_USAGE
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            self._pool.shutdown(wait=False, cancel_futures=True)
            await self.app.aclose()
        self._log_summary()
        return code

    def _on_signal(self, sig: signal.Signals) -> None:
        assert self._stopping is not None
        self._signals += 1
        if self._signals == 1:
            logger.info("%s: warm shutdown (finishing running tasks); again to exit now", sig.name)
            self._stopping.set()
        else:
            logger.warning("%s: cold shutdown; unfinished messages return after their visibility timeout", sig.name)
            self._log_summary()
            os._exit(EXIT_COLD_SHUTDOWN)

    def stop(self) -> None:
        """Ask for a warm shutdown (thread-safe only from the worker's loop)."""
        if self._stopping is not None:
            self._stopping.set()

    def _log_summary(self) -> None:
        elapsed = time.monotonic() - self.started_monotonic if self.started_monotonic else 0.0
        requests = self.app.clients.counter.snapshot()
        logger.info(
            "worker %s stopped after %.1fs: %s",
            self.worker_id,
            elapsed,
            ", ".join(f"{k}={v}" for k, v in sorted(self.counters.items())) or "no messages",
            extra={
                "event": "worker.stopped",
                "worker": self.worker_id,
                "elapsed_s": round(elapsed, 3),
                "counters": dict(self.counters),
                "requests": requests,
            },
        )

    # --- receiving ------------------------------------------------------------------

    async def _free_slots(self) -> int:
        """Wait for free slots; prefer a full receive batch when work is running."""
        assert self._slot_freed is not None
        want = min(limits.SQS_MAX_BATCH_ENTRIES, self.concurrency)
        while True:
            free = self.concurrency - self._held
            if free >= want or (free > 0 and self._held == 0):
                return free
            self._slot_freed.clear()
            try:
                await asyncio.wait_for(self._slot_freed.wait(), timeout=SETTLE_LINGER_S * 2)
            except TimeoutError:
                free = self.concurrency - self._held
                if free > 0:
                    return free

    async def _receive_loop(self, queue: str, url: str) -> None:
        client = await self.app.clients.aclient("sqs")
        errors = 0
        while True:
            free = await self._free_slots()
            try:
                response = await client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=min(free, limits.SQS_MAX_BATCH_ENTRIES),
                    WaitTimeSeconds=self.wait_time_s,
                    **RECEIVE_ATTRIBUTES,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                errors += 1
                delay = random.uniform(0, min(MAX_ERROR_BACKOFF_S, 0.5 * 2**errors))
                logger.warning(
                    "receive from %s failed (%s: %s); retrying in %.1fs",
                    queue,
                    type(exc).__name__,
                    exc,
                    delay,
                    extra={"queue": queue},
                )
                self.counters["receive_errors"] += 1
                await asyncio.sleep(delay)
                continue
            if errors:
                logger.info("receiving from %s again", queue, extra={"queue": queue})
                errors = 0
            messages = response.get("Messages", [])
            self._empty[queue] = not messages
            self.counters["received"] += len(messages)
            for message in messages:
                self._held += 1
                delivery = Delivery.from_sqs(message, queue, url)
                task = asyncio.create_task(self._process(delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self.burst and self._drained():
                assert self._stopping is not None
                self._stopping.set()
                return

    def _drained(self) -> bool:
        return (
            all(self._empty.get(q, False) for q in self.queues)
            and self._held == 0
            and not self._tasks
        )

    # --- running ----------------------------------------------------------------------

    async def _process(self, delivery: Delivery) -> None:
        prepared = self.executor.prepare(delivery)
        if isinstance(prepared, Prepared):
            if prepared.task.is_async:
                outcome = await self.executor.acall(prepared)
            else:
                loop = asyncio.get_running_loop()
                outcome = await loop.run_in_executor(self._pool, self.executor.call, prepared)
        else:
            outcome = prepared
        self._outcomes.append(outcome)
        assert self._outcome_ready is not None
        self._outcome_ready.set()

    # --- settling -----------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        assert self._outcome_ready is not None
        while not (self._closing and not self._outcomes):
            await self._outcome_ready.wait()
            if len(self._outcomes) < SETTLE_BATCH and self._tasks and not self._closing:
                await asyncio.sleep(SETTLE_LINGER_S)
            self._outcome_ready.clear()
            await self._flush()

    async def _flush(self) -> None:
        while self._outcomes:
            batch = self._outcomes[:SETTLE_BATCH]
            del self._outcomes[:SETTLE_BATCH]
            settlement = await asettle(self.app, batch)
            for outcome in settlement.done:
                self.counters[_COUNTER[outcome.kind]] += 1
            self.counters["kept"] += len(settlement.kept)
            self.counters["delete_failed"] += len(settlement.delete_failed)
            self._held -= len(batch)
            assert self._slot_freed is not None
            self._slot_freed.set()


_COUNTER = {
    OutcomeKind.SUCCESS: "succeeded",
    OutcomeKind.FAILURE: "failed",
    OutcomeKind.DEAD_LETTER: "dead_lettered",
}
