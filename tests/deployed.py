"""What ``sqsq infra`` generates, created as a CloudFormation stack on a test endpoint.

:func:`deploy_stack` renders an app's document for a target and creates it on the
endpoint of the ``local_aws`` fixture, with every resource type that endpoint's
CloudFormation can create:

- **moto** (the embedded endpoint, :class:`~sqsq.local.LocalEndpoint`): its
  CloudFormation has no transforms, so the Lambda target's SAM document is
  translated here with ``aws-sam-translator`` (what ``sam deploy`` does before
  CreateStack); the types of :data:`MOTO_CFN_UNSUPPORTED` are left out.
- **LocalStack** (an :class:`~sqsq.testing.ExternalEndpoint` whose SQS endpoint is
  LocalStack with its CloudFormation): the SAM document is sent as is (LocalStack
  runs the ``AWS::Serverless-2016-10-31`` transform itself); the types of
  :data:`LOCALSTACK_CFN_UNSUPPORTED` (LocalStack Pro's) are left out. Its DynamoDB
  needs DynamoDB Local (a download) and the conformance pass serves DynamoDB from
  dynalite: the table is created on the tests' DynamoDB endpoint from the
  template's own properties and the stack refers to it (:data:`STAND_INS`).

What is left out takes with it what refers to it (:func:`sqsq.deploy.prune`).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3

import sqsq
from sqsq.deploy import Options, Target, dump, render
from tests.helpers import MOTO_CFN_UNSUPPORTED, ROOT

#: CloudFormation types LocalStack community's CloudFormation cannot create here:
#: no provider (LocalStack Pro's: CloudWatch dashboards, ECS, Application Auto
#: Scaling, EC2 launch templates, Auto Scaling, Pipes), or, for the function, no Docker (its provider provisions a
#: function by pulling the runtime's image and downloading lambda-runtime-init).
#: Left out of stacks created there.
LOCALSTACK_CFN_UNSUPPORTED = frozenset(
    {
        "AWS::Serverless::Function",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::ECS::TaskDefinition",
        "AWS::ECS::Service",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::EC2::LaunchTemplate",
        "AWS::AutoScaling::AutoScalingGroup",
        "AWS::AutoScaling::ScalingPolicy",
        "AWS::Pipes::Pipe",
        "AWS::CloudWatch::Dashboard",
    }
)

#: Types the stack refers to that an endpoint's CloudFormation cannot create but the
#: tests' endpoint serves through its API: created from the template's properties
#: before CreateStack, their Ref/GetAtt replaced by the physical values.
STAND_INS = frozenset({"AWS::DynamoDB::Table"})

#: The stacks :func:`deploy_stack` names (and deletes before the next, on LocalStack).
STACK_PREFIX = "sqsq-deployed-"
#: The bucket the Lambda target's code is uploaded to (SAM CodeUri).
CODE_BUCKET = "sqsq-test-deployments"
REGION = "us-east-1"


def cloudformation_kind(endpoint: Any) -> str | None:
    """``"moto"``, ``"localstack"``, or None when ``endpoint`` (a ``local_aws``
    value) has no CloudFormation the tests can create stacks on (dynalite, AWS)."""
    from sqsq.local import LocalEndpoint

    if isinstance(endpoint, LocalEndpoint):
        return "moto"
    url = endpoint.url_for("sqs")
    if not url:
        return None
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=5) as response:
            services = json.load(response).get("services", {})
    except (OSError, ValueError):
        return None
    return "localstack" if services.get("cloudformation") in ("available", "running") else None


def _client(endpoint: Any, service: str, region: str = REGION) -> Any:
    """A client of ``service`` on ``endpoint`` (DynamoDB may be served apart, e.g. by
    dynalite; every other service used here is the emulator's)."""
    from sqsq.local import LocalEndpoint

    url = endpoint.url
    if service == "dynamodb" and not isinstance(endpoint, LocalEndpoint):
        url = endpoint.url_for("dynamodb")
    return boto3.client(service, endpoint_url=url, region_name=region)


def deploy_stack(
    endpoint: Any,
    target: Target,
    app_path: str,
    *,
    handler: str | None = None,
    parameters: Mapping[str, str] | None = None,
    stack_name: str | None = None,
    region: str = REGION,
    timeout_s: float = 120,
) -> dict[str, str]:
    """Create ``sqsq infra APP_PATH --target TARGET`` as a stack on ``endpoint``;
    return its outputs (``OutputKey`` → ``OutputValue``) once CREATE_COMPLETE.

    Args:
        endpoint: the ``local_aws`` fixture's value (embedded moto or LocalStack;
            anything else skips the calling test).
        target: ``"lambda"``, ``"ecs"`` or ``"ec2"``.
        app_path: the App, ``module:attribute`` (importable from the repository).
        handler: the Lambda handler ``module.function`` (``--handler``).
        parameters: stack parameters over the defaults this function fills in —
            a VPC subnet and security group, an ECS cluster (moto), an image, the
            ``<Table>StreamArn`` of stream routes, the EC2 image's SSM parameter.
        stack_name: default ``sqsq-deployed-<target>-<8 hex>`` (unique: LocalStack
            keeps stacks across tests; there the ``sqsq-deployed-*`` stacks of earlier
            calls are deleted first, so one such stack exists at a time).
        region: the stack's region (LocalStack subscribes a queue only to a topic of
            the stack's region: tests/apps/events.py's topic is in us-west-2).
        timeout_s: how long to wait for CREATE_COMPLETE.

    The stack's physical resources: ``describe_stack_resources(StackName=...)`` with
    :func:`stack_resources` (the stack name is the ``"StackName"`` key of the result).
    The Lambda target's code is the repository's ``sqsq`` and the app's top-level
    package, zipped to ``s3://sqsq-test-deployments-<region>/`` on the endpoint: it
    is not run there (neither endpoint runs Lambda code here), only deployed. On
    moto the event source mappings are live: see :func:`pause_event_sources`.

    Raises:
        pytest.skip.Exception: the endpoint has no CloudFormation to create it on.
        AssertionError: the stack did not reach CREATE_COMPLETE (with the reasons).
    """
    import pytest

    kind = cloudformation_kind(endpoint)
    if kind is None:
        pytest.skip(f"no CloudFormation to deploy on at {getattr(endpoint, 'name', endpoint)}")
    doc = stack_document(kind, target, app_path, handler)
    _delete_earlier_stacks(endpoint, kind, doc, region)
    if kind == "localstack":
        _stand_in(endpoint, doc, region)
    values = {**_default_parameters(endpoint, kind, doc, region), **(parameters or {})}
    if kind == "localstack":
        _create_topics(endpoint, doc)
    if target == "lambda":
        _upload_code(endpoint, doc, app_path, region)
        if kind == "moto":
            doc = _sam_translate(doc, values)
    name = stack_name or f"{STACK_PREFIX}{target}-{uuid.uuid4().hex[:8]}"
    cloudformation = _client(endpoint, "cloudformation", region)
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=dump(doc),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = _wait_for_stack(cloudformation, name, timeout_s)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return {**outputs, "StackName": name}


def stack_document(
    kind: str, target: Target, app_path: str, handler: str | None = None
) -> dict[str, Any]:
    """The document :func:`deploy_stack` sends to a ``kind`` endpoint (``"moto"`` or
    ``"localstack"``; :func:`cloudformation_kind`), before its SAM translation, stand-ins
    and code upload: ``sqsq infra`` less the types that endpoint cannot create."""
    omit = MOTO_CFN_UNSUPPORTED if kind == "moto" else LOCALSTACK_CFN_UNSUPPORTED
    return render(sqsq.load_app(app_path), target, Options(app_path, handler=handler, omit=omit))


def pause_event_sources(endpoint: Any, stack_name: str, region: str = REGION) -> list[str]:
    """Disable the stack's Lambda event source mappings; their UUIDs.

    moto runs an enabled SQS mapping inside SendMessage: it receives a batch (the
    receive count goes up), tries to invoke the function in Docker and, failing,
    makes the batch visible again — so each send can bring earlier messages closer
    to the dead-letter queue. Pause them before driving the function otherwise.
    """
    client = _client(endpoint, "lambda", region)
    paused = [
        physical
        for kind, physical in stack_resources(endpoint, stack_name, region).values()
        if kind == "AWS::Lambda::EventSourceMapping"
    ]
    for uuid_ in paused:
        client.update_event_source_mapping(UUID=uuid_, Enabled=False)
    return paused


def stack_resources(
    endpoint: Any, stack_name: str, region: str = REGION
) -> dict[str, tuple[str, str]]:
    """Logical id → ``(type, physical id)`` of the stack's resources."""
    cloudformation = _client(endpoint, "cloudformation", region)
    return {
        r["LogicalResourceId"]: (r["ResourceType"], r.get("PhysicalResourceId", ""))
        for r in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
    }


# --- internals -------------------------------------------------------------------------------


def _delete_earlier_stacks(endpoint: Any, kind: str, doc: dict[str, Any], region: str) -> None:
    """On an external endpoint (moto is reset between tests): delete the stacks this
    helper made before (their event source mappings and alarms would outlive the
    queues the ``local_aws`` reset deletes), and the log groups and queues ``doc``
    names, which outlive their stack (DeletionPolicy Retain) — the reset lists only
    the default region's queues, and a queue left by a stack of another target
    differs in its attributes (the Lambda target lengthens the visibility timeout),
    which CreateQueue refuses (QueueAlreadyExists)."""
    if kind == "moto":
        return
    cloudformation = _client(endpoint, "cloudformation", region)
    earlier = [
        s["StackName"]
        for page in cloudformation.get_paginator("list_stacks").paginate()
        for s in page["StackSummaries"]
        if s["StackName"].startswith(STACK_PREFIX) and s["StackStatus"] != "DELETE_COMPLETE"
    ]
    for name in earlier:
        with contextlib.suppress(Exception):
            cloudformation.delete_stack(StackName=name)
    for name in earlier:
        with contextlib.suppress(Exception):
            cloudformation.get_waiter("stack_delete_complete").wait(
                StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
    logs = _client(endpoint, "logs", region)
    sqs = _client(endpoint, "sqs", region)
    for resource in doc["Resources"].values():
        properties = resource.get("Properties", {})
        name = properties.get("LogGroupName")
        if resource["Type"] == "AWS::Logs::LogGroup" and isinstance(name, str):
            with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
                logs.delete_log_group(logGroupName=name)
        queue = properties.get("QueueName")
        if resource["Type"] == "AWS::SQS::Queue" and isinstance(queue, str):
            with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
                sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"])


def _wait_for_stack(cloudformation: Any, name: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if status != "CREATE_COMPLETE":
        events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
        reasons = [
            f"{e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason')}"
            for e in events
            if e.get("ResourceStatus", "").endswith("FAILED")
        ]
        raise AssertionError(f"stack {name}: {status} {stack.get('StackStatusReason')}; {reasons}")
    return dict(stack)


def _default_parameters(
    endpoint: Any, kind: str, doc: dict[str, Any], region: str
) -> dict[str, str]:
    """Values for the parameters without a default: made on the endpoint where it
    serves the service (a VPC's subnet and group, an ECS cluster), placeholders else."""
    declared = doc.get("Parameters", {})
    values: dict[str, str] = {}
    if "Subnets" in declared:
        ec2 = _client(endpoint, "ec2", region)
        try:
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
            group = ec2.create_security_group(
                GroupName=f"workers-{uuid.uuid4().hex[:6]}", Description="workers", VpcId=vpc
            )["GroupId"]
        except Exception:  # no EC2 here: the resources that use them are left out
            subnet, group = "subnet-12345678", "sg-12345678"
        values |= {"Subnets": subnet, "SecurityGroups": group}
    if "ClusterName" in declared:
        values["ClusterName"] = "sqsq-workers"
        if kind == "moto":
            _client(endpoint, "ecs", region).create_cluster(clusterName="sqsq-workers")
    if "Image" in declared:
        values["Image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sqsq:1.0"
    if "PipInstall" in declared:
        values["PipInstall"] = "sqsq"
    if "ImageId" in declared:  # an SSM parameter the stack resolves
        ssm = _client(endpoint, "ssm", region)
        path = declared["ImageId"]["Default"]
        with contextlib.suppress(Exception):
            ssm.put_parameter(Name=path, Value="ami-12345678", Type="String", Overwrite=True)
    for name, parameter in declared.items():
        if name.endswith("StreamArn") and "Default" not in parameter:
            table = name.removesuffix("StreamArn")
            values[name] = (
                f"arn:aws:dynamodb:{region}:000000000000:table/{table}/stream/2026-01-01T00:00"
            )
    return values


def _create_topics(endpoint: Any, doc: dict[str, Any]) -> None:
    """Create the SNS topics ``doc``'s subscriptions name (an app's routes name topics
    made elsewhere), in their ARN's account and region: LocalStack takes a
    12-digit access key id as the account."""
    for resource in doc["Resources"].values():
        topic = resource.get("Properties", {}).get("TopicArn")
        if resource["Type"] != "AWS::SNS::Subscription" or not isinstance(topic, str):
            continue
        _, _, _, region, account, name = topic.split(":", 5)
        boto3.client(
            "sns",
            endpoint_url=endpoint.url,
            region_name=region,
            aws_access_key_id=account,
            aws_secret_access_key="test",
        ).create_topic(Name=name)


def _stand_in(endpoint: Any, doc: dict[str, Any], region: str) -> None:
    """Create the :data:`STAND_INS` of ``doc`` through their API; replace them by
    their physical values (Ref, GetAtt, ``${Id}`` and ``${Id.Attr}`` of Fn::Sub)."""
    resources = doc["Resources"]
    values: dict[str, dict[str, str]] = {}  # logical id -> attribute ("" = Ref) -> value
    for logical_id in [k for k, v in resources.items() if v["Type"] in STAND_INS]:
        properties = resources.pop(logical_id)["Properties"]
        values[logical_id] = _create_table(endpoint, properties, region)

    def replace(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1 and value.get("Ref") in values:
                return values[value["Ref"]][""]
            att = value.get("Fn::GetAtt")
            if len(value) == 1 and isinstance(att, list) and att[0] in values:
                return values[att[0]][att[1]]
            sub = value.get("Fn::Sub")
            if len(value) == 1 and isinstance(sub, str):
                for logical_id, attributes in values.items():
                    for attribute, physical in attributes.items():
                        key = f"{logical_id}.{attribute}" if attribute else logical_id
                        sub = sub.replace("${" + key + "}", physical)
                return {"Fn::Sub": sub}
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        return value

    for key in ("Resources", "Outputs"):
        if key in doc:
            doc[key] = replace(doc[key])


def _create_table(endpoint: Any, properties: dict[str, Any], region: str) -> dict[str, str]:
    ddb = _client(endpoint, "dynamodb", region)
    name = properties["TableName"]
    with contextlib.suppress(ddb.exceptions.ResourceInUseException):
        ddb.create_table(
            TableName=name,
            KeySchema=properties["KeySchema"],
            AttributeDefinitions=properties["AttributeDefinitions"],
            BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
            **({"StreamSpecification": s} if (s := properties.get("StreamSpecification")) else {}),
        )
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    table = ddb.describe_table(TableName=name)["Table"]
    return {
        "": name,
        "Arn": table["TableArn"],
        **({"StreamArn": table["LatestStreamArn"]} if "LatestStreamArn" in table else {}),
    }


def _upload_code(endpoint: Any, doc: dict[str, Any], app_path: str, region: str) -> None:
    """Zip ``sqsq`` and the app's top-level package to the endpoint's S3; point the
    functions' CodeUri at it."""
    buffer = io.BytesIO()
    top = app_path.split(":")[0].split(".")[0]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in {"sqsq", top}:
            base = ROOT / package
            files = base.rglob("*.py") if base.is_dir() else [Path(f"{base}.py")]
            for path in files:
                archive.write(path, path.relative_to(ROOT).as_posix())
    key = f"{app_path.replace(':', '-')}-{uuid.uuid4().hex[:8]}.zip"
    s3 = _client(endpoint, "s3", region)
    bucket = f"{CODE_BUCKET}-{region}"  # S3 wants a bucket's region in its creation
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(
            Bucket=bucket,
            **(
                {"CreateBucketConfiguration": {"LocationConstraint": region}}
                if region != "us-east-1"
                else {}
            ),
        )
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    for resource in doc["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{bucket}/{key}"


def _sam_translate(doc: dict[str, Any], parameters: Mapping[str, str]) -> dict[str, Any]:
    """The SAM document as plain CloudFormation (``aws-sam-translator``)."""
    from samtranslator.translator.transform import transform

    class _NoManagedPolicies:  # the templates name no managed policy by name
        def load(self) -> dict[str, str]:
            return {}

    return dict(transform(json.loads(json.dumps(doc)), dict(parameters), _NoManagedPolicies()))
