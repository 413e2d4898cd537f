"""sqsq.testing.scheduler: EventBridge Scheduler fired on a virtual clock, against the
local endpoint (moto server, real HTTP) and a real burst worker.

moto stores schedules and never fires them; here the simulator fires what
``sqsq schedule sync`` created, what a long countdown created, and what a generated
CloudFormation template declares, by AWS's rules (see the module docstring)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

import sqsq
import sqsq.cli.commands  # registers the commands
import sqsq.cli.schedule  # registers `sqsq schedule`
from sqsq.cli import cli
from sqsq.envelope import decode
from sqsq.resources import apply as create_resources
from sqsq.testing import (
    SimulatedSchedule,
    SimulatedScheduler,
    dead_letter_attributes,
    schedules_from_template,
)
from sqsq.testing.scheduler import DLQ_ATTRIBUTES
from tests.helpers import ROOT, burst_worker

APP = "tests.apps.periodic:app"


@pytest.fixture
def periodic(local_aws: Any) -> Iterator[sqsq.App]:
    """The periodic test app, its queues and table created and its schedules synced
    by ``sqsq schedule sync``."""
    from tests.apps.periodic import app

    create_resources(app)
    result = CliRunner().invoke(cli, ["schedule", "sync", APP], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    yield app


@pytest.fixture
def sqs(local_aws: Any) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def account(local_aws: Any) -> str:
    """The endpoint's account id (moto: 123456789012, LocalStack: 000000000000, AWS:
    the caller's): queue and schedule ARNs name it."""
    return str(boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"])


def _receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
    ).get("Messages", []):
        messages += batch
    return messages


def _schedule(
    name: str, expression: str, target: dict[str, Any], account: str, **extra: Any
) -> SimulatedSchedule:
    return SimulatedSchedule.from_description(
        {
            "Name": name,
            "GroupName": "tests",
            "Arn": f"arn:aws:scheduler:us-east-1:{account}:schedule/tests/{name}",
            "ScheduleExpression": expression,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": target,
            **extra,
        },
        on_endpoint=False,
    )


def test_a_synced_periodic_task_fires_runs_and_a_refired_occurrence_runs_once(
    periodic: sqsq.App,
) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    sim = SimulatedScheduler.for_app(periodic, now=start)
    assert {name for _, name in sim.schedules} == set()  # read on the first advance
    run = sim.advance(timedelta(minutes=3))
    assert {name for _, name in sim.schedules} == {"tick", "noon", "nightly-cleanup"}
    ticks = run.select("tick")
    assert len(ticks) == 3 and all(f.outcome == "sent" and f.attempt == 1 for f in ticks)
    # rate() without StartDate counts from the schedule's creation (to the second).
    created = sim.schedules[("periodic-sqsq", "tick")].created
    assert created is not None
    anchor = created.replace(microsecond=0)
    assert [f.scheduled_time for f in ticks] == [
        anchor + timedelta(minutes=n)
        for n in range(1, 5)
        if start < anchor + timedelta(minutes=n) <= start + timedelta(minutes=3)
    ]
    # Scheduler is at-least-once: the same occurrences invoked again (new execution
    # ids, the same scheduled time) by a second simulator over the same interval.
    again = SimulatedScheduler.for_app(periodic, now=start).advance(timedelta(minutes=3))
    assert [f.scheduled_time for f in again.select("tick")] == [f.scheduled_time for f in ticks]

    worker = burst_worker(APP, ROOT, "--concurrency", "1")
    assert worker.returncode == 0, worker.stderr
    for first, second in zip(ticks, again.select("tick"), strict=True):
        one = periodic.AsyncResult(first.execution_id).record
        two = periodic.AsyncResult(second.execution_id).record
        assert one is not None and two is not None, worker.stderr
        ran, duplicate = (one, two) if "duplicate_of" not in one.extra else (two, one)
        # The body ran once per occurrence: the other invocation is its duplicate,
        # with its value (the fire time the body saw).
        assert duplicate.extra == {"duplicate_of": ran.task_id}
        assert ran.value == duplicate.value == first.scheduled_time.isoformat()


