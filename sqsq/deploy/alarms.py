"""The alarms ``sqsq infra`` writes, each to the optional SNS topic ``AlarmTopicArn``
(empty: the alarms change state and notify no one)::

    per source queue  <Queue>AgeAlarm          AWS/SQS ApproximateAgeOfOldestMessage
                                                Maximum over 5 min > max_age_s(queue)
                      <Queue>FailureRateAlarm  sqsq TasksFailed / (TasksSucceeded + TasksFailed)
                                                over 5 min > alarm_failure_rate, once at
                                                least FAILURE_RATE_MIN_TASKS finished
    per DLQ           <Dlq>Alarm               AWS/SQS ApproximateNumberOfMessagesVisible
                                                Maximum over 1 min > 0

Age: SQS counts a message from when it was sent until it is deleted, so one that
runs counts too, and one that retries (sqsq retries by changing the visibility of
the same message) until SQS stops counting it after its third receive ("Available
CloudWatch metrics for Amazon SQS"). The derived threshold is therefore
:data:`MAX_WAIT_S` (SQS's 900 s delay cap, which a long countdown's hop may use,
plus 300 s for a worker to take it) plus the longest ``time_limit`` of the queue's
tasks; ``alarm_max_age_s`` sets one threshold for every queue instead.

Failure rate: a metric-math alarm on the metrics sqsq writes in EMF (namespace
``sqsq``, dimensions ``App`` and ``Queue``, see :mod:`sqsq.metrics`): the Lambda
handler writes them, and so does ``sqsq worker`` where its metrics are on. The DLQ
alarm already fires on the first failure (every FAILURE is copied to the DLQ) and
stays in ALARM until the DLQ is emptied; the rate alarm tells a new surge from that
old failure. Names are fixed (``<queue>-…``) so that the dashboard's alarm widget
can name them without referring to them.
"""

from __future__ import annotations

import math
from typing import Any

from .. import limits
from ..metrics import NAMESPACE
from ..resources import QueueSpec
from . import resources as r

Doc = dict[str, Any]

#: The parameter and condition of the optional SNS topic of the alarms.
ALARM_TOPIC = "AlarmTopicArn"
HAS_ALARM_TOPIC = "HasAlarmTopic"

#: What a message may wait besides its run, seconds: SQS's longest DelaySeconds
#: (a long countdown hops in 900 s steps) plus 5 minutes for a worker to take it.
MAX_WAIT_S = limits.SQS_MAX_DELAY_S + 300
#: The period of the age and failure-rate alarms, seconds.
PERIOD_S = 300
#: Tasks finished in a period below which the failure rate alarm stays OK (one
#: failure of a lone task is the DLQ alarm's to report, not a rate).
FAILURE_RATE_MIN_TASKS = 10


def alarm_parameter() -> Doc:
    return {
        ALARM_TOPIC: {
            "Type": "String",
            "Default": "",
            "Description": "SNS topic ARN the alarms notify (oldest message age, failure "
            "rate, dead-letter queues; empty: none).",
        }
    }


def alarm_condition() -> Doc:
    return {HAS_ALARM_TOPIC: {"Fn::Not": [{"Fn::Equals": [r.ref(ALARM_TOPIC), ""]}]}}


def _actions() -> Doc:
    actions = {"Fn::If": [HAS_ALARM_TOPIC, [r.ref(ALARM_TOPIC)], r.ref("AWS::NoValue")]}
    return {"AlarmActions": actions, "OKActions": actions}


def max_age_s(ids: r.Declared, queue: QueueSpec) -> int:
    """The age alarm's threshold for ``queue``, seconds: ``alarm_max_age_s``, or
    :data:`MAX_WAIT_S` + the longest ``time_limit`` of the tasks sent to it."""
    app = ids.app
    if app.settings.alarm_max_age_s is not None:
        return math.ceil(app.settings.alarm_max_age_s)
    limits_s = [t.time_limit_s or 0.0 for t in app.tasks.values() if t.queue == queue.logical]
    return MAX_WAIT_S + math.ceil(max(limits_s, default=0.0))


