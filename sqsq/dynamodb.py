"""Result items in the app's DynamoDB table: building, parsing, batch writing.

One table per app, key ``pk`` (S) + ``sk`` (S), on-demand, TTL on ``expires_at``:

=====================  ==============  ==========  ========================================
item                   pk              sk          attributes
=====================  ==============  ==========  ========================================
result of a task       ``task#<id>``   ``result``  state, task, queue, value (JSON text),
                                                   exc_type, exc_message, traceback, reason,
                                                   attempts, worker, message_id, enqueued_at,
                                                   started_at, finished_at, expires_at;
                                                   FAILURE/RETRY/STARTED also lpk, lsk
                                                   (the listing index, ``listing.py``);
                                                   args, args_cut, parent_id, root_id,
                                                   workflow, key_pk (``detail.py``)
attempt *n* of a task   ``task#<id>``   ``attempt#<n>``  state, worker, exc_type, exc_message,
(written on RETRY and                                  started_at, finished_at, retry_delay_s,
final FAILURE only)                                    expires_at
revocations of an app  ``revocations#<app>``  ``<ms>#<id>``  task_id, expires_at (``revocations.py``)
idempotency key        ``idem#<task>#<key>``  ``idempotency``  see ``idempotency.py``
rate-limit override    ``revocations#<app>``  ``limit#task#<name>``  rate, set_at (``flow/overrides.py``;
                                              ``limit#queue#<q>``   read with the revocation Query)
token bucket (shard)   ``rate#<app>#<bucket>``  ``shard#<i>``  tat_us, expires_at (``flow/bucket.py``;
                                                             1 / batch writes per task)
concurrency slot       ``conc#<app>#<task>[#<key>]``  ``slot#<i>``  holder, lease_until, expires_at
                                                             (``flow/concurrency.py``)
worker heartbeat       ``worker#<app>``  ``<host>:<pid>``  host, pid, queues, concurrency, busy,
                                                   counts, last_seen, expires_at
                                                   (``worker/heartbeat.py``; 1 write / interval)
=====================  ==============  ==========  ========================================

Item builders and parsers are pure functions over DynamoDB's low-level attribute
values; :class:`ResultStore`'s call sequences (:mod:`sqsq.calls`) execute them with
boto3 or aiobotocore.
With ``track_started`` the result item is first written STARTED when the body
starts (:meth:`ResultStore.start`: one conditional PutItem per attempt, never over
a final outcome or a later attempt's item, see :data:`STARTED_MAY_REPLACE`); a
task's attempts are read with one Query (:meth:`ResultStore.timeline`).
Outcomes that finish together go out as one BatchWriteItem (25 items,
``limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS``); unprocessed items are retried with
backoff and, if still unprocessed, reported so their messages are *not* deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from . import limits
from .calls import Call, Sleep, Steps, arun, run
from .envelope import dumps
from .listing import index_attributes
from .result import Attempt, ResultRecord, State
from .retry import error_code, full_jitter_s
from .revocations import revocation_item

logger = logging.getLogger(__name__)

#: Stored tracebacks keep their last this-many characters (the innermost frames).
MAX_TRACEBACK_CHARS = 16_384
#: Attempts at a BatchWriteItem's UnprocessedItems before giving up on them.
UNPROCESSED_ATTEMPTS = 5

Item = dict[str, dict[str, Any]]


def result_key(task_id: str) -> Item:
    """The primary key of a task's result item."""
    return {"pk": {"S": f"task#{task_id}"}, "sk": {"S": "result"}}


