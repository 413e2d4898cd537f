"""Concurrency limits on real worker processes: the limit holds across two workers,
and a SIGKILLed holder's slot is taken by another worker once its lease runs out."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from sqsq.calls import run
from sqsq.flow.concurrency import RECHECK_S, SlotLease, acquiring, slots_pk
from sqsq.local import LocalEndpoint
from tests.apps import flow
from tests.helpers import consuming

APP = "tests.apps.flow:app"


def _spans(path: Path) -> list[tuple[float, float]]:
    """(start, end) of each finished body, from the lines the task wrote."""
    starts: dict[str, list[float]] = {}
    spans = []
    for line in path.read_text().splitlines():
        kind, at, pid = line.split()
        if kind == "start":
            starts.setdefault(pid, []).append(float(at))
        else:
            spans.append((starts[pid].pop(0), float(at)))
    return spans


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_slots_are_leases_taken_with_conditional_writes(local_aws: LocalEndpoint) -> None:
    app = flow.setup()
    pk = slots_pk(app.name, "t", "acct-1")
    now = time.time()
    first = run(acquiring(app.table_name, pk, 2, "a", 30, app.clients, now=now), app.clients)
    second = run(acquiring(app.table_name, pk, 2, "b", 30, app.clients, now=now), app.clients)
    assert isinstance(first, SlotLease) and isinstance(second, SlotLease)
    assert first.key != second.key
    third = run(acquiring(app.table_name, pk, 2, "c", 30, app.clients, now=now), app.clients)
    assert third == RECHECK_S  # both held for 30 s: look again in at most RECHECK_S
    assert run(first.releasing(), app.clients) is True
    assert run(first.releasing(), app.clients) is False  # no longer ours
    again = run(acquiring(app.table_name, pk, 2, "c", 30, app.clients, now=now), app.clients)
    assert isinstance(again, SlotLease) and again.key == first.key
    # a holder that stops renewing loses its slot once its lease has run out
    later = now + 31
    taken = run(acquiring(app.table_name, pk, 2, "d", 30, app.clients, now=later), app.clients)
    assert isinstance(taken, SlotLease)
    displaced = second if taken.key == second.key else again
    assert run(displaced.renewing(now=later), app.clients) is False  # it is d's now
    assert run(taken.renewing(now=later), app.clients) is True


@pytest.mark.slow
def test_the_limit_holds_across_two_workers(worker: Any, tmp_path: Path) -> None:
    flow.setup()
    path = tmp_path / "exclusive.log"
    # each worker holds at most 3 of the 8 (no prefetch), so both must run some, and the
    # two together could run 6 at once without the limit
    workers = [
        worker.start(APP, "-Q", "default", "--concurrency", "3", "--prefetch", "0")
        for _ in range(2)
    ]
    for process in workers:
        consuming(process)
    results = flow.exclusive.delay_many([("acct-1", str(path), 1.0) for _ in range(8)])
    for result in results:
        assert result.get(timeout=90) == "acct-1"
    spans = _spans(path)
    assert len(spans) == 8
    assert _most_at_once(spans) == 2  # the limit, used and never passed
    assert len({line.split()[2] for line in path.read_text().splitlines()}) == 2  # both ran some
    for process in workers:
        process.send_signal(signal.SIGTERM)


@pytest.mark.slow
def test_a_killed_holders_slot_is_taken_within_one_lease(worker: Any, tmp_path: Path) -> None:
    flow.setup()
    path = tmp_path / "solo.log"
    holder = worker.start(APP, "-Q", "default")
    first = flow.solo.delay("acct-9", str(path), 60.0)
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), "the first body never started"
    os.kill(holder.pid, signal.SIGKILL)
    killed_at = time.time()
    holder.wait(timeout=10)

    second = flow.solo.delay("acct-9", str(path), 0.1)
    worker.start(APP, "-Q", "default")
    assert second.get(timeout=60) == "acct-9"
    assert first.get(timeout=60) == "acct-9"  # redelivered after its visibility timeout
    starts = [float(line.split()[1]) for line in path.read_text().splitlines() if "start" in line]
    # the dead holder's slot was free one lease after its last renewal, and taken at
    # the next look (a put-back lasts at most RECHECK_S, plus a second of delay rounding)
    assert min(starts[1:]) <= killed_at + flow.SOLO_LEASE_S + RECHECK_S + 2
    spans = _spans(path)
    assert _most_at_once(spans) == 1


def test_lambda_puts_back_what_is_over_a_keyed_rate_and_runs_it_on_its_slot(
    local_aws: LocalEndpoint,
) -> None:
    """The Lambda handler meets a task's limit at the same point as the worker: over
    the rate, a record is sent on with its booked slot (not listed as a failure, not
    an attempt); when it comes back, it runs on that slot without a new one."""
    from sqsq.testing import LambdaContext, sqs_event
    from tests.test_lambda import queue_arn, receive

    app = flow.setup()
    name = app.queue_name("default")
    flow.per_customer.delay_many([("acme", i) for i in range(8)])  # 5/s: batches of 3
    event = sqs_event(receive(name, 8), queue_arn(name))
    response = app.lambda_handler(event, LambdaContext())
    assert response == {"batchItemFailures": []}
    ran = [i for i in _items(app) if i.get("state", {}).get("S") == "SUCCESS"]
    # slots due within one batch window (0.6 s) run now: the first batch and the
    # first slot of the next
    assert 3 <= len(ran) <= 5
    deadline = time.monotonic() + 10  # put back with DelaySeconds until their slots
    while _delayed(app) < 8 - len(ran) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.5)  # DelaySeconds of up to 2 s (slots ≤ 1.2 s ahead, rounded up)
    back = receive(name, 8 - len(ran))
    slots = [json.loads(m["Body"])["headers"]["sqsq-rate-slot"] for m in back]
    assert all(s.startswith("task#tests.apps.flow.per_customer#acme@") for s in slots)
    time.sleep(max(0.0, max(float(s.rpartition("@")[2]) for s in slots) - time.time()))
    response = app.lambda_handler(sqs_event(back, queue_arn(name)), LambdaContext())
    assert response == {"batchItemFailures": []}
    done = [i for i in _items(app) if i.get("state", {}).get("S") == "SUCCESS"]
    assert len(done) == 8
    assert {i["attempts"]["N"] for i in done} == {"1"}


def _delayed(app: Any) -> int:
    sqs = app.clients.sync("sqs")
    url = sqs.get_queue_url(QueueName=app.queue_name("default"))["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessages"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def _items(app: Any) -> list[dict[str, Any]]:
    from benchmarks.limits import result_items

    return result_items(app)
