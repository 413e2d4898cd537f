"""The leaser: keeps every message the worker holds invisible while it holds it.

Messages waiting in the ready buffer, running, or waiting to be settled are in
the worker's :class:`~sqsq.lease.LeaseTable` from their receive until they are let
go. Every tick, each lease that is half gone is extended with one
ChangeMessageVisibilityBatch per queue (10 entries per call), and a claimed
idempotency key's lease alongside it (see ``lease.py`` for the timeline and the
12 h cap). An idle worker holds nothing and makes no request. An extended message
whose body carries a Step Functions task token also gets a SendTaskHeartbeat
(``task_tokens.Heartbeats``, sent beside the extensions, never holding them up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from ..lease import LeaseTable
from ..sqs import chunks
from ..task_tokens import Heartbeats

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)


async def keep_leases(app: App, leases: LeaseTable, counters: Counter[str]) -> None:
    """Extend due leases until cancelled."""
    heartbeats = Heartbeats()
    try:
        await _keep_leases(app, leases, counters, heartbeats)
    finally:
        await heartbeats.aclose()


async def _keep_leases(
    app: App, leases: LeaseTable, counters: Counter[str], heartbeats: Heartbeats
) -> None:
    client = await app.clients.aclient("sqs")
    while True:
        await asyncio.sleep(leases.tick_s())
        now = time.monotonic()
        due = leases.due(now)
        if not due:
            continue
        ends = [lease.ends_monotonic for lease in due]
        for url, entries in leases.visibility_entries(due, now).items():
            for chunk in chunks(entries):
                try:
                    response = await client.change_message_visibility_batch(
                        QueueUrl=url, Entries=list(chunk)
                    )
                except Exception as exc:
                    logger.warning("extending %d leases failed: %s", len(chunk), exc)
                    continue
                counters["leases_extended"] += LeaseTable.extended(due, list(chunk), response, now)
        # Step Functions: the extended messages whose body has a task token
        extended = [
            lease.delivery
            for lease, end in zip(due, ends, strict=True)
            if lease.ends_monotonic != end
        ]
        heartbeats.astart(app, extended)
        for lease in due:
            if lease.idempotency_pk and lease.owner:
                with contextlib.suppress(Exception):
                    await app.idempotency.aextend(lease.idempotency_pk, lease.owner, lease.lease_s)
