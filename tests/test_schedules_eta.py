"""Countdowns and ETAs beyond SQS's 900 s DelaySeconds: a one-time ``at()``
schedule (moto server, real HTTP), revoke deleting it, the local scheduler firing
it; and the hop mode."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import sqsq
from sqsq.envelope import decode
from sqsq.schedules import eta
from sqsq.schedules.local import LocalScheduler


def account() -> str:
    """The endpoint's account id (moto: 123456789012, LocalStack: 000000000000)."""
    import boto3

    return str(boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"])


@pytest.fixture
def periodic(local_aws: Any) -> Iterator[sqsq.App]:
    from sqsq.resources import apply
    from sqsq.schedules import scheduler
    from tests.apps.periodic import app

    apply(app)
    scheduler.apply(app)  # the role and the schedule groups
    yield app


@pytest.fixture
def scheduler_client(local_aws: Any) -> Iterator[Any]:
    client = boto3.client("scheduler", endpoint_url=local_aws.url, region_name="us-east-1")
    yield client
    client.close()


def _at(expression: str) -> datetime:
    assert expression.startswith("at(") and expression.endswith(")")
    return datetime.fromisoformat(expression[3:-1]).replace(tzinfo=UTC)


def test_a_two_hour_countdown_creates_an_at_schedule_with_the_time_and_input(
    periodic: sqsq.App, scheduler_client: Any
) -> None:
    from tests.apps.periodic import cleanup as add

    before = datetime.now(UTC)
    result = add.apply_async((2,), countdown=2 * 3600, expires=timedelta(hours=3))
    after = datetime.now(UTC)
    have = scheduler_client.get_schedule(GroupName="periodic-sqsq-eta", Name=f"eta-{result.id}")
    due = _at(have["ScheduleExpression"])
    # at() has whole seconds: the due time, truncated
    assert before + timedelta(hours=2) - timedelta(seconds=1) <= due <= after + timedelta(hours=2)
    assert have["ScheduleExpressionTimezone"] == "UTC"
    assert have["ActionAfterCompletion"] == "DELETE"
    assert have["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = have["Target"]
    assert target["Arn"] == f"arn:aws:sqs:us-east-1:{account()}:periodic-default"
    assert target["DeadLetterConfig"] == {
        "Arn": f"arn:aws:sqs:us-east-1:{account()}:periodic-default-dlq"
    }
    assert target["RoleArn"] == f"arn:aws:iam::{account()}:role/periodic-sqsq-scheduler"
    envelope = decode(target["Input"])
    assert envelope.id == result.id
    assert envelope.task == add.name and envelope.args == [2]
    assert envelope.eta is not None and envelope.eta.replace(microsecond=0) == due
    assert envelope.expires is not None and envelope.expires > envelope.eta
    # nothing is on the queue meanwhile
    sqs = periodic.clients.sync("sqs")
    url = periodic.directory.url("periodic-default")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "0"


def test_revoke_deletes_the_schedule(periodic: sqsq.App, scheduler_client: Any) -> None:
    from tests.apps.periodic import cleanup as add

    eta_at = datetime.now(UTC) + timedelta(days=2)
    result = add.apply_async((1,), eta=eta_at)
    assert isinstance(result, eta.ScheduledResult)
    scheduler_client.get_schedule(GroupName="periodic-sqsq-eta", Name=f"eta-{result.id}")
    result.revoke()
    with pytest.raises(scheduler_client.exceptions.ResourceNotFoundException):
        scheduler_client.get_schedule(GroupName="periodic-sqsq-eta", Name=f"eta-{result.id}")
    assert eta.cancel(periodic, result.id) is False  # nothing left to delete


def test_async_producers_take_the_same_path(periodic: sqsq.App, scheduler_client: Any) -> None:
    from tests.apps.periodic import cleanup as add

    async def produce() -> sqsq.AsyncResult:
        try:
            return await add.aapply_async((4,), countdown=timedelta(hours=5))
        finally:
            await periodic.aclose()

    result = asyncio.run(produce())
    scheduler_client.get_schedule(GroupName="periodic-sqsq-eta", Name=f"eta-{result.id}")


def test_the_local_scheduler_fires_due_at_schedules_and_deletes_them(
    periodic: sqsq.App, scheduler_client: Any
) -> None:
    from tests.apps.periodic import cleanup as add

    later = add.apply_async((5,), countdown=3 * 3600)
    sooner = add.apply_async((6,), countdown=1 * 3600)
    clock_now = datetime.now(UTC) + timedelta(hours=2)
    local = LocalScheduler(periodic, clock=lambda: clock_now)
    fired = local.tick()
    assert [f.task_id for f in fired] == [sooner.id]
    names = [
        s["Name"]
        for s in scheduler_client.list_schedules(GroupName="periodic-sqsq-eta")["Schedules"]
    ]
    assert names == [f"eta-{later.id}"]
    sqs = periodic.clients.sync("sqs")
    url = periodic.directory.url("periodic-default")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [decode(m["Body"]).id for m in messages] == [sooner.id]


def test_hop_mode_sends_with_the_largest_delay_and_the_due_time(local_aws: Any) -> None:
    app = sqsq.App("hop", long_eta="hop")

    @app.task(name="hop.add")
    def add(a: int, b: int) -> int:
        return a + b

    from sqsq.resources import apply

    apply(app)
    result = add.apply_async((1, 2), countdown=7200)
    sqs = app.clients.sync("sqs")
    url = app.directory.url("hop-default")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    fifo = sqsq.App("hopfifo", long_eta="hop")

    @fifo.task(name="hop.fifo", queue="jobs.fifo")
    def job() -> None: ...

    with pytest.raises(sqsq.EnqueueError, match="FIFO"):
        job.apply_async(countdown=7200)
    with pytest.raises(sqsq.EnqueueError, match="FIFO"):  # in scheduler mode too
        sqsq.App("hopfifo2").task(name="f2", queue="jobs.fifo")(lambda: None).apply_async(
            countdown=7200
        )
    assert result.state == "PENDING"


def test_hop_mode_delivers_on_time_with_a_fake_clock() -> None:
    from sqsq.decisions import hop_delay_s
    from sqsq.envelope import Envelope

    sent = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    envelope = Envelope(task="t", eta=sent + timedelta(hours=2))
    received = sent + timedelta(seconds=900)  # sent with the largest delay
    hops = []
    while (delay := hop_delay_s(envelope, received)) is not None:
        hops.append(delay)
        received += timedelta(seconds=delay)
    assert received == envelope.eta  # runs at its due time, not before
    assert hops == [900] * 7
    odd = Envelope(task="t", eta=sent + timedelta(seconds=1000.4))
    assert hop_delay_s(odd, sent + timedelta(seconds=900)) == 101  # whole seconds, never early
    assert hop_delay_s(odd, sent + timedelta(seconds=999.5)) is None  # within a second: due


def test_a_message_received_before_its_eta_is_sent_on_and_runs_once_without_an_attempt(
    periodic: sqsq.App, worker: Any
) -> None:
    from sqsq.decisions import HOP_TOLERANCE_S
    from sqsq.envelope import Envelope, encode

    sqs = periodic.clients.sync("sqs")
    url = periodic.directory.url("periodic-default")
    envelope = Envelope(
        id="hop-1", task="cleanup", args=[3], eta=datetime.now(UTC) + timedelta(seconds=4)
    )
    first = sqs.send_message(QueueUrl=url, MessageBody=encode(envelope))["MessageId"]
    process = worker.start("tests.apps.periodic:app", "--wait-time", "1")
    result = periodic.AsyncResult("hop-1")
    assert result.get(timeout=60) == 3
    record = result.record
    assert record is not None
    assert record.attempts == 1  # the hop was not an attempt
    assert record.message_id != first  # it ran from the copy sent on
    # never before its due time (less the tolerance for clocks that differ)
    assert envelope.eta is not None and record.finished_at is not None
    assert record.finished_at >= envelope.eta - timedelta(seconds=HOP_TOLERANCE_S)
    process.terminate()
    assert process.wait(timeout=60) == 0


def test_lambda_sends_a_not_yet_due_message_on_and_does_not_list_it(periodic: sqsq.App) -> None:
    from sqsq.envelope import Envelope, encode
    from sqsq.testing import LambdaContext, sqs_event

    sqs = periodic.clients.sync("sqs")
    url = periodic.directory.url("periodic-default")
    due = datetime.now(UTC) + timedelta(hours=3)
    sqs.send_message(
        QueueUrl=url, MessageBody=encode(Envelope(id="hop-l", task="cleanup", args=[1], eta=due))
    )
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    arn = f"arn:aws:sqs:us-east-1:{account()}:periodic-default"
    response = periodic.lambda_handler(sqs_event(received, arn), LambdaContext())
    assert response == {"batchItemFailures": []}  # Lambda deletes the original
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"  # the copy, 900 s later
    assert periodic.AsyncResult("hop-l").state == "PENDING"  # not run, nothing stored


def test_expires_is_honoured_for_a_long_countdown(periodic: sqsq.App, worker: Any) -> None:
    import time

    from tests.apps.periodic import cleanup

    result = cleanup.apply_async((9,), countdown=3600, expires=timedelta(seconds=1))
    time.sleep(1.1)  # it expires while it waits for its schedule
    clock_now = datetime.now(UTC) + timedelta(hours=1, seconds=5)
    fired = LocalScheduler(periodic, clock=lambda: clock_now).tick()
    assert [f.task_id for f in fired] == [result.id]
    done = worker.run("tests.apps.periodic:app")
    assert done.returncode == 0, done.stderr
    record = periodic.AsyncResult(result.id).record
    assert record is not None and record.state is sqsq.State.REVOKED
    assert record.exc_type == "sqsq.errors.TaskExpired"


def test_a_retry_backoff_longer_than_the_lease_is_sent_on_and_counts_its_attempts(
    periodic: sqsq.App,
) -> None:
    from sqsq.delivery import Delivery
    from sqsq.envelope import encode
    from sqsq.execution import Executor
    from sqsq.outcome import OutcomeKind, Prepared
    from sqsq.settle import settle
    from tests.apps.periodic import retry_tomorrow

    sqs = periodic.clients.sync("sqs")
    url = periodic.directory.url("periodic-default")
    result = retry_tomorrow.delay()
    message = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"][0]
    executor = Executor(periodic, worker_id="test")
    prepared = executor.prepare(Delivery.from_sqs(message, "default", url))
    assert isinstance(prepared, Prepared)
    before = datetime.now(UTC)
    outcome = executor.call(prepared)
    assert outcome.kind is OutcomeKind.RESEND
    assert outcome.record is not None and outcome.record.state is sqsq.State.RETRY
    assert outcome.delay_s == 900  # the longest SQS delay; hops carry it the rest of the way
    assert outcome.body is not None
    sent_on = decode(outcome.body)
    assert sent_on.id == result.id and sent_on.retries == 1
    assert sent_on.eta is not None and sent_on.eta >= before + timedelta(days=1)

    settlement = settle(periodic, [outcome])
    assert settlement.done == [outcome]
    assert result.state == "RETRY"
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"  # the copy
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"  # the original is gone

    # A day later the copy is received for the first time: it is attempt 2.
    due = sent_on.model_copy(update={"eta": datetime.now(UTC) - timedelta(seconds=5)})
    later = executor.prepare(Delivery("m-2", "rh-2", encode(due), "default", url))
    assert isinstance(later, Prepared)
    final = executor.call(later)
    assert final.kind is OutcomeKind.SUCCESS
    assert final.record is not None and final.record.value == 2 and final.record.attempts == 2
