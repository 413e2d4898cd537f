"""The settler: outcomes in, batched across receives, stored, then let go.

::

    outcome ─┬─ has writes or a DLQ copy ─► store lane ── BatchWriteItem (≤ 25 items),
             │                                             then DLQ copies (settle.astore)
             │                                                   │ stored
             └─ nothing to store ─────────────────────────────────┴─► release lane ──
                     DeleteMessageBatch / ChangeMessageVisibilityBatch (≤ 10 per queue and
                     call, calls to several queues at once; settle.arelease)

Each lane sends one batch at a time; what arrives meanwhile waits for the next.
A lane flushes a batch as soon as it is **full** (25 writes; 10 entries for one
queue), when **nothing else is about to finish** (no message held upstream, no
backlog or trickle being received — ``Inbox.busy`` — and for the release lane
nothing waiting to be stored), or once its oldest outcome has waited ``linger_s``
(``Settings.settle_linger_s``). So a backlog settles in full batches, a trickle
in one batch per ``linger_s``, and a lone task settles at once: a batch waits only
while more outcomes are on their way, and never on the critical path — run slots
are free as soon as a task returns, receiving goes on meanwhile. The store lane
never lingers over an idempotency key's item (its completion, or its release):
the longer a body's effect goes without its stored completion, the likelier a
kill makes the body run again.

"Store, then let go" is not decided here: ``settle.sqs_calls`` refuses an outcome
that is not stored. What fails is retried with backoff (only the step that
failed): the store stage for as long as the lease may be held (SQS's 12 h cap; the
inbox stops receiving meanwhile), deleting and changing visibility up to
:data:`SETTLE_ATTEMPTS`; after that its message is left to come back after its
visibility timeout. A step after the outcome is stored — follow-ups, the Step
Functions report — has a budget of its own, :data:`SETTLE_ATTEMPTS` tries: then it
is given up on (``execution.give_up``) and the message goes to the DLQ with the
step's reason (``followup_failed``, ``task_token_report_failed``); the body is
never run again for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import limits
from ..execution import Executor
from ..outcome import RETURNED_KINDS, Outcome, OutcomeKind, give_up
from ..retry import full_jitter_s
from ..settle import arelease, astore, missing_step, needs_store, plan_writes

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)

#: Attempts at each settle step while AWS errors persist (the lease is kept meanwhile).
SETTLE_ATTEMPTS = 8
#: Longest pause between retries of a failing settle step, seconds.
MAX_BACKOFF_S = 30.0

COUNTER = {
    OutcomeKind.SUCCESS: "succeeded",
    OutcomeKind.FAILURE: "failed",
    OutcomeKind.DEAD_LETTER: "dead_lettered",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.REVOKED: "revoked",
    OutcomeKind.DEFER: "deferred",
    OutcomeKind.RELEASE: "released",
    OutcomeKind.RESEND: "resent",
}


def counter_of(outcome: Outcome) -> str:
    """The worker summary's counter for a settled outcome: a RESEND of an empty tuple of
    bodies (an ``s3:TestEvent``) was ``dropped``, not resent (``bodies=None`` re-sends
    the message's own body: a deferral)."""
    if outcome.kind is OutcomeKind.RESEND and outcome.bodies == ():
        return "dropped"
    return COUNTER[outcome.kind]


@dataclass
class _Entry:
    outcome: Outcome
    attempts: int = 0  # failed tries of the current step
    weight: int = 1  # writes (store lane) it adds to a batch
    at_once: bool = False  # flush without lingering (an idempotency key's item)


class _Lane:
    """One step of settling, batched: entries wait here until a flush takes them."""

    def __init__(
        self,
        name: str,
        flush: Callable[[list[_Entry]], Awaitable[None]],
        take: Callable[[list[_Entry], bool], list[_Entry]],
        full: Callable[[list[_Entry]], bool],
        upstream_busy: Callable[[], bool],
        linger_s: float,
    ) -> None:
        self.name = name
        self._flush = flush
        self._take = take
        self._full = full
        self._upstream_busy = upstream_busy
        self.linger_s = linger_s
        self.entries: list[_Entry] = []
        self.flushing = 0  # entries in the batch in flight
        self.closing = False  # flush everything at once
        self._first = 0.0
        self._event = asyncio.Event()

    def add(self, entry: _Entry) -> None:
        if not self.entries:
            self._first = time.monotonic()
        self.entries.append(entry)
        self._event.set()

    def wake(self) -> None:
        self._event.set()

    def __len__(self) -> int:
        return len(self.entries) + self.flushing

    def wait_s(self, now: float) -> float:
        """0 to flush now, else how long to wait at most."""
        if self.closing or self._full(self.entries) or not self._upstream_busy():
            return 0.0
        if any(e.at_once for e in self.entries):
            return 0.0
        return max(0.0, self._first + self.linger_s - now)

    async def run(self) -> None:
        """Flush batches as they become due, until cancelled."""
        while True:
            if not self.entries:
                self._event.clear()
                await self._event.wait()
                continue
            wait = self.wait_s(time.monotonic())
            if wait > 0:
                self._event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), timeout=wait)
                continue
            everything = self.closing or not self._full(self.entries)
            batch = self._take(self.entries, everything)
            taken = {id(e) for e in batch}
            self.entries = [e for e in self.entries if id(e) not in taken]
            if self.entries:
                self._first = time.monotonic()
            self.flushing = len(batch)
            try:
                await self._flush(batch)
            finally:
                self.flushing = 0


