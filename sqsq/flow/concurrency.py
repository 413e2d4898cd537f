"""Concurrency limits: at most N bodies per key at once, across every worker and Lambda.

``@app.task(concurrency_limit=N, concurrency_key="{account_id}")``: the key's N slots
are N items, each a lease taken with a conditional write::

    pk = "conc#<app>#<task>[#<key>]"   sk = "slot#<i>" (i < N)   holder, lease_until (epoch s), expires_at

    acquire:  Query pk (ConsistentRead: which slots are free or run out)
              ─► UpdateItem SET holder = :me, lease_until = now + lease
                 IF _FREE  (no holder, or its lease ran out)  ─► the body may run
              every slot held ─► put back (``Executor.defer``) until the first lease
                 ends, at most :data:`RECHECK_S`
    renew:    every lease / 3 while the body runs, UpdateItem lease_until IF _OURS
    release:  when the body ends (and on a duplicate, a revocation, a shutdown),
              DeleteItem IF _OURS

    holder crashes ──► nobody renews ──► lease_until passes ──► the next acquire takes it

    |──── lease ────|──── lease ────|  renewals at each third
    taken           renewed          … released, or (crash) free once lease_until passes

A worker's lease is its message's visibility lease (the task's ``visibility_timeout``
or the queue's), so a crashed holder frees its slot within one lease, the same time
SQS takes to give its message to another worker. A Lambda function's lease is the
invocation's remaining time (it cannot run longer) and is not renewed.

Cost per task: one Query (one read unit for small N), one conditional write to take,
one to release, and one per renewal (a body of length *t* renews ``3t / lease`` times);
a message over the limit costs the Query (and a failed write when another worker
took the slot first) per look, plus its put-back (SQS).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..calls import Call, Steps, arun, run
from ..retry import error_code

logger = logging.getLogger(__name__)

T = TypeVar("T")

Item = dict[str, dict[str, Any]]

#: Longest put-back of a message whose key's slots are all held, seconds (a slot
#: freed by a release is seen at the next look).
RECHECK_S = 5.0
#: Shortest put-back, seconds (SQS's DelaySeconds counts whole seconds).
MIN_RECHECK_S = 1.0

_FREE = "attribute_not_exists(holder) OR lease_until < :now"
_OURS = "holder = :me"


def slots_pk(app_name: str, task: str, key: str | None) -> str:
    """The partition key of a task's (or a key's) slots."""
    return f"conc#{app_name}#{task}" + (f"#{key}" if key is not None else "")


@dataclass
class SlotLease:
    """A slot held by one body.

    Attributes:
        table: the app's table.
        key: the slot item's key.
        holder: who holds it (the task id and a per-process nonce).
        lease_s: how long each take or renewal holds it, seconds.
    """

    table: str
    key: Item
    holder: str
    lease_s: float
    clients: Any = None

    async def aholding(self, body: Awaitable[T]) -> T:
        """Await ``body`` while renewing the lease every third of it; release the
        slot when ``body`` ends, however it ends (a failed release is logged: the
        lease then runs out by itself)."""
        import asyncio

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_s / 3)
                try:
                    if not await arun(self.renewing(), self.clients):
                        logger.warning("concurrency slot %s was lost", self.key["pk"]["S"])
                        return
                except Exception as exc:
                    logger.warning("renewing a concurrency slot failed: %s", exc)

        renewing = asyncio.get_running_loop().create_task(renew())
        try:
            return await body
        finally:
            renewing.cancel()
            try:
                await arun(self.releasing(), self.clients)
            except Exception as exc:
                logger.warning("releasing a concurrency slot failed (%s): its lease runs out", exc)

    def release(self) -> None:
        """Free the slot (boto3); a failure is logged: the lease then runs out."""
        try:
            run(self.releasing(), self.clients)
        except Exception as exc:
            logger.warning("releasing a concurrency slot failed (%s): its lease runs out", exc)

    def renewing(self, now: float | None = None) -> Steps[bool]:
        """Extend the lease by ``lease_s`` from now; False when it is no longer ours."""
        now = time.time() if now is None else now
        return (
            yield from _if_ours(
                Call(
                    "dynamodb",
                    "update_item",
                    {
                        "TableName": self.table,
                        "Key": self.key,
                        "UpdateExpression": "SET lease_until = :until",
                        "ConditionExpression": _OURS,
                        "ExpressionAttributeValues": {
                            ":me": {"S": self.holder},
                            ":until": {"N": f"{now + self.lease_s:.3f}"},
                        },
                    },
                )
            )
        )

    def releasing(self) -> Steps[bool]:
        """Free the slot; False when it was no longer ours."""
        return (
            yield from _if_ours(
                Call(
                    "dynamodb",
                    "delete_item",
                    {
                        "TableName": self.table,
                        "Key": self.key,
                        "ConditionExpression": _OURS,
                        "ExpressionAttributeValues": {":me": {"S": self.holder}},
                    },
                )
            )
        )


def _if_ours(call: Call) -> Steps[bool]:
    try:
        yield call
    except Exception as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        return False
    return True


def acquiring(
    table: str,
    pk: str,
    limit: int,
    holder: str,
    lease_s: float,
    clients: Any = None,
    now: float | None = None,
) -> Steps[SlotLease | float]:
    """Take one of the ``limit`` slots of ``pk``: the :class:`SlotLease`, or the
    seconds to wait before looking again (every slot held)."""
    now = time.time() if now is None else now
    response = yield Call(
        "dynamodb",
        "query",
        {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        },
    )
    held: dict[int, float] = {}
    for item in response.get("Items", []):
        index = int(item["sk"]["S"].removeprefix("slot#"))
        until = float(item.get("lease_until", {}).get("N", "0"))
        if "holder" in item and until >= now and index < limit:
            held[index] = until
    free = [i for i in range(limit) if i not in held]
    random.shuffle(free)
    for index in free:
        key = {"pk": {"S": pk}, "sk": {"S": f"slot#{index}"}}
        try:
            yield Call(
                "dynamodb",
                "update_item",
                {
                    "TableName": table,
                    "Key": key,
                    "UpdateExpression": "SET holder = :me, lease_until = :until, "
                    "expires_at = :expires",
                    "ConditionExpression": _FREE,
                    "ExpressionAttributeValues": {
                        ":me": {"S": holder},
                        ":now": {"N": f"{now:.3f}"},
                        ":until": {"N": f"{now + lease_s:.3f}"},
                        ":expires": {"N": str(int(now + lease_s) + 86_400)},
                    },
                },
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            continue  # another worker took it first
        return SlotLease(table, key, holder, lease_s, clients)
    first_free = min(held.values(), default=now) - now
    return min(max(first_free, MIN_RECHECK_S), RECHECK_S)
