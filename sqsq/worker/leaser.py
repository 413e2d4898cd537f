"""The leaser: keeps every message the worker holds invisible while it holds it.

Messages waiting in the ready buffer, running, or waiting to be settled are in
the worker's :class:`~sqsq.lease.LeaseTable` from their receive until they are let
go. Every tick, each lease that is half gone is extended with one
ChangeMessageVisibilityBatch per queue (10 entries per call), and a claimed
idempotency key's lease alongside it (see ``lease.py`` for the timeline and the
12 h cap). An idle worker holds nothing and makes no request. An extended message
whose body carries a Step Functions task token also gets a SendTaskHeartbeat
(``task_tokens.Heartbeats``, sent from a thread of its own, never holding them up).

The leaser is a thread with a boto3 client, not a coroutine of the event loop: an
``async def`` task that blocks the loop (a sync call: ``time.sleep``, a sync HTTP
client, a long computation) would otherwise stop every extension, and the messages
of all its neighbours would reappear in the queue and run twice. Blocking the loop
is still a bug of that task: :mod:`sqsq.worker.watchdog` logs it, naming the task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..lease import LeaseTable
from ..sqs import chunks
from ..task_tokens import Heartbeats

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)

#: Longest wait for the leaser thread at shutdown, seconds (a request may be in
#: flight; the thread is a daemon and dies with the process).
STOP_TIMEOUT_S = 2.0


class Leaser(threading.Thread):
    """Extends due leases from its own thread until :meth:`stop`.

    Args:
        app: the App (its boto3 SQS client; its idempotency store).
        leases: the worker's lease table (shared with the event loop; locked).
        counters: the worker's counters (``leases_extended``).
    """

    def __init__(self, app: App, leases: LeaseTable, counters: Counter[str]) -> None:
        super().__init__(name="sqsq-leaser", daemon=True)
        self.app = app
        self.leases = leases
        self.counters = counters
        self.heartbeats = Heartbeats()
        self._stopped = threading.Event()

    def run(self) -> None:
        client: Any = None
        while not self._stopped.wait(self.leases.tick_s()):
            try:
                client = client or self.app.clients.sync("sqs")
                self.tick(client, time.monotonic())
            except Exception:  # never let the thread die: the next tick tries again
                logger.exception("extending leases failed")

    def tick(self, client: Any, now: float) -> int:
        """Extend the leases due at ``now``; returns how many were extended."""
        due = self.leases.due(now)
        if not due:
            return 0
        ends = [lease.ends_monotonic for lease in due]
        extended = 0
        for url, entries in self.leases.visibility_entries(due, now).items():
            for chunk in chunks(entries):
                try:
                    response = client.change_message_visibility_batch(
                        QueueUrl=url, Entries=list(chunk)
                    )
                except Exception as exc:
                    logger.warning("extending %d leases failed: %s", len(chunk), exc)
                    continue
                extended += LeaseTable.extended(due, list(chunk), response, now)
        self.counters["leases_extended"] += extended
        # Step Functions: the extended messages whose body has a task token
        self.heartbeats.start(
            self.app,
            [
                lease.delivery
                for lease, end in zip(due, ends, strict=True)
                if lease.ends_monotonic != end
            ],
        )
        for lease in due:  # the idempotency claim lives as long as the message's lease
            if lease.idempotency_pk and lease.owner:
                try:
                    self.app.idempotency.extend(lease.idempotency_pk, lease.owner, lease.lease_s)
                except Exception as exc:
                    logger.warning(
                        "extending the idempotency lease of %s failed: %s", lease.owner, exc
                    )
        return extended

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop ticking; wait up to ``timeout_s`` for a tick under way."""
        self._stopped.set()
        if self.is_alive():
            self.join(timeout_s)
