"""``--target ecs``: the app's resources and a Fargate service running
``sqsq worker APP``, logging to CloudWatch Logs, scaled by target tracking on
backlog per task.

Stopping: ECS sends SIGTERM, then SIGKILL after the container's ``StopTimeout``.
The worker gives running tasks ``shutdown_grace_s`` (passed as
``SQSQ_SHUTDOWN_GRACE_S``) and releases what it still holds, so ``StopTimeout`` is
grace + ``worker.SHUTDOWN_MARGIN_S`` — both from the one setting (Fargate allows
at most 120 s).

Backlog per task divides by ``RunningTaskCount`` of Container Insights
(``ECS/ContainerInsights``): turn Container Insights on for the cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import Options
from . import resources as r
from .alarms import alarm_condition, alarm_parameter, alarm_resources
from .dashboard import DASHBOARD_ID, dashboard_resource
from .iam import trust, worker_policy
from .workers import (
    FARGATE_MAX_STOP_TIMEOUT_S,
    backlog_metrics,
    environment,
    scaling_parameters,
    stop_timeout_s,
    worker_options,
)

if TYPE_CHECKING:
    from ..app import App

Doc = dict[str, Any]


def _parameters() -> Doc:
    return {
        "Image": {
            "Type": "String",
            "Description": "Container image with the app and sqsq[worker] installed "
            "(`sqsq` on PATH).",
        },
        "ClusterName": {
            "Type": "String",
            "Description": "Name of an existing ECS cluster (Container Insights on, for scaling).",
        },
        "Subnets": {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Subnets of the tasks, with a route to SQS and DynamoDB.",
        },
        "SecurityGroups": {
            "Type": "List<AWS::EC2::SecurityGroup::Id>",
            "Description": "Security groups of the tasks (outbound HTTPS only).",
        },
        "AssignPublicIp": {
            "Type": "String",
            "Default": "DISABLED",
            "AllowedValues": ["ENABLED", "DISABLED"],
            "Description": "ENABLED only in public subnets without NAT.",
        },
        "Cpu": {
            "Type": "String",
            "Default": "256",
            "AllowedValues": ["256", "512", "1024", "2048", "4096"],
            "Description": "Fargate task CPU units.",
        },
        "Memory": {
            "Type": "String",
            "Default": "512",
            "Description": "Fargate task memory, MiB (it must suit Cpu).",
        },
        "EcrRepositoryArn": {
            "Type": "String",
            "Default": "",
            "Description": "ARN of the ECR repository of Image (empty: a public image).",
        },
        "WorkerMetrics": {
            "Type": "String",
            "Default": "off",
            "AllowedValues": ["off", "emf"],
            "Description": "emf: the workers write sqsq's metrics per queue and task to "
            "their log (SQSQ_WORKER_METRICS), which the failure-rate alarms and the "
            "dashboard read; CloudWatch bills 6 custom metrics per queue and per task.",
        },
        **scaling_parameters(),
        **r.log_retention_parameter(),
        **alarm_parameter(),
    }


#: The container health check's timing, seconds ("HealthCheck", ECS API Reference:
#: interval 5-300, timeout 2-120, start period 0-300, retries 1-10). The start period
#: covers the image's start and the first heartbeat; three failed checks in a row
#: (about 90 s) mark the task unhealthy and the service replaces it.
HEALTH_INTERVAL_S = 30
HEALTH_TIMEOUT_S = 20
HEALTH_START_PERIOD_S = 60
HEALTH_RETRIES = 3


def health_command(app: App, app_path: str) -> str:
    """The shell command of the container's health check: ``sqsq status`` exits 1
    unless a worker of this container (``--host``: its host name, the one its
    heartbeat records) has written a live heartbeat; an AWS error exits 3, also
    unhealthy. ``--failure-sample 0`` reads no dead-lettered message and ``-Q`` one
    queue, so a check costs 6 requests from a new process: GetQueueUrl and
    GetQueueAttributes of the default queue and its DLQ, one DynamoDB Query of the
    heartbeats, and a GetMetricData the task role does not allow (the age is not
    needed: no ``--max-age``)."""
    return (
        f'sqsq status {app_path} --host "$(hostname)" --min-workers 1 '
        f"--failure-sample 0 -Q {app.settings.default_queue} > /dev/null"
    )


def health_check(app: App, options: Options) -> Doc:
    """The container's ``HealthCheck`` (none when heartbeats are off:
    ``heartbeat_interval_s`` 0 leaves ``sqsq status`` nothing to read)."""
    if not app.settings.heartbeat_interval_s:
        return {}
    return {
        "HealthCheck": {
            "Command": ["CMD-SHELL", health_command(app, options.app_path)],
            "Interval": HEALTH_INTERVAL_S,
            "Timeout": HEALTH_TIMEOUT_S,
            "StartPeriod": HEALTH_START_PERIOD_S,
            "Retries": HEALTH_RETRIES,
        }
    }


def template(app: App, options: Options) -> Doc:
    """The CloudFormation template (see the module docstring)."""
    ids = r.declared(app)
    stop_timeout = stop_timeout_s(app, FARGATE_MAX_STOP_TIMEOUT_S)
    resources = r.app_resources(ids, options.long_countdowns)
    resources["LogGroup"] = r.log_group(f"/sqsq/{app.name}/worker")
    pull: list[Doc] = [
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": r.get_att("LogGroup"),
        },
        {
            "Fn::If": [
                "HasEcrRepository",
                {
                    "Sid": "PullImage",
                    "Effect": "Allow",
                    "Action": [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                    ],
                    "Resource": r.ref("EcrRepositoryArn"),
                },
                r.ref("AWS::NoValue"),
            ]
        },
    ]
    resources["ExecutionRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"sqsq app {app.name}: ECS pulls the image and writes the logs",
            "AssumeRolePolicyDocument": trust("ecs-tasks.amazonaws.com"),
            "Policies": [
                {
                    "PolicyName": "pull-image-write-logs",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": pull},
                },
            ],
            # ecr:GetAuthorizationToken has no resource-level permission (its
            # Resource can only be "*"): AWS's managed policy grants it alone here.
            "ManagedPolicyArns": {
                "Fn::If": [
                    "HasEcrRepository",
                    [
                        {
                            "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly"
                        }
                    ],
                    r.ref("AWS::NoValue"),
                ]
            },
        },
    }
    resources["TaskRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"sqsq app {app.name}: what the worker may do",
            "AssumeRolePolicyDocument": trust("ecs-tasks.amazonaws.com"),
            "Policies": [
                worker_policy(
                    ids,
                    long_countdowns=options.long_countdowns,
                    step_functions=options.step_functions,
                )
            ],
        },
    }
    env = environment(app, ids)
    resources["TaskDefinition"] = {
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": f"{app.name}-sqsq-worker",
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": r.ref("Cpu"),
            "Memory": r.ref("Memory"),
            "ExecutionRoleArn": r.get_att("ExecutionRole"),
            "TaskRoleArn": r.get_att("TaskRole"),
            "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "ARM64"},
            "ContainerDefinitions": [
                {
                    "Name": "worker",
                    "Image": r.ref("Image"),
                    "Essential": True,
                    "EntryPoint": ["sqsq"],
                    "Command": [
                        "worker",
                        options.app_path,
                        "--log-format",
                        "json",
                        *worker_options(app),
                    ],
                    # SIGTERM, then SIGKILL after StopTimeout = grace + margin.
                    "StopTimeout": stop_timeout,
                    # An init as PID 1 forwards signals and reaps pool children.
                    "LinuxParameters": {"InitProcessEnabled": True},
                    **health_check(app, options),
                    "Environment": [
                        {"Name": k, "Value": v}
                        for k, v in {
                            **env,
                            "AWS_DEFAULT_REGION": r.ref("AWS::Region"),
                            # EMF lines on stdout reach CloudWatch Logs by awslogs
                            "SQSQ_WORKER_METRICS": r.ref("WorkerMetrics"),
                        }.items()
                    ],
                    "LogConfiguration": {
                        "LogDriver": "awslogs",
                        "Options": {
                            "awslogs-group": r.ref("LogGroup"),
                            "awslogs-region": r.ref("AWS::Region"),
                            "awslogs-stream-prefix": "worker",
                        },
                    },
                }
            ],
        },
    }
    resources["Service"] = {
        "Type": "AWS::ECS::Service",
        "Properties": {
            "ServiceName": f"{app.name}-sqsq-worker",
            "Cluster": r.ref("ClusterName"),
            "LaunchType": "FARGATE",
            "TaskDefinition": r.ref("TaskDefinition"),
            "DesiredCount": r.ref("MinWorkers"),
            "DeploymentConfiguration": {"MinimumHealthyPercent": 100, "MaximumPercent": 200},
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": r.ref("Subnets"),
                    "SecurityGroups": r.ref("SecurityGroups"),
                    "AssignPublicIp": r.ref("AssignPublicIp"),
                }
            },
        },
    }
    resource_id = r.sub("service/${ClusterName}/${Service.Name}")
    resources["ScalableTarget"] = {
        "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
        "Properties": {
            "ServiceNamespace": "ecs",
            "ScalableDimension": "ecs:service:DesiredCount",
            "ResourceId": resource_id,
            "MinCapacity": r.ref("MinWorkers"),
            "MaxCapacity": r.ref("MaxWorkers"),
        },
    }
    running = {
        "Metric": {
            "Namespace": "ECS/ContainerInsights",
            "MetricName": "RunningTaskCount",
            "Dimensions": [
                {"Name": "ClusterName", "Value": r.ref("ClusterName")},
                {"Name": "ServiceName", "Value": r.get_att("Service", "Name")},
            ],
        },
        "Stat": "Average",
    }
    resources["BacklogPerTaskScaling"] = {
        "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
        "Properties": {
            "PolicyName": f"{app.name}-sqsq-backlog-per-task",
            "PolicyType": "TargetTrackingScaling",
            "ScalingTargetId": r.ref("ScalableTarget"),
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": r.ref("TargetBacklogPerWorker"),
                "CustomizedMetricSpecification": {"Metrics": backlog_metrics(ids, running)},
            },
        },
    }
    resources.update(alarm_resources(ids))
    resources[DASHBOARD_ID] = dashboard_resource(
        ids,
        [
            [
                "ECS/ContainerInsights",
                "RunningTaskCount",
                "ClusterName",
                "${ClusterName}",
                "ServiceName",
                "${Service}",
            ]
        ],
        {"Service": r.get_att("Service", "Name")},
    )
    outputs = r.app_outputs(ids)
    outputs["ServiceName"] = {
        "Description": "The worker service",
        "Value": r.get_att("Service", "Name"),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"sqsq app {app.name}: workers on ECS Fargate (generated by `sqsq infra "
        f"{options.app_path} --target ecs`; do not edit)",
        "Parameters": _parameters(),
        "Conditions": {
            "HasEcrRepository": {"Fn::Not": [{"Fn::Equals": [r.ref("EcrRepositoryArn"), ""]}]},
            **alarm_condition(),
        },
        "Resources": resources,
        "Outputs": outputs,
    }
