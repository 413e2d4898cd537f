"""The listing index: results by state, newest first, without a scan.

An opt-in, sparse, write-sharded global secondary index on the results table
(``listing_index=True``, created by ``sqsq resources create`` and ``sqsq infra``):

=================  ===============================  =======================================
index ``listing``  partition key ``lpk`` (S)        sort key ``lsk`` (S)
=================  ===============================  =======================================
a listed result    ``<STATE>#<shard>``              ``<finished or started, ISO UTC>#<id>``
=================  ===============================  =======================================

* **Sparse.** Only a result item whose state is in :data:`LISTED_STATES` (FAILURE —
  dead letters included —, RETRY, STARTED) carries ``lpk``/``lsk``; SUCCESS and
  REVOKED items never do, so they cost the index nothing. When a RETRY or STARTED
  item is replaced by its SUCCESS, the item leaves the index (one index delete).
* **Write-sharded.** ``shard = crc32(task id) % LISTING_SHARDS``: a burst of
  failures spreads over :data:`LISTING_SHARDS` partitions of the index per state
  (each takes 1,000 writes per second, "Designing partition keys to distribute your
  workload" in the DynamoDB guide). A reader queries every shard of a state and
  merges them, newest first.
* **Projected.** :data:`PROJECTED` (no return value, no traceback): a page of rows
  comes from the index alone; a task's page reads its own item by key.

The attributes are written on every listed item whether or not the index exists
(≈ 60 bytes), so turning the index on later indexes the failures already stored
(DynamoDB backfills a new GSI from the table).

Cost (on-demand): a listed outcome writes one more index item, 1 write request unit
per KB of projected size (without a traceback, under 1 KB: **1 WRU**); one that moves
an indexed item (a later attempt's RETRY: a new ``lsk``) pays 2 (delete + put), one
that takes it out (SUCCESS after RETRY or STARTED) 1; a task that succeeds at once
(without ``track_started``) pays **nothing**. A page view reads ``states x LISTING_SHARDS`` Queries (Limit 50,
eventually consistent: 0.5 RRU per 4 KB read).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .result import ResultRecord, State

Item = dict[str, dict[str, Any]]

#: The index's name.
INDEX_NAME = "listing"
#: The index's partition key attribute: ``<STATE>#<shard>``.
PARTITION_KEY = "lpk"
#: The index's sort key attribute: ``<time ISO UTC>#<task id>``.
SORT_KEY = "lsk"
#: Partitions per state. Readers query each of them; never lower it on a table that
#: holds items (items in a dropped shard would no longer be listed).
LISTING_SHARDS = 4
#: The states that are indexed, in the order a page lists them.
LISTED_STATES: tuple[State, ...] = (State.FAILURE, State.RETRY, State.STARTED)
#: The attributes the index projects besides the keys (DynamoDB's ``INCLUDE``).
PROJECTED: tuple[str, ...] = (
    "state",
    "task",
    "queue",
    "exc_type",
    "exc_message",
    "reason",
    "attempts",
    "worker",
    "enqueued_at",
    "started_at",
    "finished_at",
    "expires_at",
)
#: Most index pages one partition is read for one listing (bounds a page view when a
#: filter matches little: the listing then says where it stopped).
MAX_PAGES_PER_PARTITION = 5


def shard(task_id: str) -> int:
    """The shard of ``task_id``: ``crc32(id) % LISTING_SHARDS`` (stable across
    processes, unlike ``hash``)."""
    return zlib.crc32(task_id.encode()) % LISTING_SHARDS


def index_attributes(record: ResultRecord) -> Item:
    """The ``lpk``/``lsk`` attributes of ``record``'s result item; empty when its
    state is not listed or it has no time to sort by."""
    if record.state not in LISTED_STATES:
        return {}
    when = record.finished_at or record.started_at or record.enqueued_at
    if when is None:
        return {}
    stamp = when.astimezone(UTC).isoformat(timespec="microseconds")
    return {
        PARTITION_KEY: {"S": f"{record.state.value}#{shard(record.task_id)}"},
        SORT_KEY: {"S": f"{stamp}#{record.task_id}"},
    }


def global_secondary_index() -> dict[str, Any]:
    """The index as CreateTable / CloudFormation describe it (same shape in both)."""
    return {
        "IndexName": INDEX_NAME,
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(PROJECTED)},
    }


def attribute_definitions() -> list[dict[str, str]]:
    """The index keys' AttributeDefinitions (strings)."""
    return [
        {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
        {"AttributeName": SORT_KEY, "AttributeType": "S"},
    ]


@dataclass(frozen=True)
class Filter:
    """What a listing shows; every field None means any.

    Attributes:
        states: states to list (default: all of :data:`LISTED_STATES`).
        task: a task name, exactly.
        queue: a logical queue, exactly.
        exc_type: an exception type, exactly (``builtins.ValueError``).
        since: oldest time listed (inclusive), aware datetime.
        until: newest time listed (inclusive), aware datetime.
    """

    states: tuple[State, ...] = LISTED_STATES
    task: str | None = None
    queue: str | None = None
    exc_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Row:
    """One listed result, from the index's projection (no value, no traceback).

    Attributes:
        task_id: the task's id.
        state: its state when written.
        when: the time it is sorted by (finished, else started, else enqueued), UTC.
        task: the task's name.
        queue: the logical queue.
        exc_type: the exception type (FAILURE/RETRY).
        exc_message: the exception message.
        reason: the dead-letter reason when dead-lettered.
        attempts: deliveries so far.
        worker: the worker (``host:pid``) of the attempt.
        cursor: this row's sort key, the ``before`` of the next page.
    """

    task_id: str
    state: State
    when: datetime
    task: str | None
    queue: str | None
    exc_type: str | None
    exc_message: str | None
    reason: str | None
    attempts: int
    worker: str | None
    cursor: str


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest first.

    Attributes:
        rows: the rows, at most the limit asked for.
        next_before: pass as ``before`` for the next (older) page; None at the end.
        requests: the Queries made.
        truncated: a partition hit :data:`MAX_PAGES_PER_PARTITION` (the page may hold
            fewer rows than asked for; ``next_before`` carries on from there).
    """

    rows: list[Row]
    next_before: str | None
    requests: int
    truncated: bool = False


def row_from_item(item: Item, now: float) -> Row | None:
    """A :class:`Row` from an index item; None when it is past ``expires_at``."""
    if "expires_at" in item and int(item["expires_at"]["N"]) <= now:
        return None

    def s(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    cursor = item[SORT_KEY]["S"]
    stamp, _, task_id = cursor.partition("#")
    return Row(
        task_id=task_id,
        state=State(item["state"]["S"]),
        when=datetime.fromisoformat(stamp),
        task=s("task"),
        queue=s("queue"),
        exc_type=s("exc_type"),
        exc_message=s("exc_message"),
        reason=s("reason"),
        attempts=int(item.get("attempts", {"N": "0"})["N"]),
        worker=s("worker"),
        cursor=cursor,
    )


def _bound(value: datetime | None, low: bool) -> str:
    if value is None:
        return "0" if low else "9"
    stamp = value.astimezone(UTC).isoformat(timespec="microseconds")
    return stamp if low else stamp + "#\uffff"


def query_request(
    table: str, state: State, shard_no: int, listing: Filter, before: str | None, limit: int
) -> dict[str, Any]:
    """The Query of one partition (``state``, ``shard_no``) of the index, newest first."""
    high = _bound(listing.until, low=False)
    if before is not None:
        high = min(high, before)
    names: dict[str, str] = {"#pk": PARTITION_KEY, "#sk": SORT_KEY}
    values: dict[str, Any] = {
        ":pk": {"S": f"{state.value}#{shard_no}"},
        ":lo": {"S": _bound(listing.since, low=True)},
        ":hi": {"S": high},
    }
    conditions = []
    for attribute, wanted in (
        ("task", listing.task),
        ("queue", listing.queue),
        ("exc_type", listing.exc_type),
    ):
        if wanted:
            names[f"#{attribute}"] = attribute
            values[f":{attribute}"] = {"S": wanted}
            conditions.append(f"#{attribute} = :{attribute}")
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": INDEX_NAME,
        "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :lo AND :hi",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if conditions:
        request["FilterExpression"] = " AND ".join(conditions)
    return request


def list_results(
    client: Any,
    table: str,
    listing: Filter,
    *,
    before: str | None = None,
    limit: int = 50,
    now: float | None = None,
) -> Page:
    """One page of results matching ``listing``, newest first, from the index.

    Each partition (state x shard) is queried — all of them side by side, one thread
    each — up to :data:`MAX_PAGES_PER_PARTITION` pages of ``limit`` items until it has
    ``limit`` matches; the partitions are merged. Rows are certain to be in order only down to the newest point where an
    unfinished partition stopped, so the page ends there (``next_before``).

    Args:
        client: a boto3 DynamoDB client.
        table: the results table (its ``listing`` index must exist).
        listing: what to list.
        before: the ``next_before`` of the previous page (exclusive), or None.
        limit: rows per page (1-1000).
        now: epoch seconds for the expiry check (default: now).

    Returns:
        A :class:`Page`.

    Raises:
        botocore's ClientError: the Query failed (``ValidationException`` when the
            table has no ``listing`` index).
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    now = time.time() if now is None else now
    partitions = [(state, n) for state in listing.states for n in range(LISTING_SHARDS)]

    def read(partition: tuple[State, int]) -> _Partition:
        return _read_partition(client, table, partition, listing, before, limit, now)

    # the partitions are independent: read side by side (a page costs one round trip
    # of latency, not one per partition); boto3 clients are thread-safe
    with ThreadPoolExecutor(len(partitions), thread_name_prefix="sqsq-listing") as pool:
        read_ = list(pool.map(read, partitions))
    rows = [row for part in read_ for row in part.rows]
    frontiers = [part.frontier for part in read_ if part.frontier is not None]
    requests = sum(part.requests for part in read_)
    return _merge(rows, frontiers, limit, requests, any(p.truncated for p in read_))


