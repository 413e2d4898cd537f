"""Idempotency keys: run a task's body at most once per key within the key's expiry.

The key comes from the task's ``idempotency_key`` (a ``str.format`` template over
the arguments, e.g. ``"{order_id}"`` or ``"{order.order_id}"``, or a callable
taking the task's arguments) or from ``apply_async(idempotency_key=...)``. Keys
are scoped by task name.

The item, in the app's table: ``pk = "idem#<task>#<key>"``, ``sk = "idempotency"``,
``status`` IN_PROGRESS | COMPLETED, ``task_id`` of the run that owns it (the pointer to
its result item ``task#<task_id>``), ``lease_expires_at``, ``expires_at`` (TTL),
``payload_hash`` (SHA-256 of the validated arguments, when the task validates payloads:
a duplicate whose arguments differ is an :class:`~sqsq.errors.IdempotencyConflict`, as
Powertools' payload validation).

The value is stored once, in the owner's result item: when the run ends with SUCCESS
or a final FAILURE, its result item (written anyway, marked with the key's ``pk`` in
:data:`ANSWERS_KEY`) is what completes the key, and the key item is not written again. A first call costs two writes — the claim and the result
item — and a duplicate one: its failed claim (plus its own result item when it has
another task id). The key item is written COMPLETED only where no result item
answers: ``store_result=False`` (``value`` under the key), or the body ran but
DynamoDB refused its outcome (``refused``, the dead-letter reason); items COMPLETED with
``value`` / ``failed`` by earlier releases are read as before.

The lease, as in Powertools' idempotency utility — write first, read only on
conflict (``ReturnValuesOnConditionCheckFailure=ALL_OLD``)::

    claim (conditional PutItem IN_PROGRESS)
      │
      ├─ no item ─────────────────────────────────── attribute_not_exists(pk)      ─► run
      ├─ any, past its expiry (TTL lags) ──────────── expires_at < :now             ─► run
      │
      ├─ COMPLETED (condition fails, old item read) ─────────────────────────────────► DUPLICATE
      └─ IN_PROGRESS: GetItem of the owner's result item (consistent)
           ├─ SUCCESS ───────────────────────────────────────────────────────────────► DUPLICATE:
           │                                       don't run; this task id gets the owner's value
           ├─ FAILURE (final) ───────────────────────────────────────────────────────► DUPLICATE:
           │                                       resolves to that failure (a dead letter) …
           │    … unless the message came back from the DLQ (a redrive): take over ──► run
           ├─ not ended, lease over (owner died): take over ─────────────────────────► run
           │      conditional PutItem: task_id = :owner AND lease_expires_at < :now
           └─ not ended, live lease ─────────────────────────────────────────────────► DEFER:
                                                          the message comes back after the lease

    A conflict that carries no old item (an endpoint without
    ReturnValuesOnConditionCheckFailure, e.g. dynalite, or an SDK path that drops it)
    is read with one consistent GetItem; if the item is gone by then (its owner
    failed and deleted it), the claim is tried again.

    time ──►  claim ─── lease_s ───┬─ heartbeat extends ─┬─ … ─► result item SUCCESS / FAILURE
                                   │                     │       (settle, batched; the key item
                                   │                     │       stays, pointing to it), or the
                                   │                     │       key item deleted on RETRY
                                   └ UpdateItem, only while status = IN_PROGRESS and task_id = owner
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .calls import Call, Steps, arun, run
from .dynamodb import Item, record_from_item, result_key, with_value
from .envelope import dumps
from .result import ResultRecord, State

#: Keys longer than this are replaced by their SHA-256 (DynamoDB keys ≤ 2048 bytes).
MAX_KEY_CHARS = 512

#: The three ways a claim may succeed (named sub-expressions of the condition).
_NO_ITEM = "attribute_not_exists(pk)"
_ITEM_EXPIRED = "expires_at < :now"
CLAIM_CONDITION = f"{_NO_ITEM} OR {_ITEM_EXPIRED}"
#: A redriven dead letter may also take over a key whose run failed for good (an item
#: COMPLETED with ``failed`` by an earlier release; else the owner's result says so).
_FAILED = "attribute_exists(failed)"
#: Taking over from an owner read as dead (its lease over, its result not ended) —
#: only if it is still that owner and it has not extended its lease meanwhile.
_STILL_OWNER = "task_id = :owner"
_LEASE_OVER = "lease_expires_at < :now"
TAKEOVER_CONDITION = f"{_STILL_OWNER} AND ({_LEASE_OVER} OR {_ITEM_EXPIRED})"
#: The result item's attribute naming the key it completes (its ``pk``): written with
#: a SUCCESS or final FAILURE that answers the key. A result without it — a body given
#: up at its time limit whose thread still runs, holding the key until it ends — does
#: not complete the key.
ANSWERS_KEY = "idempotency_pk"
#: A heartbeat extends only a lease it still owns.
EXTEND_CONDITION = "#status = :in_progress AND task_id = :owner"

KeySpec = str | Callable[..., str] | None


def render_key(
    spec: KeySpec,
    arguments: dict[str, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    option: str = "idempotency_key",
) -> str | None:
    """The idempotency key (or another per-call key, e.g. ``fair_key``) for one call.

    Args:
        spec: a ``str.format`` template over the parameter names, a callable
            taking the call's ``*args, **kwargs``, or None.
        arguments: parameter name → value (defaults applied).
        option: the task option named in errors.

    Raises:
        ValueError: the template names a missing argument, or the key is empty.
    """
    if spec is None:
        return None
    try:
        key = spec.format(**arguments) if isinstance(spec, str) else str(spec(*args, **kwargs))
    except (KeyError, AttributeError, IndexError) as exc:
        raise ValueError(f"{option} {spec!r} cannot be rendered: {exc!r}") from None
    if not key:
        raise ValueError(f"{option} {spec!r} rendered an empty key")
    return key


def payload_hash(arguments: dict[str, Any]) -> str:
    """SHA-256 of the validated arguments (parameter name → value) in the envelope's
    JSON form with sorted keys, so equal arguments hash equally however they were passed."""
    import json

    from .envelope import to_json

    text = json.dumps(to_json(arguments, "arguments"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def key_pk(task_name: str, key: str) -> str:
    """The item's partition key: ``idem#<task>#<key>``, a key over ``MAX_KEY_CHARS``
    characters *or UTF-8 bytes* replaced by its SHA-256, so the whole stays under
    DynamoDB's 2,048-byte partition key (``limits.DYNAMODB_MAX_PARTITION_KEY_BYTES``;
    a task name is at most 256 characters, 1,024 bytes).

    Raises:
        ValueError: the key or task name holds a lone surrogate (not UTF-8).
    """
    try:
        encoded = key.encode("utf-8")
        task_name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "idempotency key holds a lone surrogate (not encodable as UTF-8)"
        ) from None
    if len(key) > MAX_KEY_CHARS or len(encoded) > MAX_KEY_CHARS:
        key = "sha256:" + hashlib.sha256(encoded).hexdigest()
    return f"idem#{task_name}#{key}"


def item_key(pk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": "idempotency"}}


def claim_request(
    table: str,
    pk: str,
    task_id: str,
    lease_s: float,
    ttl_s: float,
    now: float | None = None,
    retake: bool = False,
    payload: str | None = None,
    over: str | None = None,
) -> dict[str, Any]:
    """PutItem arguments that claim ``pk`` for ``task_id`` (see the drawing);
    ``retake``: also over a key whose run failed for good (a redriven dead letter);
    ``payload``: the arguments' :func:`payload_hash`, kept for duplicates to compare;
    ``over``: take the key over from this owner (read as dead, or — with ``retake`` —
    as failed for good)."""
    now = time.time() if now is None else now
    values: dict[str, Any] = {":now": {"N": str(int(now))}}
    if over is not None:
        condition = _STILL_OWNER if retake else TAKEOVER_CONDITION
        values[":owner"] = {"S": over}
    else:
        condition = f"{CLAIM_CONDITION} OR {_FAILED}" if retake else CLAIM_CONDITION
    item: Item = {
        **item_key(pk),
        "status": {"S": "IN_PROGRESS"},
        "task_id": {"S": task_id},
        "lease_expires_at": {"N": str(int(now + lease_s) + 1)},
        "expires_at": {"N": str(int(now + ttl_s))},
    }
    if payload:
        item["payload_hash"] = {"S": payload}
    request = {
        "TableName": table,
        "Item": item,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if retake and over is not None:
        del values[":now"]
    return request


def extend_request(
    table: str, pk: str, task_id: str, lease_s: float, now: float | None = None
) -> dict[str, Any]:
    """UpdateItem arguments that extend the lease ``task_id`` holds on ``pk``."""
    now = time.time() if now is None else now
    return {
        "TableName": table,
        "Key": item_key(pk),
        "UpdateExpression": "SET lease_expires_at = :lease",
        "ConditionExpression": EXTEND_CONDITION,
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {
            ":lease": {"N": str(int(now + lease_s) + 1)},
            ":in_progress": {"S": "IN_PROGRESS"},
            ":owner": {"S": task_id},
        },
    }


#: Characters of a failure's message kept under its key.
FAILED_MESSAGE_CHARS = 1024


def completed_item(
    pk: str,
    task_id: str,
    value: Any,
    ttl_s: float,
    now: float | None = None,
    payload: str | None = None,
    refused: str | None = None,
    failed: dict[str, str | None] | None = None,
) -> Item:
    """The COMPLETED item holding the first run's JSON ``value`` (and its
    arguments' :func:`payload_hash`, when given). ``refused``: the body ran but
    DynamoDB refused its outcome (the dead-letter reason, ``result_too_large`` /
    ``invalid_key``): the item keeps the reason instead of a value, so that a copy
    is not run a second time (see :meth:`Claim.refused`). ``failed``: the body failed
    for good (``{exc_type, exc_message, reason}``, the message cut to
    :data:`FAILED_MESSAGE_CHARS`): a duplicate resolves to that failure
    (:attr:`Claim.failed`)."""
    now = time.time() if now is None else now
    item: Item = {
        **item_key(pk),
        "status": {"S": "COMPLETED"},
        "task_id": {"S": task_id},
        "expires_at": {"N": str(int(now + ttl_s))},
    }
    if refused:
        item["refused"] = {"S": refused}
    elif failed is not None:
        message = failed.get("exc_message") or ""
        failed = {**failed, "exc_message": message[:FAILED_MESSAGE_CHARS]}
        item["failed"] = {"S": dumps(failed)}
    else:
        item["value"] = {"S": dumps(value)}
    if payload:
        item["payload_hash"] = {"S": payload}
    return item


@dataclass(frozen=True)
class Claim:
    """The answer to a claim.

    Attributes:
        status: ``"CLAIMED"`` (run it), ``"COMPLETED"`` (a duplicate: use ``value``)
            or ``"IN_PROGRESS"`` (another run holds a live lease: retry after
            ``lease_remaining_s``).
        owner: task id of the run that completed or holds the key.
        refused: COMPLETED without a value: the run's body ended but DynamoDB refused
            its outcome (this dead-letter reason); a duplicate is not run either, it
            is dead-lettered with the same reason.
        failed: COMPLETED by a final failure (``{exc_type, exc_message, reason}``):
            a duplicate is not run, it resolves to this failure.
    """

    status: str
    owner: str | None = None
    value: Any = None
    lease_remaining_s: float = 0.0
    payload_hash: str | None = None
    refused: str | None = None
    failed: dict[str, Any] | None = None

    def conflicts_with(self, payload: str | None) -> bool:
        """Whether a duplicate with arguments hashing to ``payload`` differs from the
        call that completed the key (False when either side kept no hash)."""
        return bool(self.payload_hash and payload and self.payload_hash != payload)


#: Claims tried when the conflicting item vanished before it could be read.
CLAIM_TRIES = 3


def claim_from_conflict(old: Item | None, now: float | None = None) -> Claim:
    """Interpret the old item of a failed claim (ALL_OLD, or read with GetItem)."""
    import json

    now = time.time() if now is None else now
    if not old:  # vanished between the check and the read: treat as in progress briefly
        return Claim("IN_PROGRESS", lease_remaining_s=1.0)
    owner = old.get("task_id", {}).get("S")
    if old.get("status", {}).get("S") == "COMPLETED":
        value = json.loads(old["value"]["S"]) if "value" in old else None
        return Claim(
            "COMPLETED",
            owner,
            value,
            payload_hash=old.get("payload_hash", {}).get("S"),
            refused=old.get("refused", {}).get("S"),
            failed=json.loads(old["failed"]["S"]) if "failed" in old else None,
        )
    lease = float(old.get("lease_expires_at", {}).get("N", now))
    return Claim(
        "IN_PROGRESS",
        owner,
        lease_remaining_s=max(1.0, lease - now),
        payload_hash=old.get("payload_hash", {}).get("S"),
    )


def ended_claim(claim: Claim, record: ResultRecord | None) -> Claim | None:
    """The IN_PROGRESS ``claim`` completed by its owner's result ``record`` (SUCCESS:
    its value; FAILURE: the failure, as :func:`completed_item` keeps it), or None
    when the owner's run has not ended."""
    if record is None or record.state not in (State.SUCCESS, State.FAILURE):
        return None
    if record.state is State.SUCCESS:
        return Claim("COMPLETED", claim.owner, record.value, payload_hash=claim.payload_hash)
    failed = {
        "exc_type": record.exc_type,
        "exc_message": (record.exc_message or "")[:FAILED_MESSAGE_CHARS],
        "reason": record.dead_letter_reason,
    }
    return Claim("COMPLETED", claim.owner, payload_hash=claim.payload_hash, failed=failed)


