"""Worker heartbeats: each ``sqsq worker`` says every interval that it is alive.

One item per worker in the app's partition of the table, so that one Query lists
an app's workers (``sqsq status``)::

    start ─► PutItem  pk = "worker#<app>"   sk = "<worker id>" (host:pid)
             host, pid, queues, concurrency, pool, busy, processed, failed,
             started_at, last_seen (epoch s), interval_s, expires_at (TTL)
    every ``heartbeat_interval_s`` (30 s) ─► the same PutItem, counters updated
    clean exit ─► DeleteItem

    killed (SIGKILL, OOM, host lost) ─► no more writes: the item's ``expires_at``
        (last seen + HEARTBEAT_MISSES intervals) passes, readers ignore it at once,
        DynamoDB's TTL deletes it later (lazily: up to days on AWS; moto never does)

Cost: one PutItem per interval per worker — 2 writes a minute at the default 30 s
— plus one DeleteItem at exit; no reads. The Lambda handler writes none (its
concurrency is CloudWatch's to report). A write that fails (DynamoDB unreachable,
throttled, access denied) is logged once per outage and never stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)

Item = dict[str, dict[str, Any]]

#: A worker whose item was not refreshed for this many intervals is gone: its
#: ``expires_at`` is ``last_seen + HEARTBEAT_MISSES * interval_s``.
HEARTBEAT_MISSES = 3
#: Longest a clean exit waits for its heartbeat's DeleteItem, seconds (part of the
#: shutdown's ``worker.SHUTDOWN_MARGIN_S``).
DELETE_TIMEOUT_S = 0.5
#: The worker counters (``Worker.counters``) that count as processed: settled outcomes.
PROCESSED_COUNTERS = ("succeeded", "failed", "dead_lettered", "retried", "revoked")
#: The worker counters that count as failed: FAILURE and DEAD_LETTER outcomes.
FAILED_COUNTERS = ("failed", "dead_lettered")


def partition(app_name: str) -> str:
    """The partition key of an app's heartbeats."""
    return f"worker#{app_name}"


def heartbeat_key(app_name: str, worker_id: str) -> Item:
    """The primary key of one worker's heartbeat item."""
    return {"pk": {"S": partition(app_name)}, "sk": {"S": worker_id}}


@dataclass(frozen=True)
class WorkerInfo:
    """One worker, as its last heartbeat describes it.

    Attributes:
        worker_id: ``host:pid`` (the ``worker`` field of the results it stores).
        host: the host name.
        pid: the process id on that host.
        queues: the physical queue names it consumes.
        concurrency: its run slots.
        pool: ``"threads"`` or ``"processes"``.
        busy: run slots in use when it wrote the heartbeat.
        processed: outcomes settled since it started (success, failure,
            dead-letter, retry, revoked).
        failed: of those, failures and dead letters.
        started_at: when it started, epoch seconds.
        last_seen: when it wrote the heartbeat, epoch seconds.
        interval_s: its heartbeat interval, seconds.
        expires_at: after this (epoch seconds) it is presumed dead.
    """

    worker_id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    pool: str
    busy: int
    processed: int
    failed: int
    started_at: float
    last_seen: float
    interval_s: float
    expires_at: float


def heartbeat_item(app_name: str, info: WorkerInfo) -> Item:
    """The DynamoDB item of ``info`` (about 300 bytes: one write unit)."""
    item: Item = heartbeat_key(app_name, info.worker_id)
    item.update(
        {
            "host": {"S": info.host},
            "pid": {"N": str(info.pid)},
            "queues": {"L": [{"S": q} for q in info.queues]},
            "concurrency": {"N": str(info.concurrency)},
            "pool": {"S": info.pool},
            "busy": {"N": str(info.busy)},
            "processed": {"N": str(info.processed)},
            "failed": {"N": str(info.failed)},
            "started_at": {"N": f"{info.started_at:.3f}"},
            "last_seen": {"N": f"{info.last_seen:.3f}"},
            "interval_s": {"N": f"{info.interval_s:g}"},
            "expires_at": {"N": str(int(info.expires_at))},
        }
    )
    return item


