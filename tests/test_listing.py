"""The sparse, write-sharded ``listing`` index (sqsq/listing.py): created by
``resources create`` and ``sqsq infra`` when asked, entered only by FAILURE / RETRY /
STARTED results written by a real worker, listed newest first across its shards
with filters and pages that neither skip nor repeat a row."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import sqsq
from sqsq import State, listing
from sqsq.deploy import Options, render
from sqsq.dynamodb import ResultStore, result_item
from sqsq.resources import apply, plan
from sqsq.result import ResultRecord
from tests.apps.dash import add, app, boom

DASH = "tests.apps.dash:app"


@pytest.fixture
def dash(local_aws: Any) -> Iterator[sqsq.App]:
    apply(app)
    yield app


def _indexes(app: sqsq.App) -> list[dict[str, Any]]:
    table = app.clients.sync("dynamodb").describe_table(TableName=app.table_name)["Table"]
    return list(table.get("GlobalSecondaryIndexes", []))


def test_resources_create_makes_the_index_and_a_second_run_changes_nothing(
    dash: sqsq.App,
) -> None:
    (index,) = _indexes(dash)
    assert index["IndexName"] == listing.INDEX_NAME
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert {c.kind: c.action for c in plan(dash)}["table index"] == "ok"


def _skip_where_an_index_cannot_be_added() -> None:
    from sqsq.testing import external_endpoints

    if external_endpoints() is not None:
        pytest.skip("dynalite cannot add an index to a table (UpdateTable GSI Create)")


def test_the_index_is_added_to_a_table_made_without_it(local_aws: Any) -> None:
    _skip_where_an_index_cannot_be_added()
    plain = sqsq.App("dash", listing_index=False)
    apply(plain)
    assert _indexes(plain) == []
    changes = plan(app)
    assert ("table index", "create") in {(c.kind, c.action) for c in changes}
    apply(app, changes)
    assert [i["IndexName"] for i in _indexes(app)] == [listing.INDEX_NAME]


def test_a_provisioned_tables_index_gets_the_tables_capacity(local_aws: Any) -> None:
    _skip_where_an_index_cannot_be_added()
    client = app.clients.sync("dynamodb")
    client.create_table(
        TableName=app.table_name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        ProvisionedThroughput={"ReadCapacityUnits": 7, "WriteCapacityUnits": 3},
    )
    apply(app)
    (index,) = _indexes(app)
    throughput = index["ProvisionedThroughput"]
    assert (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]) == (7, 3)


def test_without_the_setting_no_index_is_planned(local_aws: Any) -> None:
    plain = sqsq.App("dash", listing_index=False)
    apply(plain)
    assert "table index" not in {c.kind for c in plan(plain)}


def test_infra_declares_the_index_only_when_asked() -> None:
    doc = render(app, "ecs", Options(DASH))
    table = doc["Resources"]["ResultTable"]["Properties"]
    assert table["GlobalSecondaryIndexes"] == [listing.global_secondary_index()]
    names = {d["AttributeName"] for d in table["AttributeDefinitions"]}
    assert names == {"pk", "sk", listing.PARTITION_KEY, listing.SORT_KEY}
    plain = sqsq.load_app("examples.quickstart.app:app")
    other = render(plain, "ecs", Options("examples.quickstart.app:app"))
    assert "GlobalSecondaryIndexes" not in other["Resources"]["ResultTable"]["Properties"]


@pytest.mark.parametrize("state", list(State))
def test_only_listed_states_carry_the_index_keys(state: State) -> None:
    record = ResultRecord("t-1", state, task="x", finished_at=datetime.now(UTC))
    item = result_item(record)
    listed = state in listing.LISTED_STATES
    assert (listing.PARTITION_KEY in item) is listed
    assert (listing.SORT_KEY in item) is listed


@pytest.mark.slow
def test_a_worker_s_failures_are_listed_and_its_successes_are_not(
    dash: sqsq.App, worker: Any
) -> None:
    failed = [boom.delay(f"note {i}").id for i in range(3)]
    done = [add.delay(i, i).id for i in range(3)]
    result = worker.run(DASH)
    assert result.returncode == 0, result.stderr[-2000:]
    client = dash.clients.sync("dynamodb")
    page = listing.list_results(client, dash.table_name, listing.Filter())
    assert sorted(r.task_id for r in page.rows) == sorted(failed)
    assert not set(done) & {r.task_id for r in page.rows}
    assert {(r.state, r.exc_type) for r in page.rows} == {(State.FAILURE, "ValueError")}
    assert page.requests == len(listing.LISTED_STATES) * listing.LISTING_SHARDS
    only_add = listing.list_results(client, dash.table_name, listing.Filter(task=add.name))
    assert only_add.rows == []


def _stored(dash: sqsq.App, count: int) -> list[ResultRecord]:
    """``count`` FAILURE/RETRY records of two tasks, a second apart, stored."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rng = random.Random(23)
    records = [
        ResultRecord(
            f"id-{i:03d}",
            rng.choice([State.FAILURE, State.RETRY]),
            task=rng.choice(["a", "b"]),
            queue="default",
            exc_type="builtins.KeyError",
            attempts=1,
            finished_at=start + timedelta(seconds=i),
        )
        for i in range(count)
    ]
    store = ResultStore(dash.clients, dash.table_name)
    assert not store.put_results((r.task_id, result_item(r)) for r in records)
    return records


@pytest.mark.parametrize(
    "wanted",
    [
        listing.Filter(),
        listing.Filter(task="a"),
        listing.Filter(states=(State.RETRY,), task="b"),
        listing.Filter(
            since=datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC),
            until=datetime(2026, 1, 1, 0, 0, 40, tzinfo=UTC),
        ),
    ],
    ids=["all", "task", "state-and-task", "time-range"],
)
def test_pages_walk_every_match_newest_first_once(dash: sqsq.App, wanted: listing.Filter) -> None:
    records = _stored(dash, 60)
    expected = [
        r.task_id
        for r in sorted(records, key=lambda r: r.finished_at or 0, reverse=True)
        if r.state in wanted.states
        and (wanted.task is None or r.task == wanted.task)
        and (wanted.since is None or (r.finished_at and r.finished_at >= wanted.since))
        and (wanted.until is None or (r.finished_at and r.finished_at <= wanted.until))
    ]
    client = dash.clients.sync("dynamodb")
    seen: list[str] = []
    before = None
    for _ in range(100):
        page = listing.list_results(client, dash.table_name, wanted, before=before, limit=7)
        assert len(page.rows) <= 7
        seen += [r.task_id for r in page.rows]
        before = page.next_before
        if before is None:
            break
    assert seen == expected


def test_read_all_reads_each_shard_once_and_stops_at_its_cap(dash: sqsq.App) -> None:
    records = _stored(dash, 60)
    client = dash.clients.sync("dynamodb")
    failures = listing.Filter(states=(State.FAILURE,))
    every = listing.read_all(client, dash.table_name, failures, max_rows=1000)
    expected = {r.task_id for r in records if r.state is State.FAILURE}
    assert {r.task_id for r in every.rows} == expected and len(every.rows) == len(expected)
    assert (every.requests, every.truncated) == (listing.LISTING_SHARDS, False)
    capped = listing.read_all(client, dash.table_name, failures, max_rows=5)
    assert len(capped.rows) == 5 and capped.truncated
    assert {r.task_id for r in capped.rows} <= expected
