"""A token bucket shared through DynamoDB: conditional writes, tokens taken in batches.

The bucket is a GCRA ("virtual scheduling") clock: one item per shard holds the
theoretical arrival time ``tat`` — the moment up to which the shard's tokens are
spent. Taking ``n`` tokens at rate ``r`` (per shard) costs ``n / r`` seconds of
that clock; it is allowed while the clock stays within the tolerance ``τ`` of now::

    now ───────────────┬──────────────── τ (1.5 batches of tokens) ─────┐
                       │ tat (idle: ≤ now)    tat + n/r must end ≤ now + τ
    idle      tat ≤ now      ─► SET tat = now + n/r      IF _IDLE
    busy      now < tat      ─► SET tat = tat + n/r      IF _BUSY  (tat ≤ now + τ - n/r)
    full      tat + 1/r > now + τ ─► no token: wait (tat + 1/r - τ - now) s

Both writes are conditional (``_IDLE`` / ``_BUSY``), so takers on any number of
workers never hand out a token twice; ``busy`` adds to ``tat`` atomically, so
concurrent takers of a busy bucket do not conflict. A taker writes first and reads
only on conflict (ALL_OLD, else a consistent GetItem), then takes a whole batch
if it fits, or none and the wait (never a part: a part would cost a write for
fewer tokens; the clock loses nothing while it runs ahead of now).

A worker spends the tokens of one write locally, one per task, until they run out
or their window closes (``tat`` of the write + ``τ`` / 3: a token is never spent
long after its slot of the clock, which keeps the rate over any window within one
batch of the configured rate).

Items (the app's table; :mod:`sqsq.dynamodb` lists every kind)::

    pk = "rate#<app>#<bucket>"   sk = "shard#<i>"   tat_us (N, epoch µs), expires_at

Cost: ``1 / batch`` conditional UpdateItem per token in steady state (batch: see
``rates.py``), plus a failed write (and a read where the conflict does not return the old item)
per conflict: a taker that found the bucket full waits for a whole batch to fit,
plus a jitter of up to one batch per miss in a row (at most
:data:`MAX_JITTER_BATCHES`), so a full bucket is not polled and contending takers
spread out.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from ..calls import Call, Steps
from ..retry import error_code
from .rates import Rate

Item = dict[str, dict[str, Any]]

#: The tolerance of a bucket, in batches of tokens (see the module docstring).
TOLERANCE_BATCHES = 1.5
#: Conditional writes one take tries before it answers "wait".
TAKE_TRIES = 3
#: Most batches of clock a taker's retry after a full bucket is spread over.
MAX_JITTER_BATCHES = 8
#: An idle bucket item lives this long after its clock, seconds (TTL).
BUCKET_TTL_S = 86_400

_IDLE = "attribute_not_exists(tat_us) OR tat_us <= :now"
_BUSY = "tat_us > :now AND tat_us <= :room"

_US = 1_000_000


def bucket_pk(app_name: str, bucket: str) -> str:
    """The partition key of a bucket's items."""
    return f"rate#{app_name}#{bucket}"


@dataclass
class _Shard:
    tat_us: int = 0  # the last clock seen (0: unknown)


