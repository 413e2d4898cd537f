"""Lambda on a FIFO queue cannot pause its event source: a record deferred (its
idempotency key held by another run) on the last receive its queue's maxReceiveCount
allows is dead-lettered with a reason (``deferrals_exhausted``), never left for SQS to
move without one; before its last receive it is returned, as before."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

import sqsq
import sqsq.resources
from sqsq import State
from sqsq.idempotency import key_pk
from sqsq.testing import LambdaContext, sqs_event


def _app() -> sqsq.App:
    app = sqsq.App("fifodefer")

    @app.task(name="fifodefer.charge", queue="jobs.fifo", idempotency_key="{order}")
    def charge(order: str) -> str:
        return f"charged {order}"

    return app


@pytest.mark.parametrize("max_receive_count", [1, 3])
def test_a_fifo_record_deferred_on_its_last_receive_is_a_dead_letter_with_a_reason(
    local_aws: Any, max_receive_count: int
) -> None:
    app = _app()
    sqsq.resources.apply(app)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName="fifodefer-jobs.fifo")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName="fifodefer-jobs-dlq.fifo")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    policy = json.loads(attributes["RedrivePolicy"])
    policy["maxReceiveCount"] = max_receive_count
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})
    # another run holds the key for 5 minutes
    held = app.idempotency.claim(key_pk("fifodefer.charge", "o-1"), "other-run", 300, 3600)
    assert held.status == "CLAIMED"
    result = app.tasks["fifodefer.charge"].apply_async(("o-1",), message_group_id="g")

    (message,) = sqs.receive_message(
        QueueUrl=url, AttributeNames=["All"], MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    event = sqs_event([message], attributes["QueueArn"])
    response = app.lambda_handler(event, LambdaContext())

    copies = sqs.receive_message(
        QueueUrl=dlq, MessageAttributeNames=["All"], WaitTimeSeconds=1
    ).get("Messages", [])
    if max_receive_count == 1:  # its last receive: a dead letter, with its reason
        assert response == {"batchItemFailures": []}
        (copy,) = copies
        details = json.loads(copy["MessageAttributes"]["sqsq-dead-letter"]["StringValue"])
        assert details["reason"] == "deferrals_exhausted"
        record = result.record
        assert record is not None and record.state is State.FAILURE
        assert record.dead_letter_reason == "deferrals_exhausted"
    else:  # receives left: returned (it comes back when the key is free)
        assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
        assert copies == []
        assert result.state is State.PENDING