@dataclass
class _Partition:
    """What one partition gave a page: its rows, where it stopped (None: at its
    end), its Queries, whether :data:`MAX_PAGES_PER_PARTITION` stopped it."""

    rows: list[Row]
    frontier: str | None = None
    requests: int = 0
    truncated: bool = False


def _read_partition(
    client: Any,
    table: str,
    partition: tuple[State, int],
    listing: Filter,
    before: str | None,
    limit: int,
    now: float,
) -> _Partition:
    request = query_request(table, *partition, listing, before, limit)
    part = _Partition([])
    for _ in range(MAX_PAGES_PER_PARTITION):
        response = client.query(**request)
        part.requests += 1
        for item in response.get("Items", []):
            row = row_from_item(item, now)
            if row is not None and (before is None or row.cursor < before):
                part.rows.append(row)
        last = response.get("LastEvaluatedKey")
        if last is None:
            return part
        if len(part.rows) >= limit:
            part.frontier = min(r.cursor for r in part.rows)
            return part
        request = {**request, "ExclusiveStartKey": last}
    part.truncated = True
    part.frontier = last[SORT_KEY]["S"]
    return part


def read_all(
    client: Any, table: str, listing: Filter, max_rows: int, now: float | None = None
) -> Page:
    """Up to ``max_rows`` rows matching ``listing``, in no particular order, with the
    fewest Queries: each partition is read newest first in pages of up to
    ``max_rows`` items (1 MB at most each) until it ends or ``max_rows`` rows are read
    in all — what grouping needs, where a page's order does not matter (one Query per
    partition when it holds fewer than ``max_rows`` matches).

    Returns:
        A :class:`Page` whose ``truncated`` says ``max_rows`` stopped it
        (``next_before`` is always None).
    """
    import time

    now = time.time() if now is None else now
    rows: list[Row] = []
    requests = 0
    for state in listing.states:
        for shard_no in range(LISTING_SHARDS):
            request = query_request(table, state, shard_no, listing, None, max_rows)
            while len(rows) < max_rows:
                response = client.query(**request)
                requests += 1
                rows += [r for r in (row_from_item(i, now) for i in response["Items"]) if r]
                last = response.get("LastEvaluatedKey")
                if last is None:
                    break
                request = {**request, "ExclusiveStartKey": last}
            else:
                return Page(rows[:max_rows], None, requests, truncated=True)
    return Page(rows, None, requests)


def _merge(
    rows: Sequence[Row], frontiers: Iterable[str], limit: int, requests: int, truncated: bool
) -> Page:
    """Newest first, down to the newest frontier (where an unfinished partition
    stopped) and at most ``limit`` rows."""
    floor = max(frontiers, default=None)
    ordered = sorted(
        (r for r in rows if floor is None or r.cursor >= floor),
        key=lambda r: r.cursor,
        reverse=True,
    )
    if len(ordered) > limit:
        return Page(ordered[:limit], ordered[limit - 1].cursor, requests, truncated)
    return Page(ordered, floor, requests, truncated)