def utf8(text: str) -> str:
    """``text`` with any lone surrogate (from a JSON ``\\ud800`` escape, or an
    exception message) written as ``\\ud800``: DynamoDB takes only UTF-8 strings."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


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
        "args": record.arguments,
        "parent_id": record.parent_id,
        "root_id": record.root_id,
        "key_pk": record.idempotency_key,
    }
    for name, text in strings.items():
        if text:
            item[name] = {"S": utf8(text)}
    if record.state is State.SUCCESS:
        item["value"] = {"S": dumps(record.value)}
    if record.extra:
        item["extra"] = {"S": dumps(record.extra)}
    if record.arguments_truncated:
        item["args_cut"] = {"BOOL": True}
    if record.workflow:
        item["workflow"] = {"S": dumps(record.workflow)}
    item["attempts"] = {"N": str(record.attempts)}
    if record.expires_at is not None:
        item["expires_at"] = {"N": str(record.expires_at)}
    item.update(index_attributes(record))
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
    workflow_text = s("workflow")
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
        arguments=s("args"),
        arguments_truncated=bool(item.get("args_cut", {}).get("BOOL")),
        parent_id=s("parent_id"),
        root_id=s("root_id"),
        workflow=json.loads(workflow_text) if workflow_text else {},
        idempotency_key=s("key_pk"),
    )


#: The key of ``ResultRecord.extra`` that holds where a SUCCESS value too large for
#: its item lives in S3 (``sqsq.payloads`` writes it): ``{"bucket", "key", "bytes",
#: "sha256"}``; the item's own ``value`` is then null.
VALUE_S3 = "value_s3"


def with_value(record: ResultRecord) -> Steps[ResultRecord]:
    """``record`` with its value read from S3 when it lives there (:data:`VALUE_S3`:
    one GetObject, checked against its sha256); else ``record`` as it is, no call.

    Raises:
        ValueError: the object is not the value stored (its sha256 differs).
        The GetObject's error (a missing object: the bucket's lifecycle rule expired
        it with the result, ``result_ttl``).
    """
    where = record.extra.get(VALUE_S3) if record.state is State.SUCCESS else None
    if not isinstance(where, dict):
        return record
    response = yield Call("s3", "get_object", {"Bucket": where["bucket"], "Key": where["key"]})
    data: bytes = response["Body"]
    if hashlib.sha256(data).hexdigest() != where.get("sha256"):
        raise ValueError(
            f"s3://{where['bucket']}/{where['key']} is not the value of {record.task_id}"
        )
    return replace(record, value=json.loads(data))


def attempt_item(record: ResultRecord, retry_delay_s: float | None = None) -> Item:
    """The history item of one attempt (kept for retries and final failures)."""
    item: Item = {
        "pk": {"S": f"task#{record.task_id}"},
        "sk": {"S": f"attempt#{record.attempts:05d}"},
        "state": {"S": record.state.value},
        "attempts": {"N": str(record.attempts)},
    }
    for name, text in (
        ("exc_type", record.exc_type),
        ("exc_message", (record.exc_message or "")[:1024] or None),
        ("started_at", _ts(record.started_at)),
        ("finished_at", _ts(record.finished_at)),
        ("worker", record.worker),
    ):
        if text:
            item[name] = {"S": utf8(text)}
    if retry_delay_s is not None:
        item["retry_delay_s"] = {"N": f"{retry_delay_s:.3f}"}
    if record.expires_at is not None:
        item["expires_at"] = {"N": str(record.expires_at)}
    return item


#: The condition of a STARTED write (:meth:`ResultStore.start`), as a timeline::
#:
#:     attempt n:   ──STARTED(n)──────── body ──────── RETRY(n) / SUCCESS / FAILURE ──►
#:     the PutItem of STARTED(n) lands ┬ before the outcome: replaces nothing final
#:                                     └ after it (a slow request): refused
#:
#: It may replace no item, or a RETRY / STARTED item of an *earlier* attempt —
#: never a final outcome (SUCCESS, FAILURE, REVOKED), whichever path wrote it,
#: nor the RETRY of its own attempt. BatchWriteItem takes no condition, so the
#: STARTED write is a PutItem of its own.
STARTED_MAY_REPLACE = (
    "attribute_not_exists(pk) OR (#state IN (:retry, :started) AND attempts < :attempt)"
)


def started_put(table: str, record: ResultRecord) -> dict[str, Any]:
    """The PutItem arguments that write ``record`` (STARTED) under
    :data:`STARTED_MAY_REPLACE`."""
    return {
        "TableName": table,
        "Item": result_item(record),
        "ConditionExpression": STARTED_MAY_REPLACE,
        "ExpressionAttributeNames": {"#state": "state"},
        "ExpressionAttributeValues": {
            ":retry": {"S": State.RETRY.value},
            ":started": {"S": State.STARTED.value},
            ":attempt": {"N": str(record.attempts)},
        },
    }


def attempt_from_item(item: Item) -> Attempt:
    """Parse an ``attempt#<n>`` item (see :func:`attempt_item`)."""

    def s(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    def dt(name: str) -> datetime | None:
        text = s(name)
        return datetime.fromisoformat(text) if text else None

    delay = item.get("retry_delay_s")
    return Attempt(
        number=int(item["attempts"]["N"]),
        state=State(item["state"]["S"]),
        worker=s("worker"),
        started_at=dt("started_at"),
        finished_at=dt("finished_at"),
        exc_type=s("exc_type"),
        exc_message=s("exc_message"),
        retry_delay_s=float(delay["N"]) if delay else None,
    )


def timeline_from_items(items: Iterable[Item], now: float | None = None) -> list[Attempt]:
    """Each try of a task, in order, from the items of its partition: the attempt
    items (RETRY, final FAILURE), then the result item's own attempt when no
    attempt item stands for it (SUCCESS, REVOKED, a STARTED one running now)."""
    tries: dict[int, Attempt] = {}
    last: ResultRecord | None = None
    for item in items:
        sk = item["sk"]["S"]
        if sk.startswith("attempt#"):
            expires = item.get("expires_at")
            if expires and int(expires["N"]) <= (time.time() if now is None else now):
                continue
            attempt = attempt_from_item(item)
            tries[attempt.number] = attempt
        elif sk == "result":
            last = record_from_item(item, now)
    if last is not None and last.attempts not in tries:
        tries[last.attempts] = Attempt.of(last)
    return [tries[n] for n in sorted(tries)]


#: A write for BatchWriteItem: ``(token, {"PutRequest": …} | {"DeleteRequest": …})``.
#: The token names who is waiting for it (an outcome); tokens repeat freely.
Write = tuple[str, dict[str, Any]]


def _request_key(request: dict[str, Any]) -> tuple[str, str]:
    key = (
        request["PutRequest"]["Item"]
        if "PutRequest" in request
        else request["DeleteRequest"]["Key"]
    )
    return key["pk"]["S"], key["sk"]["S"]


def put(token: str, item: Item) -> Write:
    return token, {"PutRequest": {"Item": item}}


def delete(token: str, key: Item) -> Write:
    return token, {"DeleteRequest": {"Key": {"pk": key["pk"], "sk": key["sk"]}}}


def write_batches(writes: Iterable[Write]) -> list[list[Write]]:
    """Split writes into BatchWriteItem-sized groups (25).

    A batch may not touch the same key twice, so a later write to a key replaces
    an earlier one (its token is kept too, so both waiters learn the outcome).
    """
    latest: dict[tuple[str, str], list[Write]] = {}
    for token, request in writes:
        key = _request_key(request)
        earlier = latest.pop(key, [])
        latest[key] = [*((t, request) for t, _ in earlier), (token, request)]
    groups = list(latest.values())
    size = limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS
    return [
        [w for group in groups[i : i + size] for w in group] for i in range(0, len(groups), size)
    ]


def _unique(batch: list[Write]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for _, request in batch:
        seen[_request_key(request)] = request
    return list(seen.values())


def _tokens(batch: list[Write], unprocessed: list[dict[str, Any]]) -> set[str]:
    keys = {_request_key(r) for r in unprocessed}
    return {token for token, request in batch if _request_key(request) in keys}


def _backoff_s(attempt: int) -> float:
    return full_jitter_s(attempt, base_s=0.05, cap_s=2.0)


def _unprocessed(response: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return list(response.get("UnprocessedItems", {}).get(table, []))


class ResultStore:
    """Reads and writes result items in one table.

    Args:
        clients: the App's client factory.
        table: the DynamoDB table name.
        app_name: the app whose revocations :meth:`revoke` writes.
    """

    def __init__(self, clients: Any, table: str, app_name: str = "") -> None:
        self.clients = clients
        self.table = table
        self.app_name = app_name

    # --- reads ----------------------------------------------------------------

    def get_result(self, task_id: str) -> ResultRecord | None:
        """One consistent GetItem; None when absent or expired."""
        return run(self.getting(task_id), self.clients)

    async def aget_result(self, task_id: str) -> ResultRecord | None:
        """Asyncio twin of :meth:`get_result`."""
        return await arun(self.getting(task_id), self.clients)

    def getting(self, task_id: str) -> Steps[ResultRecord | None]:
        """The call of :meth:`get_result` (see :mod:`sqsq.calls`)."""
        response = yield Call(
            "dynamodb",
            "get_item",
            {"TableName": self.table, "Key": result_key(task_id), "ConsistentRead": True},
        )
        item = response.get("Item")
        record = record_from_item(item) if item else None
        return (yield from with_value(record)) if record is not None else None

    def records_getting(self, task_ids: Sequence[str]) -> Steps[dict[str, ResultRecord]]:
        """The stored records of ``task_ids`` by task id (absent or expired ones left
        out), values in S3 not fetched: BatchGetItem, 100 keys a call, consistent
        reads, UnprocessedKeys asked again (up to 10 rounds a call)."""
        found: dict[str, ResultRecord] = {}
        unique = list(dict.fromkeys(task_ids))
        for start in range(0, len(unique), limits.DYNAMODB_MAX_BATCH_GET_ITEMS):
            chunk = unique[start : start + limits.DYNAMODB_MAX_BATCH_GET_ITEMS]
            keys = [result_key(task_id) for task_id in chunk]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for _ in range(10):
                response = yield Call("dynamodb", "batch_get_item", {"RequestItems": request})
                for item in response.get("Responses", {}).get(self.table, []):
                    record = record_from_item(item)
                    if record is not None:
                        found[record.task_id] = record
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def timeline(self, task_id: str) -> list[Attempt]:
        """Each try of a task (see :func:`timeline_from_items`): one consistent Query
        of its partition (more pages only past 1 MB of items)."""
        return run(self.timeline_steps(task_id), self.clients)

    async def atimeline(self, task_id: str) -> list[Attempt]:
        """Asyncio twin of :meth:`timeline`."""
        return await arun(self.timeline_steps(task_id), self.clients)

    def timeline_steps(self, task_id: str) -> Steps[list[Attempt]]:
        """The calls of :meth:`timeline` (see :mod:`sqsq.calls`)."""
        items: list[Item] = []
        start: Item | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": f"task#{task_id}"}},
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = yield Call("dynamodb", "query", kwargs)
            items += page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return timeline_from_items(items)

    # --- writes ---------------------------------------------------------------

    def start(self, record: ResultRecord) -> bool:
        """Write ``record`` (STARTED) unless a final outcome or a later attempt is
        stored already (:data:`STARTED_MAY_REPLACE`): one conditional PutItem.

        Returns:
            False when the condition refused it (the outcome is there already).

        Raises:
            botocore's ClientError on any other AWS error (after its retries).
        """
        return run(self.starting(record), self.clients)

    async def astart(self, record: ResultRecord) -> bool:
        """Asyncio twin of :meth:`start`."""
        return await arun(self.starting(record), self.clients)

    def starting(self, record: ResultRecord) -> Steps[bool]:
        """The call of :meth:`start` (see :mod:`sqsq.calls`)."""
        try:
            yield Call("dynamodb", "put_item", started_put(self.table, record))
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def write(self, writes: Iterable[Write], rejected: dict[str, str] | None = None) -> set[str]:
        """Carry out writes with BatchWriteItem; returns the tokens NOT written.

        UnprocessedItems are retried with backoff (``UNPROCESSED_ATTEMPTS``).
        Exceptions from the AWS call (after botocore's retries) propagate — except,
        when ``rejected`` is given, a ValidationException (an item over DynamoDB's
        size, a key it refuses): BatchWriteItem then fails as a whole, so the batch
        is split in halves until the refused writes stand alone; the others are
        written, and each refused write's token maps to DynamoDB's message in
        ``rejected`` (and is among the tokens returned).
        """
        return run(self.writing(writes, rejected), self.clients)

    async def awrite(
        self, writes: Iterable[Write], rejected: dict[str, str] | None = None
    ) -> set[str]:
        """Asyncio twin of :meth:`write`."""
        return await arun(self.writing(writes, rejected), self.clients)

    def writing(
        self, writes: Iterable[Write], rejected: dict[str, str] | None = None
    ) -> Steps[set[str]]:
        """The calls of :meth:`write` (see :mod:`sqsq.calls`)."""
        failed: set[str] = set()
        for batch in write_batches(writes):
            failed |= yield from self._write_batch(batch, rejected)
        return failed

    def _write_batch(self, batch: list[Write], rejected: dict[str, str] | None) -> Steps[set[str]]:
        pending = _unique(batch)
        for attempt in range(UNPROCESSED_ATTEMPTS):
            if attempt:
                yield Sleep(_backoff_s(attempt))
            try:
                response = yield Call(
                    "dynamodb", "batch_write_item", {"RequestItems": {self.table: pending}}
                )
            except Exception as exc:
                if rejected is None or error_code(exc) != "ValidationException":
                    raise
                split = self._split(batch, pending, exc, rejected)
                if isinstance(split, set):
                    return split
                first = yield from self._write_batch(split[0], rejected)
                return first | (yield from self._write_batch(split[1], rejected))
            pending = _unprocessed(response, self.table)
            if not pending:
                break
        return _tokens(batch, pending)

    @staticmethod
    def _split(
        batch: list[Write], pending: list[dict[str, Any]], exc: Exception, rejected: dict[str, str]
    ) -> set[str] | tuple[list[Write], list[Write]]:
        """A refused batch: the tokens of its one write (now in ``rejected``), or
        its two halves to write again."""
        keys = {_request_key(r) for r in pending}
        groups: dict[tuple[str, str], list[Write]] = {}
        for write in batch:
            if _request_key(write[1]) in keys:
                groups.setdefault(_request_key(write[1]), []).append(write)
        ordered = list(groups.values())
        if len(ordered) <= 1:
            tokens = {token for group in ordered for token, _ in group}
            for token in tokens:
                rejected[token] = str(exc)[:1024]
            return tokens
        half = len(ordered) // 2
        return (
            [w for g in ordered[:half] for w in g],
            [w for g in ordered[half:] for w in g],
        )

    def put_results(self, items: Iterable[tuple[str, Item]]) -> set[str]:
        """Store result items (``(task_id, item)``); returns task ids NOT stored."""
        return self.write(put(task_id, item) for task_id, item in items)

    # --- revocations ------------------------------------------------------------

    def revoke(self, task_id: str, ttl_s: float) -> None:
        """Store a revocation of ``task_id`` that lasts ``ttl_s`` seconds (see
        ``revocations.py``)."""
        run(self.revoking(task_id, ttl_s), self.clients)

    async def arevoke(self, task_id: str, ttl_s: float) -> None:
        """Asyncio twin of :meth:`revoke`."""
        await arun(self.revoking(task_id, ttl_s), self.clients)

    def revoking(self, task_id: str, ttl_s: float) -> Steps[None]:
        """The call of :meth:`revoke` (see :mod:`sqsq.calls`)."""
        item = revocation_item(self.app_name, task_id, ttl_s)
        yield Call("dynamodb", "put_item", {"TableName": self.table, "Item": item})

    # --- history ----------------------------------------------------------------

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        """The stored attempt items of a task (retries and final failures), in order.

        Returns:
            One dict per attempt with Python values (see :func:`plain_item`):
            ``{"state": "RETRY", "attempts": 1, "retry_delay_s": 2, ...}``.
        """
        client = self.clients.sync("dynamodb")
        paginator = client.get_paginator("query")
        rows = []
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": f"task#{task_id}"},
                ":prefix": {"S": "attempt#"},
            },
            ConsistentRead=True,
        ):
            rows += [plain_item(item) for item in page.get("Items", [])]
        return rows


def plain_item(item: Item) -> dict[str, Any]:
    """A DynamoDB item as Python values: numbers as ``int`` (integral) or ``float``.

    DynamoDB normalizes numbers (``2.000`` is stored and returned as ``2``), so a
    number is compared by value, never by its text; boto3's ``TypeDeserializer``
    does the decoding.
    """
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    return {name: _plain(deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
