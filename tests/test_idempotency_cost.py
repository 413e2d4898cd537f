"""What an idempotency key costs, in DynamoDB write units computed from the items the
calls stored: 1 WCU per 1 KB of item size, rounded up, per write; a conditional write
that fails still costs, by the larger of the item it would write and the one it met
("Read/write capacity mode" and "Item sizes" in the DynamoDB developer guide).
Powertools' idempotency: 2 for a first call (the IN_PROGRESS put, the COMPLETED
update), 1 for a duplicate (its failed put)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import sqsq
from sqsq.dynamodb import Item, item_size, result_key
from sqsq.idempotency import claim_request, item_key, key_pk
from sqsq.local import LocalEndpoint
from sqsq.testing import LambdaContext
from tests.apps import reliability as rel
from tests.test_lambda_reliability import DEFAULT, event_of, listed


@pytest.fixture
def rapp(local_aws: LocalEndpoint) -> sqsq.App:
    return rel.setup()


def wcu(item: Item) -> int:
    return math.ceil(item_size(item) / 1024)


def stored(app: sqsq.App, key: Item) -> Item:
    client = app.clients.sync("dynamodb")
    item: Item = client.get_item(TableName=app.idempotency.table, Key=key, ConsistentRead=True)[
        "Item"
    ]
    return item


def writes(app: sqsq.App) -> dict[str, int]:
    counts = app.clients.counter.snapshot()
    return {k: n for k, n in counts.items() if k.split(".")[1] in WRITE_ACTIONS}


WRITE_ACTIONS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}


def written_since(app: sqsq.App, before: dict[str, int]) -> dict[str, int]:
    """Write requests by action since ``before`` (a :func:`writes` snapshot)."""
    return {k: n - before.get(k, 0) for k, n in writes(app).items() if n != before.get(k, 0)}


def run_one(app: sqsq.App) -> dict[str, int]:
    event, _ = event_of(DEFAULT, 1)
    before = writes(app)
    assert listed(app.lambda_handler(event, LambdaContext())) == []
    return written_since(app, before)


@pytest.mark.parametrize("value", ["small", "x" * 300_000], ids=["small", "300KB"])
def test_a_first_call_writes_the_claim_and_its_result_only(
    rapp: sqsq.App, tmp_path: Path, value: str
) -> None:
    path = str(tmp_path / "runs.log")
    first = rel.counted.apply_async((path, value), idempotency_key="o-1")

    requests = run_one(rapp)

    pk = key_pk(rel.counted.name, "o-1")
    key, result = stored(rapp, item_key(pk)), stored(rapp, result_key(first.id))
    # the key item is the claim as written, never written again: it points to the result
    assert (key["status"]["S"], key["task_id"]["S"]) == ("IN_PROGRESS", first.id)
    assert "value" not in key
    assert requests == {"dynamodb.PutItem": 1, "dynamodb.BatchWriteItem": 1}
    units = wcu(key) + wcu(result)
    print(f"first call, value of {len(value)} chars: {wcu(key)} + {wcu(result)} = {units} WCU")
    if value == "small":
        assert units == 2  # Powertools: 2
    else:  # the value is stored once: before, the key item held a second ~300 KB copy
        assert wcu(key) == 1 and 293 <= wcu(result) < 300
    assert first.get(timeout=0) == value


def test_a_duplicate_writes_its_failed_claim_and_its_own_result(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.log")
    first = rel.charge_once.delay("o-2", 500, path)
    run_one(rapp)
    duplicate = rel.charge_once.delay("o-2", 500, path)

    requests = run_one(rapp)

    assert rel.lines(path) == ["o-2"]
    assert duplicate.get(timeout=0) == first.get(timeout=0)
    key = stored(rapp, item_key(key_pk(rel.charge_once.name, "o-2")))
    attempted = claim_request("t", key["pk"]["S"], duplicate.id, 30, 3600)["Item"]
    claim_units = max(wcu(key), wcu(attempted))  # a failed conditional put still costs
    own = wcu(stored(rapp, result_key(duplicate.id)))
    assert requests == {"dynamodb.PutItem": 1, "dynamodb.BatchWriteItem": 1}
    print(f"duplicate with its own task id: {claim_units} + {own} WCU")
    assert claim_units == 1 and own == 1  # its own result: Powertools keeps none


def test_the_same_message_twice_writes_its_failed_claim_only(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    """A message delivered again after its outcome was stored under the same task id
    (the duplicate SQS's at-least-once delivery makes) costs one write, as Powertools'."""
    path = str(tmp_path / "runs.log")
    first = rel.charge_once.delay("o-3", 500, path)
    event, _ = event_of(DEFAULT, 1)
    record = dict(event["Records"][0])
    record["messageId"] = "another-delivery"  # the same body, seen as another message
    assert listed(rapp.lambda_handler(event, LambdaContext())) == []
    before = writes(rapp)

    rapp.lambda_handler({"Records": [record]}, LambdaContext())

    # the failed claim; no result item written
    assert written_since(rapp, before) == {"dynamodb.PutItem": 1}
    assert rel.lines(path) == ["o-3"]
    assert first.get(timeout=0)["order_id"] == "o-3"
