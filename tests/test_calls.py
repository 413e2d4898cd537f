"""The sans-IO call sequences (``sqsq.calls``): one generator, driven by boto3
(:func:`run`) and by aiobotocore (:func:`arun`) against the local endpoint, gives
the same answers; a call's exception is thrown into the generator where it
yields; a Sleep pauses the generator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

import sqsq
import sqsq.resources
from sqsq.calls import Call, Gather, QueueUrl, Sleep, Steps, arun, run
from sqsq.retry import error_code

PAUSE_S = 0.2


@pytest.fixture
def app(local_aws: Any) -> sqsq.App:
    app = sqsq.App("calls", region_name="us-east-1")
    sqsq.resources.apply(app)
    return app


def sequence(app: sqsq.App) -> Steps[dict[str, Any]]:
    """Every kind of request once, noting what came back."""
    queue = app.queue_name("default")
    seen: dict[str, Any] = {}
    url = yield QueueUrl(queue)
    seen["url"] = url.rsplit("/", 1)[-1]
    sent = yield Call("sqs", "send_message", {"MessageBody": "hello"}, queue=queue)
    seen["md5"] = sent["MD5OfMessageBody"]
    key = {"pk": {"S": "calls#missing"}, "sk": {"S": "x"}}
    try:  # a conditional write that fails: the ClientError is thrown in here
        yield Call(
            "dynamodb",
            "update_item",
            {
                "TableName": app.table_name,
                "Key": key,
                "UpdateExpression": "SET n = :n",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":n": {"N": "1"}},
            },
        )
        seen["thrown"] = None
    except ClientError as exc:
        seen["thrown"] = error_code(exc)
    answers = yield Gather(
        (
            Call("dynamodb", "get_item", {"TableName": app.table_name, "Key": key}),
            Call("dynamodb", "describe_table", {"TableName": "calls-no-such-table"}),
            Call("sqs", "get_queue_attributes", {"AttributeNames": ["QueueArn"]}, queue=queue),
        )
    )
    seen["gathered"] = [
        error_code(a) if isinstance(a, Exception) else sorted(a) for a in answers[:2]
    ] + [answers[2]["Attributes"]["QueueArn"].rsplit(":", 1)[-1]]
    started = time.monotonic()
    seen["slept"] = (yield Sleep(PAUSE_S)) is None
    seen["paused_s"] = time.monotonic() - started
    received = yield Call("sqs", "receive_message", {"WaitTimeSeconds": 1}, queue=queue)
    seen["received"] = [m["Body"] for m in received.get("Messages", [])]
    return seen


def _same(seen: dict[str, Any], queue: str) -> None:
    assert seen["url"] == queue
    assert seen["thrown"] == "ConditionalCheckFailedException"
    assert seen["gathered"][1] == "ResourceNotFoundException"
    assert seen["gathered"][2] == queue
    assert seen["slept"] is True
    assert seen["paused_s"] >= PAUSE_S - 0.01  # a lower bound: the driver slept
    assert seen["received"] == ["hello"]


def test_both_drivers_give_the_same_answers(app: sqsq.App) -> None:
    queue = app.queue_name("default")
    by_boto3 = run(sequence(app), app.clients, app.directory)

    async def drive() -> dict[str, Any]:
        try:
            return await arun(sequence(app), app.clients, app.directory)
        finally:
            await app.aclose()

    by_aiobotocore = asyncio.run(drive())
    _same(by_boto3, queue)
    _same(by_aiobotocore, queue)
    timing = {"paused_s"}
    assert {k: v for k, v in by_boto3.items() if k not in timing} == {
        k: v for k, v in by_aiobotocore.items() if k not in timing
    }


def unhandled(app: sqsq.App) -> Steps[str]:
    """A call whose error the generator does not catch, after one it answers."""
    yield Call("dynamodb", "describe_table", {"TableName": app.table_name})
    yield Call("dynamodb", "describe_table", {"TableName": "calls-no-such-table"})
    return "not reached"


def test_an_error_the_generator_does_not_catch_is_raised_by_either_driver(app: sqsq.App) -> None:
    with pytest.raises(ClientError) as by_boto3:
        run(unhandled(app), app.clients)

    async def drive() -> str:
        try:
            return await arun(unhandled(app), app.clients)
        finally:
            await app.aclose()

    with pytest.raises(ClientError) as by_aiobotocore:
        asyncio.run(drive())
    assert error_code(by_boto3.value) == error_code(by_aiobotocore.value)
    assert error_code(by_boto3.value) == "ResourceNotFoundException"


def test_a_missing_queue_is_thrown_in_as_the_clear_error(app: sqsq.App) -> None:
    def lookup() -> Steps[str]:
        try:
            yield QueueUrl("calls-no-such-queue")
        except sqsq.ConfigurationError as exc:
            return str(exc)
        return "found"

    async def drive() -> str:
        try:
            return await arun(lookup(), app.clients, app.directory)
        finally:
            await app.aclose()

    by_boto3 = run(lookup(), app.clients, app.directory)
    assert by_boto3 == asyncio.run(drive())
    assert "calls-no-such-queue" in by_boto3 and "does not exist" in by_boto3
