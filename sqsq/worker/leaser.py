"""The leaser: keeps every message the worker holds invisible while it holds it.

Messages waiting in the ready buffer, running, or waiting to be settled are in
the worker's :class:`~sqsq.lease.LeaseTable` from their receive until they are let
go. Every tick, each lease that is half gone is extended with one
ChangeMessageVisibilityBatch per queue (10 entries per call), and a claimed
idempotency key's lease alongside it (see ``lease.py`` for the timeline and the
12 h cap). An idle worker holds nothing and makes no request.
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

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)


async def keep_leases(app: App, leases: LeaseTable, counters: Counter[str]) -> None:
    """Extend due leases until cancelled."""
    client = await app.clients.aclient("sqs")
    while True:
        await asyncio.sleep(leases.tick_s())
        now = time.monotonic()
        due = leases.due(now)
        if not due:
            continue
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
        for lease in due:
            if lease.idempotency_pk and lease.owner:
                with contextlib.suppress(Exception):
                    await app.idempotency.aextend(lease.idempotency_pk, lease.owner, lease.lease_s)