def alarm_names(ids: r.Declared) -> list[str]:
    """The ``AlarmName`` of every alarm :func:`alarm_resources` writes."""
    return [a["Properties"]["AlarmName"] for a in alarm_resources(ids).values()]


def _queue_dimension(ids: r.Declared, queue: QueueSpec) -> list[Doc]:
    return [{"Name": "QueueName", "Value": r.get_att(ids.queue_id(queue), "QueueName")}]


def age_alarm(ids: r.Declared, queue: QueueSpec) -> Doc:
    """The oldest message of ``queue`` is older than :func:`max_age_s`."""
    threshold = max_age_s(ids, queue)
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": f"{queue.name}-oldest-message-age",
            "AlarmDescription": f"A message has waited in {queue.name} over {threshold} s: "
            f"workers are down, too few or stuck (sqsq status {ids.app.name})",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateAgeOfOldestMessage",
            "Dimensions": _queue_dimension(ids, queue),
            "Statistic": "Maximum",
            "Period": PERIOD_S,
            "EvaluationPeriods": 1,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            # SQS publishes nothing for a queue inactive for 6 hours: nothing waits.
            "TreatMissingData": "notBreaching",
            **_actions(),
        },
    }


def task_metric(ids: r.Declared, queue: QueueSpec, name: str) -> Doc:
    """A MetricStat's ``Metric`` of sqsq's EMF metrics for the app and ``queue``."""
    return {
        "Namespace": NAMESPACE,
        "MetricName": name,
        "Dimensions": [
            {"Name": "App", "Value": ids.app.name},
            {"Name": "Queue", "Value": queue.logical},
        ],
    }


#: The failure rate of one period; a metric missing from a period (no task of that
#: outcome) counts as 0, and fewer than FAILURE_RATE_MIN_TASKS outcomes as rate 0.
FAILURE_RATE = (
    f"IF((FILL(succeeded, 0) + FILL(failed, 0)) >= {FAILURE_RATE_MIN_TASKS}, "
    "FILL(failed, 0) / (FILL(succeeded, 0) + FILL(failed, 0)), 0)"
)


def failure_rate_alarm(ids: r.Declared, queue: QueueSpec) -> Doc:
    """More than ``alarm_failure_rate`` of ``queue``'s finished tasks failed."""
    rate = ids.app.settings.alarm_failure_rate
    metrics: list[Doc] = [
        {
            "Id": id_,
            "MetricStat": {
                "Metric": task_metric(ids, queue, name),
                "Period": PERIOD_S,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }
        for id_, name in (("succeeded", "TasksSucceeded"), ("failed", "TasksFailed"))
    ]
    metrics.append(
        {
            "Id": "rate",
            "Label": "Failed / finished tasks",
            "Expression": FAILURE_RATE,
            "ReturnData": True,
        }
    )
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": f"{queue.name}-failure-rate",
            "AlarmDescription": f"Over {rate:.0%} of the tasks of {queue.name} failed in "
            f"{PERIOD_S // 60} min (sqsq status {ids.app.name}: failures by task and error)",
            "Metrics": metrics,
            "EvaluationPeriods": 1,
            "Threshold": rate,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            **_actions(),
        },
    }


def dead_letter_alarm(ids: r.Declared, queue: QueueSpec) -> Doc:
    """A message is visible in the dead-letter queue ``queue``."""
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": f"{queue.name}-depth",
            "AlarmDescription": f"Messages in the dead-letter queue {queue.name} "
            f"(sqsq dlq ls {ids.app.name} / sqsq dlq redrive)",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": _queue_dimension(ids, queue),
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            **_actions(),
        },
    }


def alarm_resources(ids: r.Declared) -> Doc:
    """Every alarm of the module docstring, by logical id."""
    out: Doc = {}
    for queue in ids.resources.source_queues():
        out[ids.queue_id(queue) + "AgeAlarm"] = age_alarm(ids, queue)
        out[ids.queue_id(queue) + "FailureRateAlarm"] = failure_rate_alarm(ids, queue)
    for queue in ids.resources.dead_letter_queues():
        out[ids.queue_id(queue) + "Alarm"] = dead_letter_alarm(ids, queue)
    return out
