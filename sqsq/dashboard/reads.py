"""What each dashboard page reads from AWS, on request and never otherwise.

Every function here makes its AWS calls when a page is asked for and keeps
nothing: the dashboard holds no task history, so its memory does not grow with the
table, and an idle dashboard makes no request. Requests per page view:

=================  =============================================================
page               requests
=================  =============================================================
overview           ``sqsq status``'s (:func:`sqsq.status.collect`): per queue
                   GetQueueAttributes x 2, a DLQ sample when it holds messages,
                   one heartbeat Query, one CloudWatch GetMetricData
tasks              with the index: one Query per (state, shard) partition
                   (``listing.list_results``: 12 for every state, 4 for one);
                   without it: none
task               one GetItem + one Query (the attempt timeline); with a key,
                   one GetItem of the key item (+ one of its owner's result
                   when another task owns it); a chord member, one Query of
                   the chord's two items
errors             one Query per FAILURE shard (4) while the window holds
                   fewer than :data:`ERROR_ROWS` failures (``listing.read_all``)
dead letters       per queue GetQueueAttributes + ReceiveMessage / release of up
                   to :data:`DLQ_ROWS` messages (``sqsq dlq ls``'s)
schedules          none (the expressions are computed locally)
workers            one heartbeat Query
=================  =============================================================
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import listing
from ..aws_errors import from_botocore, is_botocore
from ..detail import first_ids
from ..dlq import DeadLetterRow, describe, peek, queue_counts
from ..dynamodb import ResultStore
from ..idempotency import item_key
from ..result import Attempt, ResultRecord, State
from ..sqs import dead_letter_name
from ..status import Status, collect, live_workers
from ..worker.heartbeat import WorkerInfo

if TYPE_CHECKING:
    from ..app import App

#: Rows per tasks page.
PAGE_ROWS = 50
#: Most FAILURE rows the errors page groups (the page says when it stopped there).
ERROR_ROWS = 1000
#: Most messages shown per dead-letter queue.
DLQ_ROWS = 50
#: Fire times shown per schedule.
NEXT_FIRES = 3
#: Failures in the DLQs' sample that the overview groups, per DLQ.
OVERVIEW_SAMPLE = 50

#: What the tasks and errors pages say when the app has no listing index.
NO_INDEX = (
    "This app has no listing index, so tasks cannot be listed or searched here — only "
    "opened by id. Set listing_index=True (SQSQ_LISTING_INDEX=1) and run "
    "`sqsq resources create` (or deploy `sqsq infra`): FAILURE, RETRY and STARTED "
    "results are then listed by state, task, queue and time, and failures grouped by "
    "error, for about one write request unit per failed task (nothing for a success)."
)


class IndexMissing(Exception):
    """The app asks for the listing index but the table has none (yet)."""


def overview(app: App) -> Status:
    """Queues, DLQs, workers and the DLQs' recent failures (``sqsq status``'s read),
    with each queue's messages done in the last hour (one GetMetricData more)."""
    return collect(app, failure_sample=OVERVIEW_SAMPLE, throughput=True)


def workers(app: App) -> list[WorkerInfo]:
    """The live workers, by id."""
    return sorted(live_workers(app), key=lambda w: w.worker_id)


def tasks(app: App, wanted: listing.Filter, before: str | None) -> listing.Page:
    """One page of listed results.

    Raises:
        IndexMissing: the table has no ``listing`` index.
        AWSError: any other failed Query.
    """
    return _indexed_read(
        lambda client: listing.list_results(
            client, app.table_name, wanted, before=before, limit=PAGE_ROWS
        ),
        app,
    )


def _indexed_read(read: Callable[[Any], listing.Page], app: App) -> listing.Page:
    """``read(dynamodb client)``; a table without the index raises IndexMissing, any
    other AWS error an AWSError."""
    try:
        return read(app.clients.sync("dynamodb"))
    except Exception as exc:
        if is_botocore(exc) and "index" in str(exc).lower():
            raise IndexMissing(str(exc)) from None
        raise from_botocore(exc) if is_botocore(exc) else exc from None


