"""The local scheduler (``sqsq schedule serve``, ``sqsq dev``): fires on time with a
fake clock, and the tasks run in a real worker; two schedulers on one endpoint fire
each time once; when the leader dies, another takes over; a fire delivered twice
runs its body once."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import sqsq
from sqsq.envelope import decode
from sqsq.resources import apply as create_resources
from sqsq.schedules import scheduler
from sqsq.schedules.expressions import Expression
from sqsq.schedules.local import Fire, LocalScheduler
from tests.conftest import ROOT, WorkerFactory
from tests.faults.helpers import TcpProxy
from tests.helpers import log_lines

APP = "tests.apps.periodic:app"
T0 = datetime(2026, 12, 1, 11, 59, 30, tzinfo=UTC)  # a Tuesday


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def periodic(local_aws: Any) -> Iterator[sqsq.App]:
    from tests.apps.periodic import app

    create_resources(app)
    yield app


def _drain(app: sqsq.App) -> list[dict[str, Any]]:
    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name("default"))
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return messages
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )


def _when(fires: list[Fire], name: str) -> list[datetime]:
    return [f.scheduled_at for f in fires if f.schedule == name]


def test_fires_a_rate_and_a_cron_schedule_on_time_and_the_tasks_run(
    periodic: sqsq.App, worker: WorkerFactory
) -> None:
    clock = FakeClock(T0)
    local = LocalScheduler(periodic, clock=clock)
    assert local.tick() == []  # first sight: nothing before now is fired
    clock.advance(seconds=20)  # 11:59:50
    assert local.tick() == []
    clock.advance(seconds=20)  # 12:00:10
    fires = local.tick()
    noon = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert _when(fires, "tick") == [noon]
    assert _when(fires, "noon") == [noon]
    assert _when(fires, "nightly-cleanup") == []  # 02:30 Paris time, weekdays
    assert local.tick() == []  # nothing twice
    clock.advance(minutes=2)  # 12:02:10: two minutes of rate(1 minute)
    assert _when(local.tick(), "tick") == [noon + timedelta(minutes=1), noon + timedelta(minutes=2)]

    done = worker.run(APP)
    assert done.returncode == 0, done.stderr
    tick = periodic.AsyncResult(
        fires[0].task_id if fires[0].schedule == "tick" else fires[1].task_id
    )
    assert tick.get(timeout=10) == noon.isoformat()  # self.request.scheduled_at
    report = next(f for f in fires if f.schedule == "noon")
    assert periodic.AsyncResult(report.task_id).get(timeout=10) == "report noon"


def test_two_schedulers_on_one_endpoint_fire_each_time_once(periodic: sqsq.App) -> None:
    clock = FakeClock(T0)
    first = LocalScheduler(periodic, owner="first", clock=clock)
    second = LocalScheduler(periodic, owner="second", clock=clock)
    fired: dict[str, list[Fire]] = {"first": [], "second": []}
    for _ in range(6):
        fired["first"] += first.tick()
        fired["second"] += second.tick()
        clock.advance(seconds=30)
    assert fired["second"] == []
    times = _when(fired["first"], "tick")
    assert times == [datetime(2026, 12, 1, 12, m, tzinfo=UTC) for m in range(3)]
    bodies = [decode(m["Body"]) for m in _drain(periodic)]
    assert sorted(e.scheduled_at for e in bodies if e.task == "tick") == times  # type: ignore[type-var]


def test_when_the_leader_dies_another_takes_over_and_fires_what_was_missed_once(
    periodic: sqsq.App,
) -> None:
    clock = FakeClock(T0)
    leader = LocalScheduler(periodic, owner="leader", lease_s=90, clock=clock)
    standby = LocalScheduler(periodic, owner="standby", lease_s=90, clock=clock)
    leader.tick()
    standby.tick()
    clock.advance(seconds=60)  # 12:00:30
    assert _when(leader.tick(), "tick") == [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    # The leader dies here (no more ticks, no release): its lease runs to 12:02:00.
    clock.advance(seconds=60)  # 12:01:30
    assert standby.tick() == [] and not standby.leader
    clock.advance(seconds=60)  # 12:02:30
    taken = standby.tick()
    assert standby.leader
    assert _when(taken, "tick") == [
        datetime(2026, 12, 1, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 1, 12, 2, tzinfo=UTC),
    ]
    # A leader that comes back after losing its lease does not fire again.
    assert leader.tick() == [] and not leader.leader


def test_a_clean_stop_hands_over_at_once(periodic: sqsq.App) -> None:
    clock = FakeClock(T0)
    first = LocalScheduler(periodic, owner="first", lease_s=600, clock=clock)
    second = LocalScheduler(periodic, owner="second", lease_s=600, clock=clock)
    first.tick()
    assert second.tick() == [] and not second.leader
    first.release()
    clock.advance(seconds=40)
    assert _when(second.tick(), "tick") == [datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]


def test_a_fire_delivered_twice_runs_its_body_once(
    periodic: sqsq.App, worker: WorkerFactory
) -> None:
    # Scheduler retried the invocation: same scheduled time, two execution ids.
    template = scheduler.input_template(periodic.periodic_tasks["noon"])
    when = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    sqs = periodic.clients.sync("sqs")
    url = periodic.directory.url("periodic-default")
    for execution_id in ("exec-1", "exec-2"):
        body = scheduler.render(
            template, scheduled_at=when, execution_id=execution_id, schedule_arn="a"
        )
        sqs.send_message(QueueUrl=url, MessageBody=body)
    done = worker.run(APP, "--concurrency", "1")
    assert done.returncode == 0, done.stderr
    records = [periodic.AsyncResult(i).record for i in ("exec-1", "exec-2")]
    assert all(r is not None and r.state is sqsq.State.SUCCESS for r in records)
    assert [r.value for r in records if r] == ["report noon", "report noon"]
    # one ran; the other is the first one's result, marked as its duplicate
    duplicates = sorted(str(r.extra.get("duplicate_of")) for r in records if r)
    assert duplicates in (["None", "exec-1"], ["None", "exec-2"])


def _serve(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sqsq",
            "schedule",
            "serve",
            APP,
            "--lease",
            "2",
            "--interval",
            "0.2",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _owner(app: sqsq.App) -> str | None:
    item = (
        app.clients.sync("dynamodb")
        .get_item(
            TableName=app.table_name,
            Key={"pk": {"S": "scheduler#periodic"}, "sk": {"S": "leader"}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return item["owner"]["S"] if item else None


def _wait_for(condition: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


#: The line a scheduler logs when it takes the lease.
_LEADS = re.compile(r"scheduler \S+ leads app ")


@pytest.mark.slow
def test_killing_the_serving_leader_hands_over_to_the_other_process(periodic: sqsq.App) -> None:
    first = _serve()
    second: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None
    try:
        _wait_for(lambda: _owner(periodic) is not None)
        leader = _owner(periodic)
        second = _serve()
        logged, reader = log_lines(second)
        # the second one tried to take the live lease and was refused (its first tick)
        _wait_for(lambda: any("stands by" in line for line in logged))
        assert _owner(periodic) == leader
        assert not any(_LEADS.search(line) for line in logged), logged
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        _wait_for(lambda: _owner(periodic) not in (None, leader))
        _wait_for(lambda: any(_LEADS.search(line) for line in logged))
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        assert _owner(periodic) is None  # a clean stop gives the lease up
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
            if process is second and reader is not None:
                reader.join(timeout=30)
            if process is not None:
                process.communicate(timeout=30)


# --- issue 18: trust under partial failure -------------------------------------------


@pytest.fixture
def sqs_through_proxy(
    periodic: sqsq.App, sqsq_endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TcpProxy]:
    """The periodic app's SQS requests go through a cuttable TCP proxy (DynamoDB does
    not): "SQS is down" while the scheduler's lease and cursors still work."""
    host, port = sqsq_endpoint.url_for("sqs").removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
    # one attempt per send: botocore's retries would only slow the outage down
    quick = periodic.clients.settings.model_copy(update={"max_attempts": 1})
    monkeypatch.setattr(periodic.clients, "settings", quick)
    periodic.clients.close()  # made again, through the proxy
    try:
        yield proxy
    finally:
        proxy.close()
        monkeypatch.undo()
        periodic.clients.close()


