"""The long-poll worker: an asyncio loop on aiobotocore.

::

    receive loop (one per queue) ── ReceiveMessage(MaxNumberOfMessages ≤ free slots,
         │                          WaitTimeSeconds ≤ 20, all attributes)
         ├── prepare every message (execution core), one BatchGetItem for revocations
         ▼
    one asyncio task per message ── claim its idempotency key, then run: ``async def``
         │                          on the loop, sync functions in the thread or
         │                          process pool, under the task's time limit
         ▼
    settler ── outcomes that finish together: BatchWriteItem, DLQ copies, then
               DeleteMessageBatch / ChangeMessageVisibilityBatch (settle.py)

    heartbeat ── ChangeMessageVisibilityBatch for every held message whose lease
                 is half gone (lease.py), and the idempotency leases alongside

Never more messages in hand than slots (``concurrency``). ``burst`` exits once a
receive on every queue came back empty and nothing is in hand.

Shutdown: the first SIGTERM/SIGINT stops receiving at once — no new poll
starts, and a long poll already open is let return (it cannot be withdrawn from
SQS) — and messages received but not started are released (visibility 0);
running tasks get ``grace_s`` seconds, after which their messages are released
too; exit code 0. A second
signal exits at once (:data:`EXIT_COLD_SHUTDOWN`). AWS errors are logged and
retried with capped exponential backoff, so an endpoint that is down for a while
does not crash the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from . import limits
from .delivery import Delivery
from .errors import ConfigurationError, TimeLimitExceeded
from .execution import FINAL_KINDS, CallResult, Executor, Outcome, OutcomeKind, Prepared, classify
from .lease import LeaseTable
from .retry import full_jitter_s
from .settle import Settlement, asettle
from .sqs import RECEIVE_ATTRIBUTES, chunks

if TYPE_CHECKING:
    from .app import App
    from .pool import ProcessPool

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
#: Attempts at settling an outcome while AWS errors persist (the lease is kept).
SETTLE_ATTEMPTS = 8
#: Longest pause between retries of AWS calls that keep failing, seconds.
MAX_ERROR_BACKOFF_S = 30.0
#: Long-poll wait in burst mode, seconds (long polling asks every SQS server).
BURST_WAIT_TIME_S = 1
#: Default seconds running tasks get after SIGTERM (under ECS's 30 s stopTimeout).
DEFAULT_GRACE_S = 25.0

_COUNTER = {
    OutcomeKind.SUCCESS: "succeeded",
    OutcomeKind.FAILURE: "failed",
    OutcomeKind.DEAD_LETTER: "dead_lettered",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.REVOKED: "revoked",
    OutcomeKind.DEFER: "deferred",
    OutcomeKind.RELEASE: "released",
    OutcomeKind.RESEND: "resent",
}


def _is_fatal(exc: Exception) -> bool:
    """Errors no retry can fix at startup: no credentials or region, access denied,
    bad request (4xx other than throttling)."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, NoCredentialsError | NoRegionError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        return 400 <= int(status) < 500 and "Throttl" not in code and status != 429
    return False


def _backoff_s(errors: int) -> float:
    return full_jitter_s(errors, base_s=0.5, cap_s=MAX_ERROR_BACKOFF_S)


