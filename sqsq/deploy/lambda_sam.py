"""``--target lambda``: a SAM template — the app's resources and one function (arm64
by default) consuming its queues through SQS event sources with partial batch
responses.

The function's ``Timeout``, the handler's safety margin and the queues'
visibility timeout are derived together from the tasks it serves
(:mod:`.lambda_timing`); ``CodeUri`` is the directory the app is imported from,
written relative to the template's own file (:mod:`.bundle`), so ``sam build``
packs the app's code and its ``requirements.txt`` wherever the template is written.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from . import Options
from . import resources as r
from .alarms import alarm_condition, alarm_parameter, alarm_resources
from .dashboard import DASHBOARD_ID, dashboard_resource
from .iam import signing_environment, trust, worker_policy
from .lambda_timing import Timing, derive

if TYPE_CHECKING:
    from ..app import App

Doc = dict[str, Any]

FUNCTION_ID = "TaskFunction"
#: Logical id of the layer (``--layer-uri``): sqsq and the handler's requirements.
LAYER_ID = "SqsqLayer"
#: An event source's ``ScalingConfig.MaximumConcurrency`` when nothing sets it.
DEFAULT_MAXIMUM_CONCURRENCY = 10


def maximum_concurrency(app: App, options: Options, queue: str) -> int:
    """``ScalingConfig.MaximumConcurrency`` of ``queue``'s event source:
    ``--maximum-concurrency``, else the app's ``lambda_maximum_concurrency`` (a
    number, or this queue's entry), else :data:`DEFAULT_MAXIMUM_CONCURRENCY`.

    Raises:
        ConfigurationError: over the ``lambda_reserved_concurrency`` setting (AWS:
            "do not set maximum concurrency above the function's reserved
            concurrency": the function would be throttled).
    """
    setting = app.settings.lambda_maximum_concurrency
    if options.maximum_concurrency is not None:
        value = options.maximum_concurrency
    elif isinstance(setting, dict):
        value = setting.get(queue, DEFAULT_MAXIMUM_CONCURRENCY)
    else:
        value = setting or DEFAULT_MAXIMUM_CONCURRENCY
    reserved = app.settings.lambda_reserved_concurrency
    if reserved is not None and value > reserved:
        raise ConfigurationError(
            f"ScalingConfig.MaximumConcurrency {value} of queue {queue!r} is over the "
            f"function's reserved concurrency {reserved} (lambda_reserved_concurrency): "
            'Lambda would throttle it ("Configuring maximum concurrency for Amazon SQS '
            'event sources")'
        )
    return value


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


def timing(app: App, options: Options) -> Timing:
    """The function's timing for these options (:func:`.lambda_timing.derive`)."""
    return derive(
        app,
        function_timeout_s=options.function_timeout_s,
        batching_window_s=options.batching_window_s,
        worker_queues=options.worker_queues,
    )


def _events(app: App, ids: r.Declared, options: Options) -> Doc:
    events: Doc = {}
    for queue in ids.resources.source_queues():
        if queue.logical in options.worker_queues:
            continue
        properties: Doc = {
            "Queue": r.get_att(ids.queue_id(queue)),
            "BatchSize": options.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {
                "MaximumConcurrency": maximum_concurrency(app, options, queue.logical)
            },
        }
        if not queue.fifo:  # FIFO event sources take no batching window
            properties["MaximumBatchingWindowInSeconds"] = options.batching_window_s
        events[ids.queue_id(queue)] = {"Type": "SQS", "Properties": properties}
    return events


def template(app: App, options: Options) -> Doc:
    """The SAM template (see the module docstring)."""
    ids = r.declared(app)
    timed = timing(app, options)
    handler = handler_of(app, options)
    resources = r.app_resources(ids, options.long_countdowns)
    for queue in ids.resources.source_queues():  # AWS's rule for SQS event sources
        if queue.logical not in options.worker_queues:
            properties = resources[ids.queue_id(queue)]["Properties"]
            properties["VisibilityTimeout"] = timed.visibility_timeout_s
    resources["FunctionLogGroup"] = r.log_group(f"/sqsq/{app.name}/lambda")
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
            "Runtime": options.runtime,
            "Architectures": [options.architecture],
            "MemorySize": options.memory_mb,
            "Timeout": timed.timeout_s,
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
                    "SQSQ_LAMBDA_SAFETY_MARGIN_S": str(timed.margin_s),
                    **signing_environment(app),
                }
            },
            "Events": _events(app, ids, options),
        },
    }
    if options.layer_uri is not None:
        resources[LAYER_ID] = {
            "Type": "AWS::Serverless::LayerVersion",
            "Properties": {
                "Description": f"sqsq and the handler's requirements for {options.app_path}",
                "ContentUri": options.layer_uri,
                "CompatibleRuntimes": [options.runtime],
                "CompatibleArchitectures": [options.architecture],
            },
        }
        resources[FUNCTION_ID]["Properties"]["Layers"] = [r.ref(LAYER_ID)]
    resources.update(alarm_resources(ids))
    function = "${Function}"
    resources[DASHBOARD_ID] = dashboard_resource(
        ids,
        [
            ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", function],
            ["AWS/Lambda", "Throttles", "FunctionName", function, {"stat": "Sum"}],
            ["AWS/Lambda", "Errors", "FunctionName", function, {"stat": "Sum"}],
        ],
        {"Function": r.ref(FUNCTION_ID)},
    )
    outputs = r.app_outputs(ids)
    outputs["FunctionName"] = {"Description": "The function", "Value": r.ref(FUNCTION_ID)}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"sqsq app {app.name} on AWS Lambda (generated by `sqsq infra "
        f"{options.app_path} --target lambda`; do not edit)",
        "Parameters": {
            **r.log_retention_parameter(),
            "ReservedConcurrency": {
                "Type": "Number",
                "Default": app.settings.lambda_reserved_concurrency or 0,
                "MinValue": 0,
                "Description": "Reserved concurrency of the function (0: none); at least each "
                "event source's MaximumConcurrency.",
            },
            **alarm_parameter(),
        },
        "Conditions": {
            "HasReservedConcurrency": {
                "Fn::Not": [{"Fn::Equals": [r.ref("ReservedConcurrency"), 0]}]
            },
            **alarm_condition(),
        },
        "Resources": resources,
        "Outputs": outputs,
    }
