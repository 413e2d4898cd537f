"""pytest plugin: a local AWS endpoint and Lambda event factories.

Installed with sqsq (entry point ``pytest11``); fixtures do nothing until a test
asks for them.

- ``sqsq_endpoint`` (session): the embedded moto server (:class:`~sqsq.local.LocalEndpoint`)
  on a free loopback port. While it runs, botocore's ``AWS_ENDPOINT_URL`` and
  test credentials are set in ``os.environ``, so every App whose
  ``endpoint_url`` is unset — including module-level apps imported before the
  fixture ran — talks to it, over real HTTP, with boto3 and aiobotocore alike.
- ``local_aws`` (function): the same endpoint, emptied (moto reset) before the test.
- :func:`sqs_event` / :class:`LambdaContext`: an SQS event for a Lambda handler,
  in the documented shape ("Using Lambda with Amazon SQS"), built from messages
  really received from a queue.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .local import LOCAL_ENVIRONMENT, LocalEndpoint


@pytest.fixture(scope="session")
def sqsq_endpoint() -> Iterator[LocalEndpoint]:
    """The embedded local AWS endpoint for the whole session."""
    endpoint = LocalEndpoint().start()
    names = [*LOCAL_ENVIRONMENT, "AWS_ENDPOINT_URL"]
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(LOCAL_ENVIRONMENT)
    os.environ["AWS_ENDPOINT_URL"] = endpoint.url
    try:
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        endpoint.stop()


@pytest.fixture
def local_aws(sqsq_endpoint: LocalEndpoint) -> LocalEndpoint:
    """The local endpoint with no resources (reset before the test)."""
    sqsq_endpoint.reset()
    return sqsq_endpoint


class LambdaContext:
    """A stand-in for the Lambda context object.

    Args:
        remaining_ms: what ``get_remaining_time_in_millis()`` returns first; it
            then counts down in real time.
        request_id: ``aws_request_id``.
    """

    def __init__(self, remaining_ms: int = 60_000, request_id: str = "test-request") -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000
        self.aws_request_id = request_id
        self.function_name = "sqsq-test"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_record(
    message: dict[str, Any], queue_arn: str, region: str = "us-east-1"
) -> dict[str, Any]:
    """One Lambda SQS record from a ReceiveMessage entry (attributes "All")."""
    attributes = {
        key: message.get("Attributes", {}).get(key, default)
        for key, default in (
            ("ApproximateReceiveCount", "1"),
            ("SentTimestamp", str(int(time.time() * 1000))),
            ("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
            ("ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))),
        )
    }
    for key in ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber"):
        if key in message.get("Attributes", {}):
            attributes[key] = message["Attributes"][key]
    message_attributes = {}
    for name, attr in message.get("MessageAttributes", {}).items():
        entry: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": attr["DataType"],
        }
        if "BinaryValue" in attr:
            entry["binaryValue"] = base64.b64encode(attr["BinaryValue"]).decode()
        else:
            entry["stringValue"] = attr.get("StringValue")
        message_attributes[name] = entry
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def sqs_event(
    messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1"
) -> dict[str, Any]:
    """An SQS event (``{"Records": [...]}``) for ``app.lambda_handler``."""
    return {"Records": [sqs_record(m, queue_arn, region) for m in messages]}
