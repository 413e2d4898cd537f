"""sqsq.testing.ttl: DynamoDB TTL deletion at a virtual time, against the local
endpoint (moto keeps TTL settings and never deletes), and what sqsq does when its
items expire: a result reads PENDING, an idempotency key is forgotten (a duplicate
then runs again, as documented: a key is remembered for ``idempotency_ttl``).

dynalite (the conformance pass's DynamoDB) cannot enable TTL: no UpdateTimeToLive,
and DescribeTimeToLive answers DISABLED for every table. There the sweeps name the
attribute the table would have (``fallback_attribute``, sqsq's ``expires_at``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from sqsq import State
from sqsq.resources import TTL_ATTRIBUTE
from sqsq.testing import sweep_ttl
from sqsq.testing.ttl import (
    FIVE_YEARS_S,
    MISSING,
    NOT_A_NUMBER,
    NOT_EXPIRED,
    TOO_OLD,
    can_enable_ttl,
)
from tests.apps import reliability as rel
from tests.helpers import ROOT, burst_worker


def test_the_sweep_deletes_only_what_ttl_would(local_aws: Any) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName="ttl",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # AWS (and dynalite) create a table asynchronously: CREATING refuses PutItem
    ddb.get_waiter("table_exists").wait(TableName="ttl", WaiterConfig={"Delay": 1})
    now = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    items = {
        "expired": {"N": str(int(now - 1))},
        "expired-float": {"N": str(now - 0.5)},
        "now": {"N": str(int(now))},  # not less than now: kept
        "future": {"N": str(int(now + 3600))},
        "string": {"S": str(int(now - 1))},  # not a Number: ignored
        "ancient": {"N": str(int(now - FIVE_YEARS_S - 1))},  # over five years: ignored
        "five-years": {"N": str(int(now - FIVE_YEARS_S))},
    }
    for pk, value in items.items():
        ddb.put_item(TableName="ttl", Item={"pk": {"S": pk}, "expires_at": value})
    ddb.put_item(TableName="ttl", Item={"pk": {"S": "no-attribute"}})

    # TTL disabled on the table: DynamoDB deletes nothing.
    off = sweep_ttl("ttl", now, client=ddb)
    assert off.attribute is None and off.deleted == []

    if local_aws.has_ttl:
        assert can_enable_ttl(client=ddb)
        # Where TTL can be enabled, a disabled one deletes nothing, fallback or not.
        off = sweep_ttl("ttl", now, fallback_attribute="expires_at", client=ddb)
        assert off.attribute is None and off.deleted == []
        ddb.update_time_to_live(
            TableName="ttl",
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        swept = sweep_ttl("ttl", now, client=ddb)  # the attribute from DescribeTimeToLive
    else:  # dynalite: no UpdateTimeToLive; its DescribeTimeToLive says DISABLED
        assert not can_enable_ttl(client=ddb)
        swept = sweep_ttl("ttl", now, fallback_attribute="expires_at", client=ddb)
    assert swept.attribute == "expires_at"
    assert sorted(swept.deleted_keys("pk")) == [("expired",), ("expired-float",), ("five-years",)]
    assert swept.ignored == {MISSING: 1, NOT_A_NUMBER: 1, TOO_OLD: 1, NOT_EXPIRED: 2}
    left = sorted(i["pk"]["S"] for i in ddb.scan(TableName="ttl")["Items"])
    assert left == ["ancient", "future", "no-attribute", "now", "string"]
    # An explicit attribute skips DescribeTimeToLive (dynalite has none).
    later = sweep_ttl("ttl", now + 7200, attribute="expires_at", client=ddb)
    assert sorted(later.deleted_keys("pk")) == [("future",), ("now",)]


def test_an_expired_result_reads_pending(local_aws: Any) -> None:
    from sqsq.resources import apply
    from tests.apps.periodic import app, cleanup

    apply(app)
    result = cleanup.delay(3)
    worker = burst_worker("tests.apps.periodic:app", ROOT, "--queues", "default")
    assert worker.returncode == 0, worker.stderr
    assert app.AsyncResult(result.id).get(timeout=0) == 3
    ddb = app.clients.sync("dynamodb")
    # The day after: nothing has expired yet (result_ttl is one day).
    day = sweep_ttl(
        app.table_name, time.time() + 3600, fallback_attribute=TTL_ATTRIBUTE, client=ddb
    )
    assert day.attribute == TTL_ATTRIBUTE and day.deleted == []
    swept = sweep_ttl(
        app.table_name,
        time.time() + app.settings.result_ttl_s + 60,
        fallback_attribute=TTL_ATTRIBUTE,
        client=ddb,
    )
    assert (f"task#{result.id}", "result") in swept.deleted_keys()
    fresh = app.AsyncResult(result.id)
    assert fresh.state is State.PENDING and fresh.record is None


def test_an_expired_idempotency_key_lets_a_duplicate_run_again(
    local_aws: Any, tmp_path: Path
) -> None:
    rel.setup()
    path = str(tmp_path / "runs.log")
    first = rel.counted.apply_async((path, "a"), idempotency_key="order-1")
    second = rel.counted.apply_async((path, "a"), idempotency_key="order-1")
    code, stderr = rel.run_burst(tmp_path, "--queues", "default", "--concurrency", "1")
    assert code == 0, stderr
    assert rel.lines(path) == ["a"]  # one run for the key
    records = [first.record, second.record]
    assert all(r is not None and r.state is State.SUCCESS for r in records), stderr

    ddb = rel.app.clients.sync("dynamodb")
    ttl_s = rel.counted.idempotency_ttl_s  # how long a key is remembered
    assert ttl_s == pytest.approx(86_400)
    # The key is remembered for idempotency_ttl; past it (and after TTL's sweep) it is gone
    swept = sweep_ttl(
        rel.app.table_name, time.time() + ttl_s + 60, fallback_attribute=TTL_ATTRIBUTE, client=ddb
    )
    assert any(pk.startswith("idem#") for pk, _ in swept.deleted_keys())

    third = rel.counted.apply_async((path, "a"), idempotency_key="order-1")
    code, stderr = rel.run_burst(tmp_path, "--queues", "default", "--concurrency", "1")
    assert code == 0, stderr
    assert rel.lines(path) == ["a", "a"]  # the key forgotten: the body ran again
    record = third.record
    assert record is not None and record.state is State.SUCCESS
    assert "duplicate_of" not in record.extra