def _conflict_item(exc: Exception) -> Item | bool | None:
    """The old item of a ConditionalCheckFailedException; False if not that error."""
    response = getattr(exc, "response", None) or {}
    if response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
        return False
    item: Item | None = response.get("Item")
    return item


def _old_item(exc: Exception) -> Item | None:
    item: Item | None = getattr(exc, "response", {}).get("Item")
    return item or None


def _read(response: dict[str, Any]) -> Item | None:
    item: Item | None = response.get("Item")
    return item or None


class IdempotencyStore:
    """Claims, extends and completes keys in the app's table (boto3 and aiobotocore).

    Args:
        clients: the App's client factory.
        table: the table name.
    """

    def __init__(self, clients: Any, table: str) -> None:
        self.clients = clients
        self.table = table

    def claim(
        self,
        pk: str,
        task_id: str,
        lease_s: float,
        ttl_s: float,
        retake: bool = False,
        payload: str | None = None,
    ) -> Claim:
        """A conditional PutItem; on conflict the old item (ALL_OLD, else a consistent
        GetItem) and, when it is IN_PROGRESS, its owner's result item (see the
        drawing). ``retake``, ``payload``: see :func:`claim_request`."""
        return run(self.claiming(pk, task_id, lease_s, ttl_s, retake, payload), self.clients)

    async def aclaim(
        self,
        pk: str,
        task_id: str,
        lease_s: float,
        ttl_s: float,
        retake: bool = False,
        payload: str | None = None,
    ) -> Claim:
        """Asyncio twin of :meth:`claim`."""
        steps = self.claiming(pk, task_id, lease_s, ttl_s, retake, payload)
        return await arun(steps, self.clients)

    def claiming(
        self,
        pk: str,
        task_id: str,
        lease_s: float,
        ttl_s: float,
        retake: bool = False,
        payload: str | None = None,
    ) -> Steps[Claim]:
        """The calls of :meth:`claim` (see :mod:`sqsq.calls`)."""
        over: str | None = None
        for _ in range(CLAIM_TRIES):
            request = claim_request(
                self.table, pk, task_id, lease_s, ttl_s, retake=retake, payload=payload, over=over
            )
            try:
                yield Call("dynamodb", "put_item", request)
            except Exception as exc:
                if _conflict_item(exc) is False:
                    raise
                old = _old_item(exc) or _read(
                    (
                        yield Call(
                            "dynamodb",
                            "get_item",
                            {"TableName": self.table, "Key": item_key(pk), "ConsistentRead": True},
                        )
                    )
                )
                over = None
                if not old:
                    continue  # the item vanished: claim again
                claim = claim_from_conflict(old)
                if claim.status == "COMPLETED" or claim.owner is None:
                    return claim
                result = _read(
                    (
                        yield Call(
                            "dynamodb",
                            "get_item",
                            {
                                "TableName": self.table,
                                "Key": result_key(claim.owner),
                                "ConsistentRead": True,
                            },
                        )
                    )
                )
                answers = result is not None and result.get(ANSWERS_KEY, {}).get("S") == pk
                record = record_from_item(result) if answers and result else None
                if record is not None:  # a value in S3 (sqsq.payloads): one GetObject
                    record = yield from with_value(record)
                ended = ended_claim(claim, record)
                if ended is not None and not (retake and ended.failed is not None):
                    return ended
                if (
                    ended is None
                    and float(old.get("lease_expires_at", {}).get("N", 0)) >= time.time()
                ):
                    return claim  # its owner runs it under a live lease
                over = claim.owner  # its owner died, or a redrive retakes its failure
                continue
            return Claim("CLAIMED", task_id)
        return Claim("IN_PROGRESS", lease_remaining_s=1.0)

    def extend(self, pk: str, task_id: str, lease_s: float) -> bool:
        """Extend a held lease; False when it is no longer ours."""
        return run(self.extending(pk, task_id, lease_s), self.clients)

    async def aextend(self, pk: str, task_id: str, lease_s: float) -> bool:
        """Asyncio twin of :meth:`extend`."""
        return await arun(self.extending(pk, task_id, lease_s), self.clients)

    def extending(self, pk: str, task_id: str, lease_s: float) -> Steps[bool]:
        """The call of :meth:`extend` (see :mod:`sqsq.calls`)."""
        request = extend_request(self.table, pk, task_id, lease_s)
        return (yield from _if_ours(Call("dynamodb", "update_item", request)))

    async def arelease(self, pk: str, task_id: str) -> bool:
        """Delete the key if ``task_id`` still holds it IN_PROGRESS (a run that ended
        without completing it); False when it is no longer ours."""
        return await arun(self.releasing(pk, task_id), self.clients)

    def releasing(self, pk: str, task_id: str) -> Steps[bool]:
        """The call of :meth:`arelease` (see :mod:`sqsq.calls`)."""
        request = {
            "TableName": self.table,
            "Key": item_key(pk),
            "ConditionExpression": EXTEND_CONDITION,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":in_progress": {"S": "IN_PROGRESS"},
                ":owner": {"S": task_id},
            },
        }
        return (yield from _if_ours(Call("dynamodb", "delete_item", request)))


def _if_ours(call: Call) -> Steps[bool]:
    """A conditional write on a key we hold: False when the condition failed (the
    key is no longer ours); other errors propagate."""
    try:
        yield call
    except Exception as exc:
        if _conflict_item(exc) is False:
            raise
        return False
    return True