class Settler:
    """Batches, stores and lets go of outcomes for one worker.

    Args:
        app: the App.
        upstream_busy: whether a held message is about to produce an outcome.
        let_go: called with outcomes whose messages were deleted or made visible
            again (or given up on): their leases end.
        counters: the worker's counters.
        linger_s: the longest a partial batch waits for more outcomes, seconds.
    """

    def __init__(
        self,
        app: App,
        *,
        upstream_busy: Callable[[], bool],
        let_go: Callable[[list[Outcome]], None],
        counters: Counter[str],
        linger_s: float,
    ) -> None:
        self.app = app
        self._let_go = let_go
        self.counters = counters
        self.closing = False
        self._retrying = 0
        self._changed = asyncio.Event()
        self.store_lane = _Lane(
            "store",
            self._store,
            _take_writes,
            lambda entries: sum(e.weight for e in entries) >= limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS,
            upstream_busy,
            linger_s,
        )
        self.release_lane = _Lane(
            "release",
            self._release,
            _take_releases,
            _any_full_queue,
            lambda: upstream_busy() or len(self.store_lane) > 0,
            linger_s,
        )

    @property
    def backlog(self) -> int:
        """Outcomes not yet let go."""
        return len(self.store_lane) + len(self.release_lane) + self._retrying

    def put(self, outcome: Outcome, attempts: int = 0) -> None:
        """Settle ``outcome`` (from the event loop's thread)."""
        if needs_store(outcome):
            weight = max(1, len(plan_writes([outcome])))
            # an idempotency key's completion (or release) is written at once: a kill
            # between the body's effect and its stored completion runs the body again
            at_once = outcome.idempotency_pk is not None
            self.store_lane.add(_Entry(outcome, attempts, weight, at_once))
        else:
            self.release_lane.add(_Entry(outcome, attempts))

    def nudge(self) -> None:
        """Upstream changed (a message finished or was released): re-check the lanes."""
        self.store_lane.wake()
        self.release_lane.wake()

    async def run(self) -> None:
        """Settle until :meth:`close` has been called and nothing is left."""
        lanes = [
            asyncio.create_task(self.store_lane.run(), name="sqsq-settle-store"),
            asyncio.create_task(self.release_lane.run(), name="sqsq-settle-release"),
        ]
        try:
            while not (self.closing and self.backlog == 0):
                self._changed.clear()
                await self._changed.wait()
        finally:
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    def hurry(self) -> None:
        """Flush every batch at once from now on (shutdown)."""
        for lane in (self.store_lane, self.release_lane):
            lane.closing = True
            lane.wake()

    def close(self) -> None:
        """No more outcomes will come: flush everything; failures are not retried;
        :meth:`run` returns once nothing is left."""
        self.closing = True
        self.hurry()
        self._changed.set()

    # --- the steps --------------------------------------------------------------

    async def _store(self, batch: list[_Entry]) -> None:
        try:
            kept = await astore(self.app, [e.outcome for e in batch])
        except Exception:  # a bug, not AWS (astore absorbs those): keep the books honest
            logger.exception("storing %d outcomes failed unexpectedly", len(batch))
            kept = [e.outcome for e in batch]
        failed = {id(o) for o in kept}
        for entry in batch:
            if id(entry.outcome) in failed:
                self._failed(entry, self.store_lane)
            else:
                self.release_lane.add(_Entry(entry.outcome))

    async def _release(self, batch: list[_Entry]) -> None:
        try:
            failed = {id(o) for o in await arelease(self.app, [e.outcome for e in batch])}
        except Exception:  # a bug, not AWS (arelease absorbs those)
            logger.exception("releasing %d messages failed unexpectedly", len(batch))
            failed = {id(e.outcome) for e in batch}
        done = []
        for entry in batch:
            if id(entry.outcome) in failed:
                self.counters["sqs_errors"] += 1
                self._failed(entry, self.release_lane)
            else:
                self.counters[counter_of(entry.outcome)] += 1
                done.append(entry.outcome)
        if done:
            self._done(done)

    def _failed(self, entry: _Entry, lane: _Lane) -> None:
        entry.attempts += 1
        outcome = entry.outcome
        # A step after storing (follow-ups, the Step Functions report) gets
        # SETTLE_ATTEMPTS tries; then it is given up on: the outcome stands, the
        # message goes to the DLQ with the step's reason (execution.give_up).
        step = missing_step(outcome) if lane is self.store_lane and not self.closing else None
        if step is not None and entry.attempts >= SETTLE_ATTEMPTS:
            give_up(
                outcome,
                step,
                self.app.queue_name(outcome.delivery.queue),
                f"{entry.attempts} tries failed",
            )
            entry.attempts = 0
            entry.weight = max(1, len(plan_writes([outcome])))
        # The store stage (writes, DLQ copies, the steps after) is retried for as
        # long as the lease can be held (the inbox stops receiving meanwhile): letting
        # the message come back would use one of its receives, and SQS moves a
        # message whose receives ran out to the DLQ without a reason.
        storing = lane is self.store_lane and Executor.lease_room_s(outcome.delivery) > 0
        if (entry.attempts < SETTLE_ATTEMPTS or storing) and not self.closing:
            self._retrying += 1

            def again() -> None:
                self._retrying -= 1
                lane.add(entry)

            delay = full_jitter_s(entry.attempts, base_s=0.5, cap_s=MAX_BACKOFF_S)
            asyncio.get_running_loop().call_later(delay, again)
            return
        logger.error(
            "giving up settling the outcome of %s (%s); its message returns after its "
            "visibility timeout",
            outcome.task_id,
            "stored" if outcome.stored else "not stored",
        )
        self.counters["kept"] += 1
        self._done([outcome])

    def _done(self, outcomes: list[Outcome]) -> None:
        self._let_go(outcomes)
        self._changed.set()


