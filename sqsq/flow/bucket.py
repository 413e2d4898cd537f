"""A token bucket shared through DynamoDB: conditional writes, slots booked in batches.

The bucket is a GCRA ("virtual scheduling") clock: one item per shard holds the
theoretical arrival time ``tat`` — the moment up to which the shard's tokens are
handed out. Each token is a *slot* of that clock, ``1 / r`` seconds wide (``r``:
the shard's rate). Taking a batch of ``n`` slots moves the clock by ``n / r``
seconds, while it stays within a horizon ``h`` of now::

    now ──────────────┬───────────────────── h ─────────────────────┐
                      │ tat (idle: ≤ now)   tat + n/r must end ≤ now + h
    idle    tat ≤ now          ─► SET tat = now + n/r   IF _IDLE   slots now, now + 1/r, …
    busy    now < tat          ─► SET tat = tat + n/r   IF _BUSY   slots tat, tat + 1/r, …
    full    tat + n/r > now + h ─► no slot: wait (tat + n/r - h - now) s

Both writes are conditional (``_IDLE`` / ``_BUSY``), so takers on any number of
workers never get the same slot; ``busy`` adds to ``tat`` atomically, so concurrent
takers of a busy bucket do not conflict. A taker writes first and reads only on
conflict (ALL_OLD, else a consistent GetItem), then writes the case it found.

Two horizons:

- the poller (a queue's limit) books ``h`` = :data:`TOLERANCE_BATCHES` batches ahead
  and receives as many messages as it holds slots due within one batch window
  (:data:`~sqsq.flow.rates.BATCH_WINDOW_S`); with none, it sleeps until its next slot;
- the runner (a task's limit) books up to :data:`BOOKING_HORIZON_S` ahead: a message
  whose slot is not due is put back until its slot, carrying it (``control.py``),
  so it runs when it comes back, with no second token and no second put-back.

A worker keeps the slots of one write in a local pool and hands them out in order;
a slot more than :data:`POOL_LATE_S` in the past is dropped unused (a slot is never
spent long after its time, which keeps the rate over any window within about one
batch of the configured rate). A worker starts with one slot per write and grows
its batch by one slot a write up to the rate's batch; one whose share of the work
is too small to use a whole batch in time (it dropped slots) halves it: many
workers sharing a modest rate waste few slots, at the cost of more writes per task
while they start.

Items (the app's table; :mod:`sqsq.dynamodb` lists every kind)::

    pk = "rate#<app>#<bucket>"   sk = "shard#<i>"   tat_us (N, epoch µs), expires_at

Cost: one conditional UpdateItem per batch of slots (``1 / batch`` per task: 0.1 at
20/s and above, see ``rates.py``); a failed write (billed as a write) plus a read
where the conflict does not return the old item when a taker guessed the case
wrong or the bucket is full; a taker that found the bucket full does not ask again
before a whole batch fits, plus a jitter that spreads contending takers.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..calls import Call, Steps
from ..retry import error_code
from .rates import Rate

Item = dict[str, dict[str, Any]]

#: The poller's horizon, in batches of tokens (its burst at a fresh bucket).
TOLERANCE_BATCHES = 1.5
#: How far ahead the runner books a slot for a message it puts back, seconds
#: (under SQS's 900 s DelaySeconds, ``limits.SQS_MAX_DELAY_S``).
BOOKING_HORIZON_S = 600.0
#: A pooled slot this far in the past is dropped unused, seconds.
POOL_LATE_S = 2.0
#: A shard whose last write found it busy, with a clock ahead of now less than this
#: long ago, is taken as busy (others keep it ahead), seconds.
BUSY_GUESS_S = 5.0
#: Conditional writes one take tries before it answers "wait".
TAKE_TRIES = 3
#: Most batches of clock a taker's retry after a full bucket is spread over.
MAX_JITTER_BATCHES = 4
#: An idle bucket item lives this long after its last write, seconds (TTL).
BUCKET_TTL_S = 86_400

_IDLE = "attribute_not_exists(tat_us) OR tat_us <= :now"
_BUSY = "tat_us > :now AND tat_us <= :room"

_US = 1_000_000


def bucket_pk(app_name: str, bucket: str) -> str:
    """The partition key of a bucket's items."""
    return f"rate#{app_name}#{bucket}"


