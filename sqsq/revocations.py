"""Revocations: one write per ``revoke()``, one Query per interval per busy worker.

``AsyncResult.revoke()`` puts one item in the app's partition of the table; a
worker (or a warm Lambda container) learns of new ones with one Query and keeps
them in memory until they expire::

    revoke(id) ──► PutItem  pk = "revocations#<app>"   sk = "<epoch ms, 13 digits>#<task id>"
                            task_id, expires_at (TTL)

    runner with work ──► Query pk = :pk AND sk > :since   (ConsistentRead; pages of 1 MB)
        at most once per ``revocation_interval_s``, only while it holds messages —
        an idle worker makes none; the first Query reads the whole partition
        (revocations live ``limits.SQS_MAX_RETENTION_S`` by default, and are few)

    before a task starts ──► the view is at most ``revocation_interval_s`` old
        (refreshed first if not), then ``task_id in view`` ─► REVOKED, never run

A revocation therefore reaches every runner within ``revocation_interval_s``;
a task that a runner starts before then runs, as a Celery revoke that has not
yet reached a worker. ``since`` overlaps the previous Query by
:data:`CLOCK_SKEW_S`, so a revoker whose clock is behind is not missed.

Runtime controls share the partition: an item whose ``sk`` does not start with a
digit (``limit#task#<name>``, written by ``sqsq limits set``) sorts after every
revocation, so each Query returns all of them; the view keeps the latest set in
:attr:`RevocationView.controls` for the capability that wrote them — a fresh
worker learns them with its first Query, at no extra request.

Cost: a Query reads at most 1 MB per page and is billed per 4 KB read, so with few
revocations it is one read request — independent of throughput.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .calls import Call, Steps, arun, run

if TYPE_CHECKING:
    import asyncio

Item = dict[str, dict[str, Any]]

logger = logging.getLogger(__name__)

#: Default seconds between Queries of a busy runner (``Settings.revocation_interval_s``).
DEFAULT_INTERVAL_S = 2.0
#: Each Query re-reads this many seconds before the newest revocation it has seen.
CLOCK_SKEW_S = 60.0


def partition(app_name: str) -> str:
    """The partition key of an app's revocations."""
    return f"revocations#{app_name}"


def revocation_item(app_name: str, task_id: str, ttl_s: float, now: float | None = None) -> Item:
    """The item that revokes ``task_id`` for ``ttl_s`` seconds."""
    now = time.time() if now is None else now
    return {
        "pk": {"S": partition(app_name)},
        "sk": {"S": f"{int(now * 1000):013d}#{task_id}"},
        "task_id": {"S": task_id},
        "expires_at": {"N": str(int(now + ttl_s))},
    }


def query_request(table: str, app_name: str, since_ms: int) -> dict[str, Any]:
    """Query arguments for revocations written after ``since_ms`` (epoch ms)."""
    return {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk > :since",
        "ExpressionAttributeValues": {
            ":pk": {"S": partition(app_name)},
            ":since": {"S": f"{max(0, since_ms):013d}"},
        },
        "ConsistentRead": True,
    }


class RevocationView:
    """What one runner knows of an app's revocations.

    Args:
        clients: the App's client factory.
        table: the DynamoDB table.
        app_name: whose revocations.
        interval_s: the longest a view may be used without a fresh Query, seconds.
    """

    def __init__(self, clients: Any, table: str, app_name: str, interval_s: float) -> None:
        self.clients = clients
        self.table = table
        self.app_name = app_name
        self.interval_s = interval_s
        self._revoked: dict[str, int] = {}  # task id -> expires_at (epoch s)
        self._newest_ms = 0  # sk time of the newest revocation seen
        self._refreshed = float("-inf")  # time.monotonic() of the last successful Query
        self._retry_at = float("-inf")  # after a failed Query, the next one waits until then
        self._lock = threading.Lock()
        self._pending: asyncio.Future[None] | None = None
        self.queries = 0
        #: Runtime controls by ``sk`` (see the module docstring), as of the last Query.
        self.controls: dict[str, Item] = {}

    def fresh(self, now: float | None = None) -> bool:
        """Whether the view is recent enough to decide on."""
        now = time.monotonic() if now is None else now
        return now - self._refreshed < self.interval_s or now < self._retry_at

    def is_revoked(self, task_id: str, now: float | None = None) -> bool:
        """Whether ``task_id`` is revoked, by the current view."""
        expires = self._revoked.get(task_id)
        return expires is not None and expires > (time.time() if now is None else now)

    def _since_ms(self) -> int:
        return self._newest_ms - int(CLOCK_SKEW_S * 1000) if self._newest_ms else 0

    def _absorb(self, items: Iterable[Item], started: float) -> None:
        now = time.time()
        with self._lock:
            controls: dict[str, Item] = {}
            for item in items:
                sk = item.get("sk", {}).get("S", "")
                if sk and not sk[0].isdigit():
                    controls[sk] = item
                    continue
                task_id = item.get("task_id", {}).get("S")
                try:
                    written_ms = int(sk.partition("#")[0])
                    expires = int(item.get("expires_at", {}).get("N", "0"))
                except ValueError:
                    continue
                if task_id:
                    self._revoked[task_id] = max(expires, self._revoked.get(task_id, 0))
                self._newest_ms = max(self._newest_ms, written_ms)
            for task_id in [t for t, e in self._revoked.items() if e <= now]:
                del self._revoked[task_id]
            self.controls = controls
            self._refreshed = max(self._refreshed, started)
            self.queries += 1

    def refresh(self) -> None:
        """One Query (all pages) with boto3; raises AWS errors."""
        run(self.refreshing(), self.clients)

    async def arefresh(self) -> None:
        """Asyncio twin of :meth:`refresh`; concurrent callers share one Query."""
        import asyncio  # not at import time: ``import sqsq`` stays without asyncio

        if self._pending is not None:
            return await asyncio.shield(self._pending)
        self._pending = asyncio.get_running_loop().create_future()
        try:
            await arun(self.refreshing(), self.clients)
            self._pending.set_result(None)
        except BaseException as exc:
            self._pending.set_exception(exc)
            self._pending.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self._pending = None

    def refreshing(self) -> Steps[None]:
        """The calls of :meth:`refresh` (see :mod:`sqsq.calls`)."""
        started = time.monotonic()
        request = query_request(self.table, self.app_name, self._since_ms())
        items: list[Item] = []
        while True:
            response = yield Call("dynamodb", "query", dict(request))
            items += response.get("Items", [])
            if not response.get("LastEvaluatedKey"):
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        self._absorb(items, started)

    def check(self, task_id: str) -> bool:
        """Refresh if stale (boto3), then :meth:`is_revoked`. A failed refresh is
        logged and the current view is used."""
        if not self.fresh():
            try:
                self.refresh()
            except Exception as exc:
                self._failed(exc)
        return self.is_revoked(task_id)

    def _failed(self, exc: Exception) -> None:
        """A failed Query: use what is known, and try again after one interval."""
        self._retry_at = time.monotonic() + self.interval_s
        logger.warning("revocation Query failed (%s); using what is known", exc)

    async def acheck(self, task_id: str) -> bool:
        """Asyncio twin of :meth:`check`."""
        if not self.fresh():
            try:
                await self.arefresh()
            except Exception as exc:
                self._failed(exc)
        return self.is_revoked(task_id)
