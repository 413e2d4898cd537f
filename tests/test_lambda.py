"""``app.lambda_handler`` on SQS events built from messages really received from the queue."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
import sqsq.resources
from examples.quickstart.app import Order, charge, price_quote, refund, render_email
from sqsq import State
from sqsq.testing import LambdaContext, sqs_event
from tests.helpers import queue_counts


def queue_url(name: str) -> str:
    return str(boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def queue_arn(name: str) -> str:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(name), AttributeNames=["QueueArn"]
    )["Attributes"]
    return str(attributes["QueueArn"])


def receive(name: str, expected: int) -> list[dict[str, Any]]:
    """Receive ``expected`` messages from queue ``name`` as Lambda's poller would."""
    sqs = boto3.client("sqs")
    url = queue_url(name)
    messages: list[dict[str, Any]] = []
    while len(messages) < expected:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        assert batch, f"only {len(messages)} of {expected} messages in {name}"
        messages += batch
    return messages


def event_for(name: str, expected: int) -> tuple[dict[str, Any], list[str]]:
    """An SQS event of ``expected`` received messages, and their MessageIds in order."""
    messages = receive(name, expected)
    return sqs_event(messages, queue_arn(name)), [m["MessageId"] for m in messages]


def send_raw(name: str, body: dict[str, Any]) -> str:
    response = boto3.client("sqs").send_message(
        QueueUrl=queue_url(name), MessageBody=json.dumps(body)
    )
    return str(response["MessageId"])


