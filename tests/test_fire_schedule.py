"""``sqsq.testing.fire_schedule``: a periodic task fired from a test sends the body
EventBridge Scheduler sends (the synced ``Target.Input`` with its context attributes
filled in), signed when signing is on, and the task runs in a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

import sqsq
from sqsq.cli import cli
from sqsq.result import State
from sqsq.testing import SimulatedScheduler, fire_schedule
from tests.conftest import WorkerFactory
from tests.test_signing import KEY, dlq_reasons, signed

APP = "tests.apps.periodic:app"
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def periodic(local_aws: Any) -> Iterator[sqsq.App]:
    from sqsq.resources import apply
    from tests.apps.periodic import app

    apply(app)
    yield app


def _receive(app: sqsq.App) -> list[dict[str, Any]]:
    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name("default"))
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        messages += batch
    return messages


def test_a_fired_schedule_runs_its_task_for_the_time_given(
    periodic: sqsq.App, worker: WorkerFactory
) -> None:
    tick = fire_schedule(periodic, "tick", at=NOON + timedelta(microseconds=123))
    noon = fire_schedule(periodic, "noon")

    done = worker.run(APP)

    assert done.returncode == 0, done.stderr
    assert tick.get(timeout=10) == NOON.isoformat()  # self.request.scheduled_at, whole seconds
    assert noon.get(timeout=10) == "report noon"  # the schedule's args
    assert tick.id != noon.id


def test_the_body_is_the_one_scheduler_sends(periodic: sqsq.App) -> None:
    """The simulated Scheduler fires the synced ``cron(0 12 * * ? *)`` schedule at noon;
    ``fire_schedule`` fires the code's at noon: the bodies differ in the execution id (the task id) only."""
    synced = CliRunner().invoke(cli, ["schedule", "sync", APP], catch_exceptions=False)
    assert synced.exit_code == 0, synced.output
    run = SimulatedScheduler.for_app(periodic, now=NOON - timedelta(seconds=1)).advance(2)
    (by_scheduler,) = run.select("noon", outcome="sent")
    ours = fire_schedule(periodic, "noon", at=NOON)

    bodies = {m["Body"] for m in _receive(periodic)}

    assert len(bodies) == 2
    first, second = sorted(bodies, key=lambda b: ours.id in b)
    assert by_scheduler.execution_id in first and ours.id in second
    assert first.replace(by_scheduler.execution_id, ours.id) == second
    assert json.loads(second)["scheduled_at"] == "2026-12-01T12:00:00Z"


def test_a_fire_is_signed_when_the_app_signs(
    periodic: sqsq.App, worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker with a signing key runs the fire; the same fire unsigned is
    dead-lettered by it (``unsigned_message``), so the signature is what let it in."""
    unsigned = fire_schedule(periodic, "noon", at=NOON)
    signed(monkeypatch, periodic)
    fired = fire_schedule(periodic, "noon", at=NOON + timedelta(days=1))

    done = worker.run(APP, "-c", "1", SQSQ_SIGNING_KEY=KEY)

    assert done.returncode == 0, done.stderr
    record = fired.record
    assert record is not None and record.state is State.SUCCESS, done.stderr
    assert record.value == "report noon"
    assert unsigned.record is None  # not run: its body is not trusted, so not its id either
    assert list(dlq_reasons(periodic, "default").values()) == ["unsigned_message"]


def test_two_fires_for_one_time_run_the_body_once(
    periodic: sqsq.App, worker: WorkerFactory
) -> None:
    first = fire_schedule(periodic, "tick", at=NOON)
    again = fire_schedule(periodic, "tick", at=NOON)

    done = worker.run(APP, "-c", "1")

    assert done.returncode == 0, done.stderr
    assert first.id != again.id
    assert first.get(timeout=10) == again.get(timeout=10) == NOON.isoformat()


def test_an_unknown_name_or_a_naive_time_is_refused(periodic: sqsq.App) -> None:
    with pytest.raises(sqsq.ConfigurationError, match=r"declared: nightly-cleanup, noon, tick"):
        fire_schedule(periodic, "tock")
    with pytest.raises(ValueError, match="naive"):
        fire_schedule(periodic, "tick", at=datetime(2026, 12, 1, 12))
    assert _receive(periodic) == []
