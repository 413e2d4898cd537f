"""Result items in the app's DynamoDB table: building, parsing, batch writing.

One table per app, key ``pk`` (S) + ``sk`` (S), on-demand, TTL on ``expires_at``:

=====================  ==============  ==========  ========================================
item                   pk              sk          attributes
=====================  ==============  ==========  ========================================
result of a task       ``task#<id>``   ``result``  state, task, queue, value (JSON text),
                                                   exc_type, exc_message, traceback, reason,
                                                   attempts, worker, message_id, enqueued_at,
                                                   started_at, finished_at, expires_at
=====================  ==============  ==========  ========================================

Item builders and parsers are pure functions over DynamoDB's low-level attribute
values; :class:`ResultStore` only executes them with boto3 or aiobotocore.
Outcomes that finish together go out as one BatchWriteItem (25 items,
``limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS``); unprocessed items are retried with
backoff and, if still unprocessed, reported so their messages are *not* deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from . import limits
from .envelope import dumps
from .result import ResultRecord, State

logger = logging.getLogger(__name__)

#: Stored tracebacks keep their last this-many characters (the innermost frames).
MAX_TRACEBACK_CHARS = 16_384
#: Attempts at a BatchWriteItem's UnprocessedItems before giving up on them.
UNPROCESSED_ATTEMPTS = 5

Item = dict[str, dict[str, Any]]


def result_key(task_id: str) -> Item:
    """The primary key of a task's result item."""
    return {"pk": {"S": f"task#{task_id}"}, "sk": {"S": "result"}}


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def result_item(record: ResultRecord) -> Item:
    """The DynamoDB item for ``record`` (None fields are left out)."""
    item: Item = result_key(record.task_id)
    strings = {
        "state": record.state.value,
        "task": record.task,
        "queue": record.queue,
        "exc_type": record.exc_type,
        "exc_message": record.exc_message,
        "traceback": (record.traceback or "")[-MAX_TRACEBACK_CHARS:] or None,
        "reason": record.dead_letter_reason,
        "worker": record.worker,
        "message_id": record.message_id,
        "enqueued_at": _ts(record.enqueued_at),
        "started_at": _ts(record.started_at),
        "finished_at": _ts(record.finished_at),
    }
    for name, text in strings.items():
        if text:
            item[name] = {"S": text}
    if record.state is State.SUCCESS:
        item["value"] = {"S": dumps(record.value)}
    if record.extra:
        item["extra"] = {"S": dumps(record.extra)}
    item["attempts"] = {"N": str(record.attempts)}
    if record.expires_at is not None:
        item["expires_at"] = {"N": str(record.expires_at)}
    return item


def item_size(item: Item) -> int:
    """Approximate DynamoDB size of ``item`` in bytes (names + values, UTF-8;
    numbers counted at their 21-byte maximum), per "Item sizes" in the DynamoDB guide."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        else:
            size += 21
    return size


def record_from_item(item: Item, now: float | None = None) -> ResultRecord | None:
    """Parse a result item; None if it is past its ``expires_at`` (TTL lags)."""
    expires = int(item["expires_at"]["N"]) if "expires_at" in item else None
    if expires is not None and expires <= (time.time() if now is None else now):
        return None

    def s(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    def dt(name: str) -> datetime | None:
        text = s(name)
        return datetime.fromisoformat(text) if text else None

    value_text = s("value")
    extra_text = s("extra")
    return ResultRecord(
        task_id=item["pk"]["S"].removeprefix("task#"),
        state=State(item["state"]["S"]),
        task=s("task"),
        queue=s("queue"),
        value=json.loads(value_text) if value_text is not None else None,
        exc_type=s("exc_type"),
        exc_message=s("exc_message"),
        traceback=s("traceback"),
        dead_letter_reason=s("reason"),
        attempts=int(item.get("attempts", {"N": "0"})["N"]),
        worker=s("worker"),
        message_id=s("message_id"),
        enqueued_at=dt("enqueued_at"),
        started_at=dt("started_at"),
        finished_at=dt("finished_at"),
        expires_at=expires,
        extra=json.loads(extra_text) if extra_text else {},
    )


def write_batches(items: Iterable[tuple[str, Item]]) -> list[list[tuple[str, Item]]]:
    """Split ``(task_id, item)`` pairs into BatchWriteItem-sized groups.

    A batch may not touch the same key twice, so a later item for the same task
    replaces an earlier one.
    """
    latest: dict[str, Item] = {}
    for task_id, item in items:
        latest.pop(task_id, None)
        latest[task_id] = item
    pairs = list(latest.items())
    size = limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def _backoff_s(attempt: int) -> float:
    # full jitter, 50 ms base, 2 s cap ("Exponential Backoff And Jitter", AWS blog)
    return float(random.uniform(0, min(2.0, 0.05 * 2**attempt)))


def _unprocessed_keys(response: dict[str, Any], table: str) -> list[Item]:
    return [r["PutRequest"]["Item"] for r in response.get("UnprocessedItems", {}).get(table, [])]


class ResultStore:
    """Reads and writes result items in one table.

    Args:
        clients: the App's client factory.
        table: the DynamoDB table name.
    """

    def __init__(self, clients: Any, table: str) -> None:
        self.clients = clients
        self.table = table

    # --- reads ----------------------------------------------------------------

    def get_result(self, task_id: str) -> ResultRecord | None:
        """One consistent GetItem; None when absent or expired."""
        response = self.clients.sync("dynamodb").get_item(
            TableName=self.table, Key=result_key(task_id), ConsistentRead=True
        )
        item = response.get("Item")
        return record_from_item(item) if item else None

    async def aget_result(self, task_id: str) -> ResultRecord | None:
        """Asyncio twin of :meth:`get_result`."""
        client = await self.clients.aclient("dynamodb")
        response = await client.get_item(
            TableName=self.table, Key=result_key(task_id), ConsistentRead=True
        )
        item = response.get("Item")
        return record_from_item(item) if item else None

    # --- writes ---------------------------------------------------------------

    def put_results(self, items: Iterable[tuple[str, Item]]) -> set[str]:
        """Store items with BatchWriteItem; returns the task ids NOT stored.

        Exceptions from the AWS call (after botocore's retries) propagate.
        """
        client = self.clients.sync("dynamodb")
        failed: set[str] = set()
        for batch in write_batches(items):
            by_pk = {item["pk"]["S"]: task_id for task_id, item in batch}
            pending = [item for _, item in batch]
            for attempt in range(UNPROCESSED_ATTEMPTS):
                if attempt:
                    time.sleep(_backoff_s(attempt))
                response = client.batch_write_item(
                    RequestItems={self.table: [{"PutRequest": {"Item": i}} for i in pending]}
                )
                pending = _unprocessed_keys(response, self.table)
                if not pending:
                    break
            failed.update(by_pk[item["pk"]["S"]] for item in pending)
        return failed

    async def aput_results(self, items: Iterable[tuple[str, Item]]) -> set[str]:
        """Asyncio twin of :meth:`put_results`."""
        client = await self.clients.aclient("dynamodb")
        failed: set[str] = set()
        for batch in write_batches(items):
            by_pk = {item["pk"]["S"]: task_id for task_id, item in batch}
            pending = [item for _, item in batch]
            for attempt in range(UNPROCESSED_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(_backoff_s(attempt))
                response = await client.batch_write_item(
                    RequestItems={self.table: [{"PutRequest": {"Item": i}} for i in pending]}
                )
                pending = _unprocessed_keys(response, self.table)
                if not pending:
                    break
            failed.update(by_pk[item["pk"]["S"]] for item in pending)
        return failed
