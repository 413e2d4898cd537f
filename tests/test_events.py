"""Foreign events (issue 11): the exact bodies AWS services send, through a real queue
and a real worker, and through the Lambda handler.

The bodies are AWS's own published samples (tests/data/events/, each file's source in
its README), sent as the service sends them: SendMessage with the body (EventBridge
rule targets, Pipes, SNS, S3, API Gateway's HTTP API integration) or the form POST of
API Gateway's REST API mapping template. One scenario per runner — a ``sqsq worker
--burst --concurrency 1`` subprocess, and ``app.lambda_handler`` fed with really
received messages — runs them all at once, so the suite pays for one worker start.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sqsq.resources
from sqsq import ResultRecord, State
from sqsq.testing import LambdaContext, sqs_event
from tests.apps import events as events_app
from tests.apps.events import app
from tests.helpers import burst_worker

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "events"
APP = "tests.apps.events:app"


def fixture(name: str) -> str:
    """A fixture file's text, exactly."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def sns_with_message(message: str) -> str:
    """The SNS documentation's notification with its ``Message`` substituted."""
    notification = json.loads(fixture("sns-notification.docs.json"))
    notification["Message"] = message
    return json.dumps(notification)


def s3_two_records() -> str:
    """An S3 notification of two records: those of two ``sam local generate-event s3
    put`` outputs (keys in/report.csv and in/b.csv)."""
    records = [
        json.loads(fixture(name))["Records"][0] for name in ("s3-put.sam.json", "s3-put-b.sam.json")
    ]
    return json.dumps({"Records": records})


def pipes_record(index: int) -> str:
    """One record of the Pipes documentation's DynamoDB example: Pipes sends an SQS
    target one message per record (SendMessageBatch)."""
    return json.dumps(json.loads(fixture("dynamodb-pipes.docs.json"))[index])


ADD = "tests.apps.events.add"

#: name -> (how it is sent, body). "sqs": SendMessage with the body; "rest": API
#: Gateway's REST API mapping template (a form POST of Action=SendMessage).
BODIES: dict[str, tuple[str, str]] = {
    "eventbridge": ("sqs", fixture("eventbridge-ec2-state-change.docs.json")),
    "eventbridge_again": ("sqs", fixture("eventbridge-ec2-state-change.docs.json")),
    "scheduled": ("sqs", fixture("eventbridge-scheduled-event.sam.json")),
    "s3": ("sqs", fixture("s3-put.sam.json")),
    "s3_docs": ("sqs", fixture("s3-put.docs.json")),
    "s3_two_records": ("sqs", s3_two_records()),
    "s3_test_event": ("sqs", fixture("s3-test-event.docs.json")),
    "sns": ("sqs", fixture("sns-notification.docs.json")),
    "sns_envelope": ("sqs", sns_with_message(json.dumps({"task": ADD, "args": [2, 3]}))),
    "sns_s3": ("sqs", sns_with_message(json.dumps(json.loads(fixture("s3-put.docs.json"))))),
    "pipes_insert": ("sqs", pipes_record(0)),
    "pipes_modify": ("sqs", pipes_record(1)),  # no route takes MODIFY: no_route
    "rest_api_envelope": ("rest", json.dumps({"task": ADD, "args": [20, 22], "kwargs": {}})),
    "rest_api_event": ("rest", fixture("eventbridge-scheduled-event.sam.json")),
    "http_api_envelope": ("sqs", json.dumps({"task": ADD, "args": [1, 2], "client": "curl"})),
}


def send_rest(queue_url: str, client_body: str) -> str:
    """What API Gateway's REST API integration does with the mapping template
    ``Action=SendMessage&MessageBody=$util.urlEncode($input.body)``: a form POST to the
    queue (SQS's query protocol). Returns the MessageId."""
    import re

    import boto3
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    template = fixture("apigateway-rest-sqs-mapping.vtl").strip()
    form = template.replace("$util.urlEncode($input.body)", urllib.parse.quote_plus(client_body))
    # The integration's path is `<account>/<queue>` on the region's SQS endpoint (the
    # queue URL's host may be a name only the endpoint's own DNS knows: LocalStack's).
    endpoint = app.clients.sync("sqs").meta.endpoint_url.rstrip("/")
    queue_url = endpoint + urllib.parse.urlsplit(queue_url).path
    # API Gateway signs the integration request with its role's credentials (SigV4)
    request = AWSRequest(
        "POST", queue_url, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    session = boto3.Session()
    credentials = session.get_credentials()
    assert credentials is not None
    SigV4Auth(credentials, "sqs", session.region_name or "us-east-1").add_auth(request)
    response = requests.post(queue_url, data=form, headers=dict(request.headers), timeout=10)
    assert response.status_code == 200, response.text
    found = re.search(r"<MessageId>([^<]+)</MessageId>", response.text)
    assert found, response.text
    return found.group(1)


@dataclass
class Scenario:
    runner: str
    ids: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    dead: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> DLQ message
    left: int = 0
    stderr: str = ""
    returncode: int = 0

    def record(self, name: str) -> ResultRecord:
        record = app.results.get_result(self.ids[name])
        assert record is not None, f"{name}: no result\n{self.stderr}"
        return record


def _receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages += batch
    return messages


def _play_lambda(sqs: Any, url: str) -> None:
    """Play the Lambda service (an event source mapping with BatchSize 1, as the
    worker runs with --concurrency 1) until the queue is empty: receive, invoke, delete
    what the handler did not list (split S3 notifications come back as new messages)."""
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    while messages := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=1,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        response = app.lambda_handler(sqs_event(messages, arn), LambdaContext())
        assert response["batchItemFailures"] == []
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])


