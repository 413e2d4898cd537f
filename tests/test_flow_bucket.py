"""The token bucket on the local DynamoDB table: Celery's syntax, batching, refill,
sharding, concurrent takers; runtime overrides read with the revocation Query.

Clocks are passed in (``taking(want, now=…)``): the bucket's arithmetic is checked
exactly, with no timed assertion."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

import sqsq
from sqsq.calls import run
from sqsq.errors import ConfigurationError
from sqsq.flow.bucket import TOLERANCE_BATCHES, TokenBucket, bucket_pk
from sqsq.flow.overrides import clearing, listing, rates_of, setting
from sqsq.flow.rates import MAX_BATCH, parse_rate
from sqsq.local import LocalEndpoint
from tests.apps import flow
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("text", "per_s"),
    [("100/s", 100.0), ("10/m", 10 / 60), ("1000/h", 1000 / 3600), (5, 5.0), ("2.5", 2.5)],
)
def test_celery_rate_syntax(text: str | float, per_s: float) -> None:
    assert parse_rate(text).per_s == pytest.approx(per_s)


@pytest.mark.parametrize("text", ["10/d", "fast", "-1/s", "0/s", 0, "", "10/s/s", True])
def test_bad_rate_is_a_value_error(text: object) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        parse_rate(text)  # type: ignore[arg-type]


def test_bad_rate_fails_at_declaration() -> None:
    app = sqsq.App("flowdecl")
    with pytest.raises(ConfigurationError, match="10/d"):
        app.task(rate_limit="10/d")(lambda: None)
    with pytest.raises(ConfigurationError, match="rate_key needs a rate_limit"):
        app.task(rate_key="{x}")(lambda x: None)
    with pytest.raises(ConfigurationError, match="concurrency_limit"):
        app.task(concurrency_limit=0)(lambda: None)
    with pytest.raises(ConfigurationError, match="queue_rate_limits"):
        sqsq.App("flowdecl", queue_rate_limits={"default": "often"})


def test_batch_and_shards_follow_the_rate() -> None:
    assert parse_rate("20/s").batch == 10  # ≤ 0.1 writes per task from 20/s on
    assert parse_rate("1/s").batch == 1
    assert parse_rate("10/m").batch == 1
    assert parse_rate("100000/s").batch == MAX_BATCH
    assert parse_rate("1000/s").shards == 1
    assert parse_rate("100000/s").shards == 20  # 2,000 writes/s over items of 100


def _bucket(rate: str, name: str = "t", warm: bool = True) -> TokenBucket:
    """A bucket as one process sees it; ``warm``: past its slow start (full batches)."""
    bucket = TokenBucket(flow.app.table_name, bucket_pk(flow.app.name, name), parse_rate(rate))
    if warm:
        bucket.batch = bucket.rate.batch
    return bucket


def test_a_process_starts_with_small_batches_and_halves_them_when_slots_pass_unused(
    local_aws: LocalEndpoint,
) -> None:
    flow.setup()
    bucket = _bucket("20/s", warm=False)
    now = 1_500_000.0
    for _ in range(1 + 2 + 3):
        run(bucket.booking(now=now), flow.app.clients)
    assert bucket.writes == 3 and bucket.batch == 4  # one more slot a write
    run(bucket.booking(now=now), flow.app.clients)  # 4 slots: 3 left in the pool
    run(bucket.booking(now=now + 10), flow.app.clients)  # they passed unused
    assert bucket.dropped == 3
    assert bucket.batch == 3  # halved (5 // 2), then one more for the write it made


def test_slots_are_booked_in_batches(local_aws: LocalEndpoint) -> None:
    flow.setup()
    bucket = _bucket("20/s")
    now = 1_000_000.0
    slots = [run(bucket.booking(now=now), flow.app.clients)[0] for _ in range(25)]
    assert bucket.writes == 3  # batches of 10: one conditional write each
    assert slots == [pytest.approx(now + i / 20) for i in range(25)]  # the rate's slots, in order


def test_the_poller_takes_slots_due_now_and_waits_for_the_next(local_aws: LocalEndpoint) -> None:
    flow.setup()
    bucket = _bucket("20/s")  # batch 10 (0.5 s of clock), horizon 1.5 batches
    now = 2_000_000.0
    slots, wait_s = run(bucket.admitting(10, now=now), flow.app.clients)
    assert len(slots) == 10 and wait_s == 0  # due within one batch window
    slots, wait_s = run(bucket.admitting(10, now=now), flow.app.clients)
    # the next batch would end 1 s ahead, past the 0.75 s horizon: none, and no
    # write before it fits (0.25 s) plus a jitter of up to the slack (0.25 s)
    assert slots == [] and 0.25 <= wait_s <= 0.5 + 1e-6
    assert bucket.conflicts == 1
    assert run(bucket.admitting(10, now=now + 0.1), flow.app.clients)[0] == []
    assert bucket.writes == 2  # not asked again meanwhile
    slots, wait_s = run(bucket.admitting(10, now=now + wait_s), flow.app.clients)
    # the next batch's slots that are due within one batch window of the retry
    assert len(slots) >= 5
    assert slots == [pytest.approx(now + 0.5 + i / 20) for i in range(len(slots))]


def test_an_idle_queue_books_one_slot_per_poll(local_aws: LocalEndpoint) -> None:
    flow.setup()
    bucket = _bucket("20/s")
    slots, _ = run(bucket.admitting(10, idle=True, now=3_000_000.0), flow.app.clients)
    assert len(slots) == 1 and bucket.writes == 1


def test_concurrent_takers_never_exceed_the_rate(local_aws: LocalEndpoint) -> None:
    """Eight takers (as eight workers' pollers) ask every 10 ms for 30 s of clock:
    the slots handed out are the rate × time plus at most the horizon."""
    flow.setup()
    rate = parse_rate("20/s")
    takers = [_bucket("20/s") for _ in range(8)]
    start = 4_000_000.0
    spent = 0
    for step in range(3000):
        now = start + step * 0.01
        taker = takers[step % len(takers)]
        spent += len(run(taker.admitting(1, now=now), flow.app.clients)[0])
    horizon = math.ceil(TOLERANCE_BATCHES * rate.batch)
    assert 30 * 20 - 8 * rate.batch <= spent <= 30 * 20 + horizon
    writes = sum(t.writes for t in takers)
    conflicts = sum(t.conflicts for t in takers)
    # one write per batch of 10 (a taker's last batch may go partly unspent)
    assert writes - conflicts <= math.ceil(spent / rate.batch) + len(takers)
    # five times more demand than tokens, eight takers: failed conditions (billed as
    # writes) come on top; measured ~0.4 per token
    assert writes / spent < 0.8


def test_bookings_of_many_takers_do_not_conflict(local_aws: LocalEndpoint) -> None:
    """Four runners book slots for a backlog at 24/s against 20/s: every booking is
    a distinct slot of the clock, and a write books ten."""
    flow.setup()
    takers = [_bucket("20/s") for _ in range(4)]
    now, slots = 5_000_000.0, []
    for step in range(24 * 20):
        now += 1 / 24
        slot, _ = run(takers[step % 4].booking(now=now), flow.app.clients)
        assert slot is not None
        slots.append(slot)
    assert len(set(slots)) == len(slots)
    span = max(slots) - min(slots)
    assert span >= (len(slots) - 1) / 20 - 1e-6  # never closer than the rate
    writes = sum(t.writes for t in takers)
    assert writes <= len(slots) / 10 + 8  # ≤ 0.1 per task, plus first guesses


def test_a_sharded_bucket_spreads_over_items(local_aws: LocalEndpoint) -> None:
    flow.setup()
    bucket = _bucket("100000/s", "big")
    assert len(bucket.tats) == 20
    now = 6_000_000.0
    for i in range(200):
        run(bucket.booking(now=now + i * 1e-4), flow.app.clients)
    client = flow.app.clients.sync("dynamodb")
    items = client.query(
        TableName=flow.app.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": bucket_pk(flow.app.name, "big")}},
    )["Items"]
    assert len({item["sk"]["S"] for item in items}) > 1
    assert bucket.writes == 4  # 200 slots in batches of 50


def test_overrides_are_read_with_the_revocation_query(local_aws: LocalEndpoint) -> None:
    flow.setup()
    app, table = flow.app, flow.app.table_name
    run(
        setting(table, app.name, "task", "tests.apps.flow.limited", parse_rate("50/s")), app.clients
    )
    run(setting(table, app.name, "queue", "metered", parse_rate("3/m")), app.clients)
    app.revocations.refresh()
    assert app.revocations.queries == 1
    assert {sk: str(r) for sk, r in rates_of(app.revocations.controls).items()} == {
        "limit#task#tests.apps.flow.limited": "50/s",
        "limit#queue#metered": "3/m",
    }
    control = app.flow_control()
    assert control is not None
    assert str(control.task_rate(flow.limited)) == "50/s"
    assert str(control.queue_rate("metered")) == "3/m"
    assert run(listing(table, app.name), app.clients) == [
        ("queue", "metered", "3/m"),
        ("task", "tests.apps.flow.limited", "50/s"),
    ]
    assert run(clearing(table, app.name, "task", "tests.apps.flow.limited"), app.clients)
    app.revocations.refresh()
    assert str(control.task_rate(flow.limited)) == "20/s"  # the declared one again


def test_an_app_without_limits_installs_nothing(local_aws: LocalEndpoint) -> None:
    app = sqsq.App("flownone")

    @app.task
    def plain() -> None: ...

    assert app.flow_control() is None
    assert app.flow is None


def test_an_app_without_limits_does_not_import_the_flow_package() -> None:
    code = (
        "import sys, sqsq\n"
        "app = sqsq.App('flownone')\n"
        "app.task(lambda: None)\n"
        "assert app.flow_control() is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('sqsq.flow')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
