"""Runtime rate-limit overrides: ``sqsq limits set APP TASK 50/s``, without a deploy.

An override is an item in the app's revocation partition, where the revocation
Query that every busy worker (and warm Lambda container) already makes returns it
— so reading overrides costs no request of its own (``revocations.py``)::

    pk = "revocations#<app>"   sk = "limit#task#<task name>"   rate (S, "50/s"), set_at
                               sk = "limit#queue#<queue>"

An ``sk`` that starts with a letter sorts after every revocation (``<epoch ms>#…``),
so each Query returns all overrides; a worker applies them within
``revocation_interval_s`` of a change. Cost: one PutItem / DeleteItem per change.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from ..calls import Call, Steps
from ..revocations import partition
from .rates import Rate, parse_rate

Item = dict[str, dict[str, Any]]

#: The ``sk`` prefix of override items.
LIMIT_PREFIX = "limit#"


def override_sk(kind: str, name: str) -> str:
    """``limit#task#<name>`` or ``limit#queue#<name>``."""
    if kind not in ("task", "queue"):
        raise ValueError(f"an override is of a task or a queue, not {kind!r}")
    return f"{LIMIT_PREFIX}{kind}#{name}"


@lru_cache(maxsize=256)
def _parse(text: str) -> Rate | None:
    try:
        return parse_rate(text)
    except ValueError:
        return None


def rates_of(controls: dict[str, Item]) -> dict[str, Rate]:
    """The overrides among a revocation view's controls: ``sk`` → rate (items that
    do not parse are left out)."""
    rates = {}
    for sk, item in controls.items():
        if sk.startswith(LIMIT_PREFIX):
            rate = _parse(item.get("rate", {}).get("S", ""))
            if rate is not None:
                rates[sk] = rate
    return rates


def setting(table: str, app_name: str, kind: str, name: str, rate: Rate) -> Steps[None]:
    """Put an override (PutItem)."""
    item = {
        "pk": {"S": partition(app_name)},
        "sk": {"S": override_sk(kind, name)},
        "rate": {"S": rate.text},
        "set_at": {"N": str(int(time.time()))},
    }
    yield Call("dynamodb", "put_item", {"TableName": table, "Item": item})


def clearing(table: str, app_name: str, kind: str, name: str) -> Steps[bool]:
    """Delete an override; False when there was none."""
    key = {"pk": {"S": partition(app_name)}, "sk": {"S": override_sk(kind, name)}}
    response = yield Call(
        "dynamodb", "delete_item", {"TableName": table, "Key": key, "ReturnValues": "ALL_OLD"}
    )
    return bool(response.get("Attributes"))


def listing(table: str, app_name: str) -> Steps[list[tuple[str, str, str]]]:
    """Every override: ``(kind, name, rate text)``, sorted."""
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {
            ":pk": {"S": partition(app_name)},
            ":prefix": {"S": LIMIT_PREFIX},
        },
        "ConsistentRead": True,
    }
    rows = []
    while True:
        response = yield Call("dynamodb", "query", dict(request))
        for item in response.get("Items", []):
            kind, _, name = item["sk"]["S"].removeprefix(LIMIT_PREFIX).partition("#")
            rows.append((kind, name, item.get("rate", {}).get("S", "")))
        if not response.get("LastEvaluatedKey"):
            return sorted(rows)
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
