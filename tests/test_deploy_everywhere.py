"""What ``sqsq infra`` generates is deployed, for every target, with every resource
type on an endpoint whose CloudFormation can create it (tests/deployed.py):

- the moto pass: moto's CloudFormation, the Lambda target's SAM document translated
  first with aws-sam-translator (moto runs no transforms);
- the conformance pass: LocalStack community's CloudFormation (host mode), which runs
  the SAM transform itself; the result table is created on the tests' DynamoDB
  endpoint (dynalite) and the stack refers to it, LocalStack's DynamoDB needing a
  download of DynamoDB Local.

Each stack must reach CREATE_COMPLETE with exactly the resources sent (both endpoints
skip some unknown types silently: LocalStack with CFN_IGNORE_UNSUPPORTED_RESOURCE_TYPES,
on by default, moto with a warning), and the key physical resources are read back.

Where each generated type is created:

==============================================  ======  ==========  =============
type                                            moto    LocalStack  note
==============================================  ======  ==========  =============
AWS::SQS::Queue (redrive policy)                yes     yes
AWS::DynamoDB::Table                            yes     stand-in    (1)
AWS::IAM::Role, AWS::IAM::InstanceProfile       yes     yes
AWS::Logs::LogGroup                             yes     yes
AWS::Events::Rule                               yes     yes
AWS::CloudWatch::Alarm (metric math too)        no      yes
AWS::CloudWatch::Dashboard                      yes     no          (5)
AWS::Scheduler::ScheduleGroup, ::Schedule       no      yes
AWS::SQS::QueuePolicy                           no      yes
AWS::SNS::Subscription                          no      yes
AWS::Serverless::Function (SAM)                 yes     no          (2)
  → AWS::Lambda::Function, ::EventSourceMapping
AWS::ECS::TaskDefinition, AWS::ECS::Service     yes     no          (3)
AWS::EC2::LaunchTemplate                        yes     no          (3)
AWS::AutoScaling::AutoScalingGroup              yes     no          (3)
AWS::AutoScaling::ScalingPolicy                 no      no          (4)
AWS::ApplicationAutoScaling::ScalableTarget     no      no          (4)
AWS::ApplicationAutoScaling::ScalingPolicy      no      no          (4)
AWS::Pipes::Pipe                                no      no          (4)
==============================================  ======  ==========  =============

(1) LocalStack's DynamoDB runs DynamoDB Local, which it downloads (no such download
    here; the conformance pass serves DynamoDB from dynalite).
(2) LocalStack provisions a function by pulling its runtime's Docker image and
    downloading lambda-runtime-init from GitHub: no Docker in host mode.
(3) LocalStack Pro's (no provider in the community edition).
(4) **Created by neither**: moto's CloudFormation has no model for these types (it
    skips AWS::AutoScaling::ScalingPolicy with a warning) and LocalStack's providers
    for them (ECS/Application Auto Scaling, Auto Scaling, EventBridge Pipes) are Pro
    only. They are cfn-linted (tests/test_deploy_lint.py, test_deploy_routes.py) and
    their property shapes asserted (tests/test_deploy.py) — not deployed.
(5) LocalStack community has no CloudWatch dashboards (no provider); moto creates
    it and its body is read back (tests/test_deploy_alarms.py).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

import sqsq
from sqsq.deploy import TARGETS, Options, Target, render
from tests.deployed import (
    LOCALSTACK_CFN_UNSUPPORTED,
    STAND_INS,
    cloudformation_kind,
    deploy_stack,
    stack_document,
    stack_resources,
)
from tests.helpers import MOTO_CFN_UNSUPPORTED

QUICKSTART = "examples.quickstart.app:app"
EVENTS = "tests.apps.events:app"
EVENTS_HANDLER = "tests.apps.events.app.lambda_handler"
#: tests/apps/events.py's topic is in us-west-2: LocalStack subscribes a queue only to
#: a topic of the stack's region.
EVENTS_REGION = "us-west-2"

#: The generated types neither endpoint's CloudFormation can create (docstring, (4)).
NEITHER = frozenset(
    {
        "AWS::AutoScaling::ScalingPolicy",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::Pipes::Pipe",
    }
)

pytestmark = pytest.mark.slow


def _client(endpoint: Any, service: str, region: str = "us-east-1") -> Any:
    dynamodb_apart = service == "dynamodb" and hasattr(endpoint, "url_for")  # dynalite
    url = endpoint.url_for(service) if dynamodb_apart else endpoint.url
    return boto3.client(service, endpoint_url=url, region_name=region)


def _expected_types(kind: str, target: Target, app_path: str, handler: str | None) -> set[str]:
    """The types of the resources the stack must hold on a ``kind`` endpoint."""
    types = {
        r["Type"] for r in stack_document(kind, target, app_path, handler)["Resources"].values()
    }
    if "AWS::Serverless::Function" in types:  # the SAM transform's output
        types = types - {"AWS::Serverless::Function"} | {
            "AWS::Lambda::Function",
            "AWS::Lambda::EventSourceMapping",
        }
    return types - STAND_INS if kind == "localstack" else types


def _deploy(
    endpoint: Any,
    target: Target,
    app_path: str,
    handler: str | None = None,
    region: str = "us-east-1",
) -> tuple[str, dict[str, str], dict[str, tuple[str, str]]]:
    kind = cloudformation_kind(endpoint)
    outputs = deploy_stack(endpoint, target, app_path, handler=handler, region=region)
    resources = stack_resources(endpoint, outputs["StackName"], region)
    assert kind is not None
    assert {t for t, _ in resources.values()} == _expected_types(kind, target, app_path, handler)
    assert all(physical for _, physical in resources.values()), resources
    return kind, outputs, resources


def _of_type(resources: dict[str, tuple[str, str]], kind: str) -> dict[str, str]:
    return {k: physical for k, (t, physical) in resources.items() if t == kind}


@pytest.mark.parametrize("target", TARGETS)
def test_every_type_is_created_by_moto_or_localstack_but_the_documented_few(
    target: Target,
) -> None:
    for app_path, handler in ((QUICKSTART, None), (EVENTS, EVENTS_HANDLER)):
        doc = render(sqsq.load_app(app_path), target, Options(app_path, handler=handler))
        types = {r["Type"] for r in doc["Resources"].values()}
        assert types & MOTO_CFN_UNSUPPORTED & LOCALSTACK_CFN_UNSUPPORTED == types & NEITHER


@pytest.mark.parametrize("target", TARGETS)
def test_the_quickstart_stack_is_created(local_aws: Any, target: Target) -> None:
    kind, outputs, resources = _deploy(local_aws, target, QUICKSTART)

    # queues, each with its dead-letter queue
    sqs = _client(local_aws, "sqs")
    for queue in ("default", "emails"):
        url = outputs[f"{queue.title()}QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        dlq = sqs.get_queue_attributes(
            QueueUrl=outputs[f"{queue.title()}DeadLetterQueueUrl"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq and int(redrive["maxReceiveCount"]) >= 1

    # the result table (on LocalStack: the stand-in on the tests' DynamoDB endpoint)
    table = _client(local_aws, "dynamodb").describe_table(TableName=outputs["ResultTableName"])
    assert table["Table"]["KeySchema"]

    if kind == "localstack":
        # per queue an age and a failure-rate alarm, and one per dead-letter queue
        # (their properties: tests/test_deploy_alarms.py)
        alarms = _of_type(resources, "AWS::CloudWatch::Alarm")
        assert len(alarms) == 6
        described = _client(local_aws, "cloudwatch").describe_alarms(
            AlarmNames=list(alarms.values())
        )
        dimensions = {
            a["Dimensions"][0]["Value"]
            for a in described["MetricAlarms"]
            if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        }
        assert dimensions == {"quickstart-default-dlq", "quickstart-emails-dlq"}
        # the schedule, in its group, sending to the default queue
        scheduler = _client(local_aws, "scheduler")
        schedule = scheduler.get_schedule(GroupName="quickstart-sqsq", Name="daily-sales-report")
        assert schedule["ScheduleExpression"] == "cron(0 6 * * ? *)"
        assert schedule["Target"]["Arn"].endswith(":quickstart-default")
        assert schedule["Target"]["DeadLetterConfig"]["Arn"].endswith(":quickstart-default-dlq")

    if kind == "moto" and target == "lambda":
        lam = _client(local_aws, "lambda")
        function = lam.get_function(FunctionName=outputs["FunctionName"])["Configuration"]
        assert function["Handler"] == "examples.quickstart.app.lambda_handler"
        environment = function["Environment"]["Variables"]
        assert environment["SQSQ_TABLE_NAME"] == outputs["ResultTableName"]
        mappings = lam.list_event_source_mappings(FunctionName=outputs["FunctionName"])[
            "EventSourceMappings"
        ]
        assert sorted(m["EventSourceArn"].rsplit(":", 1)[1] for m in mappings) == [
            "quickstart-default",
            "quickstart-emails",
        ]
        assert all(m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)

    if kind == "moto" and target == "ecs":
        ecs = _client(local_aws, "ecs")
        (service,) = ecs.describe_services(
            cluster="sqsq-workers", services=[outputs["ServiceName"]]
        )["services"]
        definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
        (container,) = definition["taskDefinition"]["containerDefinitions"]
        assert container["command"][:2] == ["worker", QUICKSTART]

    if kind == "moto" and target == "ec2":
        (group,) = _client(local_aws, "autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[outputs["AutoScalingGroupName"]]
        )["AutoScalingGroups"]
        assert (
            group["LaunchTemplate"]["LaunchTemplateId"]
            == _of_type(resources, "AWS::EC2::LaunchTemplate")["LaunchTemplate"]
        )


@pytest.mark.parametrize("target", TARGETS)
def test_the_routed_events_stack_is_created(local_aws: Any, target: Target) -> None:
    kind, outputs, resources = _deploy(local_aws, target, EVENTS, EVENTS_HANDLER, EVENTS_REGION)

    events = _client(local_aws, "events", EVENTS_REGION)
    rules = _of_type(resources, "AWS::Events::Rule")
    assert len(rules) == 3
    queue_arn = _client(local_aws, "sqs", EVENTS_REGION).get_queue_attributes(
        QueueUrl=outputs["DefaultQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    for name in rules.values():
        pattern = json.loads(events.describe_rule(Name=name)["EventPattern"])
        assert pattern["source"]
        (rule_target,) = events.list_targets_by_rule(Rule=name)["Targets"]
        assert rule_target["Arn"] == queue_arn

    if kind == "localstack":
        # the queue policy lets the three rules, three buckets and the topic send
        sqs = _client(local_aws, "sqs", EVENTS_REGION)
        policy = json.loads(
            sqs.get_queue_attributes(
                QueueUrl=outputs["DefaultQueueUrl"], AttributeNames=["Policy"]
            )["Attributes"]["Policy"]
        )
        principals = [s["Principal"]["Service"] for s in policy["Statement"]]
        assert sorted(principals) == sorted(
            ["events.amazonaws.com"] * 3 + ["s3.amazonaws.com"] * 3 + ["sns.amazonaws.com"]
        )
        # the subscription of the queue to the topic, not raw
        (subscription,) = _of_type(resources, "AWS::SNS::Subscription").values()
        # kept in the topic's account (LocalStack: a 12-digit access key id is the account)
        sns = boto3.client(
            "sns",
            endpoint_url=local_aws.url,
            region_name=EVENTS_REGION,
            aws_access_key_id=subscription.split(":")[4],
            aws_secret_access_key="test",
        )
        attributes = sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
        assert attributes["Endpoint"] == queue_arn
        assert attributes["Protocol"] == "sqs"
        assert attributes.get("RawMessageDelivery", "false") == "false"

    if kind == "moto" and target == "lambda":
        mappings = _client(local_aws, "lambda", EVENTS_REGION).list_event_source_mappings(
            FunctionName=outputs["FunctionName"]
        )["EventSourceMappings"]
        assert [m["EventSourceArn"] for m in mappings] == [queue_arn]
