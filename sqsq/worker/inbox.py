"""What a worker holds before it runs it: capacity, the ready buffer, run slots.

::

    receivers ── reserve(n) ─► ReceiveMessage(MaxNumberOfMessages=n) ─► put(items) ─┐
                                                                                     ▼
                      ready buffer (work items: one message, or one FIFO group's run)
                                                                                     │
    dispatcher ◄── next() when a run slot is free ◄──────────────────────────────────┘
         └─► runner ─► one outcome per message ─► done(1) ─► settler

``held`` counts messages received and not yet run (buffered or running): at most
``concurrency + prefetch``. A receiver asks for a full batch (10) once that much
room is free, or for whatever room there is when a run slot would otherwise idle,
so a busy worker receives 10 messages per ReceiveMessage. The settler's backlog is
bounded too (:data:`MAX_SETTLE_BACKLOG`): while outcomes cannot be stored, the
worker stops receiving instead of running what it cannot settle; and while
idempotency claims fail (DynamoDB unreachable, ``paused_s``), it stops receiving
instead of receiving and deferring. With queue priorities (``priorities.py``),
the room goes to the receiver whose turn it is, by weight or in strict order.

Pure bookkeeping on one event loop; nothing here talks to AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import limits
from ..delivery import Delivery
from ..outcome import Outcome, Prepared
from .priorities import Priorities

#: Messages with an outcome not yet settled, beyond which receivers wait.
MAX_SETTLE_BACKLOG = 4 * limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS
#: With priorities, how long the turn of a backlogged queue whose receive is open is
#: kept for it, seconds: a receive from a backlog returns in milliseconds; one open
#: longer is a long poll on a queue that just drained, and the others go on.
TURN_HOLD_S = 1.0


@dataclass
class WorkItem:
    """Messages run one after another in one run slot: a single message, or the
    messages of one FIFO message group from one receive, in order."""

    items: list[Prepared | Outcome] = field(default_factory=list)

    @property
    def deliveries(self) -> list[Delivery]:
        return [item.delivery for item in self.items]


class Inbox:
    """Capacity accounting for one worker.

    Args:
        concurrency: run slots (work items running at once).
        prefetch: messages held ready beyond the running ones.
        settle_backlog: how many outcomes wait to be settled (a callable).
        paused_s: how long receiving is paused now, seconds (a callable).
        priorities: which queue's receiver gets the room (None: the first to wake).
    """

    def __init__(
        self,
        concurrency: int,
        prefetch: int,
        settle_backlog: Callable[[], int] = lambda: 0,
        paused_s: Callable[[], float] = lambda: 0.0,
        priorities: Priorities | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + prefetch
        self.batch = min(limits.SQS_MAX_BATCH_ENTRIES, self.capacity)
        self.held = 0  # messages received (or reserved by an open receive) and not yet run
        self.reserved = 0
        self.running = 0  # work items running
        # receivers whose last receive came back full (a backlog) or, with a batching
        # window, not empty (a trickle): their open receive or window pause
        self.expecting = 0
        self.ready: deque[WorkItem] = deque()
        self.closed = False
        self._settle_backlog = settle_backlog
        self._paused_s = paused_s
        self._changed = asyncio.Event()
        self.priorities = priorities
        self._waiting: set[str] = set()  # queues whose receiver waits in reserve()
        self._receiving: dict[str, float] = {}  # queue -> when its open receive was granted

    # --- receiving -------------------------------------------------------------

    def room(self) -> int:
        """Messages that may still be received now."""
        if self._settle_backlog() >= MAX_SETTLE_BACKLOG:
            return 0
        return self.capacity - self.held - self.reserved

    def _wanted(self) -> int:
        room = self.room()
        if room >= self.batch:
            return self.batch
        if room > 0 and not self.ready and self.running < self.concurrency:
            return room  # a run slot would idle: take what fits
        return 0

    async def reserve(self, queue: str = "") -> int:
        """Wait until a receive from ``queue`` is worth making (and, with priorities,
        is its turn); returns how many messages to ask for (reserved until
        :meth:`received`), or 0 once closed."""
        self._waiting.add(queue)
        try:
            while not self.closed:
                pause = self._paused_s()
                if pause > 0:  # DynamoDB unreachable: do not receive what cannot be claimed
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wait(), timeout=pause)
                    continue
                want = self._wanted()
                granted = self._turn(queue, want) if want else 0
                if granted:
                    self.reserved += granted
                    return granted
                hold = self._hold_left_s() if want else 0.0
                if hold > 0:  # the turn is an open receive's, until its hold ends
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wait(), timeout=hold)
                    continue
                await self.wait()
            return 0
        finally:
            self._waiting.discard(queue)

    def _turn(self, queue: str, want: int) -> int:
        """How many of ``want`` messages ``queue`` may receive now (0: not its turn)."""
        if self.priorities is None:
            return want
        now = time.monotonic()
        holding = {q for q, at in self._receiving.items() if now - at < TURN_HOLD_S}
        polling = self._receiving.keys() - holding
        if self.priorities.pick(self._waiting, holding, polling) != queue:
            return 0
        granted = self.priorities.size(queue, want)
        self.priorities.granted(queue, granted, self._waiting, holding)
        self._receiving[queue] = now
        self.changed()  # the next turn may be another waiting receiver's
        return granted

    def _hold_left_s(self) -> float:
        """Seconds until the first open receive's hold on the turn ends (0: none)."""
        if self.priorities is None:
            return 0.0
        now = time.monotonic()
        lefts = [TURN_HOLD_S - (now - at) for at in self._receiving.values()]
        holds = [left for left in lefts if left > 0]
        return min(holds) + 0.001 if holds else 0.0

    def received(self, reserved: int, messages: int, queue: str | None = None) -> None:
        """A receive that reserved ``reserved`` came back with ``messages`` (from
        ``queue``: whether it came back full steers the priorities)."""
        self.reserved -= reserved
        self.held += messages
        if queue is not None and self.priorities is not None:
            self.priorities.received(queue, messages == reserved)
            self._receiving.pop(queue, None)
        self.changed()

    def put(self, item: WorkItem) -> None:
        """A received work item, ready to run."""
        self.ready.append(item)
        self.changed()

    # --- running ---------------------------------------------------------------

    async def next(self) -> WorkItem | None:
        """The next work item once a run slot is free; None once closed."""
        while not self.closed:
            if self.ready and self.running < self.concurrency:
                self.running += 1
                return self._take()
            await self.wait()
        return None

    def _take(self) -> WorkItem:
        """The next ready work item: the oldest, or with strict priorities the
        oldest of the highest queue."""
        if self.priorities is None or self.priorities.mode != "strict":
            return self.ready.popleft()
        rank = self.priorities.rank
        ready = self.ready
        best = min(range(len(ready)), key=lambda i: rank[ready[i].items[0].delivery.queue])
        work = ready[best]
        del ready[best]
        return work

    def done(self, messages: int = 1) -> None:
        """``messages`` held messages have their outcome (run, or released)."""
        self.held -= messages
        self.changed()

    def finished(self) -> None:
        """A running work item ended (its run slot is free)."""
        self.running -= 1
        self.changed()

    def drain_ready(self) -> list[WorkItem]:
        """Take every work item that has not started (at shutdown)."""
        items = list(self.ready)
        self.ready.clear()
        self.changed()
        return items

    def close(self) -> None:
        """Stop handing out receives and work (shutdown)."""
        self.closed = True
        self.changed()

    # --- waking ----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Something is about to produce an outcome: a message held, or a receive
        open (or a batching window pausing) on a queue with a backlog or a trickle."""
        return self.held > 0 or self.expecting > 0

    def changed(self) -> None:
        self._changed.set()

    async def wait(self) -> None:
        """Until something changed (every waiter re-checks its own condition)."""
        self._changed.clear()
        await self._changed.wait()
