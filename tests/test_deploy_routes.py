"""``sqsq infra`` emits the app's foreign-event routes (issue 11): EventBridge rules,
SNS subscriptions, EventBridge pipes from DynamoDB streams, one queue policy per
routed queue, and each S3 bucket's notification configuration as an output.
Rendered from tests/apps/events.py, cfn-linted, and deployed as a stack on moto
whose rules deliver to a real worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
from sqsq.deploy import TARGETS, Options, dump, render
from sqsq.errors import ConfigurationError
from tests.apps import events as events_app
from tests.helpers import MOTO_CFN_UNSUPPORTED, burst_worker, cfn_lint

EVENTS = "tests.apps.events:app"
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


def test_sns_route_becomes_a_subscription_in_the_topic_region_without_raw_delivery() -> None:
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
                "Region": "us-west-2",  # the topic's, not the stack's
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
                "ArnEquals": {
                    "aws:SourceArn": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"}
                },
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
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


def test_s3_filter_rules_carry_the_prefix_url_encoded_as_s3_wants() -> None:
    """Routes match the decoded key; S3's filter rule values take special characters
    URL-encoded (its notifications' keys are): a space is ``+``, ``/`` stays."""
    from sqsq.deploy.resources import declared
    from sqsq.deploy.routes import notification_configuration
    from sqsq.events import routes_of

    app = sqsq.App("s3enc")

    @app.on_s3(bucket="b", prefix="my reports/été/", suffix="+1.csv")
    def got(record: dict[str, object]) -> None:
        del record

    (route,) = [r for r in routes_of(app) if r.task.endswith("got")]
    (configuration,) = notification_configuration([route], declared(app))["QueueConfigurations"]
    assert configuration["Filter"]["Key"]["FilterRules"] == [
        {"Name": "prefix", "Value": "my+reports/%C3%A9t%C3%A9/"},
        {"Name": "suffix", "Value": "%2B1.csv"},
    ]


def test_a_stream_route_becomes_a_pipe_from_a_stream_parameter_to_the_queue() -> None:
    doc = _doc()
    assert doc["Parameters"]["EventSourceTableStreamArn"]["Type"] == "String"
    stream = {"Ref": "EventSourceTableStreamArn"}
    pipe = doc["Resources"]["TestsAppsEventsInsertedPipe"]
    assert pipe == {
        "Type": "AWS::Pipes::Pipe",
        "Properties": {
            "Description": "sqsq route to task tests.apps.events.inserted",
            "RoleArn": {"Fn::GetAtt": ["TestsAppsEventsInsertedPipeRole", "Arn"]},
            "Source": stream,
            "SourceParameters": {
                "DynamoDBStreamParameters": {"StartingPosition": "LATEST", "BatchSize": 10},
                # the route's pattern less what the source already is
                "FilterCriteria": {"Filters": [{"Pattern": '{"eventName": ["INSERT"]}'}]},
            },
            "Target": QUEUE_ARN,
        },
    }
    role = doc["Resources"]["TestsAppsEventsInsertedPipeRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "pipes.amazonaws.com"
    }
    (policy,) = role["Policies"]
    read, send = policy["PolicyDocument"]["Statement"]
    assert read["Resource"] == stream and "dynamodb:GetRecords" in read["Action"]
    assert send == {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE_ARN}


def test_a_stream_arn_is_the_pipe_source_and_a_fifo_queue_deduplicates_by_event_id() -> None:
    stream = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
    app = sqsq.App("piped")

    @app.on_dynamodb_stream(stream_arn=stream, queue="changes.fifo")
    def changed(record: dict[str, Any]) -> None: ...

    doc = render(app, "ecs", Options("piped:app"))
    assert not [p for p in doc["Parameters"] if p.endswith("StreamArn")]
    (pipe,) = [v for v in doc["Resources"].values() if v["Type"] == "AWS::Pipes::Pipe"]
    assert pipe["Properties"]["Source"] == stream
    assert "FilterCriteria" not in pipe["Properties"]["SourceParameters"]
    sqs = pipe["Properties"]["TargetParameters"]["SqsQueueParameters"]
    assert sqs["MessageDeduplicationId"] == "$.eventID"


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_emits_the_routes(target: str) -> None:
    doc = _doc(target)
    resources = doc["Resources"]
    assert "TestsAppsEventsNotifiedSubscription" in resources
    assert "DefaultQueueRoutePolicy" in resources
    assert "TestsAppsEventsInsertedPipe" in resources
    assert "EventSourceTableStreamArn" in doc["Parameters"]


def test_buckets_whose_output_ids_clash_are_a_configuration_error() -> None:
    app = sqsq.App("clash")

    @app.on_s3(bucket="my-bucket")
    def one(record: dict[str, Any]) -> None: ...

    @app.on_s3(bucket="my.bucket")
    def other(record: dict[str, Any]) -> None: ...

    with pytest.raises(ConfigurationError, match=r"my-bucket and my\.bucket"):
        render(app, "ecs", Options("clash:app"))


def test_an_sns_route_without_a_topic_is_a_configuration_error() -> None:
    app = sqsq.App("lost")
    app.on_sns(subject="hello")(lambda n: n)
    with pytest.raises(ConfigurationError, match="topic ARN"):
        render(app, "ecs", Options("lost:app"))


def test_cfn_lint_passes_the_routed_documents(tmp_path: Path) -> None:
    files = []
    for target in TARGETS:
        out = tmp_path / f"events-{target}.yaml"
        out.write_text(dump(_doc(target)))
        files.append(out)
    result = cfn_lint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deployed_rules_deliver_matching_events_to_a_worker(local_aws: Any, tmp_path: Path) -> None:
    """The stack's rules, not ones the test puts: EventBridge delivers what their
    patterns match to the stack's queue, and a worker runs the routed task."""
    from sqsq.testing import ExternalEndpoint

    if isinstance(local_aws, ExternalEndpoint):
        pytest.skip("stacks are created on the embedded moto endpoint (CloudFormation)")

    def client(name: str) -> Any:
        return boto3.client(name, endpoint_url=local_aws.url, region_name="us-east-1")

    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    client("ecs").create_cluster(clusterName="events")
    doc = render(sqsq.load_app(EVENTS), "ecs", Options(EVENTS, omit=MOTO_CFN_UNSUPPORTED))
    parameters = {
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/events:1.0",
        "ClusterName": "events",
        "Subnets": subnet,
        "SecurityGroups": "sg-12345678",
        "EventSourceTableStreamArn": (
            "arn:aws:dynamodb:us-east-1:123456789012:table/EventSourceTable/stream/2026-01-01T00:00"
        ),
    }
    cloudformation = client("cloudformation")
    cloudformation.create_stack(
        StackName="events-workers",
        TemplateBody=dump(doc),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    (stack,) = cloudformation.describe_stacks(StackName="events-workers")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")

    put = client("events").put_events(
        Entries=[
            {"Source": "orders", "DetailType": "Order Placed", "Detail": '{"order": "o-9"}'},
            # the ec2 route's rule wants state "terminated": EventBridge drops this one
            {
                "Source": "aws.ec2",
                "DetailType": "EC2 Instance State-change Notification",
                "Detail": '{"instance-id": "i-1", "state": "running"}',
            },
        ]
    )
    assert put["FailedEntryCount"] == 0
    log = tmp_path / "runs.log"
    done = burst_worker(EVENTS, tmp_path, env={events_app.LOG_VARIABLE: str(log)})
    assert done.returncode == 0, done.stderr
    assert log.read_text(encoding="utf-8").splitlines() == [f"order {put['Entries'][0]['EventId']}"]
    sqs = client("sqs")
    dlq = sqs.get_queue_url(QueueName="events-default-dlq")["QueueUrl"]
    assert sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages", []) == []