class Worker:
    """Runs an App's tasks from SQS.

    Args:
        app: the App.
        queues: logical queues to consume (default: every queue the app uses).
        concurrency: tasks run at once, and messages held at most (≥ 1).
        burst: exit when every queue is empty and nothing is in hand.
        wait_time_s: long-polling wait, seconds (≤ 20, ``limits.SQS_MAX_WAIT_TIME_S``);
            default: the app's ``wait_time_s``.
        pool: ``"threads"`` (default) or ``"processes"`` for sync functions.
        app_path: ``module:attribute`` of the app (needed by the process pool).
        max_tasks_per_child: with processes, replace a child after this many tasks.
        grace_s: seconds running tasks get after the first shutdown signal.

    Raises:
        ConfigurationError: bad options.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: list[str] | None = None,
        concurrency: int = 10,
        burst: bool = False,
        wait_time_s: float | None = None,
        pool: Literal["threads", "processes"] = "threads",
        app_path: str | None = None,
        max_tasks_per_child: int = 0,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        if pool == "processes" and not app_path:
            raise ConfigurationError("the process pool needs the app's 'module:attribute' path")
        if pool not in ("threads", "processes"):
            raise ConfigurationError(f"pool must be 'threads' or 'processes', got {pool!r}")
        self.app = app
        self.queues = queues or app.queues()
        unknown = [q for q in self.queues if q not in app.queues()]
        if unknown:
            logger.warning("queues %s have no registered task in this app", unknown)
        self.concurrency = concurrency
        self.burst = burst
        wait = app.settings.wait_time_s if wait_time_s is None else wait_time_s
        self.wait_time_s = int(min(wait, limits.SQS_MAX_WAIT_TIME_S))
        if burst:
            self.wait_time_s = min(self.wait_time_s, BURST_WAIT_TIME_S) or BURST_WAIT_TIME_S
        self.pool_kind = pool
        self.app_path = app_path
        self.max_tasks_per_child = max_tasks_per_child
        self.grace_s = grace_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.executor = Executor(app, self.worker_id)
        self.counters: Counter[str] = Counter()
        self.leases = LeaseTable()
        self._held = 0  # messages received and not yet settled (or given up)
        self._visibility: dict[str, float] = {}
        self._slot_freed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._outcome_ready: asyncio.Event | None = None
        self._signals = 0
        self._empty: dict[str, bool] = {}
        self._running: dict[asyncio.Task[Any], list[Delivery]] = {}  # chain → its messages
        self._pushed: set[str] = set()  # receipt handles with an outcome waiting to settle
        self._released: set[str] = set()  # receipt handles given back at shutdown
        self._outcomes: list[tuple[Outcome, int]] = []  # (outcome, settle attempts so far)
        self._processes: ProcessPool | None = None
        self._closing = False
        self._retrying = 0  # outcomes waiting on a timer to be settled again
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
        self.started_monotonic = time.monotonic()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        code = EXIT_OK
        try:
            urls: dict[str, str] = {}
            for queue in self.queues:
                name = self.app.queue_name(queue)
                urls[queue] = await self._startup_call(self.app.directory.aurl, name)
                settings = await self._startup_call(self.app.directory.asettings, name)
                self._visibility[queue] = settings.visibility_timeout_s
            self._start_pool()
            logger.info(
                "worker %s consuming %s (concurrency %d, %s pool%s)",
                self.worker_id,
                ", ".join(self.app.queue_name(q) for q in self.queues),
                self.concurrency,
                self.pool_kind,
                ", burst" if self.burst else "",
                extra={"worker": self.worker_id, "queues": self.queues},
            )
            settler = asyncio.create_task(self._settle_loop(), name="sqsq-settler")
            heartbeat = asyncio.create_task(self._heartbeat_loop(), name="sqsq-heartbeat")
            receivers = [
                asyncio.create_task(self._receive_loop(q, url), name=f"sqsq-receive-{q}")
                for q, url in urls.items()
            ]
            await self._stopping.wait()
            # A long poll cannot be withdrawn: SQS would hand messages to a closed
            # connection and hide them for a whole visibility timeout. Let open
            # polls return (≤ wait_time_s) and release what they bring.
            _, polling = await asyncio.wait(receivers, timeout=self.wait_time_s + 5)
            for receiver in polling:
                receiver.cancel()
            await asyncio.gather(*receivers, return_exceptions=True)
            await self._drain_running()
            self._closing = True
            self._outcome_ready.set()
            await settler
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        except ConfigurationError as exc:
            logger.error("%s", exc)
            code = EXIT_USAGE
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if self._processes is not None:
                self._processes.close(kill=True)
            await self.app.aclose()
        self._log_summary()
        return code

    async def _startup_call(self, fn: Any, name: str) -> Any:
        """Resolve a queue at startup, riding out a missing endpoint; a missing
        queue is a configuration error."""
        errors = 0
        while True:
            try:
                return await fn(name)
            except ConfigurationError:
                raise
            except Exception as exc:
                if _is_fatal(exc):
                    raise ConfigurationError(f"cannot use SQS queue {name}: {exc}") from None
                errors += 1
                assert self._stopping is not None
                if self._stopping.is_set():
                    raise ConfigurationError(f"stopped before {name} could be reached") from None
                delay = _backoff_s(errors)
                logger.warning("cannot reach SQS for %s (%s); retrying in %.1fs", name, exc, delay)
                await asyncio.sleep(delay)

    def _start_pool(self) -> None:
        if self.pool_kind == "processes":
            from .pool import ProcessPool

            assert self.app_path is not None
            self._processes = ProcessPool(self.app_path, self.concurrency, self.max_tasks_per_child)

    def _on_signal(self, sig: signal.Signals) -> None:
        assert self._stopping is not None
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "%s: warm shutdown: receiving stopped, %d running task(s) get %.0fs; "
                "signal again to exit now",
                sig.name,
                len(self._running),
                self.grace_s,
            )
            self._stopping.set()
        else:
            logger.warning(
                "%s: cold shutdown; unfinished messages return after their visibility timeout",
                sig.name,
            )
            self._log_summary()
            logging.shutdown()
            os._exit(EXIT_COLD_SHUTDOWN)

    def stop(self) -> None:
        """Ask for a warm shutdown (call from the worker's event loop)."""
        if self._stopping is not None:
            self._stopping.set()

    async def _drain_running(self) -> None:
        """Give running tasks ``grace_s``; release the messages of those still running."""
        if not self._running:
            return
        logger.info("waiting up to %.0fs for %d running task(s)", self.grace_s, len(self._running))
        _, pending = await asyncio.wait(list(self._running), timeout=self.grace_s)
        if not pending:
            return
        logger.warning(
            "%d task(s) still running after %.0fs grace: releasing their messages",
            len(pending),
            self.grace_s,
        )
        for task in pending:
            self._release_unsettled(self._running.pop(task))
            task.cancel()  # async tasks are cancelled; threads/children are abandoned
        if self._processes is None:
            self.counters["abandoned_threads"] += len(pending)
        await asyncio.gather(*pending, return_exceptions=True)

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
        """Wait for free slots; prefer a full receive batch while work is running."""
        assert self._slot_freed is not None and self._stopping is not None
        want = min(limits.SQS_MAX_BATCH_ENTRIES, self.concurrency)
        while not self._stopping.is_set():
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
        return 0

    async def _receive_loop(self, queue: str, url: str) -> None:
        client = await self.app.clients.aclient("sqs")
        assert self._stopping is not None
        errors = 0
        while not self._stopping.is_set():
            free = await self._free_slots()
            if not free:
                return
            try:
                response = await client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=min(free, limits.SQS_MAX_BATCH_ENTRIES),
                    WaitTimeSeconds=self.wait_time_s,
                    **RECEIVE_ATTRIBUTES,
                )
            except Exception as exc:
                errors += 1
                delay = _backoff_s(errors)
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
            if messages:
                self.counters["received"] += len(messages)
                self._held += len(messages)
                deliveries = [Delivery.from_sqs(m, queue, url) for m in messages]
                for delivery in deliveries:
                    self.leases.add(delivery, self._visibility[queue], self._visibility[queue])
                if self._stopping.is_set():  # arrived after the signal: give back at once
                    for delivery in deliveries:
                        self._push(Executor.release(delivery))
                else:
                    try:
                        await self._dispatch(deliveries)
                    except Exception:  # a bug: give the messages back rather than hold them
                        logger.exception(
                            "dispatching %d messages failed; releasing them", len(deliveries)
                        )
                        for delivery in deliveries:
                            self._push(Executor.release(delivery))
            if self.burst and self._drained():
                assert self._stopping is not None
                self._stopping.set()
                return

    def _drained(self) -> bool:
        return all(self._empty.get(q, False) for q in self.queues) and self._held == 0

    async def _dispatch(self, deliveries: list[Delivery]) -> None:
        prepared = [self.executor.prepare(d) for d in deliveries]
        runnable = [p for p in prepared if isinstance(p, Prepared)]
        revoked: set[str] = set()
        if runnable and self.app.settings.check_revocations:
            try:
                revoked = await self.app.results.arevoked(p.envelope.task_id for p in runnable)
            except Exception as exc:  # a revocation check must not stop the work
                logger.warning("revocation check failed (%s); running the tasks", exc)
        # FIFO: the messages of one group run one after another, in order.
        chains: dict[str, list[Prepared | Outcome]] = {}
        for item in prepared:
            delivery = item.delivery
            if isinstance(item, Prepared):
                lease = self.leases.get(delivery)
                if lease is not None and item.task.visibility_timeout_s:
                    lease.lease_s = item.task.visibility_timeout_s
            key = delivery.message_group_id or delivery.receipt_handle
            chains.setdefault(key, []).append(item)
        for chain in chains.values():
            task = asyncio.create_task(self._run_chain(chain, revoked))
            self._running[task] = [item.delivery for item in chain]
            task.add_done_callback(self._done)

    async def _run_chain(self, chain: list[Prepared | Outcome], revoked: set[str]) -> None:
        """Run items in order; once one is not final (retry, defer, release), the rest
        of its FIFO group is released unrun, so the group's order holds."""
        blocked = False
        for item in chain:
            if isinstance(item, Outcome):
                outcome = item
            elif blocked:
                outcome = Executor.release(item.delivery, item.envelope.task_id)
            else:
                outcome = await self._process(item, item.envelope.task_id in revoked)
            if item.delivery.receipt_handle not in self._released:
                self._push(outcome)
            blocked = blocked or outcome.kind not in FINAL_KINDS

    def _done(self, task: asyncio.Task[Any]) -> None:
        deliveries = self._running.pop(task, [])
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal error while running a task", exc_info=task.exception())
            self._release_unsettled(deliveries)

    def _release_unsettled(self, deliveries: list[Delivery]) -> None:
        """Give back every message of ``deliveries`` that has no outcome yet."""
        for delivery in deliveries:
            if delivery.receipt_handle not in self._pushed:
                self._released.add(delivery.receipt_handle)
                self._push(Executor.release(delivery))

    # --- running ----------------------------------------------------------------------

    async def _process(self, prepared: Prepared, revoked: bool) -> Outcome:
        assert self._stopping is not None
        if revoked:
            return self.executor.revoked(prepared)
        if self._stopping.is_set():
            return Executor.release(prepared.delivery, prepared.envelope.task_id)
        return await self._claim(prepared) or await self._call(prepared)

    async def _claim(self, prepared: Prepared) -> Outcome | None:
        """Claim the idempotency key; an outcome when the body must not run now."""
        if prepared.idempotency_pk is None:
            return None
        task, envelope = prepared.task, prepared.envelope
        lease = self.leases.get(prepared.delivery)
        lease_s = lease.lease_s if lease else self._visibility[prepared.delivery.queue]
        try:
            claim = await self.app.idempotency.aclaim(
                prepared.idempotency_pk, envelope.task_id, lease_s, task.idempotency_ttl_s
            )
        except Exception as exc:
            logger.warning(
                "idempotency claim for %s failed (%s); retrying later", envelope.task_id, exc
            )
            return self.executor.defer(prepared, min(lease_s, 30.0))
        if claim.status == "COMPLETED":
            return self.executor.duplicate(prepared, claim)
        if claim.status == "IN_PROGRESS":
            return self.executor.defer(prepared, claim.lease_remaining_s)
        prepared.claimed = True
        if lease is not None:
            lease.idempotency_pk, lease.owner = prepared.idempotency_pk, envelope.task_id
        return None

    async def _call(self, prepared: Prepared) -> Outcome:
        task = prepared.task
        if task.is_async:
            return await self.executor.acall(prepared)
        limit = self.executor.time_limit_s(prepared)
        started_at = datetime.now(UTC)
        start = time.perf_counter()
        if self._processes is not None:
            return await self._call_in_child(prepared, limit, started_at, start)
        future = self._start_thread(prepared)
        try:
            invocation = await asyncio.wait_for(asyncio.shield(future), timeout=limit)
        except TimeoutError:
            self.counters["abandoned_threads"] += 1
            logger.warning(
                "task %s[%s] passed its %g s time limit; its thread cannot be killed and is "
                "abandoned (use --pool processes to kill such tasks)",
                task.name,
                prepared.envelope.task_id,
                limit,
            )
            error = TimeLimitExceeded(f"{task.name} ran past its time limit of {limit:g} s")
            return self.executor.finish(
                prepared, started_at, time.perf_counter() - start, classify(task, exc=error)
            )
        return self.executor.finish(prepared, *invocation)

    def _start_thread(self, prepared: Prepared) -> asyncio.Future[Any]:
        """Run a sync task function in a thread of its own, started now.

        One daemon thread per task (slots bound how many run): a thread abandoned
        at its time limit holds no pool slot that a later task would queue behind,
        and never keeps the process from exiting.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def deliver(result: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def target() -> None:
            try:
                result, error = self.executor.invoke(prepared), None
            except BaseException as exc:  # invoke() classifies task errors; this is ours
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # loop closed: an abandoned task ended late
                loop.call_soon_threadsafe(deliver, result, error)

        thread = threading.Thread(
            target=target, name=f"sqsq-task-{prepared.envelope.task_id[:8]}", daemon=True
        )
        thread.start()
        return future

    async def _call_in_child(
        self, prepared: Prepared, limit: float, started_at: datetime, start: float
    ) -> Outcome:
        assert self._processes is not None
        task, envelope, delivery = prepared.task, prepared.envelope, prepared.delivery
        request = {
            "id": envelope.task_id,
            "task": task.name,
            "attempt": delivery.receive_count,
            "retries": delivery.receive_count - 1,
            "queue": delivery.queue,
            "idempotency_key": envelope.idempotency_key,
            "message_id": delivery.message_id,
        }  # args/kwargs: the child validates the envelope's own and fills them in
        future = self._processes.submit(task.name, envelope.args, envelope.kwargs, request, limit)
        try:
            result: CallResult = await asyncio.wrap_future(future)
        except TimeoutError:
            error = TimeLimitExceeded(
                f"{task.name} ran past its time limit of {limit:g} s; its process was killed"
            )
            result = classify(task, exc=error)
        except Exception as exc:  # the child died (pebble.ProcessExpired) or could not start
            result = CallResult(
                error_type=type(exc).__qualname__, error_message=str(exc), final=True
            )
        return self.executor.finish(prepared, started_at, time.perf_counter() - start, result)

    # --- heartbeat --------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        client = await self.app.clients.aclient("sqs")
        while True:
            await asyncio.sleep(self.leases.tick_s())
            now = time.monotonic()
            due = self.leases.due(now)
            if not due:
                continue
            for url, entries in self.leases.visibility_entries(due, now).items():
                for chunk in chunks(entries):
                    try:
                        response = await client.change_message_visibility_batch(
                            QueueUrl=url, Entries=list(chunk)
                        )
                    except Exception as exc:
                        logger.warning("extending %d leases failed: %s", len(chunk), exc)
                        continue
                    self.counters["leases_extended"] += LeaseTable.extended(
                        due, list(chunk), response, now
                    )
            for lease in due:
                if lease.idempotency_pk and lease.owner:
                    with contextlib.suppress(Exception):
                        await self.app.idempotency.aextend(
                            lease.idempotency_pk, lease.owner, lease.lease_s
                        )

    # --- settling -----------------------------------------------------------------------

    def _push(self, outcome: Outcome, attempts: int = 0) -> None:
        self._pushed.add(outcome.delivery.receipt_handle)
        self._outcomes.append((outcome, attempts))
        assert self._outcome_ready is not None
        self._outcome_ready.set()

    async def _settle_loop(self) -> None:
        assert self._outcome_ready is not None
        while not (self._closing and not self._outcomes and not self._retrying):
            await self._outcome_ready.wait()
            if len(self._outcomes) < SETTLE_BATCH and self._running and not self._closing:
                await asyncio.sleep(SETTLE_LINGER_S)
            self._outcome_ready.clear()
            try:
                await self._flush()
            except Exception:
                logger.exception("settling failed unexpectedly")

    async def _flush(self) -> None:
        while self._outcomes:
            batch = self._outcomes[:SETTLE_BATCH]
            del self._outcomes[:SETTLE_BATCH]
            attempts = {id(o): n for o, n in batch}
            try:
                settlement = await asettle(self.app, [o for o, _ in batch])
            except Exception:  # a bug, not AWS (asettle absorbs those): keep the slots honest
                logger.exception("settling %d outcomes failed unexpectedly; retrying", len(batch))
                settlement = Settlement(kept=[o for o, _ in batch])
            finished = [o for o in settlement.done if o not in settlement.sqs_failed]
            for outcome in finished:
                self.counters[_COUNTER[outcome.kind]] += 1
            self.counters["sqs_errors"] += len(settlement.sqs_failed)
            for outcome in settlement.kept + settlement.sqs_failed:
                tries = attempts[id(outcome)] + 1
                if tries < SETTLE_ATTEMPTS and not self._closing:
                    self._retry_settle(outcome, tries)
                else:
                    logger.error(
                        "giving up settling the outcome of %s (%s); its message returns after "
                        "its visibility timeout",
                        outcome.task_id,
                        "stored" if outcome.stored else "not stored",
                    )
                    self.counters["kept"] += 1
                    finished.append(outcome)
            self._let_go(finished)

    def _retry_settle(self, outcome: Outcome, tries: int) -> None:
        self._retrying += 1

        def again() -> None:
            self._retrying -= 1
            self._push(outcome, tries)

        asyncio.get_running_loop().call_later(_backoff_s(tries), again)

    def _let_go(self, outcomes: list[Outcome]) -> None:
        self.leases.drop(o.delivery for o in outcomes)
        self._pushed.difference_update(o.delivery.receipt_handle for o in outcomes)
        self._held -= len(outcomes)
        assert self._slot_freed is not None
        self._slot_freed.set()