def test_the_input_carries_the_context_attributes_as_scheduler_fills_them(
    periodic: sqsq.App, sqs: Any, account: str
) -> None:
    sim = SimulatedScheduler.for_app(periodic, now=datetime(2026, 12, 1, 11, 59, 30, tzinfo=UTC))
    run = sim.advance(timedelta(minutes=1))
    (noon,) = run.select("noon")
    assert noon.scheduled_time == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    url = periodic.directory.url("periodic-default")
    bodies = [json.loads(m["Body"]) for m in _receive_all(sqs, url)]
    body = next(b for b in bodies if b["task"] == "noon")
    assert body["id"] == noon.execution_id and len(noon.execution_id) == 16
    assert body["scheduled_at"] == "2026-12-01T12:00:00Z"
    assert body["idempotency_key"] == "schedule:noon@2026-12-01T12:00:00Z"
    assert body["headers"] == {
        "sqsq-schedule": "noon",
        "sqsq-schedule-arn": f"arn:aws:scheduler:us-east-1:{account}:schedule/periodic-sqsq/noon",
        "sqsq-attempt": "1",
    }


def test_a_year_of_rate_1_minute_counts_525600_occurrences_in_seconds(
    local_aws: Any, sqs: Any, account: str
) -> None:
    url = sqs.create_queue(QueueName="minutely")["QueueUrl"]
    target = {
        "Arn": f"arn:aws:sqs:us-east-1:{account}:minutely",
        "Input": "<aws.scheduler.scheduled-time>",
    }
    start = datetime(2026, 1, 1, tzinfo=UTC)
    schedule = _schedule("minutely", "rate(1 minute)", target, account, StartDate=start)

    # A year computed, nothing sent: every occurrence counted.
    sim = SimulatedScheduler(schedules=[schedule], now=start, delivery="none")
    began = time.monotonic()
    year = sim.advance(timedelta(days=365))
    elapsed = time.monotonic() - began
    assert year.count() == 525_600 == year.outcomes()["computed"]
    times = year.times()
    assert times[0] == start + timedelta(minutes=1)
    assert times[-1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert elapsed < 30, f"a year took {elapsed:.1f} s"

    # Then an hour really sent, batched (documented deviation): 60 messages.
    hour = sim.advance(timedelta(hours=1), delivery="batch")
    assert hour.outcomes() == {"sent": 60}
    bodies = sorted(m["Body"] for m in _receive_all(sqs, url))
    assert bodies[0] == "2027-01-01T00:01:00Z" and bodies[-1] == "2027-01-01T01:00:00Z"
    assert len(bodies) == 60


def test_a_send_to_a_missing_queue_is_retried_then_dead_lettered_with_schedulers_attributes(
    local_aws: Any, sqs: Any, account: str
) -> None:
    dlq = sqs.create_queue(QueueName="schedule-dlq")["QueueUrl"]
    start = datetime(2026, 6, 1, tzinfo=UTC)
    target = {
        "Arn": f"arn:aws:sqs:us-east-1:{account}:gone",  # never created
        "Input": '{"attempt": <aws.scheduler.attempt-number>}',
        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
        "DeadLetterConfig": {"Arn": f"arn:aws:sqs:us-east-1:{account}:schedule-dlq"},
    }
    schedule = _schedule("once", "at(2026-06-01T00:00:30)", target, account)
    sim = SimulatedScheduler(schedules=[schedule], now=start)
    run = sim.advance(timedelta(minutes=1))
    assert [(f.attempt, f.outcome) for f in run] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "dead-lettered"),
    ]
    assert [f.delivered_at - f.scheduled_time for f in run] == [
        timedelta(0),
        timedelta(seconds=1),
        timedelta(seconds=3),
    ]
    assert len({f.execution_id for f in run}) == 3  # one execution id per attempt
    assert run.fires[0].error is not None and "NonExistentQueue" in run.fires[0].error
    (message,) = _receive_all(sqs, dlq)
    assert json.loads(message["Body"]) == {"attempt": 3}  # the last attempt's input
    attributes = dead_letter_attributes(message)
    assert sorted(attributes) == sorted(DLQ_ATTRIBUTES)
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    assert attributes["RETRY_ATTEMPTS"] == "2"
    assert attributes["EXECUTION_ID"] == run.fires[-1].execution_id
    assert attributes["SCHEDULED_TIME"] == "2026-06-01T00:00:30Z"
    assert attributes["SCHEDULE_ARN"] == schedule.arn
    assert attributes["TARGET_ARN"] == target["Arn"]
    assert attributes["ERROR_CODE"] == "AWS.SimpleQueueService.NonExistentQueue"


