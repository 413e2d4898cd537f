"""The Worker: wires the pipeline, owns the signals, the shutdown deadline and the summary."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from .. import calling, limits, signals
from ..calls import arun
from ..delivery import Delivery
from ..errors import ConfigurationError
from ..execution import Executor
from ..lease import LeaseTable
from ..outcome import Outcome, Prepared
from ..retry import full_jitter_s, is_permanent
from ..sqs import RECEIVE_ATTRIBUTES
from .heartbeat import WorkerHeartbeat
from .inbox import Inbox, WorkItem
from .leaser import Leaser
from .metrics import WorkerMetrics, open_metrics
from .priorities import Mode, Priorities
from .runner import Runner
from .settler import Settler
from .watchdog import LoopWatchdog

if TYPE_CHECKING:
    from ..app import App
    from .processes import ProcessPool
    from .threads import ThreadPool

logger = logging.getLogger(__name__)

#: Exit codes of ``sqsq worker``.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_COLD_SHUTDOWN = 130

#: Longest pause between retries of AWS calls that keep failing, seconds.
MAX_ERROR_BACKOFF_S = 30.0
#: Long-poll wait in burst mode, seconds (long polling asks every SQS server).
BURST_WAIT_TIME_S = 1
#: After the grace deadline, seconds left for releasing and settling what is held.
SETTLE_AFTER_DEADLINE_S = 1.8
#: After the grace deadline, seconds an open long poll may still take to return
#: before it is cancelled. A message released into its queue returns it at once on
#: SQS (moto looks once a second); a cancelled poll may still take a message that
#: becomes visible later, which SQS then hides for its visibility timeout.
POLL_AFTER_DEADLINE_S = 1.2
#: A supervisor's stop timeout must be at least the grace plus this, seconds: the
#: worker exits within grace + 2 s (settling after the deadline, closing clients).
SHUTDOWN_MARGIN_S = 5.0


def _backoff_s(errors: int) -> float:
    return full_jitter_s(errors, base_s=0.5, cap_s=MAX_ERROR_BACKOFF_S)


def _priorities(
    known: list[str], queues: list[str], weights: Mapping[str, int], mode: Mode
) -> Priorities | None:
    """The worker's queue priorities (None unless a weight or strict mode is set);
    ``known``: the queues the app uses."""
    unknown = [q for q in {*weights, *queues} if q not in known]
    if unknown and (weights or mode != "weighted"):
        raise ConfigurationError(
            f"queue priorities name {', '.join(sorted(unknown))}, which no task of the app "
            f"uses (a typo?); the app's queues: {', '.join(known)}"
        )
    weights = {q: w for q, w in weights.items() if q in queues}
    if not weights and mode == "weighted":
        return None
    try:
        return Priorities(queues, weights, mode)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


class Worker:
    """Runs an App's tasks from SQS.

    Args:
        app: the App.
        queues: logical queues to consume (default: every queue the app uses).
        concurrency: tasks run at once (≥ 1); default: the app's ``concurrency`` (10).
        prefetch: messages held ready beyond the running ones (≥ 0); default: the
            app's ``prefetch`` (10).
        burst: exit when every queue is empty and nothing is in hand.
        wait_time_s: long-polling wait, seconds (≤ 20, ``limits.SQS_MAX_WAIT_TIME_S``);
            default: the app's ``wait_time_s``.
        pool: ``"threads"`` (default) or ``"processes"`` for sync functions.
        app_path: ``module:attribute`` of the app (needed by the process pool).
        max_tasks_per_child: with processes, replace a child after this many tasks.
        grace_s: seconds from the first shutdown signal until everything still held
            is released; default: the app's ``shutdown_grace_s`` (25).
        metrics: ``"emf"``, ``"prometheus"`` or ``"off"`` (``worker/metrics.py``);
            default: the app's ``worker_metrics`` (``"off"``).
        metrics_port: the Prometheus endpoint's port; default: the app's
            ``worker_metrics_port`` (9810).
        metrics_interval_s: seconds between EMF writes; default: the app's
            ``worker_metrics_interval_s`` (60).
        weights: queue → weight ≥ 1 for weighted polling (missing: 1); default: the
            app's ``queue_weights``. See ``worker/priorities.py``.
        priority: ``"weighted"`` or ``"strict"``; default: the app's
            ``queue_priority``. Priorities apply once a weight or ``"strict"`` is set
            (and then every queue consumed must be one the app uses).

    Raises:
        ConfigurationError: bad options.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        prefetch: int | None = None,
        burst: bool = False,
        wait_time_s: float | None = None,
        pool: Literal["threads", "processes"] = "threads",
        app_path: str | None = None,
        max_tasks_per_child: int = 0,
        grace_s: float | None = None,
        metrics: Literal["off", "emf", "prometheus"] | None = None,
        metrics_port: int | None = None,
        metrics_interval_s: float | None = None,
        weights: Mapping[str, int] | None = None,
        priority: Mode | None = None,
    ) -> None:
        settings = app.settings
        concurrency = settings.concurrency if concurrency is None else concurrency
        prefetch = settings.prefetch if prefetch is None else prefetch
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        if prefetch < 0:
            raise ConfigurationError(f"prefetch must be >= 0, got {prefetch}")
        if pool not in ("threads", "processes"):
            raise ConfigurationError(f"pool must be 'threads' or 'processes', got {pool!r}")
        if metrics not in (None, "off", "emf", "prometheus"):
            raise ConfigurationError(
                f"metrics must be 'off', 'emf' or 'prometheus', got {metrics!r}"
            )
        if pool == "processes" and not app_path:
            raise ConfigurationError("the process pool needs the app's 'module:attribute' path")
        self.app = app
        self.queues = queues or app.queues()
        unknown = [q for q in self.queues if q not in app.queues()]
        if unknown:
            logger.warning("queues %s have no registered task in this app", unknown)
        self.priorities = _priorities(
            app.queues(),
            self.queues,
            settings.queue_weights if weights is None else weights,
            settings.queue_priority if priority is None else priority,
        )
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.burst = burst
        wait = settings.wait_time_s if wait_time_s is None else wait_time_s
        self.wait_time_s = int(min(wait, limits.SQS_MAX_WAIT_TIME_S))
        if burst:
            self.wait_time_s = min(self.wait_time_s, BURST_WAIT_TIME_S) or BURST_WAIT_TIME_S
        self.pool_kind = pool
        self.app_path = app_path
        self.max_tasks_per_child = max_tasks_per_child
        self.grace_s = settings.shutdown_grace_s if grace_s is None else grace_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.executor = Executor(app, self.worker_id)
        self.counters: Counter[str] = Counter()
        self.leases = LeaseTable()
        self.started_monotonic = 0.0
        self._visibility: dict[str, float] = {}
        self._empty: dict[str, bool] = {}
        self._running: dict[asyncio.Task[None], WorkItem] = {}
        self._signals = 0
        self._stop_at: float | None = None
        self._stopping: asyncio.Event | None = None
        self._threads: ThreadPool | None = None
        self._processes: ProcessPool | None = None
        self._inbox: Inbox | None = None
        self._settler: Settler | None = None
        self._runner: Runner | None = None
        self.metrics_kind = settings.worker_metrics if metrics is None else metrics
        self.metrics_port = settings.worker_metrics_port if metrics_port is None else metrics_port
        self.metrics_interval_s = (
            settings.worker_metrics_interval_s if metrics_interval_s is None else metrics_interval_s
        )
        self.metrics: WorkerMetrics | None = None

    # --- entry point ------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or drained, with ``burst``); returns an exit code."""
        return asyncio.run(self.arun())

    async def arun(self) -> int:
        """Asyncio entry point of :meth:`run`."""
        loop = asyncio.get_running_loop()
        self._stopping = stopping = asyncio.Event()
        self.started_monotonic = time.monotonic()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        code = EXIT_OK
        leaser: Leaser | None = None
        watchdog: LoopWatchdog | None = None
        heartbeat: WorkerHeartbeat | None = None
        try:
            urls: dict[str, str] = {}
            for queue in self.queues:
                name = self.app.queue_name(queue)
                what = f"SQS queue {name}"
                urls[queue] = await self._startup_call(self.app.directory.aurl, name, what)
                queue_settings = await self._startup_call(self.app.directory.asettings, name, what)
                self._visibility[queue] = queue_settings.visibility_timeout_s
            if self.app.settings.signing_key:  # read once, before any message is received
                await self._startup_call(
                    asyncio.to_thread, lambda: self.app.signing_key, "the signing key"
                )
            self.metrics = open_metrics(  # per-task metrics of what is settled (_let_go)
                self.metrics_kind,
                app_name=self.app.name,
                worker_id=self.worker_id,
                tasks=self.app.tasks,
                interval_s=self.metrics_interval_s,
                port=self.metrics_port,
                address=self.app.settings.worker_metrics_address,
                busy=lambda: len(self._running),
            )
            if self.metrics is not None:
                self.metrics.start()
            self._start_pools()
            inbox = self._inbox = Inbox(
                self.concurrency,
                self.prefetch,
                self._settle_backlog,
                self._paused_s,
                self.priorities,
            )
            settler = self._settler = Settler(
                self.app,
                upstream_busy=lambda: inbox.busy,
                let_go=self._let_go,
                counters=self.counters,
                linger_s=self.app.settings.settle_linger_s,
            )
            settings = self.app.settings
            self._runner = Runner(
                self.app,
                self.executor,
                self.leases,
                threads=self._threads,
                processes=self._processes,
                revocations=self.app.revocations if settings.check_revocations else None,
                emit=self._emit,
                stopping=stopping,
                visibility=self._visibility,
                counters=self.counters,
            )
            logger.info(
                "worker %s consuming %s (concurrency %d, prefetch %d, %s pool%s%s)",
                self.worker_id,
                ", ".join(self.app.queue_name(q) for q in self.queues),
                self.concurrency,
                self.prefetch,
                self.pool_kind,
                ", burst" if self.burst else "",
                f", priority {self.priorities.describe()}" if self.priorities else "",
                extra={"worker": self.worker_id, "queues": self.queues},
            )
            settling = asyncio.create_task(settler.run(), name="sqsq-settler")
            # threads: a task that blocks the loop must not starve the leases
            leaser = Leaser(self.app, self.leases, self.counters)
            leaser.start()
            watchdog = LoopWatchdog(self.app)
            beating = asyncio.create_task(watchdog.beat(), name="sqsq-watchdog-beat")
            watchdog.start()
            if settings.heartbeat_interval_s > 0:  # for `sqsq status` (heartbeat.py)
                heartbeat = WorkerHeartbeat(
                    self.app,
                    worker_id=self.worker_id,
                    queues=[self.app.queue_name(q) for q in self.queues],
                    concurrency=self.concurrency,
                    pool=self.pool_kind,
                    interval_s=settings.heartbeat_interval_s,
                    busy=lambda: len(self._running),
                    counters=self.counters,
                )
                heartbeat.start()
            dispatching = asyncio.create_task(self._dispatch(), name="sqsq-dispatcher")
            receivers = [
                asyncio.create_task(self._receive(q, url), name=f"sqsq-receive-{q}")
                for q, url in urls.items()
            ]
            await stopping.wait()
            await self._shutdown(receivers, dispatching, settling)
            await asyncio.to_thread(leaser.stop)  # everything held is let go by now
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
        except ConfigurationError as exc:
            logger.error("%s", exc)
            code = EXIT_USAGE
        finally:
            if heartbeat is not None:
                await heartbeat.stop()  # a clean exit: the item goes
            if self.metrics is not None:
                await self.metrics.close()  # EMF: the last interval's lines
            if leaser is not None:
                leaser.stop(timeout_s=0)
            if watchdog is not None:
                watchdog.stop()
                self.counters["loop_blocked"] += watchdog.blocks
            for sig in installed:
                loop.remove_signal_handler(sig)
            if self._processes is not None:
                self._processes.close(kill=True)
            if self._threads is not None:
                self._threads.close()
            signals.worker_shutdown.send(self)  # a receiver that raises is logged
            await self.app.aclose()
        self._log_summary()
        return code

    async def _startup_call(self, fn: Any, arg: Any, what: str) -> Any:
        """``await fn(arg)`` at startup (resolving a queue, reading the signing key),
        riding out an unreachable endpoint with jittered backoff — nothing is
        received meanwhile; an error no retry can fix (a missing queue, secret or
        parameter, access denied) is a configuration error."""
        errors = 0
        while True:
            try:
                return await fn(arg)
            except ConfigurationError:
                raise
            except Exception as exc:
                if is_permanent(exc):
                    raise ConfigurationError(f"cannot use {what}: {exc}") from None
                errors += 1
                assert self._stopping is not None
                if self._stopping.is_set():
                    raise ConfigurationError(f"stopped before {what} could be reached") from None
                delay = _backoff_s(errors)
                logger.warning("cannot reach %s (%s); retrying in %.1fs", what, exc, delay)
                await self._sleep(delay)

    def _start_pools(self) -> None:
        if self.pool_kind == "processes":
            from .processes import ProcessPool

            assert self.app_path is not None
            self._processes = ProcessPool(self.app_path, self.concurrency, self.max_tasks_per_child)
        else:
            from .threads import ThreadPool

            self._threads = ThreadPool(self.concurrency)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at a shutdown signal."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # --- signals and shutdown ---------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "%s: warm shutdown: receiving stopped; %d running task(s) get %.0fs, then "
                "what is still held is released; signal again to exit now",
                sig.name,
                len(self._running),
                self.grace_s,
            )
            self.stop()
        else:
            logger.warning(
                "%s: cold shutdown; unfinished messages return after their visibility timeout",
                sig.name,
            )
            self._log_summary()
            if self.metrics is not None:
                self.metrics.flush()
            logging.shutdown()
            os._exit(EXIT_COLD_SHUTDOWN)

    def stop(self) -> None:
        """Ask for a warm shutdown (call from the worker's event loop). The grace
        period counts from the first call."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        if self._stopping is not None:
            self._stopping.set()

    async def _shutdown(
        self,
        receivers: list[asyncio.Task[None]],
        dispatching: asyncio.Task[None],
        settling: asyncio.Task[None],
    ) -> None:
        """Release what is held within the grace deadline, then settle and return.

        1. no new receive, no new start; messages received but not started are
           released at once (visibility 0);
        2. an open long poll may return until the deadline (SQS cannot withdraw
           it), and what it brings is released at once; running tasks have until
           the deadline;
        3. at the deadline the messages of tasks still running are released; a
           poll still open gets :data:`POLL_AFTER_DEADLINE_S` more (a released
           message returns it at once) and is then cancelled;
        4. the settler flushes what is left, until ``SETTLE_AFTER_DEADLINE_S``
           past the deadline.
        """
        assert self._inbox is not None and self._runner is not None
        assert self._settler is not None
        deadline = (self._stop_at or time.monotonic()) + self.grace_s
        inbox, runner, settler = self._inbox, self._runner, self._settler
        inbox.close()
        for work in inbox.drain_ready():
            runner.release(work)
        dispatching.cancel()
        await asyncio.gather(dispatching, return_exceptions=True)
        waiting = [r for r in receivers if not r.done()] + list(self._running)
        if self._running:
            logger.info(
                "waiting up to %.1fs for %d running task(s)",
                self._left(deadline),
                len(self._running),
            )
        if waiting:
            await asyncio.wait(waiting, timeout=self._left(deadline))
        settler.hurry()
        if self._running:
            pending = list(self._running)
            logger.warning(
                "%d task(s) still running at the grace deadline: releasing their messages",
                len(pending),
            )
            for task in pending:
                runner.release(self._running[task])
                task.cancel()  # async tasks are cancelled; threads abandoned; children killed
            await asyncio.gather(*pending, return_exceptions=True)
        end = deadline + SETTLE_AFTER_DEADLINE_S
        open_polls = [r for r in receivers if not r.done()]
        if open_polls:
            _, still_open = await asyncio.wait(
                open_polls, timeout=min(POLL_AFTER_DEADLINE_S, self._left(end))
            )
            for receiver in still_open:
                receiver.cancel()
            if still_open:
                logger.info(
                    "%d empty long poll(s) still open at the grace deadline: cancelled",
                    len(still_open),
                )
        await asyncio.gather(*receivers, return_exceptions=True)
        settler.close()
        try:
            await asyncio.wait_for(asyncio.shield(settling), timeout=max(0.2, self._left(end)))
        except TimeoutError:
            logger.error(
                "%d outcome(s) still unsettled at shutdown; their messages return after their "
                "visibility timeout",
                settler.backlog,
            )
            settling.cancel()
            await asyncio.gather(settling, return_exceptions=True)

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())

    def _log_summary(self) -> None:
        elapsed = time.monotonic() - self.started_monotonic if self.started_monotonic else 0.0
        if self._threads is not None:
            self.counters["abandoned_threads"] = max(
                self.counters["abandoned_threads"], self._threads.abandoned
            )
        requests = self.app.clients.counter.snapshot()
        logger.info(
            "worker %s stopped after %.1fs: %s",
            self.worker_id,
            elapsed,
            ", ".join(f"{k}={v}" for k, v in sorted(self.counters.items()) if v) or "no messages",
            extra={
                "event": "worker.stopped",
                "worker": self.worker_id,
                "elapsed_s": round(elapsed, 3),
                "counters": {k: v for k, v in self.counters.items() if v},
                "requests": requests,
            },
        )

    # --- receiving ------------------------------------------------------------------

    async def _receive(self, queue: str, url: str) -> None:
        """One queue's receive loop: a long poll whenever there is room.

        A receive that brings a full batch (a backlog) is followed by the next one at
        once. One that brings fewer (a trickle) is followed by a pause of
        ``receive_batching_window_s`` (what it brought runs meanwhile), so that what
        arrives in the window comes in one receive. While more is expected — after a
        full or, with a window, a non-empty receive, until a receive comes back empty
        — the settler's batches linger for more outcomes (``Inbox.busy``).
        """
        assert self._inbox is not None
        inbox = self._inbox
        client = await self.app.clients.aclient("sqs")
        window_s = self.app.settings.receive_batching_window_s
        errors = 0
        backlogged = True  # until a receive says otherwise
        trickle = False  # the last receive brought some messages, not a full batch
        while True:
            if trickle:  # what arrives in the window comes in one receive
                inbox.expecting += 1
                try:
                    await self._sleep(window_s)
                finally:
                    inbox.expecting -= 1
            want = await inbox.reserve(queue)
            if not want:
                return
            admitted, wait_s = await self._admitted(queue, want)  # a queue's rate limit
            if not admitted:
                inbox.received(want, 0, queue)  # its turn passes while it waits for tokens
                await self._sleep(wait_s)
                continue
            inbox.expecting += backlogged
            started_ns = time.time_ns()  # a receive span's start (sqsq.tracing)
            try:
                response = await client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=admitted,
                    WaitTimeSeconds=self.wait_time_s,
                    **RECEIVE_ATTRIBUTES,
                )
            except asyncio.CancelledError:
                inbox.expecting -= backlogged
                inbox.received(want, 0)
                raise
            except Exception as exc:
                inbox.expecting -= backlogged
                backlogged = False
                inbox.received(want, 0, queue)  # as if empty: priorities do not wait for it
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
                await self._sleep(delay)
                continue
            if errors:
                logger.info("receiving from %s again", queue, extra={"queue": queue})
                errors = 0
            messages = response.get("Messages", [])
            inbox.expecting -= backlogged
            if self.app.flow is not None and len(messages) < admitted:
                self.app.flow.unadmit(queue, admitted - len(messages))
            trickle = window_s > 0 and 0 < len(messages) < admitted
            if backlogged and not messages and self._settler is not None:
                self._settler.nudge()  # nothing more on its way: lingering batches go now
            backlogged = len(messages) == admitted or trickle  # more is probably on its way
            inbox.received(want, len(messages), queue)
            self._empty[queue] = not messages
            if messages:
                if calling.tracing is not None:
                    calling.tracing.received(self.app.queue_name(queue), messages, started_ns)
                deliveries = [Delivery.from_sqs(m, queue, url) for m in messages]
                self._accept(queue, await self._fetched(deliveries))
            self._check_drained()

    async def _admitted(self, queue: str, want: int) -> tuple[int, float]:
        """How many of ``want`` messages ``queue``'s rate limit admits now, else
        ``(0, seconds to wait)`` — the App's flow control, asked only when the app
        has a limit (no request, no import otherwise)."""
        flow = self.app.flow_control()
        if flow is None:
            return want, 0.0
        try:
            return await arun(flow.admitting(queue, want), self.app.clients)
        except Exception as exc:  # the bucket cannot be read: receive nothing meanwhile
            self.counters["admission_errors"] += 1
            delay = _backoff_s(self.counters["admission_errors"])
            logger.warning(
                "rate limit of %s cannot be checked (%s: %s); receiving waits %.1fs",
                queue,
                type(exc).__name__,
                exc,
                delay,
                extra={"queue": queue},
            )
            return 0, delay

    async def _fetched(self, deliveries: list[Delivery]) -> list[Delivery]:
        """``deliveries``, the bodies of those that point to S3 fetched (the App's
        claim check, ``sqsq.payloads``: no request when none does)."""
        return await arun(self.app.claim_check().resolving(deliveries), self.app.clients)

    def _accept(self, queue: str, deliveries: list[Delivery]) -> None:
        """Lease, decode and queue the deliveries of one receive."""
        assert self._inbox is not None
        self.counters["received"] += len(deliveries)
        visibility = self._visibility[queue]
        for delivery in deliveries:
            self.leases.add(delivery, visibility, visibility)
        if self._inbox.closed:  # arrived after the signal: give back at once
            for delivery in deliveries:
                self._emit(Executor.release(delivery))
            return
        # FIFO: the messages of one group run one after another, in order.
        groups: dict[str, WorkItem] = {}
        for delivery in deliveries:
            item = self.executor.prepare_isolated(delivery)
            if isinstance(item, Prepared) and item.task.visibility_timeout_s:
                lease = self.leases.get(delivery)
                if lease is not None:
                    lease.lease_s = item.task.visibility_timeout_s
            key = delivery.message_group_id or delivery.receipt_handle
            groups.setdefault(key, WorkItem()).items.append(item)
        for work in groups.values():
            self._inbox.put(work)

    def _check_drained(self) -> None:
        """``burst``: stop once the last receive of every queue came back empty and
        nothing is held (a poll still open then is let return; what it brings is
        released)."""
        if not self.burst or self._inbox is None or self._settler is None:
            return
        inbox = self._inbox
        if (
            all(self._empty.get(q, False) for q in self.queues)
            and inbox.held == 0
            and self._settler.backlog == 0
        ):
            self.stop()

    # --- running and settling ---------------------------------------------------------

    async def _dispatch(self) -> None:
        """Start work items as run slots free up."""
        assert self._inbox is not None and self._runner is not None
        while True:
            work = await self._inbox.next()
            if work is None:
                return
            task = asyncio.create_task(self._runner.run(work))
            self._running[task] = work
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        assert self._inbox is not None and self._runner is not None
        work = self._running.pop(task, None)
        self._inbox.finished()
        if work is not None and not task.cancelled() and task.exception() is not None:
            logger.error("internal error while running a task", exc_info=task.exception())
            self._runner.release(work)

    def _emit(self, outcome: Outcome) -> None:
        """A held message has its outcome: to the settler."""
        assert self._inbox is not None and self._settler is not None
        self._settler.put(outcome)
        self._inbox.done(1)
        self._settler.nudge()

    def _paused_s(self) -> float:
        return self._runner.paused_s() if self._runner is not None else 0.0

    def _settle_backlog(self) -> int:
        return self._settler.backlog if self._settler is not None else 0

    def _let_go(self, outcomes: list[Outcome]) -> None:
        """The settler is done with these messages."""
        assert self._inbox is not None and self._runner is not None
        self.leases.drop(o.delivery for o in outcomes)
        if self.metrics is not None:
            self.metrics.observe(outcomes)
        self._runner.let_go(outcomes)
        self._inbox.changed()
        self._check_drained()