@dataclass
class TokenBucket:
    """One process's share of a bucket: its local tokens and what it knows of the
    shards' clocks.

    Args:
        table: the app's DynamoDB table.
        pk: the bucket's partition key (:func:`bucket_pk`).
        rate: the bucket's rate (its ``shards`` split it evenly).
    """

    table: str
    pk: str
    rate: Rate
    tokens: int = 0
    until: float = 0.0  # epoch s: local tokens are not spent after this
    retry_at: float = 0.0  # epoch s: a full bucket is not asked before this
    writes: int = 0  # conditional writes made (a failed condition counts: it is billed)
    conflicts: int = 0  # of those, writes whose condition failed
    misses: int = 0  # takes in a row that found the bucket full
    shards: list[_Shard] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shards = [_Shard() for _ in range(self.rate.shards)]

    @property
    def shard_rate(self) -> float:
        """Tokens per second of one shard."""
        return self.rate.per_s / len(self.shards)

    @property
    def tolerance_s(self) -> float:
        """τ: how far ahead of now a shard's clock may run, seconds."""
        return TOLERANCE_BATCHES * self.rate.batch / self.shard_rate

    def local(self, want: int, now: float) -> int:
        """Up to ``want`` tokens from the local batch (no AWS call)."""
        if now > self.until:
            self.tokens = 0
        granted = min(want, self.tokens)
        self.tokens -= granted
        return granted

    def put_back(self, count: int) -> None:
        """Tokens taken but not used (a receive brought fewer messages)."""
        self.tokens += max(0, count)

    def taking(self, want: int, now: float | None = None) -> Steps[tuple[int, float]]:
        """Take up to ``want`` tokens: ``(granted, wait_s)`` — ``granted`` ≥ 1 and
        ``wait_s`` 0, or none and the seconds until one refills.

        Local tokens first; else one conditional UpdateItem for a batch (see
        :mod:`sqsq.calls`). AWS errors other than a failed condition propagate.
        """
        now = time.time() if now is None else now
        granted = self.local(want, now)
        if granted or want <= 0:
            return granted, 0.0
        if now < self.retry_at:
            return 0, self.retry_at - now
        index = random.randrange(len(self.shards))
        shard = self.shards[index]
        key = {"pk": {"S": self.pk}, "sk": {"S": f"shard#{index}"}}
        batch = self.rate.batch
        rate, tol_us = self.shard_rate, int(self.tolerance_s * _US)
        now_us = int(now * _US)
        for _ in range(TAKE_TRIES):
            cost_us = math.ceil(batch * _US / rate)
            busy = shard.tat_us > now_us
            request = self._request(key, now_us, cost_us, tol_us, busy)
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
                shard.tat_us = int(old["tat_us"]["N"]) if old and "tat_us" in old else 0
                room_us = now_us + tol_us - max(shard.tat_us, now_us)
                if room_us * rate / _US < batch:  # a whole batch or nothing: fewer writes
                    return 0, self._full(shard, now_us, now)
                continue
            self.writes += 1
            self.misses = 0
            shard.tat_us = int(response["Attributes"]["tat_us"]["N"])
            self.tokens += batch
            self.until = max(self.until, shard.tat_us / _US + self.tolerance_s / 3)
            return self.local(want, now), 0.0
        return 0, 1.0 / rate

    def _full(self, shard: _Shard, now_us: int, now: float) -> float:
        """No room: the seconds to wait. The bucket is not asked again until
        a whole batch fits, plus a jitter that grows with the misses in a row, so
        the takers of a contended bucket do not all write at the same moment."""
        rate, tol_us = self.shard_rate, self.tolerance_s * _US
        one_s = (shard.tat_us + _US / rate - tol_us - now_us) / _US
        batch_s = (shard.tat_us + self.rate.batch * _US / rate - tol_us - now_us) / _US
        self.misses += 1
        jitter_s = random.uniform(0, self.rate.batch / rate * min(self.misses, MAX_JITTER_BATCHES))
        self.retry_at = now + max(batch_s, one_s, 0.0) + jitter_s
        return max(self.retry_at - now, 0.001)

    def _request(
        self, key: Item, now_us: int, cost_us: int, tol_us: int, busy: bool
    ) -> dict[str, Any]:
        expires = {"N": str(now_us // _US + BUCKET_TTL_S)}
        if busy:
            return {
                "TableName": self.table,
                "Key": key,
                "UpdateExpression": "SET tat_us = tat_us + :cost, expires_at = :expires",
                "ConditionExpression": _BUSY,
                "ExpressionAttributeValues": {
                    ":cost": {"N": str(cost_us)},
                    ":now": {"N": str(now_us)},
                    ":room": {"N": str(now_us + tol_us - cost_us)},
                    ":expires": expires,
                },
                "ReturnValues": "UPDATED_NEW",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        return {
            "TableName": self.table,
            "Key": key,
            "UpdateExpression": "SET tat_us = :tat, expires_at = :expires",
            "ConditionExpression": _IDLE,
            "ExpressionAttributeValues": {
                ":tat": {"N": str(now_us + cost_us)},
                ":now": {"N": str(now_us)},
                ":expires": expires,
            },
            "ReturnValues": "UPDATED_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
