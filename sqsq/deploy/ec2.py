"""``--target ec2``: the app's resources, a launch template whose instances run
``sqsq worker APP`` under systemd, and an Auto Scaling group scaled by target
tracking on backlog per instance. The user data installs ``PipInstall`` (the app's
package) with ``sqsq[worker]`` — the worker's extra — into ``/opt/sqsq``.

The unit restarts the worker whenever it exits (``Restart=always``), stops it with
SIGTERM to the worker alone (``KillMode=mixed``: pool children are the worker's to
stop) and kills what is left after ``TimeoutStopSec`` = grace +
``worker.SHUTDOWN_MARGIN_S``, with the grace passed as ``SQSQ_SHUTDOWN_GRACE_S``.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from . import Options
from . import resources as r
from .alarms import alarm_condition, alarm_parameter, alarm_resources
from .dashboard import DASHBOARD_ID, dashboard_resource
from .iam import trust, worker_policy
from .workers import (
    backlog_metrics,
    environment,
    scaling_parameters,
    stop_timeout_s,
    worker_options,
)

if TYPE_CHECKING:
    from ..app import App

Doc = dict[str, Any]

UNIT = "sqsq-worker.service"


def unit(app: App, options: Options, environment_lines: list[str]) -> str:
    """The systemd unit (``${…}`` are filled in by ``Fn::Sub``)."""
    env = "\n".join(f"Environment={line}" for line in environment_lines)
    priorities = "".join(f" {shlex.quote(option)}" for option in worker_options(app))
    return f"""[Unit]
Description=sqsq worker {options.app_path}
After=network-online.target
Wants=network-online.target

[Service]
User=sqsq
{env}
ExecStart=/opt/sqsq/bin/sqsq worker {options.app_path} --log-format json{priorities}
Restart=always
RestartSec=2
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec={stop_timeout_s(app)}

[Install]
WantedBy=multi-user.target
"""


def user_data(app: App, options: Options, ids: r.Declared) -> Doc:
    lines = [f"{k}={v}" for k, v in environment(app, ids).items() if isinstance(v, str)]
    lines += ["SQSQ_TABLE_NAME=${" + ids.table_id + "}", "AWS_DEFAULT_REGION=${AWS::Region}"]
    script = f"""#!/bin/bash
set -euo pipefail
dnf install -y python3.12 python3.12-pip
useradd --system --home-dir /opt/sqsq sqsq || true
python3.12 -m venv /opt/sqsq
/opt/sqsq/bin/pip install ${{PipInstall}} 'sqsq[worker]'
cat > /etc/systemd/system/{UNIT} <<'UNIT'
{unit(app, options, lines)}UNIT
systemctl daemon-reload
systemctl enable --now {UNIT}
"""
    return {"Fn::Base64": {"Fn::Sub": script}}


def template(app: App, options: Options) -> Doc:
    """The CloudFormation template (see the module docstring)."""
    ids = r.declared(app)
    resources = r.app_resources(ids, options.long_countdowns)
    resources["InstanceRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"sqsq app {app.name}: what the worker instances may do",
            "AssumeRolePolicyDocument": trust("ec2.amazonaws.com"),
            "Policies": [
                worker_policy(
                    ids,
                    long_countdowns=options.long_countdowns,
                    step_functions=options.step_functions,
                )
            ],
        },
    }
    resources["InstanceProfile"] = {
        "Type": "AWS::IAM::InstanceProfile",
        "Properties": {"Roles": [r.ref("InstanceRole")]},
    }
    resources["LaunchTemplate"] = {
        "Type": "AWS::EC2::LaunchTemplate",
        "Properties": {
            "LaunchTemplateData": {
                "ImageId": r.ref("ImageId"),
                "InstanceType": r.ref("InstanceType"),
                "IamInstanceProfile": {"Arn": r.get_att("InstanceProfile")},
                "SecurityGroupIds": r.ref("SecurityGroups"),
                "MetadataOptions": {"HttpTokens": "required"},
                "UserData": user_data(app, options, ids),
            }
        },
    }
    resources["AutoScalingGroup"] = {
        "Type": "AWS::AutoScaling::AutoScalingGroup",
        "Properties": {
            "LaunchTemplate": {
                "LaunchTemplateId": r.ref("LaunchTemplate"),
                "Version": r.get_att("LaunchTemplate", "LatestVersionNumber"),
            },
            "MinSize": r.ref("MinWorkers"),
            "MaxSize": r.ref("MaxWorkers"),
            "VPCZoneIdentifier": r.ref("Subnets"),
            # The denominator of backlog per instance.
            "MetricsCollection": [
                {"Granularity": "1Minute", "Metrics": ["GroupInServiceInstances"]}
            ],
        },
    }
    in_service = {
        "Metric": {
            "Namespace": "AWS/AutoScaling",
            "MetricName": "GroupInServiceInstances",
            "Dimensions": [{"Name": "AutoScalingGroupName", "Value": r.ref("AutoScalingGroup")}],
        },
        "Stat": "Average",
    }
    resources["BacklogPerInstanceScaling"] = {
        "Type": "AWS::AutoScaling::ScalingPolicy",
        "Properties": {
            "AutoScalingGroupName": r.ref("AutoScalingGroup"),
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingConfiguration": {
                "TargetValue": r.ref("TargetBacklogPerWorker"),
                "CustomizedMetricSpecification": {"Metrics": backlog_metrics(ids, in_service)},
            },
        },
    }
    resources.update(alarm_resources(ids))
    resources[DASHBOARD_ID] = dashboard_resource(
        ids,
        [["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", "${Group}"]],
        {"Group": r.ref("AutoScalingGroup")},
    )
    outputs = r.app_outputs(ids)
    outputs["AutoScalingGroupName"] = {
        "Description": "The worker instances",
        "Value": r.ref("AutoScalingGroup"),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"sqsq app {app.name}: workers on EC2 (generated by `sqsq infra "
        f"{options.app_path} --target ec2`; do not edit)",
        "Parameters": {
            "ImageId": {
                "Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
                "Default": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
                "Description": "Amazon Linux 2023 (dnf, systemd).",
            },
            "InstanceType": {
                "Type": "String",
                "Default": "t4g.small",
                "Description": "Instance type (arm64 for the default image).",
            },
            "PipInstall": {
                "Type": "String",
                "Description": "What `pip install` puts in /opt/sqsq: the app's package "
                "(sqsq[worker], which runs it, is added).",
            },
            "Subnets": {
                "Type": "List<AWS::EC2::Subnet::Id>",
                "Description": "Subnets of the instances, with a route to SQS and DynamoDB.",
            },
            "SecurityGroups": {
                "Type": "List<AWS::EC2::SecurityGroup::Id>",
                "Description": "Security groups of the instances (outbound HTTPS only).",
            },
            **scaling_parameters(),
            **alarm_parameter(),
        },
        "Conditions": alarm_condition(),
        "Resources": resources,
        "Outputs": outputs,
    }
