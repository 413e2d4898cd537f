"""Celery's rate syntax, and how a rate decides a bucket's batch and shards.

``"100/s"``, ``"10/m"``, ``"1000/h"`` — or a bare number (``100``, ``"100"``),
which is per second, as in Celery. ``0`` / ``"0/s"`` is refused (Celery reads it
as "no limit"; here it would stop the task for good: leave the option out).

Batch: a worker takes ``batch`` tokens per conditional write and spends them
locally, so a bucket costs ``1 / batch`` DynamoDB writes per task. The batch is
the tokens of :data:`BATCH_WINDOW_S` (half a second) at the bucket's rate,
between 1 and :data:`MAX_BATCH`: from 20/s on, a batch holds ≥ 10 tokens (≤ 0.1
writes per task); below, a write costs at most one per task but the writes
per second stay ≤ 2 per worker. Half a second keeps the worst burst of a fresh
bucket (1.5 batches, see ``bucket.py``) at 7.5 % of a 10 s window.

Shards: one DynamoDB item takes up to 1,000 writes per second (a partition's
limit), less under the retries of conditional-write conflicts; a bucket is
spread over ``ceil(writes per second / ITEM_WRITES_PER_S)`` items, each with an
equal share of the rate, when one item would take more than
:data:`ITEM_WRITES_PER_S` writes per second — a tenth of the partition limit,
room for every taker's conflicts. With batches of :data:`MAX_BATCH` that is
above 5,000 tasks per second.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: Seconds of tokens one conditional write takes (the batch), at most.
BATCH_WINDOW_S = 0.5
#: Most tokens one write takes.
MAX_BATCH = 50
#: Writes per second one bucket item is planned for before the bucket is sharded
#: (DynamoDB: 1,000 WCU per partition, "Throughput default quotas"
#: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html).
ITEM_WRITES_PER_S = 100.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")


@dataclass(frozen=True)
class Rate:
    """A rate limit.

    Attributes:
        per_s: tokens per second (> 0).
        text: as written (``"10/m"``).
    """

    per_s: float
    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def batch(self) -> int:
        """Tokens one conditional write takes (see the module docstring)."""
        return max(1, min(MAX_BATCH, math.ceil(self.per_s * BATCH_WINDOW_S)))

    @property
    def shards(self) -> int:
        """How many items the bucket is spread over (1: not sharded)."""
        writes_per_s = self.per_s / self.batch
        return max(1, math.ceil(writes_per_s / ITEM_WRITES_PER_S))


def parse_rate(value: str | float) -> Rate:
    """A :class:`Rate` from Celery's syntax.

    Args:
        value: ``"<n>/s"``, ``"<n>/m"``, ``"<n>/h"``, or a number of tasks per second.

    Raises:
        ValueError: any other text, or a rate that is not above zero.

    Example::

        parse_rate("10/m").per_s  # 0.1666…
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"rate_limit must be like '100/s', '10/m' or '1000/h', got {value!r}")
    match = _RATE.match(str(value))
    if match is None:
        raise ValueError(f"rate_limit must be like '100/s', '10/m' or '1000/h', got {value!r}")
    count, unit = float(match.group(1)), match.group(2) or "s"
    if count <= 0:
        raise ValueError(f"rate_limit must be above zero, got {value!r} (leave it out for none)")
    text = f"{match.group(1)}/{unit}"
    return Rate(count / _UNITS[unit], text)