def test_retries_stop_at_the_maximum_event_age_and_a_retry_can_succeed_later(
    local_aws: Any, sqs: Any, account: str
) -> None:
    dlq = sqs.create_queue(QueueName="schedule-dlq")["QueueUrl"]
    start = datetime(2026, 6, 1, tzinfo=UTC)
    target = {
        "Arn": f"arn:aws:sqs:us-east-1:{account}:late",
        "Input": "<aws.scheduler.attempt-number>",
        "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 60},
        "DeadLetterConfig": {"Arn": f"arn:aws:sqs:us-east-1:{account}:schedule-dlq"},
    }
    sim = SimulatedScheduler(
        schedules=[_schedule("aged", "at(2026-06-01T00:00:00)", target, account)],
        now=start - timedelta(seconds=1),
    )
    run = sim.advance(timedelta(minutes=5))
    # Backoff 1, 2, 4, 8, 16 s: the 6th attempt at +31 s; a 7th at +63 s is past 60 s.
    assert [f.outcome for f in run] == ["retrying"] * 5 + ["dead-lettered"]
    (message,) = _receive_all(sqs, dlq)
    attributes = dead_letter_attributes(message)
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumEventAgeInSeconds"
    assert attributes["RETRY_ATTEMPTS"] == "5"

    # A retry due after the end of an advance happens in the next one: the queue
    # created in between receives attempt 2.
    target = {**target, "Arn": f"arn:aws:sqs:us-east-1:{account}:later"}
    sim = SimulatedScheduler(
        schedules=[_schedule("later", "at(2026-06-02T00:00:00)", target, account)], now=start
    )
    first = sim.run_until(datetime(2026, 6, 2, tzinfo=UTC))
    assert [(f.attempt, f.outcome) for f in first] == [(1, "retrying")]
    url = sqs.create_queue(QueueName="later")["QueueUrl"]
    second = sim.advance(timedelta(seconds=1))
    assert [(f.attempt, f.outcome) for f in second] == [(2, "sent")]
    assert [m["Body"] for m in _receive_all(sqs, url)] == ["2"]


def test_a_long_countdown_fires_at_its_time_and_its_schedule_is_deleted(
    periodic: sqsq.App,
) -> None:
    from sqsq.schedules.eta import group_name
    from tests.apps.periodic import cleanup

    start = datetime.now(UTC).replace(microsecond=0)
    result = cleanup.apply_async((5,), countdown=3600)
    client = periodic.clients.sync("scheduler")
    assert [
        s["Name"] for s in client.list_schedules(GroupName=group_name(periodic))["Schedules"]
    ] == [f"eta-{result.id}"]
    sim = SimulatedScheduler.for_app(periodic, now=start, groups=[group_name(periodic)])
    assert len(sim.advance(timedelta(minutes=58))) == 0
    run = sim.advance(timedelta(minutes=3))
    (fire,) = run
    assert fire.outcome == "sent" and fire.schedule == f"eta-{result.id}"
    assert abs((fire.scheduled_time - (start + timedelta(hours=1))).total_seconds()) <= 2
    # ActionAfterCompletion DELETE: the one-time schedule is gone after its invocation.
    assert run.deleted == [f"{group_name(periodic)}/eta-{result.id}"]
    assert client.list_schedules(GroupName=group_name(periodic))["Schedules"] == []
    # What arrived is the task's own envelope, due at its time. (A worker compares
    # that eta with the real clock, which the simulator does not move: run now, it
    # would send the message on until the real hour has passed.)
    sqs = periodic.clients.sync("sqs")
    (message,) = _receive_all(sqs, periodic.directory.url("periodic-default"))
    envelope = decode(message["Body"])
    assert (envelope.id, envelope.task, envelope.args) == (result.id, "cleanup", [5])
    assert envelope.eta is not None
    assert envelope.eta.replace(microsecond=0) <= fire.scheduled_time + timedelta(seconds=1)