def _bodies(app: sqsq.App) -> list[tuple[str, datetime | None]]:
    envelopes = [decode(m["Body"]) for m in _drain(app)]
    return sorted((e.task, e.scheduled_at) for e in envelopes)  # type: ignore[type-var]


def test_a_fire_sqs_refused_is_sent_when_sqs_is_back_within_its_window(
    periodic: sqsq.App,
    sqs_through_proxy: TcpProxy,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tick = dataclasses.replace(periodic.periodic_tasks["tick"], max_event_age_s=60)
    monkeypatch.setitem(periodic.periodic_tasks, "tick", tick)
    noon = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    clock = FakeClock(T0)  # 11:59:30
    local = LocalScheduler(periodic, clock=clock)
    assert local.tick() == []

    sqs_through_proxy.cut()  # SQS is down at the boundary
    clock.advance(seconds=40)  # 12:00:10: "tick" and "noon" are due
    # nothing is sent, and nothing raises: each schedule's failure is logged, and the
    # next tick tries again (an assert inside suppress(Exception) could never fail)
    assert local.tick() == []
    sqs_through_proxy.restore()
    clock.advance(seconds=20)  # 12:00:30
    fires = local.tick()
    assert (_when(fires, "tick"), _when(fires, "noon")) == ([noon], [noon])  # not lost
    assert "schedule tick: the fire of 2026-12-01T12:00:00+00:00 was not sent" in caplog.text
    assert local.tick() == []  # recorded as sent: not again
    assert _bodies(periodic) == [("noon", noon), ("tick", noon)]

    # Down for longer than the fire's max_event_age (60 s here): dropped, as Scheduler
    # drops it; the next one is sent.
    sqs_through_proxy.cut()
    clock.advance(seconds=40)  # 12:01:10
    assert local.tick() == []
    sqs_through_proxy.restore()
    clock.advance(seconds=70)  # 12:02:20: 12:01 is 80 s old
    assert _when(local.tick(), "tick") == [noon + timedelta(minutes=2)]
    assert _bodies(periodic) == [("tick", noon + timedelta(minutes=2))]


def test_one_broken_schedule_does_not_stop_the_others(
    periodic: sqsq.App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = periodic.periodic_tasks["tick"]
    broken = {
        # declared before sqsq bounded rate(): its fire times overflow datetime
        "forever": dataclasses.replace(
            healthy, name="forever", expression=Expression("rate(3000000 days)", "rate")
        ),
        # its queue was deleted: every fire fails
        "orphan": dataclasses.replace(healthy, name="orphan", queue="gone"),
    }
    monkeypatch.setattr(periodic, "periodic_tasks", {**broken, **periodic.periodic_tasks})
    clock = FakeClock(T0)
    local = LocalScheduler(periodic, clock=clock)
    assert local.tick() == []
    clock.advance(seconds=40)  # 12:00:10
    fires = local.tick()
    noon = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert (_when(fires, "tick"), _when(fires, "noon")) == ([noon], [noon])
    assert _when(fires, "forever") == _when(fires, "orphan") == []
    assert "schedule orphan: the fire of 2026-12-01T12:00:00+00:00 was not sent" in caplog.text
    clock.advance(minutes=1)
    assert _when(local.tick(), "tick") == [noon + timedelta(minutes=1)]