@dataclass(frozen=True)
class KeyView:
    """The idempotency key a task claimed, as its key item says now.

    Attributes:
        pk: the key item's ``pk`` (``idem#<task>#<key>``).
        status: ``IN_PROGRESS`` (its owner runs, or ran and stored no outcome yet),
            ``COMPLETED`` (the item says so, or its owner's result is final: the key
            item points to it, ``sqsq.idempotency``), or ``ABSENT`` (never claimed,
            freed for a retry, or expired).
        owner: the task id that holds or completed it.
        lease_expires_at: epoch seconds the owner's lease runs to (IN_PROGRESS).
        expires_at: epoch seconds the key expires (its TTL).
    """

    pk: str
    status: str
    owner: str | None = None
    lease_expires_at: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class ChordView:
    """The chord a task is a header member of, from its two items (``chord#<id>``).

    Attributes:
        chord_id: the chord's id.
        members: the members' result ids, in header order.
        callbacks: the ids of the body's first tasks (the callback).
        size / done: members in the header / counted so far.
        failed_by: the result id of the first member that failed, if one did.
        fired: whether the callback (or the errbacks) went out.
    """

    chord_id: str
    members: list[str]
    callbacks: list[str]
    size: int
    done: int
    failed_by: str | None
    fired: bool


@dataclass(frozen=True)
class TaskView:
    """One task: its result item, each attempt, its key and its chord."""

    record: ResultRecord | None
    attempts: list[Attempt]
    key: KeyView | None = None
    chord: ChordView | None = None


def task(app: App, task_id: str) -> TaskView:
    """A task's result item (one consistent GetItem) and its attempt timeline (one
    Query of its partition); when the item names them, its idempotency key item (one
    GetItem, plus one of the owner's result when another task owns it) and its
    chord's items (one Query)."""
    store = ResultStore(app.clients, app.table_name, app.name)
    record = store.get_result(task_id)
    attempts = store.timeline(task_id)
    if record is None:
        return TaskView(record, attempts)
    key = _key(app, store, record) if record.idempotency_key else None
    chord = record.workflow.get("chord")
    return TaskView(record, attempts, key, _chord(app, str(chord["id"])) if chord else None)


def _number(item: dict[str, Any], name: str) -> float | None:
    return float(item[name]["N"]) if name in item else None


def _key(app: App, store: ResultStore, record: ResultRecord) -> KeyView:
    pk = str(record.idempotency_key)
    response = app.clients.sync("dynamodb").get_item(
        TableName=app.table_name, Key=item_key(pk), ConsistentRead=True
    )
    item = response.get("Item") or {}
    expires = _number(item, "expires_at")
    if not item or (expires is not None and expires <= time.time()):
        return KeyView(pk, "ABSENT")
    owner = item.get("task_id", {}).get("S")
    status = item.get("status", {}).get("S", "?")
    if status == "IN_PROGRESS" and owner:  # the key item points to its owner's result
        result = record if owner == record.task_id else store.get_result(owner)
        if result is not None and result.state in (State.SUCCESS, State.FAILURE):
            status = "COMPLETED"
    return KeyView(pk, status, owner, _number(item, "lease_expires_at"), expires)


def _chord(app: App, chord_id: str) -> ChordView | None:
    response = app.clients.sync("dynamodb").query(
        TableName=app.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"chord#{chord_id}"}},
        ConsistentRead=True,
    )
    items = {item["sk"]["S"]: item for item in response.get("Items", [])}
    body, counter = items.get("body"), items.get("chord")
    if body is None or counter is None:
        return None  # expired
    saved = json.loads(body["body"]["S"])
    members = [m["S"] for m in body.get("results", {}).get("L", [])]
    failed = counter.get("failed_by", {}).get("S")  # the member's index
    return ChordView(
        chord_id=chord_id,
        members=members,
        callbacks=first_ids(saved.get("body")),
        size=int(_number(counter, "size") or 0),
        done=int(_number(counter, "done") or 0),
        failed_by=members[int(failed)] if failed and int(failed) < len(members) else failed,
        fired="fired" in counter,
    )


