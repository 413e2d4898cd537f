"""DynamoDB Time to Live, swept on demand at a time the test chooses.

DynamoDB deletes an expired item "typically within two days of expiration"
in the background; moto and LocalStack store the TTL setting and never delete
anything, and dynalite cannot even have TTL enabled (it has no UpdateTimeToLive,
and its DescribeTimeToLive always answers DISABLED). :func:`sweep_ttl` does the
deletion DynamoDB would do, now, as of a **virtual** time::

    swept = sweep_ttl(app.table_name, now=datetime.now(UTC) + timedelta(days=8))
    swept.deleted            # the items deleted (low-level attribute values)
    swept.ignored            # reason → how many items TTL would never delete

The rules ("Using DynamoDB Time to Live (TTL)", section "Formatting an item's
TTL attribute", DynamoDB Developer Guide — time-to-live-ttl-before-you-start):

- the attribute is the table's (DescribeTimeToLive); a table with TTL disabled
  has nothing deleted. On an endpoint where TTL cannot be enabled — no
  DescribeTimeToLive, or no UpdateTimeToLive (dynalite, whose DescribeTimeToLive
  says DISABLED for every table) — ``fallback_attribute`` is used instead: the
  attribute the table would have (sqsq's is ``expires_at``). ``attribute`` names
  it outright, on any endpoint.
- an item is eligible when it **has** the attribute, it is a top-level **Number**
  (an ``S`` "1700000000" is ignored), holding epoch **seconds**, and it is
  **no more than five years in the past** (older ones are never expired: "The TTL
  attribute value must be a datetimestamp with an expiration of no more than five
  years in the past");
- eligible and **less than now** (strictly): deleted. Items are deleted with
  BatchWriteItem (25 a call, unprocessed ones sent again).

Five years is taken as 5 × 365.25 days (:data:`FIVE_YEARS_S`); AWS does not say
how it counts leap days. What AWS also does and the sweep does not: the deletion
is not immediate (reads meanwhile still see expired items — which is why sqsq
checks ``expires_at`` itself on every read), and a stream records it as a
service deletion.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import limits

#: Items expired longer ago than this are never deleted by TTL (5 × 365.25 days).
FIVE_YEARS_S = int(5 * 365.25 * 86_400)
#: Reasons an item is left alone, as counted in :attr:`Swept.ignored`.
MISSING, NOT_A_NUMBER, TOO_OLD, NOT_EXPIRED = (
    "missing",
    "not a Number",
    "more than five years in the past",
    "not expired",
)
#: Attempts at a BatchWriteItem's UnprocessedItems.
UNPROCESSED_ATTEMPTS = 8

Item = dict[str, dict[str, Any]]


@dataclass
class Swept:
    """What one :func:`sweep_ttl` did.

    Attributes:
        table / attribute: the table and its TTL attribute (None: TTL disabled, nothing swept).
        now: the epoch seconds compared with.
        deleted: the items deleted (as Scan returned them).
        ignored: reason → number of items left (:data:`MISSING`, :data:`NOT_A_NUMBER`,
            :data:`TOO_OLD`, :data:`NOT_EXPIRED`).
    """

    table: str
    attribute: str | None
    now: float
    deleted: list[Item] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)

    def deleted_keys(self, *names: str) -> list[tuple[str, ...]]:
        """The deleted items' values of ``names`` (default ``pk``, ``sk``), e.g.
        ``[("task#1", "result")]``."""
        names = names or ("pk", "sk")
        return [
            tuple(str(next(iter(i[n].values()))) for n in names if n in i) for i in self.deleted
        ]


def ttl_attribute(table: str, *, client: Any = None) -> str | None:
    """The TTL attribute of ``table`` (DescribeTimeToLive), None when TTL is off
    (dynalite, which cannot enable TTL, says off for every table: see
    :func:`can_enable_ttl`).

    Raises:
        NotImplementedError: the endpoint has no DescribeTimeToLive.
    """
    client = client or _client()
    try:
        description = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "UnknownOperationException":
            raise NotImplementedError("this endpoint has no DescribeTimeToLive") from None
        raise
    if description.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return str(description["AttributeName"])
    return None


def can_enable_ttl(*, client: Any = None) -> bool:
    """Whether the endpoint has UpdateTimeToLive (dynalite has not).

    Asked without changing anything: UpdateTimeToLive of a table that does not exist
    (DynamoDB, moto, LocalStack: ResourceNotFoundException; an endpoint without the
    operation: UnknownOperationException).
    """
    client = client or _client()
    try:
        client.update_time_to_live(
            TableName=f"sqsq-ttl-probe-absent-{uuid.uuid4().hex}",
            TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires_at"},
        )
    except client.exceptions.ClientError as exc:
        return bool(exc.response.get("Error", {}).get("Code") != "UnknownOperationException")
    return True


def _client() -> Any:
    import boto3

    return boto3.client("dynamodb")


def _epoch(now: datetime | float) -> float:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        return now.timestamp()
    return float(now)


def expiry_reason(item: Item, attribute: str, now: float) -> str | None:
    """None when TTL would delete ``item`` at ``now``, else why not (see the module)."""
    value = item.get(attribute)
    if value is None:
        return MISSING
    if set(value) != {"N"}:
        return NOT_A_NUMBER
    try:
        expires = float(value["N"])
    except ValueError:
        return NOT_A_NUMBER
    if not math.isfinite(expires):
        return NOT_A_NUMBER
    if expires < now - FIVE_YEARS_S:
        return TOO_OLD
    if expires >= now:
        return NOT_EXPIRED
    return None


def sweep_ttl(
    table: str,
    now: datetime | float | None = None,
    *,
    attribute: str | None = None,
    fallback_attribute: str | None = None,
    client: Any = None,
) -> Swept:
    """Delete the items of ``table`` that DynamoDB's TTL would delete at ``now``.

    Args:
        table: the table name.
        now: the virtual time (aware datetime or epoch seconds; default: the real now).
        attribute: the TTL attribute, without asking DescribeTimeToLive.
        fallback_attribute: the TTL attribute where the endpoint cannot have TTL
            enabled (no DescribeTimeToLive, or no UpdateTimeToLive: dynalite); where
            it can, a table with TTL disabled has nothing deleted, as on AWS.
        client: a boto3 DynamoDB client (default: a new one, which follows
            ``AWS_ENDPOINT_URL``).

    Returns:
        What was deleted and what was left, and why (:class:`Swept`).
    """
    client = client or _client()
    at = _epoch(time.time() if now is None else now)
    name = attribute
    if name is None:
        try:
            name = ttl_attribute(table, client=client)
        except NotImplementedError:
            if fallback_attribute is None:
                raise NotImplementedError(
                    "this endpoint has no DescribeTimeToLive: pass fallback_attribute="
                ) from None
            name = fallback_attribute
        if name is None and fallback_attribute is not None and not can_enable_ttl(client=client):
            name = fallback_attribute  # "DISABLED" from an endpoint without TTL (dynalite)
    swept = Swept(table, name, at)
    if name is None:
        return swept
    key_names = [
        k["AttributeName"] for k in client.describe_table(TableName=table)["Table"]["KeySchema"]
    ]
    expired: list[Item] = []
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page.get("Items", []):
            reason = expiry_reason(item, name, at)
            if reason is None:
                expired.append(item)
            else:
                swept.ignored[reason] += 1
    size = limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS
    for start in range(0, len(expired), size):
        chunk = expired[start : start + size]
        requests: dict[str, list[dict[str, Any]]] = {
            table: [{"DeleteRequest": {"Key": {k: i[k] for k in key_names}}} for i in chunk]
        }
        for attempt in range(UNPROCESSED_ATTEMPTS):
            requests = client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
            if not requests:
                break
            time.sleep(min(0.05 * 2**attempt, 1.0))
        else:
            raise RuntimeError(f"{table}: BatchWriteItem left items unprocessed: {requests}")
        swept.deleted += chunk
    return swept


__all__ = [
    "FIVE_YEARS_S",
    "MISSING",
    "NOT_A_NUMBER",
    "NOT_EXPIRED",
    "TOO_OLD",
    "Swept",
    "can_enable_ttl",
    "expiry_reason",
    "sweep_ttl",
    "ttl_attribute",
]
