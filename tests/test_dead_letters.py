"""Messages that cannot be run go to the queue's DLQ with their reason, never silently away.

One scenario per runner (a real ``sqsq worker --burst`` subprocess, and the Lambda
handler fed with really received messages) sends every kind of bad input to
``quickstart-default``; the tests then read the DLQ ``quickstart-default-dlq`` and
the result items.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq.resources
from examples.quickstart.app import app as quickstart_app
from sqsq import ResultRecord, State
from sqsq.testing import LambdaContext, sqs_event
from tests.helpers import burst_worker, queue_counts

SOURCE = "quickstart-default"
DLQ = "quickstart-default-dlq"
REFUND = "examples.quickstart.app.refund"
REPORT = "examples.quickstart.app.build_report"

#: Attributes every bad message carries (besides ``case``); the DLQ copy must keep them.
EXTRA_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "count": {"DataType": "Number", "StringValue": "42"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffsqsq"},
}


@dataclass(frozen=True)
class Case:
    """A bad message: its body, the expected reason and the id its result is stored under
    (None: the SQS MessageId)."""

    body: str
    reason: str
    error_type: str
    task_id: str | None = None


CASES: dict[str, Case] = {
    "not_json": Case("this is {not JSON", "undecodable_message", "sqsq.errors.UndecodableMessage"),
    "json_not_object": Case(
        '[1, 2, "three"]', "undecodable_message", "sqsq.errors.UndecodableMessage"
    ),
    "no_task_field": Case(
        json.dumps({"args": [1], "kwargs": {}}),
        "undecodable_message",
        "sqsq.errors.UndecodableMessage",
    ),
    "unknown_field": Case(
        # sqsq's versioned envelope is strict (a foreign, unversioned one keeps the field)
        json.dumps({"version": 1, "task": REFUND, "args": ["o-1"], "priority": 9}),
        "undecodable_message",
        "sqsq.errors.UndecodableMessage",
    ),
    "unknown_task": Case(
        json.dumps({"id": "dl-unknown-task", "task": "examples.quickstart.app.nope", "args": []}),
        "unknown_task",
        "sqsq.errors.UnknownTask",
        "dl-unknown-task",
    ),
    "wrong_arity": Case(
        json.dumps({"id": "dl-arity", "task": REFUND, "args": ["o-1", "o-2"]}),
        "invalid_arguments",
        "sqsq.errors.InvalidArguments",
        "dl-arity",
    ),
    "unexpected_kwarg": Case(
        json.dumps({"task": REFUND, "args": ["o-1"], "kwargs": {"reason": "late"}}),
        "invalid_arguments",
        "sqsq.errors.InvalidArguments",
    ),
    "wrong_type": Case(
        json.dumps({"id": "dl-type", "task": REPORT, "args": ["abc"], "kwargs": {}}),
        "invalid_arguments",
        "sqsq.errors.InvalidArguments",
        "dl-type",
    ),
    "version_2": Case(
        json.dumps({"version": 2, "task": REFUND, "args": ["o-1"]}),
        "undecodable_message",
        "sqsq.errors.UndecodableMessage",
    ),
}

#: A message that already carries SQS's maximum of 10 message attributes.
TEN_ATTRIBUTES = "ten_attributes"
#: A newer-version envelope (as a newer sqsq producer would send it) with its own id.
VERSION_2_WITH_ID = "version_2_with_id"
V2_ID = "v2-task-id"


@dataclass
class Sent:
    message_id: str
    body: str
    attributes: dict[str, dict[str, Any]]


@dataclass
class Scenario:
    """What one runner did with every bad message."""

    runner: str
    sent: dict[str, Sent] = field(default_factory=dict)
    dead: dict[str, dict[str, Any]] = field(default_factory=dict)  # case -> DLQ message
    source_counts: tuple[int, int] = (0, 0)
    dlq_count: int = 0
    batch_item_failures: list[dict[str, str]] = field(default_factory=list)
    worker: subprocess.CompletedProcess[str] | None = None

    def result(self, case: str, task_id: str | None = None) -> ResultRecord | None:
        return quickstart_app.results.get_result(task_id or self.sent[case].message_id)


def _counts(sqs: Any, url: str) -> tuple[int, int]:
    return queue_counts(sqs, url)


def _receive_all(sqs: Any, url: str, expected: int) -> list[dict[str, Any]]:
    """Receive until ``expected`` messages are in hand or a receive comes back empty."""
    messages: list[dict[str, Any]] = []
    while len(messages) < expected:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        messages += batch
    return messages


def _run_worker(tmp: Path) -> subprocess.CompletedProcess[str]:
    return burst_worker("examples.quickstart.app:app", tmp)


def _run_lambda(sqs: Any, url: str, expected: int) -> list[dict[str, str]]:
    """Play the Lambda service: receive, invoke the handler, delete what it did not list."""
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    messages = _receive_all(sqs, url, expected)
    assert len(messages) == expected
    failures: list[dict[str, str]] = []
    for start in range(0, len(messages), 10):
        batch = messages[start : start + 10]
        response = quickstart_app.lambda_handler(sqs_event(batch, arn), LambdaContext())
        failures += response["batchItemFailures"]
        listed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for message in batch:
            if message["MessageId"] not in listed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return failures


@pytest.fixture(scope="module", params=["worker", "lambda"])
def scenario(
    request: pytest.FixtureRequest, sqsq_endpoint: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    """Send every bad message, run one runner over the queue, read the DLQ."""
    sqsq_endpoint.reset()
    sqsq.resources.apply(quickstart_app)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=SOURCE)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=DLQ)["QueueUrl"]
    result = Scenario(runner=request.param)

    bodies = {name: case.body for name, case in CASES.items()}
    bodies[TEN_ATTRIBUTES] = json.dumps({"id": "dl-ten", "task": "examples.quickstart.app.nope"})
    bodies[VERSION_2_WITH_ID] = json.dumps(
        {"version": 2, "id": V2_ID, "task": REFUND, "args": ["o"]}
    )
    for name, body in bodies.items():
        attributes = {"case": {"DataType": "String", "StringValue": name}, **EXTRA_ATTRIBUTES}
        if name == TEN_ATTRIBUTES:
            for i in range(10 - len(attributes)):
                attributes[f"attr{i}"] = {"DataType": "String", "StringValue": f"value {i}"}
        response = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
        result.sent[name] = Sent(response["MessageId"], body, attributes)

    if request.param == "worker":
        result.worker = _run_worker(tmp_path_factory.mktemp("worker"))
    else:
        result.batch_item_failures = _run_lambda(sqs, url, len(bodies))

    result.source_counts = _counts(sqs, url)
    result.dlq_count = sum(_counts(sqs, dlq_url))
    by_body = {body: name for name, body in bodies.items()}  # every body is distinct
    for message in _receive_all(sqs, dlq_url, len(bodies)):
        case = by_body[message["Body"]]
        assert case not in result.dead, f"{case} dead-lettered twice"
        result.dead[case] = message
    yield result


def test_runner_finished_cleanly(scenario: Scenario) -> None:
    if scenario.worker is not None:
        assert scenario.worker.returncode == 0, scenario.worker.stderr
        assert "Traceback" not in scenario.worker.stderr
        assert f"dead_lettered={len(scenario.sent)}" in scenario.worker.stderr
    else:
        assert scenario.batch_item_failures == []


def test_no_message_is_silently_deleted(scenario: Scenario) -> None:
    assert scenario.source_counts == (0, 0)
    assert scenario.dlq_count == len(scenario.sent)
    assert set(scenario.dead) == set(scenario.sent)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_message_reaches_the_dlq_with_its_reason(scenario: Scenario, name: str) -> None:
    case, sent = CASES[name], scenario.sent[name]
    task_id = case.task_id or sent.message_id
    copy = scenario.dead.get(name)
    assert copy is not None, f"{name} is not in {DLQ}"

    # the original body and message attributes are kept
    assert copy["Body"] == sent.body
    attributes = copy["MessageAttributes"]
    for attr_name, attr in sent.attributes.items():
        assert attributes[attr_name]["DataType"] == attr["DataType"]
        value_key = "BinaryValue" if "BinaryValue" in attr else "StringValue"
        assert attributes[attr_name][value_key] == attr[value_key], attr_name

    # the reason and JSON details are attached
    assert attributes["sqsq-dead-letter-reason"]["StringValue"] == case.reason
    details = json.loads(attributes["sqsq-dead-letter"]["StringValue"])
    assert details["reason"] == case.reason
    assert details["error_type"] == case.error_type
    assert details["task_id"] == task_id
    assert details["source_queue"] == SOURCE
    assert details["message"]

    # and a FAILURE result under the task id tells the same story
    record = scenario.result(name, task_id)
    assert record is not None, f"no result under {task_id}"
    assert record.state is State.FAILURE
    assert record.dead_letter_reason == case.reason
    assert record.exc_type == case.error_type
    assert record.exc_message == details["message"]
    assert record.message_id == sent.message_id


def test_message_with_ten_attributes_still_reaches_the_dlq(scenario: Scenario) -> None:
    sent = scenario.sent[TEN_ATTRIBUTES]
    assert len(sent.attributes) == 10
    copy = scenario.dead.get(TEN_ATTRIBUTES)
    assert copy is not None, f"the 10-attribute message is not in {DLQ}"
    assert copy["Body"] == sent.body
    assert set(copy["MessageAttributes"]) == set(sent.attributes)  # no room for ours
    record = scenario.result(TEN_ATTRIBUTES, "dl-ten")
    assert record is not None and record.state is State.FAILURE
    assert record.dead_letter_reason == "unknown_task"


def test_newer_envelope_version_result_is_found_under_its_own_id(scenario: Scenario) -> None:
    """A newer producer waits on the id it chose; the dead-letter FAILURE must be there."""
    copy = scenario.dead.get(VERSION_2_WITH_ID)
    assert copy is not None
    assert copy["MessageAttributes"]["sqsq-dead-letter-reason"]["StringValue"] == (
        "undecodable_message"
    )
    record = scenario.result(VERSION_2_WITH_ID, V2_ID)
    assert record is not None, "the FAILURE is not under the id the producer holds"
    assert record.dead_letter_reason == "undecodable_message"


def test_worker_logs_an_unrunnable_message_under_its_task_id(scenario: Scenario) -> None:
    """The id `send` printed is the one to grep for in the worker's log."""
    if scenario.worker is None:
        pytest.skip("the Lambda runner has no worker log")
    sent = scenario.sent[TEN_ATTRIBUTES]
    assert f"task dl-ten (message {sent.message_id}) is a dead letter: unknown_task" in (
        scenario.worker.stderr
    )