@dataclass
class TokenBucket:
    """One process's share of a bucket: its pool of booked slots and what it knows
    of the shards' clocks.

    Args:
        table: the app's DynamoDB table.
        pk: the bucket's partition key (:func:`bucket_pk`).
        rate: the bucket's rate (its ``shards`` split it evenly).
    """

    table: str
    pk: str
    rate: Rate
    pool: deque[float] = field(default_factory=deque)  # booked slots, epoch s, in order
    retry_at: float = 0.0  # epoch s: a full bucket is not asked before this
    writes: int = 0  # conditional writes made (a failed condition counts: it is billed)
    conflicts: int = 0  # of those, writes whose condition failed
    dropped: int = 0  # slots that passed unused
    misses: int = 0  # takes in a row that found the bucket full
    batch: int = 0  # slots per write now: 1 at first, up to the rate's batch (see above)
    tats: list[int] = field(default_factory=list)  # per shard: the last clock seen (µs)
    busy: list[bool] = field(default_factory=list)  # per shard: the last write found it busy

    def __post_init__(self) -> None:
        self.batch = 1  # a slow start: grown by a slot a write up to the rate's batch
        self.tats = [0] * self.rate.shards
        self.busy = [False] * self.rate.shards

    @property
    def shard_rate(self) -> float:
        """Tokens per second of one shard."""
        return self.rate.per_s / len(self.tats)

    @property
    def window_s(self) -> float:
        """Seconds of clock one batch covers."""
        return self.rate.batch / self.shard_rate

    @property
    def tolerance_s(self) -> float:
        """The poller's horizon, seconds."""
        return TOLERANCE_BATCHES * self.window_s

    def _prune(self, now: float) -> None:
        dropped = 0
        while self.pool and self.pool[0] < now - POOL_LATE_S:
            self.pool.popleft()
            dropped += 1
        if dropped:  # this process's share is below a batch per POOL_LATE_S: take fewer
            self.dropped += dropped
            self.batch = max(1, self.batch // 2)

    def put_back(self, slots: list[float]) -> None:
        """Slots handed out but not used (a receive brought fewer messages)."""
        self.pool.extendleft(sorted(slots, reverse=True))

    def admitting(
        self, want: int, idle: bool = False, now: float | None = None
    ) -> Steps[tuple[list[float], float]]:
        """The poller's take: up to ``want`` slots due within one batch window —
        ``(slots, 0)``, or ``([], seconds until the next slot)``. ``idle``: the last
        receive was empty, so one slot is booked, not a batch (an idle queue's long
        polls cost one write each, not a batch of slots that pass unused)."""
        now = time.time() if now is None else now
        self._prune(now)
        if not self.pool:
            wait_s = yield from self._taking(now, self.tolerance_s, 1 if idle else None)
            if not self.pool:
                return [], wait_s
        due = now + self.window_s
        slots: list[float] = []
        while self.pool and self.pool[0] <= due and len(slots) < want:
            slots.append(self.pool.popleft())
        if slots:
            return slots, 0.0
        return [], self.pool[0] - due

    def booking(self, now: float | None = None) -> Steps[tuple[float | None, float]]:
        """The runner's take: one slot for a message — ``(slot, 0)`` (due when
        ``slot`` ≤ now + one batch window, else put the message back until then),
        or ``(None, seconds)`` when the bucket is booked up to its horizon."""
        now = time.time() if now is None else now
        self._prune(now)
        if not self.pool:
            wait_s = yield from self._taking(now, BOOKING_HORIZON_S)
            if not self.pool:
                return None, wait_s
        return self.pool.popleft(), 0.0

    def _taking(self, now: float, horizon_s: float, batch: int | None = None) -> Steps[float]:
        """One batch of slots into the pool (0 returned), or the seconds to wait."""
        if now < self.retry_at:
            return self.retry_at - now
        index = random.randrange(len(self.tats))
        key = {"pk": {"S": self.pk}, "sk": {"S": f"shard#{index}"}}
        batch, rate = batch or self.batch, self.shard_rate
        now_us, horizon_us = int(now * _US), int(horizon_s * _US)
        cost_us = math.ceil(batch * _US / rate)
        for _ in range(TAKE_TRIES):
            # other takers keep a contended clock ahead of now: guess busy while the
            # last clock seen was ahead, recently (a wrong guess costs a failed write)
            busy = self.tats[index] > now_us - int(BUSY_GUESS_S * _US) * self.busy[index]
            request = self._request(key, now_us, cost_us, horizon_us, busy)
            try:
                response = yield Call("dynamodb", "update_item", request)
            except Exception as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                self.writes += 1
                self.conflicts += 1
                old = getattr(exc, "response", {}).get("Item") or (
                    (
                        yield Call(
                            "dynamodb",
                            "get_item",
                            {"TableName": self.table, "Key": key, "ConsistentRead": True},
                        )
                    ).get("Item")
                )
                tat_us = int(old["tat_us"]["N"]) if old and "tat_us" in old else 0
                self.tats[index] = tat_us if tat_us > now_us else 0  # 0: idle, guess so
                if tat_us + cost_us > now_us + horizon_us and tat_us > now_us:
                    return self._full(tat_us, cost_us, now_us, horizon_us, now)
                continue
            self.writes += 1
            self.misses = 0
            self.busy[index] = busy
            self.batch = min(self.rate.batch, self.batch + 1)  # back up, one slot a write
            tat_us = self.tats[index] = int(response["Attributes"]["tat_us"]["N"])
            first_us = tat_us - cost_us
            slots = [(first_us + i * _US / rate) / _US for i in range(batch)]
            self.pool = deque(sorted([*self.pool, *slots]))
            return 0.0
        return self.window_s

    def _full(self, tat_us: int, cost_us: int, now_us: int, horizon_us: int, now: float) -> float:
        """No room: seconds until a batch fits, plus a jitter that grows with the
        misses in a row, so the takers of a contended bucket do not all write at the
        same moment (for a lone taker it stays within the poller's slack, half a
        batch, so its clock does not fall idle meanwhile)."""
        fits_s = (tat_us + cost_us - horizon_us - now_us) / _US
        self.misses += 1
        slack_s = (TOLERANCE_BATCHES - 1) * self.window_s
        jitter_s = random.uniform(0, slack_s * min(self.misses, MAX_JITTER_BATCHES))
        self.retry_at = now + max(fits_s, 0.0) + jitter_s
        return max(self.retry_at - now, 0.001)

    def _request(
        self, key: Item, now_us: int, cost_us: int, horizon_us: int, busy: bool
    ) -> dict[str, Any]:
        common = {
            "TableName": self.table,
            "Key": key,
            "ReturnValues": "UPDATED_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        expires = {"N": str(now_us // _US + BUCKET_TTL_S)}
        if busy:
            return {
                **common,
                "UpdateExpression": "SET tat_us = tat_us + :cost, expires_at = :expires",
                "ConditionExpression": _BUSY,
                "ExpressionAttributeValues": {
                    ":cost": {"N": str(cost_us)},
                    ":now": {"N": str(now_us)},
                    ":room": {"N": str(now_us + horizon_us - cost_us)},
                    ":expires": expires,
                },
            }
        return {
            **common,
            "UpdateExpression": "SET tat_us = :tat, expires_at = :expires",
            "ConditionExpression": _IDLE,
            "ExpressionAttributeValues": {
                ":tat": {"N": str(now_us + cost_us)},
                ":now": {"N": str(now_us)},
                ":expires": expires,
            },
        }
