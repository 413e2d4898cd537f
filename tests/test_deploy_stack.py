"""Deployed, not only linted: the generated ECS document becomes a CloudFormation
stack on the local endpoint, and a real ``sqsq worker`` — started with the command
and environment of the task definition the stack made — runs tasks against the
stack's queues and table, with no ``sqsq resources create``.

moto's CloudFormation has no AWS::CloudWatch::Alarm, AWS::ApplicationAutoScaling::*
or AWS::Scheduler::* resources: the generator leaves those out (``--omit``). It
also ignores the table's TimeToLiveSpecification and PointInTimeRecoverySpecification
and the queues' RedriveAllowPolicy, which are not asserted here.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

import sqsq
from sqsq.deploy import Options, dump, render
from sqsq.result import State
from tests.helpers import MOTO_CFN_UNSUPPORTED

APP = "examples.quickstart.app:app"


def _client(name: str, endpoint: Any) -> Any:
    return boto3.client(name, endpoint_url=endpoint.url, region_name="us-east-1")


def _wait(predicate: Callable[[], bool], what: str, process: Any, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process.poll() is not None:
            pytest.fail(
                f"the worker exited ({process.returncode}) before {what}: {process.stderr.read()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s} s")
        time.sleep(0.2)


@pytest.fixture
def stack(local_aws: Any) -> dict[str, Any]:
    from sqsq.testing import ExternalEndpoint

    if isinstance(local_aws, ExternalEndpoint):  # the conformance pass: SQS and DynamoDB only
        pytest.skip("stacks are created on the embedded moto endpoint (CloudFormation, ECS, EC2)")
    """The ECS document of the example app, created as a stack; its outputs."""
    ec2 = _client("ec2", local_aws)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="workers", Description="w", VpcId=vpc)["GroupId"]
    _client("ecs", local_aws).create_cluster(clusterName="shop")
    app = sqsq.load_app(APP)
    body = dump(render(app, "ecs", Options(APP, omit=MOTO_CFN_UNSUPPORTED)))
    cloudformation = _client("cloudformation", local_aws)
    parameters = {
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop:1.0",
        "ClusterName": "shop",
        "Subnets": subnet,
        "SecurityGroups": group,
    }
    cloudformation.create_stack(
        StackName="quickstart-workers",
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    (described,) = cloudformation.describe_stacks(StackName="quickstart-workers")["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}


def test_a_worker_runs_tasks_on_what_the_stack_made(
    stack: dict[str, Any], local_aws: Any, worker: Any
) -> None:
    from examples.quickstart.app import Order, charge, refund

    # The worker's command and environment are those of the deployed task definition.
    ecs = _client("ecs", local_aws)
    (arn,) = ecs.list_task_definitions()["taskDefinitionArns"]
    (container,) = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"][
        "containerDefinitions"
    ]
    assert container["entryPoint"] == ["sqsq"] and container["command"][:2] == ["worker", APP]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["SQSQ_TABLE_NAME"] == stack["ResultTableName"]
    process = worker.start(*container["command"][1:], **env)

    ok = charge.delay(Order(order_id="o-1", cents=250))
    failed = refund.delay("o-2")
    _wait(lambda: ok.ready() and failed.ready(), "both results", process)
    assert ok.result == {"order_id": "o-1", "charged": 250, "currency": "EUR"}
    record = failed.record
    assert record is not None and record.state is State.FAILURE
    assert record.exc_type == "RuntimeError"

    # The failure reaches the stack's dead-letter queue, with its reason.
    sqs = _client("sqs", local_aws)
    dlq_url = sqs.get_queue_url(QueueName="quickstart-default-dlq")["QueueUrl"]
    copies: list[dict[str, Any]] = []

    def copied() -> bool:
        copies.extend(
            sqs.receive_message(
                QueueUrl=dlq_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
            ).get("Messages", [])
        )
        return bool(copies)

    _wait(copied, "a copy in quickstart-default-dlq", process)
    (copy,) = copies
    attributes = copy["MessageAttributes"]
    details = json.loads(attributes["sqsq-dead-letter"]["StringValue"])
    assert attributes["sqsq-dead-letter-reason"]["StringValue"] == details["reason"]
    assert details["task_id"] == failed.id
    assert details["error_type"] == "RuntimeError"
    assert "payments team" in details["message"]

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr


def test_resources_create_finds_nothing_to_change_in_the_stack_queues(
    stack: dict[str, Any],
) -> None:
    """The two tools cannot disagree: after the stack, `resources create` plans no queue
    change (the table's TTL and PITR rows are left out: moto's CloudFormation ignores
    those two properties)."""
    from sqsq.resources import plan

    rows = [
        r for r in plan(sqsq.load_app(APP)) if r.kind in ("queue", "dead-letter queue", "table")
    ]
    assert len(rows) == 5
    assert [(r.name, r.action, r.detail) for r in rows if r.action != "ok"] == []