def dlq_messages(name: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    return sqs.receive_message(
        QueueUrl=queue_url(name),
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        MessageAttributeNames=["All"],
    ).get("Messages", [])


def test_success_and_failure_are_final_and_not_listed(quickstart: Any) -> None:
    ok = charge.delay(Order(order_id="l-1", cents=700))
    bad = refund.delay("l-2")
    event, _ = event_for("quickstart-default", 2)

    response = quickstart.lambda_handler(event, LambdaContext(request_id="req-1"))

    assert response == {"batchItemFailures": []}
    assert ok.get(timeout=1) == {"order_id": "l-1", "charged": 700, "currency": "EUR"}
    record = bad.record
    assert record is not None and record.state is State.FAILURE
    assert record.exc_type == "RuntimeError"
    assert record.exc_message == "refunds for l-2 are handled by the payments team"
    assert record.traceback is not None and "in refund" in record.traceback
    assert record.worker is not None and "req-1" in record.worker


def test_async_task_record(quickstart: Any) -> None:
    quote = price_quote.delay("sku-9", 4, Decimal("2.50"))
    event, _ = event_for("quickstart-default", 1)

    response = quickstart.lambda_handler(event, LambdaContext())

    assert response == {"batchItemFailures": []}
    assert quote.get(timeout=1) == "10.00"


def test_unknown_task_goes_to_the_dlq_and_is_not_listed(quickstart: Any) -> None:
    body = {"task": "examples.quickstart.app.gone", "args": []}
    unknown_id = send_raw("quickstart-default", body)
    ok = charge.delay(Order(order_id="l-3", cents=1))
    event, _ = event_for("quickstart-default", 2)

    response = quickstart.lambda_handler(event, LambdaContext())

    assert response == {"batchItemFailures": []}
    assert ok.state is State.SUCCESS
    dead = dlq_messages("quickstart-default-dlq")
    assert len(dead) == 1
    assert json.loads(dead[0]["Body"]) == body
    attributes = dead[0]["MessageAttributes"]
    assert attributes["sqsq-dead-letter-reason"]["StringValue"] == "unknown_task"
    assert json.loads(attributes["sqsq-dead-letter"]["StringValue"])["task_id"] == unknown_id
    record = quickstart.AsyncResult(unknown_id).record
    assert record is not None and record.state is State.FAILURE
    assert record.dead_letter_reason == "unknown_task"


def test_an_invocation_with_no_room_past_the_margin_is_refused(
    quickstart: Any, tmp_path: Path
) -> None:
    """A function whose timeout is under the safety margin refuses the invocation (an
    error Lambda counts; every record comes back) instead of listing record by record."""
    out = tmp_path / "mail"
    emails = [render_email.delay(f"m{i}@example.com", "hi", str(out)) for i in range(2)]
    unknown_id = send_raw("quickstart-emails", {"task": "examples.quickstart.app.gone"})
    event, _ = event_for("quickstart-emails", 3)
    assert quickstart.settings.lambda_safety_margin_s == 5

    with pytest.raises(sqsq.ConfigurationError, match="no record can start"):
        quickstart.lambda_handler(event, LambdaContext(remaining_ms=1_000))

    assert not out.exists()  # no task body ran
    assert [e.state for e in emails] == [State.PENDING, State.PENDING]
    assert quickstart.AsyncResult(unknown_id).state is State.PENDING
    assert dlq_messages("quickstart-emails-dlq") == []


def test_a_record_starts_only_while_its_time_limit_and_the_margin_fit(local_aws: Any) -> None:
    """Margin 0.5 s (the app's setting), time_limit 1 s, 2 s left: the first record
    starts and takes 0.7 s; the second no longer fits (1.3 s left, 1.5 s needed), so
    it is not started and listed — it comes back whole."""
    app = sqsq.App("margin", lambda_safety_margin_s=0.5)

    @app.task(name="margin.ping", time_limit=1)
    def ping(n: int) -> int:
        time.sleep(0.7)
        return n

    sqsq.resources.apply(app)
    results = [ping.delay(n) for n in range(2)]
    event, ids = event_for("margin-default", 2)
    first = next(r for r in results if r.id == json.loads(event["Records"][0]["body"])["id"])
    second = next(r for r in results if r is not first)

    response = app.lambda_handler(event, LambdaContext(remaining_ms=2_000))

    assert response == {"batchItemFailures": [{"itemIdentifier": ids[1]}]}
    assert first.get(timeout=1) in (0, 1)
    assert second.state is State.PENDING


def test_a_record_whose_time_limit_never_fits_the_function_is_a_dead_letter(
    local_aws: Any,
) -> None:
    """A function whose invocations begin with 1.2 s cannot run a task of time_limit 1 s
    with a 0.5 s margin: a dead letter with that reason, its neighbour runs."""
    app = sqsq.App("margin", lambda_safety_margin_s=0.5)

    @app.task(name="margin.slow", time_limit=1)
    def slow() -> None:
        raise AssertionError("never started")

    @app.task(name="margin.quick")
    def quick() -> str:
        return "ok"

    sqsq.resources.apply(app)
    unfit, fine = slow.delay(), quick.delay()
    event, _ = event_for("margin-default", 2)

    response = app.lambda_handler(event, LambdaContext(remaining_ms=1_200))

    assert response == {"batchItemFailures": []}
    assert fine.get(timeout=1) == "ok"
    record = unfit.record
    assert record is not None and record.dead_letter_reason == "does_not_fit_function"
    (copy,) = dlq_messages("margin-default-dlq")
    reason = json.loads(copy["MessageAttributes"]["sqsq-dead-letter"]["StringValue"])
    assert reason["reason"] == "does_not_fit_function"


def test_unstored_outcomes_are_listed_and_nothing_is_dead_lettered(local_aws: Any) -> None:
    sqsq.resources.apply(sqsq.App("nolambda"))  # queues (and a table the app below ignores)
    app = sqsq.App("nolambda", table_name="missing")

    @app.task(name="nolambda.ok")
    def ok() -> str:
        return "ok"

    @app.task(name="nolambda.fail")
    def fail() -> None:
        raise ValueError("no")

    ok.delay()
    fail.delay()
    send_raw("nolambda-default", {"task": "nolambda.unknown"})
    event, ids = event_for("nolambda-default", 3)

    response = app.lambda_handler(event, LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}
    assert queue_counts(boto3.client("sqs"), queue_url("nolambda-default-dlq")) == (0, 0)


@pytest.mark.parametrize(
    "event",
    [
        {"foo": 1},
        {"Records": [{"eventSource": "aws:s3", "s3": {}}]},
        {"Records": "not a list"},
        [],
    ],
)
def test_an_event_that_is_not_an_sqs_event_is_a_clear_error(quickstart: Any, event: Any) -> None:
    """A miswired trigger must fail the invocation, not report success."""
    with pytest.raises(sqsq.ConfigurationError, match="needs an SQS event") as info:
        quickstart.lambda_handler(event, LambdaContext())
    assert isinstance(info.value, sqsq.SqsqError)