def worker_from_item(item: Item, now: float | None = None) -> WorkerInfo | None:
    """Parse a heartbeat item; None if it is past its ``expires_at`` (the worker is
    gone: DynamoDB's TTL deletes lazily) or malformed."""
    now = time.time() if now is None else now
    try:
        expires_at = float(item["expires_at"]["N"])
        if expires_at <= now:
            return None
        return WorkerInfo(
            worker_id=item["sk"]["S"],
            host=item["host"]["S"],
            pid=int(item["pid"]["N"]),
            queues=tuple(q["S"] for q in item.get("queues", {}).get("L", [])),
            concurrency=int(item["concurrency"]["N"]),
            pool=item.get("pool", {}).get("S", "threads"),
            busy=int(item["busy"]["N"]),
            processed=int(item["processed"]["N"]),
            failed=int(item["failed"]["N"]),
            started_at=float(item["started_at"]["N"]),
            last_seen=float(item["last_seen"]["N"]),
            interval_s=float(item["interval_s"]["N"]),
            expires_at=expires_at,
        )
    except (KeyError, ValueError, TypeError):
        return None


def query_request(table: str, app_name: str) -> dict[str, Any]:
    """Query arguments that list an app's heartbeats (one page holds ~3,000)."""
    return {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": partition(app_name)}},
        "ConsistentRead": True,
    }


class WorkerHeartbeat:
    """Writes one worker's heartbeat item every ``interval_s`` on its event loop.

    A loop blocked by a task delays the write: a worker whose loop stays blocked
    for :data:`HEARTBEAT_MISSES` intervals looks gone, as it is for its queues.

    Args:
        app: the worker's App (its table and clients).
        worker_id: the worker's id (``host:pid``).
        queues: the physical queue names it consumes.
        concurrency: its run slots.
        pool: ``"threads"`` or ``"processes"``.
        interval_s: seconds between writes (> 0).
        busy: returns the run slots in use now.
        counters: the worker's counters (read at each write).
    """

    def __init__(
        self,
        app: App,
        *,
        worker_id: str,
        queues: list[str],
        concurrency: int,
        pool: str,
        interval_s: float,
        busy: Callable[[], int],
        counters: Mapping[str, int],
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.pool = pool
        self.interval_s = interval_s
        self.busy = busy
        self.counters = counters
        self.started_at = time.time()
        self.writes = 0
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def info(self, now: float | None = None) -> WorkerInfo:
        """What the next heartbeat says."""
        now = time.time() if now is None else now
        return WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.queues,
            concurrency=self.concurrency,
            pool=self.pool,
            busy=self.busy(),
            processed=sum(self.counters.get(k, 0) for k in PROCESSED_COUNTERS),
            failed=sum(self.counters.get(k, 0) for k in FAILED_COUNTERS),
            started_at=self.started_at,
            last_seen=now,
            interval_s=self.interval_s,
            expires_at=now + HEARTBEAT_MISSES * self.interval_s,
        )

    def start(self) -> None:
        """Start writing (the first write at once), as a task of the running loop."""
        self._task = asyncio.create_task(self._run(), name="sqsq-heartbeat")

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval_s)

    async def beat(self) -> bool:
        """Write the heartbeat once; returns whether it was written. Never raises
        (a failure is logged once per outage)."""
        item = heartbeat_item(self.app.name, self.info())
        try:
            client = await self.app.clients.aclient("dynamodb")
            await client.put_item(TableName=self.app.table_name, Item=item)
        except Exception as exc:
            if not self._failing:
                logger.warning(
                    "worker heartbeat to table %s failed (%s: %s); the worker goes on, and "
                    "`sqsq status` stops listing it until a heartbeat succeeds",
                    self.app.table_name,
                    type(exc).__name__,
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("worker heartbeat written again")
        self._failing = False
        self.writes += 1
        return True

    async def stop(self) -> None:
        """Stop writing and delete the item (a clean exit), waiting at most
        :data:`DELETE_TIMEOUT_S` (an unreachable table must not hold up the shutdown:
        the item then expires by itself); never raises."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(Exception):
            client = await self.app.clients.aclient("dynamodb")
            await asyncio.wait_for(
                client.delete_item(
                    TableName=self.app.table_name,
                    Key=heartbeat_key(self.app.name, self.worker_id),
                ),
                timeout=DELETE_TIMEOUT_S,
            )