@dataclass
class ErrorGroup:
    """Failures of one task with one exception type (or dead-letter reason).

    Attributes:
        task: the task's name ("?" when unknown).
        error: the exception type, else the dead-letter reason.
        count: failures in the group.
        first: the oldest one's time.
        last: the newest one's time.
        example: the newest one's task id.
        message: the newest one's exception message.
    """

    task: str
    error: str
    count: int
    first: datetime
    last: datetime
    example: str
    message: str | None


@dataclass(frozen=True)
class Errors:
    """The errors page: groups, most frequent first, and whether rows were left out."""

    groups: list[ErrorGroup]
    rows: int
    truncated: bool
    requests: int


def errors(app: App, since: datetime | None) -> Errors:
    """FAILURE results since ``since``, grouped by (task, exception type), from the
    listing index (at most :data:`ERROR_ROWS` rows: one Query per shard below that).

    Raises:
        IndexMissing: the table has no ``listing`` index.
    """
    wanted = listing.Filter(states=(State.FAILURE,), since=since)
    page = _indexed_read(
        lambda client: listing.read_all(client, app.table_name, wanted, ERROR_ROWS), app
    )
    groups: dict[tuple[str, str], ErrorGroup] = {}
    for row in sorted(page.rows, key=lambda r: r.cursor, reverse=True):
        key = (row.task or "?", row.exc_type or row.reason or "?")
        group = groups.get(key)
        if group is None:
            groups[key] = ErrorGroup(*key, 1, row.when, row.when, row.task_id, row.exc_message)
        else:
            group.count += 1
            group.first = min(group.first, row.when)
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.task, g.error))
    return Errors(ordered, len(page.rows), page.truncated, page.requests)


@dataclass(frozen=True)
class DeadLetterQueue:
    """One DLQ as the dead-letters page shows it."""

    queue: str
    name: str
    visible: int
    in_flight: int
    rows: list[DeadLetterRow]


def dead_letters(app: App) -> list[DeadLetterQueue]:
    """Each queue's DLQ: its counts and up to :data:`DLQ_ROWS` messages (received and
    released at once, as ``sqsq dlq ls`` does: nothing is consumed)."""
    client = app.clients.sync("sqs")
    found = []
    for logical in app.queues():
        name = dead_letter_name(app.queue_name(logical))
        url = app.directory.url(name)
        visible, in_flight = queue_counts(client, url)
        messages = peek(client, url, DLQ_ROWS) if visible else []
        found.append(
            DeadLetterQueue(logical, name, visible, in_flight, [describe(m) for m in messages])
        )
    return found


@dataclass(frozen=True)
class ScheduleRow:
    """One periodic task and its next fire times (computed here, no AWS call)."""

    name: str
    task: str
    expression: str
    timezone: str
    queue: str
    enabled: bool
    next_fires: list[datetime]


def schedules(app: App, now: datetime | None = None) -> list[ScheduleRow]:
    """The app's periodic tasks, by name, with their next :data:`NEXT_FIRES` fires."""
    now = now or datetime.now(UTC)
    rows = []
    for name, periodic in sorted(app.periodic_tasks.items()):
        rows.append(
            ScheduleRow(
                name=name,
                task=periodic.task,
                expression=str(periodic.expression),
                timezone=periodic.timezone,
                queue=periodic.queue,
                enabled=periodic.enabled,
                next_fires=periodic.next_fire_times(now, NEXT_FIRES) if periodic.enabled else [],
            )
        )
    return rows


#: ``since`` choices of the tasks and errors pages: label -> seconds back.
WINDOWS: dict[str, float] = {"1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400}


def parse_time(text: str | None, now: datetime | None = None) -> datetime | None:
    """A filter's time: a window (``1h``, ``24h``, …: that long ago), an ISO 8601
    time (UTC when it names no zone), or None for empty.

    Raises:
        ValueError: neither.
    """
    if not text:
        return None
    if text in WINDOWS:
        return (now or datetime.now(UTC)) - timedelta(seconds=WINDOWS[text])
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def plain(value: Any) -> str:
    """A stored JSON value for display."""
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
