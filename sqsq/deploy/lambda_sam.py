"""``--target lambda``: a SAM template — the app's resources and one arm64 function
consuming every queue through SQS event sources with partial batch responses.

AWS's guidance for SQS event sources: the queue's visibility timeout is at least
six times the function's timeout plus MaximumBatchingWindowInSeconds. The queues
get the app's ``visibility_timeout_s`` (as ``resources create`` gives them), so the
function's timeout is derived from it, and a timeout asked for that does not fit
is refused rather than silently changing the queues.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .. import limits
from ..errors import ConfigurationError
from . import Options
from . import resources as r
from .iam import signing_environment, trust, worker_policy

if TYPE_CHECKING:
    from ..app import App

Doc = dict[str, Any]

#: A current Lambda Python runtime ("Lambda runtimes": supported, not deprecated).
RUNTIME = "python3.13"
#: AWS guidance: queue visibility timeout >= 6 x function timeout (+ batching window).
VISIBILITY_FACTOR = 6
FUNCTION_ID = "TaskFunction"


def handler_of(app: App, options: Options) -> str:
    """``<module>.lambda_handler`` of the app's module, which must define it."""
    if options.handler:
        return options.handler
    module_name = options.app_path.partition(":")[0]
    module = importlib.import_module(module_name)
    if not callable(getattr(module, "lambda_handler", None)):
        raise ConfigurationError(
            f"{module_name} defines no lambda_handler: add `lambda_handler = "
            f"{options.app_path.partition(':')[2] or 'app'}.lambda_handler` to it, or pass --handler"
        )
    return f"{module_name}.lambda_handler"


def function_timeout_s(app: App, options: Options) -> int:
    """The function timeout that the queues' visibility timeout allows.

    Raises:
        ConfigurationError: the visibility timeout is too short for it.
    """
    visibility = int(app.settings.visibility_timeout_s)
    window = options.batching_window_s
    longest = (visibility - window) // VISIBILITY_FACTOR
    timeout = options.function_timeout_s if options.function_timeout_s is not None else longest
    if timeout < 1 or timeout > longest:
        need = VISIBILITY_FACTOR * max(timeout, 1) + window
        raise ConfigurationError(
            f"a {max(timeout, 1)} s function with a {window} s batching window needs a queue "
            f"visibility timeout of at least {need} s (6 x timeout + window, AWS's guidance for "
            f"SQS event sources); the app's visibility_timeout_s is {visibility} s: set "
            f"SQSQ_VISIBILITY_TIMEOUT_S / App(visibility_timeout_s=...) to {need} and run "
            "`sqsq resources create` or deploy again"
        )
    return min(timeout, limits.LAMBDA_MAX_TIMEOUT_S)


def _events(ids: r.Declared, options: Options) -> Doc:
    events: Doc = {}
    for queue in ids.resources.source_queues():
        properties: Doc = {
            "Queue": r.get_att(ids.queue_id(queue)),
            "BatchSize": options.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": options.maximum_concurrency},
        }
        if not queue.fifo:  # FIFO event sources take no batching window
            properties["MaximumBatchingWindowInSeconds"] = options.batching_window_s
        events[ids.queue_id(queue)] = {"Type": "SQS", "Properties": properties}
    return events


def template(app: App, options: Options) -> Doc:
    """The SAM template (see the module docstring)."""
    ids = r.declared(app)
    timeout = function_timeout_s(app, options)
    handler = handler_of(app, options)
    resources = r.app_resources(ids, options.long_countdowns)
    resources["FunctionLogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        **r.RETAIN,
        "Properties": {
            "LogGroupName": f"/sqsq/{app.name}/lambda",
            "RetentionInDays": r.ref("LogRetentionDays"),
        },
    }
    logs = {
        "Sid": "Logs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": r.get_att("FunctionLogGroup"),
    }
    resources["FunctionRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"sqsq app {app.name}: the Lambda function's role",
            "AssumeRolePolicyDocument": trust("lambda.amazonaws.com"),
            "Policies": [
                worker_policy(
                    ids, [logs], options.long_countdowns, step_functions=options.step_functions
                )
            ],
        },
    }
    resources[FUNCTION_ID] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "Description": f"sqsq tasks of {options.app_path}",
            "CodeUri": options.code_uri,
            "Handler": handler,
            "Runtime": RUNTIME,
            "Architectures": ["arm64"],
            "MemorySize": options.memory_mb,
            "Timeout": timeout,
            "Role": r.get_att("FunctionRole"),
            "ReservedConcurrentExecutions": {
                "Fn::If": [
                    "HasReservedConcurrency",
                    r.ref("ReservedConcurrency"),
                    r.ref("AWS::NoValue"),
                ]
            },
            "LoggingConfig": {"LogGroup": r.ref("FunctionLogGroup"), "LogFormat": "JSON"},
            "Environment": {
                "Variables": {
                    "SQSQ_QUEUE_PREFIX": app.queue_prefix,
                    "SQSQ_TABLE_NAME": r.ref(ids.table_id),
                    **signing_environment(app),
                }
            },
            "Events": _events(ids, options),
        },
    }
    outputs = r.app_outputs(ids)
    outputs["FunctionName"] = {"Description": "The function", "Value": r.ref(FUNCTION_ID)}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"sqsq app {app.name} on AWS Lambda (generated by `sqsq infra "
        f"{options.app_path} --target lambda`; do not edit)",
        "Parameters": {
            "LogRetentionDays": {
                "Type": "Number",
                "Default": 14,
                "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 180, 365],
                "Description": "Days the function's logs are kept.",
            },
            "ReservedConcurrency": {
                "Type": "Number",
                "Default": 0,
                "MinValue": 0,
                "Description": "Reserved concurrency of the function (0: none).",
            },
            **r.alarm_parameter(),
        },
        "Conditions": {
            "HasReservedConcurrency": {
                "Fn::Not": [{"Fn::Equals": [r.ref("ReservedConcurrency"), 0]}]
            },
            r.HAS_ALARM_TOPIC: {"Fn::Not": [{"Fn::Equals": [r.ref(r.ALARM_TOPIC), ""]}]},
        },
        "Resources": resources,
        "Outputs": outputs,
    }
