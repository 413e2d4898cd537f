"""Running one work item: revocation check, idempotency claim, the call, the outcome.

::

    WorkItem ─► for each message, in order:
        redelivered and its outcome stored already (GetItem)? ─► that outcome, not run
        revoked (view ≤ revocation_interval_s old)? ─► REVOKED
        shutting down?                              ─► RELEASE
        limits (App.flow_control): rate limit, then concurrency slot; not now ─►
                               DEFER (sent on until its slot; FIFO: waits here);
                               a held concurrency slot is renewed while the body
                               runs and freed when it ends (whatever the outcome)
        idempotency key: claim ─► COMPLETED elsewhere ─► SUCCESS (duplicate, not run)
                                                     (or its final FAILURE)
                               ─► held elsewhere       ─► DEFER
                               ─► DynamoDB unreachable ─► receiving pauses; sent on
                                  (standard) or held and claimed again (FIFO)
        call: ``async def`` on the loop | sync in the thread pool | a child process,
              under the task's time limit ─► SUCCESS | RETRY | FAILURE (execution core)
        once one message of a FIFO group is not final, the rest of the group is
        released unrun, so the group's order holds; after a dead letter the group
        waits until it is stored and copied to the DLQ (if that fails for good, the
        rest is released)

Each outcome goes to the settler as soon as it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..calling import CallResult, Hooks, classify, hooked, request_of, traced
from ..calls import arun
from ..errors import InvalidKey, TimeLimitExceeded
from ..execution import Executor
from ..lease import LeaseTable
from ..outcome import DEAD_KINDS, FINAL_KINDS, Outcome, Prepared
from ..retry import error_code, full_jitter_s
from ..sqs import redriven
from .inbox import WorkItem

if TYPE_CHECKING:
    from ..app import App
    from ..revocations import RevocationView
    from .processes import ProcessPool
    from .threads import ThreadPool

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest pause of receiving after claims failed, seconds.
STORE_PAUSE_CAP_S = 30.0
#: How long a duplicate waits for this worker's own finished run of its key to be
#: settled before it defers like any other duplicate, seconds.
LOCAL_SETTLE_WAIT_S = 5.0


class Runner:
    """Turns work items into outcomes.

    Args:
        app: the App.
        executor: the execution core.
        leases: the worker's lease table (idempotency leases are attached to it).
        threads: the pool for sync functions (``--pool threads``).
        processes: the pool for sync functions with ``--pool processes``.
        revocations: the revocation view, or None when revocations are not checked.
        emit: where each outcome goes (the settler), with the message it settles.
        stopping: set at shutdown: messages not yet started are released.
        visibility: each logical queue's visibility timeout, seconds.
        counters: the worker's counters.
    """

    def __init__(
        self,
        app: App,
        executor: Executor,
        leases: LeaseTable,
        *,
        threads: ThreadPool | None,
        processes: ProcessPool | None,
        revocations: RevocationView | None,
        emit: Callable[[Outcome], None],
        stopping: asyncio.Event,
        visibility: dict[str, float],
        counters: Counter[str],
    ) -> None:
        self.app = app
        self.executor = executor
        self.leases = leases
        self.threads = threads
        self.processes = processes
        self.revocations = revocations
        self.emit = emit
        self.stopping = stopping
        self.visibility = visibility
        self.counters = counters
        self.emitted: set[str] = set()  # receipt handles whose outcome was emitted
        # idempotency keys whose owner here has finished and waits to be settled:
        # pk -> (owner task id, receipt handle, resolved once let go)
        self.settling_keys: dict[str, tuple[str, str, asyncio.Future[None]]] = {}
        # DynamoDB unreachable for claims: receiving pauses until this time (monotonic)
        self.store_errors = 0
        self.store_down_until = 0.0
        # FIFO dead letters whose group waits for their copy: handle -> copied?
        self.dead_letters: dict[str, asyncio.Future[bool]] = {}
        # idempotency keys held for abandoned threads still running their body
        self.held_keys: set[str] = set()
        self._holders: set[asyncio.Task[None]] = set()

    def store_failed(self) -> float:
        """A claim failed on an AWS error: pause receiving (backoff, seconds)."""
        self.store_errors += 1
        pause = min(STORE_PAUSE_CAP_S, 2.0 ** min(self.store_errors, 8))
        self.store_down_until = max(self.store_down_until, time.monotonic() + pause)
        return pause

    def store_ok(self) -> None:
        """A claim got an answer: DynamoDB is reachable."""
        if self.store_errors:
            logger.info("DynamoDB answers again: receiving resumes")
        self.store_errors = 0
        self.store_down_until = 0.0

    def paused_s(self) -> float:
        """Seconds receiving stays paused because claims fail (0: not paused)."""
        return max(0.0, self.store_down_until - time.monotonic())

    async def run(self, work: WorkItem) -> None:
        """Run the messages of ``work`` in order, emitting one outcome each."""
        blocked = False
        for item in work.items:
            if item.delivery.receipt_handle in self.emitted:
                continue  # released already (grace ran out)
            if isinstance(item, Outcome):
                outcome = item
            elif blocked:
                outcome = Executor.release(item.delivery, item.envelope.task_id)
            else:
                try:
                    outcome = await self.process(item)
                except Exception as exc:  # sqsq failed on this one message
                    outcome = self.executor.internal(item.delivery, exc, "running", item)
            copied = None
            if (
                outcome.delivery.message_group_id is not None
                and outcome.kind in DEAD_KINDS
                and item is not work.items[-1]
            ):
                # FIFO: the group goes on only once this dead letter is stored and
                # copied; if that fails, the rest of the group is released unrun
                copied = asyncio.get_running_loop().create_future()
                self.dead_letters[outcome.delivery.receipt_handle] = copied
            self.put(outcome)
            blocked = blocked or outcome.kind not in FINAL_KINDS
            if copied is not None and not blocked:
                blocked = not await copied

    def put(self, outcome: Outcome) -> None:
        """Emit ``outcome`` unless its message already has one."""
        handle = outcome.delivery.receipt_handle
        if handle not in self.emitted:
            self.emitted.add(handle)
            if outcome.idempotency_pk is not None:
                future = asyncio.get_running_loop().create_future()
                self.settling_keys[outcome.idempotency_pk] = (outcome.task_id, handle, future)
            self.emit(outcome)

    def let_go(self, outcomes: list[Outcome]) -> None:
        """The settler is done with ``outcomes``: forget them; a duplicate waiting for
        one of their idempotency keys may claim again."""
        for outcome in outcomes:
            handle = outcome.delivery.receipt_handle
            self.emitted.discard(handle)
            waiting = self.dead_letters.pop(handle, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(outcome.stored and outcome.copied)
            pk = outcome.idempotency_pk
            entry = self.settling_keys.get(pk) if pk is not None else None
            if entry is not None and entry[1] == handle:
                del self.settling_keys[pk]  # type: ignore[arg-type]
                if not entry[2].done():
                    entry[2].set_result(None)

    def release(self, work: WorkItem) -> int:
        """Release every message of ``work`` that has no outcome yet; returns how many."""
        released = 0
        for item in work.items:
            if item.delivery.receipt_handle not in self.emitted:
                task_id = item.envelope.task_id if isinstance(item, Prepared) else item.task_id
                self.put(Executor.release(item.delivery, task_id))
                released += 1
        return released

    async def process(self, prepared: Prepared) -> Outcome:
        """The outcome of one decoded message."""
        task_id = prepared.envelope.task_id
        resumed = await self._resume(prepared)
        if resumed is not None:
            return resumed
        if self.revocations is not None and await self.revocations.acheck(task_id):
            return self.executor.revoked(prepared)
        if self.stopping.is_set():
            return Executor.release(prepared.delivery, task_id)
        gate = await self._gate(prepared)
        if isinstance(gate, Outcome):
            return gate
        if gate is not None:  # a concurrency slot: renewed while the body runs, then freed
            held: Outcome = await gate.aholding(self._claim_and_call(prepared))
            return held
        return await self._claim_and_call(prepared)

    async def _claim_and_call(self, prepared: Prepared) -> Outcome:
        return await self._claim(prepared) or await self._call_tracked(prepared)

    async def _gate(self, prepared: Prepared) -> Any:
        """The task's limits (the App's flow control, asked only when the app has
        one): rate limit, then concurrency slot. None to run now; a held slot (its
        ``aholding`` frees it) to run now in it; else the outcome that puts the message
        back for later (``Executor.defer``: on a standard queue sent on with
        DelaySeconds, never an attempt, never a receive). On a FIFO queue, where
        putting it back would spend one of its receives, it waits here instead."""
        flow = self.app.flow_control()
        if flow is None:
            return None
        lease = self.leases.get(prepared.delivery)
        lease_s = lease.lease_s if lease else self.visibility[prepared.delivery.queue]
        while True:
            entry = await self._ask_dynamodb(
                prepared,
                lambda: arun(flow.entering(prepared, lease_s), self.app.clients),
                "its limits cannot be checked",
            )
            if isinstance(entry, Outcome):
                return entry
            hold = entry.hold
            if hold is None:
                return entry.slot
            if not self.executor.on_fifo(prepared.delivery):
                return self.executor.defer(prepared, hold.delay_s, hold.why, routine=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=hold.delay_s)
            if self.stopping.is_set():
                return Executor.release(prepared.delivery, prepared.envelope.task_id)

    async def _resume(self, prepared: Prepared) -> Outcome | None:
        """A redelivered message whose outcome an earlier receive stored: that outcome,
        not a second run (``Executor.resume``; one consistent GetItem, redeliveries only)."""
        if prepared.delivery.receive_count <= 1:
            return None
        task_id = prepared.envelope.task_id
        answer = await self._ask_dynamodb(
            prepared,
            lambda: self.app.results.aget_result(task_id),
            "its stored outcome cannot be read",
        )
        if isinstance(answer, Outcome):
            return answer
        return self.executor.resume(prepared, answer)

    async def _ask_dynamodb(
        self, prepared: Prepared, call: Callable[[], Awaitable[T]], why: str
    ) -> T | Outcome:
        """``call()``'s answer, or the outcome to give instead when DynamoDB does not
        answer: receiving pauses (:meth:`store_failed`); a message of a standard
        queue is deferred (sent on unrun, its receives kept); a message of a FIFO
        queue, which can only be returned (using one of its receives: SQS moves a
        message whose receives ran out to the DLQ without a reason), is held instead
        — its lease kept by the leaser — and asked about again after the pause, until
        DynamoDB answers or the worker stops.

        Raises:
            what ``call()`` raised when it is a ValidationException (no retry fixes it).
        """
        delivery = prepared.delivery
        while True:
            try:
                answer = await call()
            except Exception as exc:
                if error_code(exc) == "ValidationException":
                    raise
                pause = self.store_failed()
                hold = (
                    self.executor.on_fifo(delivery)
                    and not self.stopping.is_set()
                    and Executor.lease_room_s(delivery) > pause
                )
                logger.warning(
                    "task %s: %s (%s: %s); receiving pauses for %.0fs%s",
                    prepared.envelope.task_id,
                    why,
                    type(exc).__name__,
                    exc,
                    pause,
                    ", the FIFO message is held meanwhile" if hold else "",
                )
                if hold:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=pause)
                    continue
                lease = self.leases.get(delivery)
                lease_s = lease.lease_s if lease else self.visibility[delivery.queue]
                return self.executor.defer(prepared, max(pause, min(lease_s, 30.0)), why)
            self.store_ok()
            return answer

    async def _claim(self, prepared: Prepared) -> Outcome | None:
        """Claim the idempotency key; an outcome when the body must not run now."""
        if prepared.idempotency_pk is None:
            return None
        task, envelope = prepared.task, prepared.envelope
        lease = self.leases.get(prepared.delivery)
        lease_s = lease.lease_s if lease else self.visibility[prepared.delivery.queue]
        local = self.settling_keys.get(prepared.idempotency_pk)
        if local is not None:
            # this worker's own run of the key has finished and waits to be settled
            # (its DynamoDB lease may have run out meanwhile, e.g. in an outage):
            # never claim past it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(local[2]), timeout=LOCAL_SETTLE_WAIT_S)
            if prepared.idempotency_pk in self.settling_keys:
                return self.executor.defer(
                    prepared, lease_s, "its idempotency key's last run here is not settled yet"
                )
        pk = prepared.idempotency_pk
        retake = redriven(prepared.delivery.message_attributes)
        for _ in range(2):
            try:
                answer = await self._ask_dynamodb(
                    prepared,
                    lambda: self.app.idempotency.aclaim(
                        pk,
                        envelope.task_id,
                        lease_s,
                        task.idempotency_ttl_s,
                        retake=retake,
                        payload=prepared.payload_hash,
                    ),
                    "its idempotency key cannot be claimed",
                )
            except Exception as exc:  # ValidationException: no retry can fix it
                return self.executor.dead_letter(
                    prepared.delivery,
                    InvalidKey(f"{task.name}: DynamoDB refused the idempotency key: {exc}"),
                    envelope,
                )
            if isinstance(answer, Outcome):
                return answer
            claim = answer
            if claim.status == "COMPLETED":
                return self.executor.duplicate(prepared, claim)
            if claim.status == "CLAIMED":
                break
            # IN_PROGRESS: when its owner is a task of this worker that has finished and
            # waits to be settled, the outcome is milliseconds away: wait for it, not
            # for the owner's lease.
            local = self.settling_keys.get(prepared.idempotency_pk)
            if local is None or local[0] != claim.owner:
                return self.executor.defer(prepared, claim.lease_remaining_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(local[2]), timeout=LOCAL_SETTLE_WAIT_S)
        else:
            return self.executor.defer(prepared, claim.lease_remaining_s)
        prepared.claimed = True
        if lease is not None:
            lease.idempotency_pk, lease.owner = prepared.idempotency_pk, envelope.task_id
        return None

    async def _call_tracked(self, prepared: Prepared) -> Outcome:
        """:meth:`_call`, with the STARTED write (``track_started``) sent as the body
        starts, beside it, not before it; the outcome is emitted once that write
        has answered, so this worker's own outcome always lands after it (its
        condition keeps it off any other path's outcome, ``dynamodb.STARTED_MAY_REPLACE``)."""
        record = self.executor.started(prepared)
        if record is None:
            return await self._call(prepared)
        writing = asyncio.ensure_future(self.app.results.astart(record))
        try:
            return await self._call(prepared)
        finally:
            try:
                await writing
            except Exception as exc:  # STARTED is informative: the outcome still goes
                logger.warning("task %s: STARTED not written (%s)", record.task_id, exc)

    async def _call(self, prepared: Prepared) -> Outcome:
        task = prepared.task
        if task.is_async:
            return await self.executor.acall(prepared)
        limit = self.executor.time_limit_s(prepared)
        started_at = datetime.now(UTC)
        start = time.perf_counter()
        if self.processes is not None:
            return await self._call_in_child(prepared, limit, started_at, start)
        assert self.threads is not None
        call = self.threads.submit(
            lambda: self.executor.invoke(prepared),
            name=f"sqsq-task-{prepared.envelope.task_id[:8]}",
        )
        try:
            invocation = await asyncio.wait_for(asyncio.shield(call.future), timeout=limit)
        except TimeoutError:
            self.threads.abandon(call)
            self.counters["abandoned_threads"] += 1
            logger.warning(
                "task %s[%s] passed its %g s time limit; its thread cannot be killed and is "
                "abandoned (use --pool processes to kill such tasks)",
                task.name,
                prepared.envelope.task_id,
                limit,
            )
            error = TimeLimitExceeded(f"{task.name} ran past its time limit of {limit:g} s")
            prepared.given_up = True  # its thread's late outcome signals are not sent
            outcome = self.executor.finish(
                prepared, started_at, time.perf_counter() - start, _limit_failed(prepared, error)
            )
            if outcome.idempotency_pk is not None:
                # the body still runs: its key stays claimed until it really ends
                self._hold_key(call.future, outcome.idempotency_pk, prepared)
                outcome.idempotency_pk = None
            return outcome
        except asyncio.CancelledError:
            self.threads.abandon(call)  # shutdown gave up on it
            raise
        except Exception as exc:  # what invoke() let out (TaskExit): the task's failure
            return self.executor.finish(
                prepared, started_at, time.perf_counter() - start, classify(task, exc=exc)
            )
        return self.executor.finish(prepared, *invocation)

    def _hold_key(self, future: asyncio.Future[Any], pk: str, prepared: Prepared) -> None:
        """Keep the idempotency key ``pk`` claimed (IN_PROGRESS, its lease extended)
        while an abandoned thread still runs its body; once the body returns, free the
        key (the FAILURE stands: no copy may run beside the body, but a later one may).

        If the process dies first, the daemon thread dies with it and the key's lease
        runs out after ``lease_s``: a later copy (a redrive) may then claim it.
        """
        owner = prepared.envelope.task_id
        lease = self.leases.get(prepared.delivery)
        lease_s = lease.lease_s if lease else self.visibility[prepared.delivery.queue]
        store = self.app.idempotency

        async def hold() -> None:
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(future), timeout=lease_s / 2)
                except TimeoutError:
                    with contextlib.suppress(Exception):
                        await store.aextend(pk, owner, lease_s)
                    continue
                except BaseException:
                    pass
                break
            for attempt in range(5):
                try:
                    await store.arelease(pk, owner)
                    break
                except Exception as exc:
                    logger.warning("freeing the idempotency key of %s failed: %s", owner, exc)
                    await asyncio.sleep(full_jitter_s(attempt + 1, base_s=0.5, cap_s=10.0))
            logger.info("abandoned task %s ended: its idempotency key is free", owner)
            self.held_keys.discard(pk)

        self.held_keys.add(pk)
        task = asyncio.get_running_loop().create_task(hold(), name=f"sqsq-hold-{owner[:8]}")
        self._holders.add(task)
        task.add_done_callback(self._holders.discard)

    async def _call_in_child(
        self, prepared: Prepared, limit: float, started_at: datetime, start: float
    ) -> Outcome:
        assert self.processes is not None
        task, envelope, delivery = prepared.task, prepared.envelope, prepared.delivery
        attempt = envelope.retries + delivery.receive_count
        request = {
            "id": envelope.task_id,
            "task": task.name,
            "attempt": attempt,
            "retries": attempt - 1,
            "queue": delivery.queue,
            "idempotency_key": envelope.idempotency_key,
            "message_id": delivery.message_id,
        }  # args/kwargs: the child validates the envelope's own and fills them in
        span = traced(
            prepared
        )  # the process span, here: the child's own spans are not its children
        future = self.processes.submit(task.name, envelope.args, envelope.kwargs, request, limit)
        try:
            result: CallResult = await asyncio.wrap_future(future)
        except TimeoutError:
            error = TimeLimitExceeded(
                f"{task.name} ran past its time limit of {limit:g} s; its process was killed"
            )
            result = _limit_failed(prepared, error)
        except Exception as exc:  # the child died (pebble.ProcessExpired) or could not start
            result = CallResult(
                error_type=type(exc).__qualname__, error_message=str(exc), final=True
            )
        if span is not None:
            span.ended(result, None)
        return self.executor.finish(prepared, started_at, time.perf_counter() - start, result)


def _limit_failed(prepared: Prepared, error: TimeLimitExceeded) -> CallResult:
    """The result of a body given up at its time limit (its thread abandoned, its
    child killed), with its ``task_failure`` sent from here: the body cannot."""
    result = classify(prepared.task, exc=error)
    if hooked():
        Hooks(prepared.task, request_of(prepared)).failed(error, result, "FAILURE")
    return result