@pytest.fixture(scope="module", params=["worker", "lambda"])
def scenario(
    request: pytest.FixtureRequest, sqsq_endpoint: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    sqsq_endpoint.reset()
    sqsq.resources.apply(app)
    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name("default"))
    result = Scenario(runner=request.param)
    for name, (how, body) in BODIES.items():
        if how == "rest":
            result.ids[name] = send_rest(url, body)
        else:
            result.ids[name] = sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]

    tmp = tmp_path_factory.mktemp(request.param)
    log = tmp / "runs.log"
    if request.param == "worker":
        done = burst_worker(APP, tmp, "--concurrency", "1", env={events_app.LOG_VARIABLE: str(log)})
        result.stderr, result.returncode = done.stderr, done.returncode
    else:
        os.environ[events_app.LOG_VARIABLE] = str(log)
        try:
            _play_lambda(sqs, url)
        finally:
            del os.environ[events_app.LOG_VARIABLE]

    result.runs = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    result.left = len(_receive(sqs, url))
    names = {body: name for name, (_, body) in BODIES.items()}
    dlq = app.directory.url(app.queue_name("default") + "-dlq")
    for message in _receive(sqs, dlq):
        result.dead[names.get(message["Body"], message["Body"])] = message
    yield result


def test_the_runner_finished_and_left_nothing(scenario: Scenario) -> None:
    assert scenario.returncode == 0, scenario.stderr
    assert "Traceback" not in scenario.stderr
    assert scenario.left == 0


def test_an_eventbridge_event_runs_its_task_with_the_typed_model(scenario: Scenario) -> None:
    record = scenario.record("eventbridge")
    assert record.state is State.SUCCESS, record
    assert record.task == "tests.apps.events.ec2_terminated"
    assert record.value == {
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "instance": "i-1234567890abcdef0",
        "model": "EventBridgeModel",
    }
    assert scenario.record("scheduled").value == (
        "arn:aws:events:us-east-1:123456789012:rule/ExampleRule"
    )


def test_a_redelivered_event_runs_once(scenario: Scenario) -> None:
    """The same EventBridge event in two messages: one run; the other gets its result."""
    assert scenario.runs.count("ec2 6a7e8feb-b491-4cf7-a9f1-bf3703467718") == 1
    first, again = scenario.record("eventbridge"), scenario.record("eventbridge_again")
    assert first.value == again.value
    assert {"duplicate_of"} & (set(first.extra) | set(again.extra))


def test_an_s3_notification_runs_one_task_per_record(scenario: Scenario) -> None:
    record = scenario.record("s3")
    assert record.state is State.SUCCESS, record
    assert record.value == {
        "bucket": "uploads",
        "key": "in/report.csv",
        "size": 1024,
        "event": "ObjectCreated:Put",
    }
    assert scenario.record("s3_docs").value == "HappyFace.jpg"
    # the two-record notification was split into one message per record and deleted;
    # its in/report.csv record is the "s3" message's event again: it ran once
    assert "s3_two_records" not in scenario.dead
    assert app.results.get_result(scenario.ids["s3_two_records"]) is None
    assert scenario.runs.count("s3 uploads/in/report.csv") == 1
    assert scenario.runs.count("s3 uploads/in/b.csv") == 1


def test_the_s3_test_event_is_acknowledged_and_dropped(scenario: Scenario) -> None:
    assert app.results.get_result(scenario.ids["s3_test_event"]) is None
    assert "s3_test_event" not in scenario.dead
    if scenario.runner == "worker":  # the summary counts it as dropped
        assert "dropped=1" in scenario.stderr, scenario.stderr


def test_sns_notifications_are_unwrapped_to_an_envelope_an_event_or_their_route(
    scenario: Scenario,
) -> None:
    assert scenario.record("sns").value == {
        "message": "Hello world!",
        "subject": "Testing publish to subscribed queues",
        "topic": "arn:aws:sns:us-west-2:123456789012:MyTopic",
    }
    assert scenario.record("sns_envelope").value == 5  # the message is an envelope
    via_sns = scenario.record("sns_s3")  # the message is an S3 notification
    assert via_sns.task == "tests.apps.events.docs_upload"
    assert via_sns.value == "HappyFace.jpg"
    assert scenario.runs.count("s3 mybucket/HappyFace.jpg") == 1  # same event as "s3_docs"


def test_a_dynamodb_stream_record_from_pipes_runs_its_task(scenario: Scenario) -> None:
    record = scenario.record("pipes_insert")
    assert record.task == "tests.apps.events.inserted"
    assert record.value == "New item!"


def test_an_unmatched_event_is_dead_lettered_with_no_route_and_its_source(
    scenario: Scenario,
) -> None:
    assert set(scenario.dead) == {"pipes_modify"}
    message = scenario.dead["pipes_modify"]
    attributes = message["MessageAttributes"]
    assert attributes["sqsq-dead-letter-reason"]["StringValue"] == "no_route"
    details = json.loads(attributes["sqsq-dead-letter"]["StringValue"])
    assert details["event"] == {
        "kind": "dynamodb",
        "source": "arn:aws:dynamodb:us-east-1:111122223333:table/EventSourceTable",
        "type": "MODIFY",
    }
    assert message["Body"] == pipes_record(1)  # the body as it came
    record = scenario.record("pipes_modify")
    assert record.state is State.FAILURE and record.dead_letter_reason == "no_route"


def test_api_gateway_bodies_are_the_clients_body(scenario: Scenario) -> None:
    assert scenario.record("rest_api_envelope").value == 42
    assert scenario.record("rest_api_event").task == "tests.apps.events.scheduled"
    http = scenario.record("http_api_envelope")  # a foreign envelope with a field of its own
    assert http.value == 3
