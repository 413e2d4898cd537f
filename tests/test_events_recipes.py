"""The recipes of docs/guides/enqueue-from-aws.md, run against the local endpoint's own
EventBridge, SNS and S3 (moto's server delivers to the SQS queue as the services
do) and one real ``sqsq worker --burst``. The strings the recipes configure
(input template, universal target input, patterns) are the constants below, and a
test checks the document shows them verbatim, so doc and test cannot drift apart.

The bodies AWS itself sends are checked against AWS's published samples in
tests/test_events.py; here the point is the wiring each recipe configures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sqsq.resources
from sqsq import State
from sqsq.events import routes_of
from tests.apps import events as events_app
from tests.apps.events import app
from tests.helpers import burst_worker

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "guides" / "enqueue-from-aws.md"
ADD = "tests.apps.events.add"

#: The AWS CLI recipe's message body.
CLI_BODY = '{"task": "tests.apps.events.add", "args": [1, 1], "kwargs": {}}'
#: The input transformer recipe: an event's detail fields into a minimal envelope.
INPUT_PATHS_MAP = {"a": "$.detail.a", "b": "$.detail.b"}
INPUT_TEMPLATE = '{"task": "tests.apps.events.add", "args": [<a>, <b>], "kwargs": {}}'
#: The Scheduler universal target recipe's Input (the SendMessage request).
SCHEDULER_INPUT = {
    "QueueUrl": "<queue url>",
    "MessageBody": '{"task": "tests.apps.events.add", "args": [7, 7], "kwargs": {}}',
}


@dataclass
class Recipes:
    ids: dict[str, str] = field(default_factory=dict)  # recipe -> task id to read
    runs: list[str] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    returncode: int = 0


def _receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    ).get("Messages", []):
        messages += batch
    return messages


@pytest.fixture(scope="module")
def recipes(sqsq_endpoint: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recipes]:
    sqsq_endpoint.reset()
    sqsq.resources.apply(app)
    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name("default"))
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    found = Recipes()

    # the AWS CLI (or, without it on PATH, the same SendMessage through boto3)
    if shutil.which("aws"):
        sent = subprocess.run(
            [
                "aws",
                "sqs",
                "send-message",
                "--endpoint-url",
                sqs.meta.endpoint_url,
                "--queue-url",
                url,
                "--message-body",
                CLI_BODY,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        found.ids["cli"] = json.loads(sent.stdout)["MessageId"]
    else:
        found.ids["cli"] = sqs.send_message(QueueUrl=url, MessageBody=CLI_BODY)["MessageId"]

    # EventBridge Scheduler's universal target: SendMessage with the schedule's Input
    request = dict(SCHEDULER_INPUT, QueueUrl=url)
    found.ids["scheduler"] = sqs.send_message(**request)["MessageId"]

    # EventBridge rules: the route's own pattern, and an input transformer
    events = app.clients.sync("events")
    route = next(r for r in routes_of(app) if r.task.endswith(".order_placed"))
    events.put_rule(Name="sqsq-orders-placed", EventPattern=route.event_pattern())
    events.put_targets(Rule="sqsq-orders-placed", Targets=[{"Id": "queue", "Arn": arn}])
    events.put_rule(Name="sqsq-billing-add", EventPattern=json.dumps({"source": ["billing"]}))
    events.put_targets(
        Rule="sqsq-billing-add",
        Targets=[
            {
                "Id": "queue",
                "Arn": arn,
                "InputTransformer": {
                    "InputPathsMap": INPUT_PATHS_MAP,
                    "InputTemplate": INPUT_TEMPLATE,
                },
            }
        ],
    )
    put = events.put_events(
        Entries=[
            {"Source": "orders", "DetailType": "Order Placed", "Detail": '{"order": "o-1"}'},
            {"Source": "billing", "DetailType": "Add", "Detail": '{"a": 40, "b": 2}'},
        ]
    )
    found.ids["eventbridge"] = put["Entries"][0]["EventId"]

    # SNS: one topic subscribed with raw message delivery, one without (wrapped)
    sns = app.clients.sync("sns")
    for raw in (True, False):
        topic = sns.create_topic(Name=f"sqsq-recipe-{'raw' if raw else 'wrapped'}")["TopicArn"]
        attributes = {"RawMessageDelivery": "true"} if raw else {}
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attributes)
        task_id = f"sns-{'raw' if raw else 'wrapped'}"
        sns.publish(
            TopicArn=topic, Message=json.dumps({"id": task_id, "task": ADD, "args": [3, 4]})
        )
        found.ids[task_id] = task_id

    # S3 event notifications (S3 sends s3:TestEvent when the configuration is saved)
    s3 = app.clients.sync("s3")
    s3.create_bucket(Bucket="recipes")
    s3.put_bucket_notification_configuration(
        Bucket="recipes",
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".csv"}]}},
                }
            ]
        },
    )
    s3.put_object(Bucket="recipes", Key="recipe.csv", Body=b"a,b\n1,2\n")

    tmp = tmp_path_factory.mktemp("recipes")
    log = tmp / "runs.log"
    done = burst_worker("tests.apps.events:app", tmp, env={events_app.LOG_VARIABLE: str(log)})
    found.stderr, found.returncode = done.stderr, done.returncode
    found.runs = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    found.dead = _receive(sqs, app.directory.url(app.queue_name("default") + "-dlq"))
    yield found


def value(task_id: str) -> Any:
    record = app.results.get_result(task_id)
    assert record is not None and record.state is State.SUCCESS, record
    return record.value


def test_every_recipe_ran_and_nothing_was_dead_lettered(recipes: Recipes) -> None:
    assert recipes.returncode == 0, recipes.stderr
    assert recipes.dead == [], [m["MessageAttributes"] for m in recipes.dead]
    assert "s3:TestEvent for bucket recipes acknowledged and dropped" in recipes.stderr


def test_aws_cli_and_scheduler_universal_target(recipes: Recipes) -> None:
    assert value(recipes.ids["cli"]) == 2
    assert value(recipes.ids["scheduler"]) == 14


def test_eventbridge_rule_with_the_routes_pattern_and_with_an_input_transformer(
    recipes: Recipes,
) -> None:
    assert f"order {recipes.ids['eventbridge']}" in recipes.runs
    assert "add 40 2" in recipes.runs


def test_sns_with_and_without_raw_message_delivery(recipes: Recipes) -> None:
    assert value("sns-raw") == 7
    assert value("sns-wrapped") == 7


def test_s3_notification_to_the_queue(recipes: Recipes) -> None:
    assert "s3 recipes/recipe.csv" in recipes.runs


def test_the_document_shows_what_the_tests_configure() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert CLI_BODY in text
    assert INPUT_TEMPLATE in text
    assert json.dumps(INPUT_PATHS_MAP) in text
    assert json.dumps(SCHEDULER_INPUT["MessageBody"]) in text
