"""What the long-poll targets (ECS, EC2) share: the stop timeout derived from the
worker's grace, the worker's environment and queue priorities, and target tracking on backlog per
worker (AWS's metric-math pattern, "Scaling policy based on Amazon SQS": the
visible messages of the app's queues divided by the running workers).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .. import limits
from ..errors import ConfigurationError
from ..worker import SHUTDOWN_MARGIN_S
from . import resources as r
from .iam import signing_environment

if TYPE_CHECKING:
    from ..app import App

Doc = dict[str, Any]


def grace_s(app: App) -> float:
    """The worker's shutdown grace, seconds (the ``shutdown_grace_s`` setting)."""
    return float(app.settings.shutdown_grace_s)


def stop_timeout_s(app: App, maximum: int | None = None) -> int:
    """The supervisor's stop timeout: grace + ``worker.SHUTDOWN_MARGIN_S``, seconds.

    Raises:
        ConfigurationError: over ``maximum`` (Fargate's 120 s).
    """
    timeout = math.ceil(grace_s(app) + SHUTDOWN_MARGIN_S)
    if maximum is not None and timeout > maximum:
        raise ConfigurationError(
            f"shutdown_grace_s {grace_s(app):g} + {SHUTDOWN_MARGIN_S:g} s margin = {timeout} s "
            f"is over the {maximum} s stop timeout allowed here"
        )
    return timeout


def environment(app: App, ids: r.Declared) -> dict[str, Any]:
    """``SQSQ_*`` variables of the worker: names of the resources, the grace (one
    value for the worker and its supervisor's stop timeout), and the signing key's
    reference (see :func:`.iam.signing_environment`)."""
    return {
        "SQSQ_QUEUE_PREFIX": app.queue_prefix,
        "SQSQ_TABLE_NAME": r.ref(ids.table_id),
        "SQSQ_SHUTDOWN_GRACE_S": f"{grace_s(app):g}",
        **signing_environment(app),
    }


def worker_options(app: App) -> list[str]:
    """``sqsq worker`` options from the app's settings: its queue priorities
    (``queue_weights`` → ``-Q high:5,default:1`` over every queue the app uses,
    ``queue_priority`` → ``--priority strict``); none without them.

    Raises:
        ConfigurationError: ``queue_weights`` names a queue no task uses.
    """
    settings = app.settings
    weights, queues = settings.queue_weights, app.queues()
    if not weights and settings.queue_priority == "weighted":
        return []
    unknown = sorted(set(weights) - set(queues))
    if unknown:
        raise ConfigurationError(
            f"queue_weights names {', '.join(unknown)}, which no task of the app uses; "
            f"the app's queues: {', '.join(queues)}"
        )
    highest_first = sorted(queues, key=lambda q: -weights.get(q, 1))
    options = ["-Q", ",".join(f"{q}:{weights.get(q, 1)}" for q in highest_first)]
    if settings.queue_priority == "strict":
        options += ["--priority", "strict"]
    return options


def backlog_metrics(ids: r.Declared, workers: Doc) -> list[Doc]:
    """Metric math: visible messages of every queue / running workers (``workers``:
    a MetricStat of the worker count)."""
    metrics: list[Doc] = []
    for i, queue in enumerate(ids.resources.source_queues()):
        metrics.append(
            {
                "Id": f"visible{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateNumberOfMessagesVisible",
                        "Dimensions": [
                            {
                                "Name": "QueueName",
                                "Value": r.get_att(ids.queue_id(queue), "QueueName"),
                            }
                        ],
                    },
                    "Stat": "Sum",
                },
                "ReturnData": False,
            }
        )
    metrics.append({"Id": "workers", "MetricStat": workers, "ReturnData": False})
    total = " + ".join(m["Id"] for m in metrics[:-1])
    metrics.append(
        {
            "Id": "backlog",
            "Label": "Visible messages per worker",
            "Expression": f"({total}) / workers",
            "ReturnData": True,
        }
    )
    return metrics


def scaling_parameters() -> Doc:
    return {
        "MinWorkers": {
            "Type": "Number",
            "Default": 1,
            "MinValue": 1,
            "Description": "Fewest workers.",
        },
        "MaxWorkers": {
            "Type": "Number",
            "Default": 10,
            "MinValue": 1,
            "Description": "Most workers.",
        },
        "TargetBacklogPerWorker": {
            "Type": "Number",
            "Default": 100,
            "MinValue": 1,
            "Description": "Target tracking keeps visible messages / running workers near this "
            "(about: acceptable latency in s x tasks one worker finishes per second).",
        },
    }


FARGATE_MAX_STOP_TIMEOUT_S = limits.FARGATE_MAX_STOP_TIMEOUT_S
