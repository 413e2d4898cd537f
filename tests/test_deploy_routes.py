"""``sqsq infra`` emits the app's foreign-event routes (issue 11): EventBridge rules,
SNS subscriptions, one queue policy per routed queue, and each S3 bucket's
notification configuration as an output. Rendered from tests/apps/events.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq.deploy import TARGETS, Options, dump, render
from sqsq.errors import ConfigurationError

EVENTS = "tests.apps.events:app"
ROOT = Path(__file__).resolve().parents[1]
QUEUE_ARN = {"Fn::GetAtt": ["DefaultQueue", "Arn"]}
TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"


def _doc(target: str = "ecs") -> dict[str, Any]:
    options = Options(EVENTS, handler="tests.apps.events.app.lambda_handler")
    return render(sqsq.load_app(EVENTS), target, options)  # type: ignore[arg-type]


def _send(service: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Service": f"{service}.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": QUEUE_ARN,
        "Condition": condition,
    }


def test_event_routes_become_rules_targeting_the_queue() -> None:
    resources = _doc()["Resources"]
    rules = {k: v for k, v in resources.items() if v["Type"] == "AWS::Events::Rule"}
    assert set(rules) == {
        "TestsAppsEventsEc2TerminatedRule",
        "TestsAppsEventsScheduledRule",
        "TestsAppsEventsOrderPlacedRule",
    }
    assert rules["TestsAppsEventsEc2TerminatedRule"]["Properties"] == {
        "Description": "sqsq route to task tests.apps.events.ec2_terminated",
        "EventPattern": {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": ["terminated"]},
        },
        "State": "ENABLED",
        "Targets": [{"Id": "sqsq", "Arn": QUEUE_ARN}],
    }


def test_sns_route_becomes_a_subscription_without_raw_delivery() -> None:
    resources = _doc()["Resources"]
    subs = {k: v for k, v in resources.items() if v["Type"] == "AWS::SNS::Subscription"}
    assert subs == {
        "TestsAppsEventsNotifiedSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "Protocol": "sqs",
                "TopicArn": TOPIC,
                "Endpoint": QUEUE_ARN,
                "RawMessageDelivery": False,
            },
        }
    }


def test_one_queue_policy_allows_each_routed_source_only() -> None:
    resources = _doc()["Resources"]
    policies = {k: v for k, v in resources.items() if v["Type"] == "AWS::SQS::QueuePolicy"}
    assert list(policies) == ["DefaultQueueRoutePolicy"]
    properties = policies["DefaultQueueRoutePolicy"]["Properties"]
    assert properties["Queues"] == [{"Ref": "DefaultQueue"}]
    rule = [
        _send("events", {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [f"{name}Rule", "Arn"]}}})
        for name in (
            "TestsAppsEventsEc2Terminated",
            "TestsAppsEventsScheduled",
            "TestsAppsEventsOrderPlaced",
        )
    ]
    s3 = [
        _send(
            "s3",
            {
                "ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"},
                "StringEquals": {"aws:SourceAccount": {"Fn::Sub": "${AWS::AccountId}"}},
            },
        )
        for bucket in ("uploads", "mybucket", "recipes")
    ]
    sns = [_send("sns", {"ArnEquals": {"aws:SourceArn": TOPIC}})]
    assert properties["PolicyDocument"] == {
        "Version": "2012-10-17",
        "Statement": rule + s3 + sns,
    }


def test_s3_routes_become_notification_outputs_not_buckets() -> None:
    doc = _doc()
    assert not [v for v in doc["Resources"].values() if v["Type"] == "AWS::S3::Bucket"]
    output = doc["Outputs"]["UploadsNotification"]["Value"]["Fn::Sub"]
    assert json.loads(output) == {
        "QueueConfigurations": [
            {
                "Id": "sqsq-tests.apps.events.uploaded",
                "QueueArn": "${DefaultQueue.Arn}",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {
                    "Key": {
                        "FilterRules": [
                            {"Name": "prefix", "Value": "in/"},
                            {"Name": "suffix", "Value": ".csv"},
                        ]
                    }
                },
            }
        ]
    }
    mybucket = json.loads(doc["Outputs"]["MybucketNotification"]["Value"]["Fn::Sub"])
    assert mybucket["QueueConfigurations"][0]["Events"] == ["s3:ObjectCreated:Put"]
    assert "Filter" not in mybucket["QueueConfigurations"][0]
    assert "RecipesNotification" in doc["Outputs"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_emits_the_routes(target: str) -> None:
    resources = _doc(target)["Resources"]
    assert "TestsAppsEventsNotifiedSubscription" in resources
    assert "DefaultQueueRoutePolicy" in resources


def test_an_sns_route_without_a_topic_is_a_configuration_error() -> None:
    app = sqsq.App("lost")
    app.on_sns(subject="hello")(lambda n: n)
    with pytest.raises(ConfigurationError, match="topic ARN"):
        render(app, "ecs", Options("lost:app"))


def test_cfn_lint_passes_the_routed_documents(tmp_path: Path) -> None:
    pytest.importorskip("cfnlint", reason="pip install -e '.[test]'")
    files = []
    for target in TARGETS:
        out = tmp_path / f"events-{target}.yaml"
        out.write_text(dump(_doc(target)))
        files.append(str(out))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            "--include-checks",
            "I",
            "--non-zero-exit-code",
            "informational",
            "--",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
