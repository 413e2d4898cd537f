"""Idempotency keys: at most one run per key on a real worker, duplicates resolve to the
first run's value (or its final failure); the claim's condition builders and the claim
itself against the local DynamoDB table."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import sqsq
from sqsq import State
from sqsq.idempotency import (
    CLAIM_CONDITION,
    MAX_KEY_CHARS,
    TAKEOVER_CONDITION,
    Claim,
    claim_from_conflict,
    claim_request,
    completed_item,
    extend_request,
    item_key,
    key_pk,
    render_key,
)
from sqsq.local import LocalEndpoint
from tests.apps import reliability as rel

CHARGE = "tests.apps.reliability.charge_once"


@dataclass
class Scenario:
    results: dict[str, sqsq.AsyncResult]
    runs: dict[str, list[str]]
    exit_code: int
    stderr: str

    def value(self, name: str) -> Any:
        return self.results[name].get(timeout=0, propagate=False)

    def record(self, name: str) -> sqsq.ResultRecord:
        record = self.results[name].record
        assert record is not None, f"{name}: no result\n{self.stderr}"
        return record


@pytest.fixture(scope="module")
def scenario(
    sqsq_endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    """Pairs of calls sharing a key, all enqueued first, then one ``--burst`` worker with
    ``--concurrency 1`` (one message at a time: the second of a pair is received after
    the first one's outcome and key were stored)."""
    sqsq_endpoint.reset()
    rel.setup()
    tmp = tmp_path_factory.mktemp("idempotency")
    paths = {
        name: str(tmp / f"{name}.log") for name in ("charge", "refund", "call", "fail", "loose")
    }
    results = {
        "charge_1": rel.charge_once.delay("o-1", 500, paths["charge"]),
        "charge_2": rel.charge_once.apply_async(
            kwargs={"order_id": "o-1", "cents": 500, "path": paths["charge"]}  # same, by name
        ),
        "charge_other": rel.charge_once.delay("o-1", 999, paths["charge"]),  # other args
        "loose_1": rel.charge_loose.delay("o-2", 500, paths["loose"]),
        "loose_other": rel.charge_loose.delay("o-2", 999, paths["loose"]),
        "refund_1": rel.refund_once.delay("o-1", 500, paths["refund"]),
        "refund_2": rel.refund_once.delay("o-1", 500, paths["refund"]),
        "refund_other": rel.refund_once.delay("o-1", 700, paths["refund"]),
        "call_1": rel.counted.apply_async((paths["call"], "first"), idempotency_key="o-1"),
        "call_2": rel.counted.apply_async((paths["call"], "first"), idempotency_key="o-1"),
        "call_nokey": rel.counted.apply_async((paths["call"], "third")),
        "fail_1": rel.fails_first.delay("k-1", paths["fail"]),
        "fail_2": rel.fails_first.delay("k-1", paths["fail"]),
    }
    returncode, stderr = rel.run_burst(tmp, "--queues", "default", "--concurrency", "1")
    for result in results.values():
        assert result.ready(), f"{result.id} not final\n{stderr}"  # cached from here on
    runs = {name: rel.lines(path) for name, path in paths.items()}
    yield Scenario(results, runs, returncode, stderr)


def pair(scenario: Scenario, a: str, b: str) -> tuple[sqsq.ResultRecord, sqsq.ResultRecord]:
    """(the record of the run that executed, the record of its duplicate)."""
    first, second = scenario.record(a), scenario.record(b)
    if "duplicate_of" in first.extra:
        first, second = second, first
    return first, second


def test_burst_worker_exits_zero(scenario: Scenario) -> None:
    assert scenario.exit_code == 0, scenario.stderr


def test_template_key_runs_the_body_once_and_both_results_get_its_value(
    scenario: Scenario,
) -> None:
    assert scenario.runs["charge"] == ["o-1"]
    ran, duplicate = pair(scenario, "charge_1", "charge_2")
    assert ran.state is State.SUCCESS and duplicate.state is State.SUCCESS
    assert "duplicate_of" not in ran.extra
    assert duplicate.extra == {"duplicate_of": ran.task_id}
    assert duplicate.value == ran.value
    assert ran.value["run"] == 1 and ran.value["order_id"] == "o-1"
    assert scenario.value("charge_1") == scenario.value("charge_2")


def test_a_duplicate_with_other_arguments_is_a_conflict_not_the_first_result(
    scenario: Scenario,
) -> None:
    other = scenario.record("charge_other")
    assert other.state is State.FAILURE
    assert other.dead_letter_reason == "idempotency_conflict"
    assert other.exc_type == "sqsq.errors.IdempotencyConflict"
    assert "other arguments" in (other.exc_message or "")
    assert other.value is None  # not the first call's result
    assert scenario.runs["charge"] == ["o-1"]  # and not run
    with pytest.raises(sqsq.TaskFailed):
        scenario.results["charge_other"].get(timeout=0)


def test_payload_validation_is_configurable_per_task(scenario: Scenario) -> None:
    first, other = scenario.record("loose_1"), scenario.record("loose_other")
    assert first.state is State.SUCCESS and other.state is State.SUCCESS
    assert other.extra == {"duplicate_of": first.task_id}
    assert other.value == first.value and first.value["cents"] == 500
    assert scenario.runs["loose"] == ["o-2"]


def test_callable_key_runs_once_per_computed_key(scenario: Scenario) -> None:
    # refund_key(order_id, cents, path): the two 500-cent refunds share a key, 700 does not
    assert sorted(scenario.runs["refund"]) == ["o-1", "o-1"]
    ran, duplicate = pair(scenario, "refund_1", "refund_2")
    assert duplicate.extra == {"duplicate_of": ran.task_id}
    assert scenario.value("refund_1") == scenario.value("refund_2")
    other = scenario.record("refund_other")
    assert other.state is State.SUCCESS and other.extra == {}
    assert other.value["cents"] == 700
    assert {ran.value["run"], other.value["run"]} == {1, 2}


def test_per_call_key_dedupes_and_keys_are_scoped_by_task(scenario: Scenario) -> None:
    # "o-1" is also charge_once's key: keys of different tasks do not collide
    assert sorted(scenario.runs["call"]) == ["first", "third"]
    ran, duplicate = pair(scenario, "call_1", "call_2")
    assert duplicate.value == ran.value
    assert duplicate.extra == {"duplicate_of": ran.task_id}
    assert scenario.value("call_nokey") == "third"


def test_a_final_failure_is_kept_under_the_key_and_a_duplicate_resolves_to_it(
    scenario: Scenario,
) -> None:
    # issue 18: a duplicate of a failed run ran the body again (the key was freed);
    # only sqsq's own retries (and a redrive from the DLQ) run a body again
    assert scenario.runs["fail"] == ["k-1"]
    failed, duplicate = pair(scenario, "fail_1", "fail_2")
    assert failed.state is State.FAILURE and failed.dead_letter_reason == "task_failed"
    assert "duplicate_of" not in failed.extra
    assert duplicate.state is State.FAILURE
    assert duplicate.extra == {"duplicate_of": failed.task_id}
    assert duplicate.dead_letter_reason == "task_failed"
    assert (duplicate.exc_type, duplicate.exc_message) == (failed.exc_type, failed.exc_message)
    with pytest.raises(sqsq.TaskFailed, match="first run fails"):
        scenario.results["fail_2"].get(timeout=0)


# --- the claim against the table ----------------------------------------------------------


def stored(pk: str) -> dict[str, Any]:
    item = rel.app.clients.sync("dynamodb").get_item(
        TableName=rel.app.table_name, Key=item_key(pk), ConsistentRead=True
    )
    return dict(item.get("Item", {}))


def test_claim_in_progress_takeover_and_completed(local_aws: LocalEndpoint) -> None:
    rel.setup()
    store = rel.app.idempotency
    pk = key_pk("tests.claim", "order-9")

    assert store.claim(pk, "task-1", lease_s=1, ttl_s=60) == Claim("CLAIMED", "task-1")
    second = store.claim(pk, "task-2", lease_s=1, ttl_s=60)
    assert (second.status, second.owner) == ("IN_PROGRESS", "task-1")
    assert 1.0 <= second.lease_remaining_s <= 3.0
    assert store.extend(pk, "task-2", 1) is False  # not the owner

    lease_end = int(stored(pk)["lease_expires_at"]["N"])
    time.sleep(max(0.0, lease_end + 1 - time.time()))  # the owner "died": its lease ran out
    assert store.claim(pk, "task-3", lease_s=30, ttl_s=60) == Claim("CLAIMED", "task-3")
    assert stored(pk)["task_id"] == {"S": "task-3"}
    assert store.extend(pk, "task-1", 30) is False  # the old owner lost it
    assert store.extend(pk, "task-3", 30) is True

    client = rel.app.clients.sync("dynamodb")
    client.put_item(
        TableName=rel.app.table_name, Item=completed_item(pk, "task-3", {"total": 5}, 60)
    )
    assert store.claim(pk, "task-4", lease_s=30, ttl_s=60) == Claim(
        "COMPLETED", "task-3", {"total": 5}
    )
    assert store.extend(pk, "task-3", 30) is False  # COMPLETED is no lease to extend


def test_a_failed_key_resolves_to_its_failure_unless_a_redriven_copy_retakes_it(
    local_aws: LocalEndpoint,
) -> None:
    rel.setup()
    store = rel.app.idempotency
    pk = key_pk("tests.claim", "failed")
    failure = {"exc_type": "ValueError", "exc_message": "x" * 5000, "reason": "task_failed"}
    item = completed_item(pk, "task-1", None, 60, failed=failure)
    rel.app.clients.sync("dynamodb").put_item(TableName=rel.app.table_name, Item=item)
    claim = store.claim(pk, "task-2", lease_s=30, ttl_s=60)
    assert (claim.status, claim.owner, claim.value) == ("COMPLETED", "task-1", None)
    assert claim.failed == {**failure, "exc_message": "x" * 1024}  # cut to FAILED_MESSAGE_CHARS
    assert store.claim(pk, "task-3", 30, 60, retake=True) == Claim("CLAIMED", "task-3")
    # a key completed with a value is never retaken, redrive or not
    rel.app.clients.sync("dynamodb").put_item(
        TableName=rel.app.table_name, Item=completed_item(pk, "task-3", 7, 60)
    )
    assert store.claim(pk, "task-4", 30, 60, retake=True) == Claim("COMPLETED", "task-3", 7)


def _without_old_item(params: dict[str, Any], **_: Any) -> None:
    """As an endpoint without ReturnValuesOnConditionCheckFailure answers (dynalite)."""
    params.pop("ReturnValuesOnConditionCheckFailure", None)


def test_conflict_without_its_item_is_read_with_a_consistent_get(local_aws: LocalEndpoint) -> None:
    rel.setup()
    store = rel.app.idempotency
    client = rel.app.clients.sync("dynamodb")
    pk = key_pk("tests.claim", "no-old-item")
    client.put_item(
        TableName=rel.app.table_name, Item=completed_item(pk, "first", {"total": 5}, 60)
    )
    client.meta.events.register("provide-client-params.dynamodb.PutItem", _without_old_item)
    try:
        before = rel.app.clients.counter.snapshot()
        claim = store.claim(pk, "second", lease_s=30, ttl_s=60)
        reads = rel.app.clients.counter.snapshot().get("dynamodb.GetItem", 0) - before.get(
            "dynamodb.GetItem", 0
        )
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb.PutItem", _without_old_item)
    assert claim == Claim("COMPLETED", "first", {"total": 5})  # not "in progress" forever
    assert reads == 1


def test_claim_ignores_an_item_past_its_expiry(local_aws: LocalEndpoint) -> None:
    """DynamoDB's TTL deletes lag: an expired COMPLETED key must not block a new run."""
    rel.setup()
    pk = key_pk("tests.claim", "old")
    item = completed_item(pk, "old-task", "old value", ttl_s=10, now=time.time() - 100)
    rel.app.clients.sync("dynamodb").put_item(TableName=rel.app.table_name, Item=item)
    assert rel.app.idempotency.claim(pk, "new-task", 30, 60) == Claim("CLAIMED", "new-task")


# --- pure builders ----------------------------------------------------------------------------


def test_claim_request_is_a_conditional_put_returning_the_old_item() -> None:
    request = claim_request("tbl", "idem#t#k", "task-1", lease_s=30, ttl_s=3600, now=1000.7)
    assert request["TableName"] == "tbl"
    assert request["Item"] == {
        "pk": {"S": "idem#t#k"},
        "sk": {"S": "idempotency"},
        "status": {"S": "IN_PROGRESS"},
        "task_id": {"S": "task-1"},
        "lease_expires_at": {"N": "1031"},  # rounded up: never shorter than asked
        "expires_at": {"N": "4600"},
    }
    assert request["ConditionExpression"] == CLAIM_CONDITION
    # a lease that is over is taken over only after its owner's result is read (the key
    # item stays IN_PROGRESS after its run ended: its result item completes it)
    assert CLAIM_CONDITION == "attribute_not_exists(pk) OR expires_at < :now"
    assert request["ExpressionAttributeValues"] == {":now": {"N": "1000"}}
    assert request["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    takeover = claim_request("tbl", "idem#t#k", "t-2", 30, 3600, now=1000, over="task-1")
    assert (
        takeover["ConditionExpression"]
        == TAKEOVER_CONDITION
        == ("task_id = :owner AND (lease_expires_at < :now OR expires_at < :now)")
    )
    assert takeover["ExpressionAttributeValues"][":owner"] == {"S": "task-1"}


def test_extend_request_only_extends_a_lease_still_owned() -> None:
    request = extend_request("tbl", "idem#t#k", "task-1", lease_s=30, now=2000.2)
    assert request["Key"] == item_key("idem#t#k")
    assert request["UpdateExpression"] == "SET lease_expires_at = :lease"
    assert request["ConditionExpression"] == "#status = :in_progress AND task_id = :owner"
    assert request["ExpressionAttributeValues"] == {
        ":lease": {"N": "2031"},
        ":in_progress": {"S": "IN_PROGRESS"},
        ":owner": {"S": "task-1"},
    }


def test_claim_from_conflict_reads_the_old_item() -> None:
    completed = completed_item("idem#t#k", "task-1", {"a": [1, 2]}, ttl_s=60, now=1000)
    assert claim_from_conflict(completed, now=1001) == Claim("COMPLETED", "task-1", {"a": [1, 2]})
    assert json.loads(completed["value"]["S"]) == {"a": [1, 2]}

    running = claim_request("tbl", "idem#t#k", "task-2", lease_s=30, ttl_s=60, now=1000)["Item"]
    assert claim_from_conflict(running, now=1010) == Claim(
        "IN_PROGRESS", "task-2", lease_remaining_s=21.0
    )
    # a lease that ends any moment still defers for at least a second
    assert claim_from_conflict(running, now=1031).lease_remaining_s == 1.0
    # the item vanished between the failed condition and the read
    assert claim_from_conflict(None) == Claim("IN_PROGRESS", lease_remaining_s=1.0)
    assert claim_from_conflict({}) == Claim("IN_PROGRESS", lease_remaining_s=1.0)


def test_key_pk_scopes_by_task_and_hashes_long_keys() -> None:
    assert key_pk("orders.charge", "o-1") == "idem#orders.charge#o-1"
    assert key_pk("orders.charge", "o-1") != key_pk("orders.refund", "o-1")
    long_key = "x" * (MAX_KEY_CHARS + 1)
    digest = hashlib.sha256(long_key.encode()).hexdigest()
    assert key_pk("t", long_key) == f"idem#t#sha256:{digest}"
    assert key_pk("t", "x" * MAX_KEY_CHARS) == "idem#t#" + "x" * MAX_KEY_CHARS


def test_render_key_template_callable_and_errors() -> None:
    arguments = {"order_id": "o-7", "cents": 5}
    assert render_key("{order_id}:{cents}", arguments, ["o-7", 5], {}) == "o-7:5"
    assert render_key(lambda order_id, cents: f"k{cents}", arguments, ["o-7", 5], {}) == "k5"
    assert render_key(None, arguments, [], {}) is None
    with pytest.raises(ValueError, match="cannot be rendered"):
        render_key("{customer}", arguments, [], {})
    with pytest.raises(ValueError, match="empty"):
        render_key("{nothing}", {"nothing": ""}, [], {})


def test_unrenderable_template_fails_at_enqueue() -> None:
    app = sqsq.App("keys")

    @app.task(idempotency_key="{order.order_id}")
    def ship(order: str) -> None: ...

    with pytest.raises(sqsq.EnqueueError, match="idempotency_key"):
        ship.delay("o-1")  # a str has no .order_id; nothing is sent
