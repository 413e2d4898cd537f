"""The app's CloudWatch dashboard (``AWS::CloudWatch::Dashboard`` ``<app>-sqsq``)::

    +------------------------------+------------------------------+
    | Messages waiting / in flight | Age of the oldest message    |
    | (AWS/SQS, per queue)         | (per queue, alarm thresholds)|
    +------------------------------+------------------------------+
    | Tasks finished (sqsq: Tasks  | Run time, queue latency p90  |
    | Succeeded/Failed/Retried/DL) | (sqsq: RunTime, QueueLatency)|
    +------------------------------+------------------------------+
    | Dead-letter queues           | Workers (the target's: Lambda|
    | (visible messages)           | concurrency, ECS tasks, EC2) |
    +------------------------------+------------------------------+
    | Alarms (:mod:`.alarms`, their state)                        |
    +-------------------------------------------------------------+

The body is JSON ("Dashboard body structure and syntax", CloudWatch API
Reference) written as ``Fn::Sub``: the region, partition and account are pseudo
parameters, and the target's resources are variables of the ``Fn::Sub`` map, so
that a document leaving them out (``--omit``) leaves the dashboard out too.
A dashboard costs $3 a month beyond the free tier's three.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..metrics import NAMESPACE
from . import alarms
from . import resources as r

Doc = dict[str, Any]

#: The dashboard's logical id.
DASHBOARD_ID = "Dashboard"
#: Seconds per datapoint of the graphs.
PERIOD_S = 60

_REGION = "${AWS::Region}"


def dashboard_name(app_name: str) -> str:
    """``<app>-sqsq`` in the characters a dashboard name allows (A-Z a-z 0-9 - _)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{app_name}-sqsq")


def _graph(title: str, metrics: list[list[Any]], stat: str, **extra: Any) -> Doc:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": _REGION,
            "view": "timeSeries",
            "stat": stat,
            "period": PERIOD_S,
            "metrics": metrics,
            **extra,
        },
    }


def _sqs(metric: str, queue_name: str, label: str) -> list[Any]:
    return ["AWS/SQS", metric, "QueueName", queue_name, {"label": label}]


def _sqsq(ids: r.Declared, logical: str, metric: str, **options: Any) -> list[Any]:
    return [
        NAMESPACE,
        metric,
        "App",
        ids.app.name,
        "Queue",
        logical,
        {"label": f"{logical} {metric}", **options},
    ]


def widgets(ids: r.Declared, workers: list[list[Any]]) -> list[Doc]:
    """The widgets of the module docstring, placed two to a row (``workers``: the
    target's metric arrays, ``${Var}`` naming variables of the ``Fn::Sub`` map)."""
    queues = ids.resources.source_queues()
    thresholds = sorted({alarms.max_age_s(ids, q) for q in queues})
    graphs = [
        _graph(
            "Messages waiting and in flight",
            [
                _sqs("ApproximateNumberOfMessagesVisible", q.name, f"{q.logical} waiting")
                for q in queues
            ]
            + [
                _sqs("ApproximateNumberOfMessagesNotVisible", q.name, f"{q.logical} in flight")
                for q in queues
            ],
            "Maximum",
        ),
        _graph(
            "Age of the oldest message (s)",
            [_sqs("ApproximateAgeOfOldestMessage", q.name, q.logical) for q in queues],
            "Maximum",
            annotations={
                "horizontal": [{"label": "alarm", "value": value} for value in thresholds]
            },
        ),
        _graph(
            "Tasks finished",
            [
                _sqsq(ids, q.logical, metric)
                for q in queues
                for metric in ("TasksSucceeded", "TasksFailed", "TasksRetried", "TasksDeadLettered")
            ],
            "Sum",
        ),
        _graph(
            "Run time and queue latency, p90 (ms)",
            [_sqsq(ids, q.logical, m) for q in queues for m in ("RunTime", "QueueLatency")],
            "p90",
        ),
        _graph(
            "Dead-letter queues",
            [
                _sqs("ApproximateNumberOfMessagesVisible", q.name, q.name)
                for q in ids.resources.dead_letter_queues()
            ],
            "Maximum",
        ),
        _graph("Workers", workers, "Maximum"),
    ]
    placed: list[Doc] = []
    for i, graph in enumerate(graphs):
        placed.append({**graph, "x": 12 * (i % 2), "y": 6 * (i // 2)})
    arn = "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
    placed.append(
        {
            "type": "alarm",
            "x": 0,
            "y": 6 * ((len(graphs) + 1) // 2),
            "width": 24,
            "height": 4,
            "properties": {
                "title": "Alarms",
                "alarms": [arn + name for name in alarms.alarm_names(ids)],
            },
        }
    )
    return placed


def dashboard_resource(ids: r.Declared, workers: list[list[Any]], variables: Doc) -> Doc:
    """The ``AWS::CloudWatch::Dashboard`` (``variables``: the ``Fn::Sub`` map of the
    names ``workers`` uses, e.g. ``{"Function": {"Ref": "TaskFunction"}}``)."""
    body = json.dumps({"widgets": widgets(ids, workers)}, indent=1)
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": dashboard_name(ids.app.name),
            "DashboardBody": {"Fn::Sub": [body, variables]} if variables else r.sub(body),
        },
    }