def test_schedules_from_a_generated_template_fire_in_their_time_zone(
    quickstart: sqsq.App, sqs: Any, account: str
) -> None:
    # AWS::AccountId is the caller's on the endpoint, as CloudFormation would resolve it.
    (schedule,) = schedules_from_template(Path(ROOT) / "template.yaml")
    assert (schedule.group, schedule.name) == ("quickstart-sqsq", "daily-sales-report")
    assert schedule.queue_arn == f"arn:aws:sqs:us-east-1:{account}:quickstart-default"
    assert schedule.dead_letter_arn == f"arn:aws:sqs:us-east-1:{account}:quickstart-default-dlq"
    assert (
        schedule.arn
        == f"arn:aws:scheduler:us-east-1:{account}:schedule/{schedule.group}/{schedule.name}"
    )
    # Or as given, without asking the endpoint.
    (elsewhere,) = schedules_from_template(
        Path(ROOT) / "template.yaml", region="eu-west-3", account="111122223333"
    )
    assert elsewhere.queue_arn == "arn:aws:sqs:eu-west-3:111122223333:quickstart-default"
    # cron(0 6 * * ? *) in Europe/Paris across the spring change (29 March 2026).
    sim = SimulatedScheduler(schedules=[schedule], now=datetime(2026, 3, 28, tzinfo=UTC))
    run = sim.advance(timedelta(days=2))
    assert run.outcomes() == {"sent": 2}, [f.error for f in run]
    assert run.times() == [
        datetime(2026, 3, 28, 5, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 4, 0, tzinfo=UTC),
    ]
    url = quickstart.directory.url("quickstart-default")
    envelopes = sorted(
        (decode(m["Body"]) for m in _receive_all(sqs, url)), key=lambda e: str(e.scheduled_at)
    )
    assert [e.scheduled_at for e in envelopes] == run.times()
    assert {e.id for e in envelopes} == {f.execution_id for f in run}


def test_state_start_and_end_dates_flexible_windows_and_fifo_targets(
    local_aws: Any, sqs: Any, account: str
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    hourly = {"Arn": f"arn:aws:sqs:us-east-1:{account}:q", "Input": "{}"}
    bounded = _schedule(
        "bounded",
        "rate(1 hour)",
        hourly,
        account,
        StartDate=start + timedelta(hours=2),
        EndDate=start + timedelta(hours=5),
    )
    disabled = _schedule("off", "rate(1 hour)", hourly, account, State="DISABLED")
    run = SimulatedScheduler(schedules=[bounded, disabled], now=start, delivery="none").advance(
        timedelta(days=1)
    )
    assert run.times("off") == []
    assert run.times("bounded") == [start + timedelta(hours=h) for h in (2, 3, 4, 5)]

    url = sqs.create_queue(
        QueueName="q.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    fifo = _schedule(
        "fifo",
        "cron(0 9 * * ? *)",
        {
            "Arn": f"arn:aws:sqs:us-east-1:{account}:q.fifo",
            "Input": "<aws.scheduler.scheduled-time>",
            "SqsParameters": {"MessageGroupId": "g1"},
        },
        account,
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
    )
    run = SimulatedScheduler(schedules=[fifo], now=start, flexible="end").advance(timedelta(days=1))
    (fire,) = run
    assert fire.scheduled_time == start + timedelta(hours=9)
    assert fire.delivered_at == start + timedelta(hours=9, minutes=15)
    (message,) = _receive_all(sqs, url)
    assert message["Body"] == "2026-01-01T09:00:00Z"  # the scheduled time, not the delivery
    assert message["Attributes"]["MessageGroupId"] == "g1"
