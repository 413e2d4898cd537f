"""``sqsq schedule sync|ls|run`` against the local endpoint (moto server, real HTTP):
the schedules read back are what the code declares, a second sync changes nothing,
``--dry-run`` changes nothing, and what the code no longer declares is deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

import sqsq
import sqsq.cli.commands  # registers the commands
import sqsq.cli.schedule  # registers `sqsq schedule`
from sqsq.cli import cli
from sqsq.envelope import decode
from sqsq.resources import apply as create_resources
from sqsq.schedules import scheduler
from sqsq.schedules.declare import PeriodicTask

APP = "tests.apps.periodic:app"


def account() -> str:
    """The endpoint's account id (moto: 123456789012, LocalStack: 000000000000)."""
    import boto3

    return str(boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"])


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def periodic(local_aws: Any) -> Iterator[sqsq.App]:
    from tests.apps.periodic import app

    create_resources(app)
    yield app


@pytest.fixture
def aws(local_aws: Any) -> Iterator[dict[str, Any]]:
    clients = {
        name: boto3.client(name, endpoint_url=local_aws.url, region_name="us-east-1")
        for name in ("scheduler", "iam", "sqs")
    }
    yield clients
    for client in clients.values():
        client.close()


def _schedules(aws: dict[str, Any], group: str) -> dict[str, dict[str, Any]]:
    names = [s["Name"] for s in aws["scheduler"].list_schedules(GroupName=group)["Schedules"]]
    return {n: aws["scheduler"].get_schedule(GroupName=group, Name=n) for n in names}


def test_sync_dry_run_changes_nothing(periodic: sqsq.App, aws: dict[str, Any]) -> None:
    result = _invoke("schedule", "sync", APP, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would create  schedule        tick  (rate(1 minute))" in result.output
    assert "would create  role            periodic-sqsq-scheduler" in result.output
    assert "dry run: 6 change(s) not made" in result.output
    assert aws["scheduler"].list_schedule_groups()["ScheduleGroups"][0]["Name"] == "default"
    assert len(aws["scheduler"].list_schedule_groups()["ScheduleGroups"]) == 1
    with pytest.raises(aws["iam"].exceptions.NoSuchEntityException):
        aws["iam"].get_role(RoleName="periodic-sqsq-scheduler")


def test_sync_creates_what_the_code_declares_and_a_second_run_changes_nothing(
    periodic: sqsq.App, aws: dict[str, Any]
) -> None:
    first = _invoke("schedule", "sync", APP)
    assert first.exit_code == 0, first.output
    assert "done: 6 change(s) made" in first.output

    schedules = _schedules(aws, "periodic-sqsq")
    assert sorted(schedules) == ["nightly-cleanup", "noon", "tick"]
    queue = f"arn:aws:sqs:us-east-1:{account()}:periodic-default"
    role = f"arn:aws:iam::{account()}:role/periodic-sqsq-scheduler"
    cleanup = schedules["nightly-cleanup"]
    assert cleanup["ScheduleExpression"] == "cron(30 2 ? * MON-FRI *)"
    assert cleanup["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert cleanup["State"] == "ENABLED"
    assert cleanup["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = cleanup["Target"]
    assert target["Arn"] == queue
    assert target["RoleArn"] == role
    assert target["DeadLetterConfig"] == {"Arn": queue + "-dlq"}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
    # The input is the envelope with Scheduler's context attributes in it ...
    template = json.loads(target["Input"])
    assert template == {
        "version": 1,
        "id": "<aws.scheduler.execution-id>",
        "task": "cleanup",
        "kwargs": {"days": 7},
        "queue": "default",
        "idempotency_key": "schedule:nightly-cleanup@<aws.scheduler.scheduled-time>",
        "scheduled_at": "<aws.scheduler.scheduled-time>",
        "headers": {
            "sqsq-schedule": "nightly-cleanup",
            "sqsq-schedule-arn": "<aws.scheduler.schedule-arn>",
            "sqsq-attempt": "<aws.scheduler.attempt-number>",
        },
    }
    # ... which, substituted as Scheduler does, is a valid envelope.
    fired = target["Input"].replace("<aws.scheduler.scheduled-time>", "2026-12-01T01:30:00Z")
    fired = fired.replace("<aws.scheduler.execution-id>", "3f7c-exec").replace(
        "<aws.scheduler.schedule-arn>", "arn"
    )
    envelope = decode(fired.replace("<aws.scheduler.attempt-number>", "1"))
    assert envelope.id == "3f7c-exec"
    assert envelope.scheduled_at == datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
    assert envelope.idempotency_key == "schedule:nightly-cleanup@2026-12-01T01:30:00Z"
    assert json.loads(schedules["noon"]["Target"]["Input"])["args"] == ["noon"]

    # The role: trusted by Scheduler only, allowed only sqs:SendMessage to the app's queues.
    trust = aws["iam"].get_role(RoleName="periodic-sqsq-scheduler")["Role"]
    assert trust["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "scheduler.amazonaws.com"
    }
    policy = aws["iam"].get_role_policy(
        RoleName="periodic-sqsq-scheduler", PolicyName="sqsq-send-to-queues"
    )["PolicyDocument"]
    assert policy["Statement"] == [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": [queue, queue + "-dlq"]}
    ]

    second = _invoke("schedule", "sync", APP)
    assert second.exit_code == 0, second.output
    assert "nothing to change: every schedule is up to date" in second.output
    assert "create" not in second.output and "update" not in second.output


def _nightly_app(
    schedule: str, *, keep: bool = True, enabled: bool = True, window: int | None = None
) -> sqsq.App:
    app = sqsq.App("nightly")

    @app.task(name="nightly.report", queue="reports.fifo")
    def report(kind: str) -> str:
        return kind

    if keep:
        app.add_periodic_task(
            schedule,
            report,
            name="report",
            args=["daily"],
            enabled=enabled,
            flexible_window=timedelta(minutes=window) if window else None,
            end=datetime(2030, 1, 1, tzinfo=UTC),
        )
    return app


def test_sync_updates_and_deletes_what_changed_in_the_code(
    local_aws: Any, aws: dict[str, Any]
) -> None:
    first = _nightly_app("cron(0 3 * * ? *)")
    create_resources(first)
    assert [c.action for c in scheduler.apply(first).changes] == [
        "create",
        "create",
        "create",
        "create",
    ]
    have = aws["scheduler"].get_schedule(GroupName="nightly-sqsq", Name="report")
    # FIFO queue: the SQS target carries a MessageGroupId, the queue deduplicates by
    # content (Scheduler sends no deduplication id), and there is no dead-letter
    # config (Scheduler takes no FIFO queue as one).
    assert have["Target"]["SqsParameters"] == {"MessageGroupId": "sqsq-schedules"}
    assert "DeadLetterConfig" not in have["Target"]
    sqs = first.clients.sync("sqs")
    url = sqs.get_queue_url(QueueName="nightly-reports.fifo")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ContentBasedDeduplication"] == "true"
    assert have["EndDate"] == datetime(2030, 1, 1, tzinfo=UTC)

    changed = _nightly_app("cron(0 4 * * ? *)", enabled=False, window=15)
    plan = scheduler.plan(changed)
    rows = {(c.kind, c.name): c for c in plan.changes}
    update = rows[("schedule", "report")]
    assert update.action == "update"
    assert update.detail == "ScheduleExpression, FlexibleTimeWindow, State"
    scheduler.apply(changed, plan)
    have = aws["scheduler"].get_schedule(GroupName="nightly-sqsq", Name="report")
    assert have["ScheduleExpression"] == "cron(0 4 * * ? *)"
    assert have["State"] == "DISABLED"
    assert have["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    assert scheduler.plan(changed).pending == []

    gone = _nightly_app("cron(0 4 * * ? *)", keep=False)
    plan = scheduler.plan(gone)
    assert [(c.kind, c.name, c.action) for c in plan.pending] == [("schedule", "report", "delete")]
    scheduler.apply(gone, plan)
    assert _schedules(aws, "nightly-sqsq") == {}
    assert scheduler.plan(gone).pending == []


def test_sync_repairs_schedules_whose_input_it_cannot_read_and_only_in_its_group(
    periodic: sqsq.App, aws: dict[str, Any]
) -> None:
    assert _invoke("schedule", "sync", APP).exit_code == 0
    client = aws["scheduler"]

    def with_input(group: str, name: str, text: str, **changes: Any) -> None:
        have = client.get_schedule(GroupName=group, Name=name)
        fields = {
            k: have[k]
            for k in ("ScheduleExpression", "FlexibleTimeWindow", "Target", "State", "Description")
            if k in have
        }
        fields["Target"] = {**fields["Target"], "Input": text}
        client.update_schedule(GroupName=group, Name=name, **{**fields, **changes})

    with_input("periodic-sqsq", "tick", "not JSON {")  # edited by hand in the console
    with_input("periodic-sqsq", "noon", "{}", ScheduleExpression="rate(7 minutes)")  # drift
    stray = {
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "ScheduleExpression": "rate(5 minutes)",
        "Target": {
            "Arn": "arn:aws:sqs:us-east-1:123456789012:x",
            "RoleArn": "arn:aws:iam::123456789012:role/r",
            "Input": "<not json>",
        },
    }
    client.create_schedule(GroupName="periodic-sqsq", Name="stray", **stray)
    client.create_schedule_group(Name="someone-else")
    client.create_schedule(GroupName="someone-else", Name="tick", **stray)

    result = _invoke("schedule", "sync", APP)
    assert result.exit_code == 0, result.output
    assert "update  schedule        tick  (Target.Input)" in result.output
    assert "update  schedule        noon  (ScheduleExpression, Target.Input)" in result.output
    assert "delete  schedule        stray" in result.output
    schedules = _schedules(aws, "periodic-sqsq")
    assert sorted(schedules) == ["nightly-cleanup", "noon", "tick"]
    for name in ("tick", "noon"):
        template = scheduler.input_template(periodic.periodic_tasks[name])
        assert json.loads(schedules[name]["Target"]["Input"]) == json.loads(template)
    assert schedules["noon"]["ScheduleExpression"] == "cron(0 12 * * ? *)"
    # another group is never read nor touched
    assert _schedules(aws, "someone-else")["tick"]["Target"]["Input"] == "<not json>"
    again = _invoke("schedule", "sync", APP)
    assert "nothing to change: every schedule is up to date" in again.output
    listed = _invoke("schedule", "ls", APP)
    assert listed.exit_code == 0, listed.output


def test_sync_with_an_existing_role_manages_no_role(local_aws: Any, aws: dict[str, Any]) -> None:
    app = _nightly_app("rate(1 hour)")
    create_resources(app)
    role = f"arn:aws:iam::{account()}:role/mine"
    plan = scheduler.apply(app, role_arn=role)
    assert "role" not in [c.kind for c in plan.changes]
    assert (
        aws["scheduler"].get_schedule(GroupName="nightly-sqsq", Name="report")["Target"]["RoleArn"]
        == role
    )
    assert aws["iam"].list_roles()["Roles"] == []


def test_ls_shows_state_and_the_next_three_fire_times_in_the_zone(
    periodic: sqsq.App, aws: dict[str, Any]
) -> None:
    before = _invoke("schedule", "ls", APP)
    assert "NOT SYNCED" in before.output
    _invoke("schedule", "sync", APP)
    result = _invoke("schedule", "ls", APP)
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if row.startswith("nightly-cleanup"))
    assert "ENABLED" in line and "Europe/Paris" in line
    fires = line.split("Europe/Paris", 1)[1]
    assert fires.count("02:30 CE") == 3  # 02:30 Paris time (CET or CEST), three times
    line = next(row for row in result.output.splitlines() if row.startswith("noon"))
    assert line.count("12:00 UTC") == 3
    # A schedule on AWS that the code does not declare is listed as such.
    aws["scheduler"].create_schedule(
        GroupName="periodic-sqsq",
        Name="stray",
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": "arn:aws:sqs:us-east-1:123456789012:x",
            "RoleArn": "arn:aws:iam::123456789012:role/r",
        },
    )
    result = _invoke("schedule", "ls", APP)
    assert "not declared: sync deletes it" in result.output


def test_run_fires_one_now(periodic: sqsq.App, aws: dict[str, Any]) -> None:
    result = _invoke("schedule", "run", APP, "noon")
    assert result.exit_code == 0, result.output
    task_id = result.output.strip()
    url = aws["sqs"].get_queue_url(QueueName="periodic-default")["QueueUrl"]
    messages = aws["sqs"].receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    envelope = decode(messages[0]["Body"])
    assert envelope.id == task_id
    assert envelope.task == "noon" and envelope.args == ["noon"]
    assert envelope.scheduled_at is not None
    assert envelope.idempotency_key == (f"schedule:noon@{envelope.scheduled_at:%Y-%m-%dT%H:%M:%S}Z")


def test_run_of_an_unknown_name_is_a_user_error(periodic: sqsq.App) -> None:
    result = CliRunner().invoke(cli, ["schedule", "run", APP, "nope"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: no periodic task named 'nope'")
    assert "tick" in result.output


def test_declaring_checks_at_import(local_aws: Any) -> None:
    app = sqsq.App("decl")
    with pytest.raises(sqsq.ConfigurationError, match="field Day-of-week"):

        @app.periodic_task("cron(0 12 ? * 0 *)")
        def bad() -> None: ...

    assert app.tasks == {}  # nothing registered
    with pytest.raises(sqsq.ConfigurationError, match="1-64"):

        @app.periodic_task("rate(1 hour)", name="x" * 65)
        def too_long() -> None: ...

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(sqsq.ArgumentError):
        app.add_periodic_task("rate(1 hour)", add, name="add", args=[1])
    with pytest.raises(sqsq.ConfigurationError, match="unknown time zone"):
        app.add_periodic_task("rate(1 hour)", add, name="add", args=[1, 2], timezone="Mars/Base")
    with pytest.raises(sqsq.ConfigurationError, match="timezone-aware"):
        app.add_periodic_task(
            "rate(1 hour)", add, name="add", args=[1, 2], start=datetime(2030, 1, 1)
        )
    with pytest.raises(sqsq.ConfigurationError, match="solar schedules are not supported"):
        app.add_periodic_task(object(), add, name="add", args=[1, 2])  # type: ignore[arg-type]
    for options, limit in (
        ({"flexible_window": timedelta(hours=25)}, "SCHEDULER_MAX_FLEXIBLE_WINDOW_MIN"),
        ({"retry_attempts": 186}, "SCHEDULER_MAX_RETRY_ATTEMPTS"),
        ({"max_event_age": 30}, "SCHEDULER_MAX_EVENT_AGE_S"),
    ):
        with pytest.raises(sqsq.ConfigurationError, match=limit):
            app.add_periodic_task("rate(1 hour)", add, name="add", args=[1, 2], **options)
    periodic = app.add_periodic_task(timedelta(minutes=30), add, name="add", args=[1, 2])
    assert isinstance(periodic, PeriodicTask)
    assert periodic.expression.text == "rate(30 minutes)"
    with pytest.raises(sqsq.ConfigurationError, match="already declared"):
        app.add_periodic_task("rate(1 hour)", add, name="add", args=[1, 2])
