"""Leases on in-flight messages: extending the visibility timeout while a task runs.

A received message is invisible for its queue's visibility timeout — the lease.
While its task runs, the runner extends it before it ends::

    receive ──┬── lease_s ──┬── lease_s ──┬── … ──► outcome settled, lease dropped
              │  half gone: │  half gone: │
              └ extend ─────┴ extend ─────┘   ChangeMessageVisibilityBatch, every due
                                              message of a queue in one call (10 per call)

    never past receive + 12 h (limits.SQS_MAX_VISIBILITY_TIMEOUT_S): a task that
    would need longer is stopped with TimeLimitExceeded (see ``Executor.time_limit_s``)

The table and what is due are pure; the requests are sent from a thread of their
own — the worker's leaser (``worker/leaser.py``), the Lambda handler's heartbeat — so
that neither a task blocking the worker's event loop nor the handler's busy thread
starves them. The table is shared with that thread: its methods hold its lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import limits
from .delivery import Delivery

logger = logging.getLogger(__name__)

#: Extend once less than this fraction of the lease remains.
EXTEND_AT_FRACTION = 0.5
#: Shortest and longest pause between heartbeat checks, seconds.
MIN_TICK_S = 0.5
MAX_TICK_S = 10.0


@dataclass
class Lease:
    """One in-flight message's lease.

    Attributes:
        delivery: the message.
        lease_s: visibility timeout asked for at each extension, seconds.
        ends_monotonic: when the current visibility ends (``time.monotonic()``).
        idempotency_pk: the idempotency item whose lease is extended alongside.
        owner: the task id owning that idempotency lease.
    """

    delivery: Delivery
    lease_s: float
    ends_monotonic: float
    idempotency_pk: str | None = None
    owner: str | None = None

    def extension_s(self, now: float) -> int:
        """Visibility timeout to ask for now: ``lease_s``, capped by 12 h from receipt."""
        held = now - self.delivery.received_monotonic
        room = limits.SQS_MAX_VISIBILITY_TIMEOUT_S - held
        return max(0, int(min(self.lease_s, room)))


class LeaseTable:
    """The leases of every message a runner holds."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._leases)

    def add(self, delivery: Delivery, lease_s: float, visibility_s: float) -> Lease:
        """Track ``delivery``; its current visibility ends ``visibility_s`` after receipt."""
        lease = Lease(delivery, lease_s, delivery.received_monotonic + visibility_s)
        with self._lock:
            self._leases[delivery.receipt_handle] = lease
        return lease

    def get(self, delivery: Delivery) -> Lease | None:
        with self._lock:
            return self._leases.get(delivery.receipt_handle)

    def drop(self, deliveries: Iterable[Delivery]) -> None:
        with self._lock:
            for delivery in deliveries:
                self._leases.pop(delivery.receipt_handle, None)

    def due(self, now: float | None = None) -> list[Lease]:
        """Leases with less than half their length left, that can still grow."""
        now = time.monotonic() if now is None else now
        with self._lock:
            leases = list(self._leases.values())
        return [
            lease
            for lease in leases
            if lease.ends_monotonic - now < lease.lease_s * EXTEND_AT_FRACTION
            and lease.extension_s(now) > 0
        ]

    def tick_s(self) -> float:
        """How long to sleep before the next check."""
        with self._lock:
            lengths = [lease.lease_s for lease in self._leases.values()]
        if not lengths:  # a message may arrive with a short lease at any moment
            return MIN_TICK_S
        return max(MIN_TICK_S, min(MAX_TICK_S, min(lengths) / 6))

    @staticmethod
    def extended(
        due: list[Lease], entries: list[dict[str, object]], response: dict[str, Any], now: float
    ) -> int:
        """Record a ChangeMessageVisibilityBatch answer for ``entries`` (ids index
        ``due``); returns how many leases were extended."""
        failed = {f["Id"] for f in response.get("Failed", [])}
        for entry in entries:
            lease = due[int(str(entry["Id"]))]
            if entry["Id"] in failed:
                logger.warning(
                    "lease of message %s could not be extended", lease.delivery.message_id
                )
            else:
                lease.ends_monotonic = now + float(str(entry["VisibilityTimeout"]))
        return len(entries) - len(failed)

    @staticmethod
    def visibility_entries(leases: list[Lease], now: float) -> dict[str, list[dict[str, object]]]:
        """ChangeMessageVisibilityBatch entries per queue URL (unchunked)."""
        by_url: dict[str, list[dict[str, object]]] = {}
        for index, lease in enumerate(leases):
            by_url.setdefault(lease.delivery.queue_url, []).append(
                {
                    "Id": str(index),
                    "ReceiptHandle": lease.delivery.receipt_handle,
                    "VisibilityTimeout": lease.extension_s(now),
                }
            )
        return by_url