def _take_writes(entries: list[_Entry], everything: bool) -> list[_Entry]:
    """The first entries whose writes fit one BatchWriteItem (at least one entry)."""
    batch: list[_Entry] = []
    writes = 0
    for entry in entries:
        if batch and writes + entry.weight > limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS:
            break
        batch.append(entry)
        writes += entry.weight
    return batch


def _queue_key(entry: _Entry) -> tuple[bool, str]:
    outcome = entry.outcome
    return outcome.kind in RETURNED_KINDS, outcome.delivery.queue_url


def _groups(entries: list[_Entry]) -> dict[tuple[bool, str], list[_Entry]]:
    groups: dict[tuple[bool, str], list[_Entry]] = {}
    for entry in entries:
        groups.setdefault(_queue_key(entry), []).append(entry)
    return groups


def _any_full_queue(entries: list[_Entry]) -> bool:
    return any(len(g) >= limits.SQS_MAX_BATCH_ENTRIES for g in _groups(entries).values())


def _take_releases(entries: list[_Entry], everything: bool) -> list[_Entry]:
    """Full calls only (10 entries for one queue and action), or everything."""
    if everything:
        return list(entries)
    size = limits.SQS_MAX_BATCH_ENTRIES
    batch: list[_Entry] = []
    for group in _groups(entries).values():
        batch += group[: len(group) // size * size]
    return batch
