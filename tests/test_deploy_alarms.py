"""What ``sqsq infra`` writes for operators: the alarms (age of the oldest message,
failure rate, DLQ depth), the dashboard, log retention and the ECS health check —
their properties from the app's settings, the failure rate's metric math evaluated,
the dashboard body parsed, the health check's command run against real workers, and
the alarms and dashboard created by a CloudFormation (moto: the dashboard; LocalStack
in the conformance pass: the alarms)."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
from sqsq.deploy import TARGETS, Options, Target, render
from sqsq.deploy.alarms import FAILURE_RATE, FAILURE_RATE_MIN_TASKS, MAX_WAIT_S
from sqsq.deploy.dashboard import dashboard_name
from sqsq.deploy.ecs import health_command
from sqsq.metrics import NAMESPACE, documents
from sqsq.outcome import Outcome, OutcomeKind
from tests.conftest import QUICKSTART, ROOT
from tests.deployed import cloudformation_kind, deploy_stack, stack_resources
from tests.helpers import cfn_lint

EVENTS = "tests.apps.events:app"
EVENTS_HANDLER = "tests.apps.events.app.lambda_handler"
#: Longest a test waits for what it expects to become true, seconds.
WAIT_S = 60.0


def _doc(app: sqsq.App | str, target: Target, **options: Any) -> dict[str, Any]:
    path = app if isinstance(app, str) else "tests.made_here:app"
    the_app = sqsq.load_app(app) if isinstance(app, str) else app
    return render(the_app, target, Options(path, **options))


def _of_type(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc["Resources"].items() if v["Type"] == kind}


def _alarms(doc: dict[str, Any], suffix: str) -> dict[str, dict[str, Any]]:
    """Alarm properties by AlarmName, of the names ending in ``suffix``."""
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in _of_type(doc, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"].endswith(suffix)
    }


def _limits_app(**settings: Any) -> sqsq.App:
    app = sqsq.App("ops", **settings)

    @app.task(queue="slow", time_limit=600)
    def crunch() -> None: ...

    @app.task(queue="slow", time_limit=90)
    def tidy() -> None: ...

    @app.task(queue="fast")
    def ping() -> None: ...

    return app


# --- age of the oldest message ------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_queue_has_an_age_alarm_and_every_dlq_a_depth_alarm(target: Target) -> None:
    doc = _doc(QUICKSTART, target)
    queues = {v["Properties"]["QueueName"]: k for k, v in _of_type(doc, "AWS::SQS::Queue").items()}
    ages = _alarms(doc, "-oldest-message-age")
    assert sorted(ages) == sorted(f"{q}-oldest-message-age" for q in queues if "-dlq" not in q)
    for name, alarm in ages.items():
        queue = name.removesuffix("-oldest-message-age")
        assert alarm["Namespace"] == "AWS/SQS"
        assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
        assert alarm["Dimensions"] == [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [queues[queue], "QueueName"]}}
        ]
        assert alarm["Statistic"] == "Maximum"
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["Threshold"] == MAX_WAIT_S  # no task of the quick start has a time_limit
    depths = _alarms(doc, "-dlq-depth")
    assert sorted(depths) == sorted(f"{q}-depth" for q in queues if q.endswith("-dlq"))
    assert all(a["Threshold"] == 0 for a in depths.values())


def test_the_derived_age_threshold_adds_the_queues_longest_time_limit() -> None:
    doc = _doc(_limits_app(), "ecs")
    ages = _alarms(doc, "-oldest-message-age")
    assert ages["ops-slow-oldest-message-age"]["Threshold"] == MAX_WAIT_S + 600
    assert ages["ops-fast-oldest-message-age"]["Threshold"] == MAX_WAIT_S
    assert MAX_WAIT_S == 900 + 300  # SQS's longest delay + 5 minutes to be taken


def test_alarm_max_age_s_sets_every_queues_threshold() -> None:
    doc = _doc(_limits_app(alarm_max_age_s=120.5), "ec2")
    ages = _alarms(doc, "-oldest-message-age")
    assert len(ages) == 3  # default, fast, slow
    assert {a["Threshold"] for a in ages.values()} == {121}


def test_alarm_settings_are_validated() -> None:
    for bad in ({"alarm_failure_rate": 0}, {"alarm_failure_rate": 1.5}, {"alarm_max_age_s": -1}):
        with pytest.raises(sqsq.ConfigurationError):
            sqsq.App("ops", **bad)


@pytest.mark.parametrize("target", TARGETS)
def test_every_alarm_notifies_the_optional_topic(target: Target) -> None:
    doc = _doc(QUICKSTART, target)
    actions = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    alarms = _of_type(doc, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 6
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == actions
        assert alarm["Properties"]["OKActions"] == actions
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"
    assert doc["Parameters"]["AlarmTopicArn"]["Default"] == ""


# --- failure rate ---------------------------------------------------------------------


def _emitted_names() -> set[str]:
    """The count metrics sqsq's EMF writer puts in a document (one outcome of each)."""
    from sqsq.delivery import Delivery

    delivery = Delivery(message_id="m-1", receipt_handle="r-1", body="{}", queue="default")
    outcomes = [Outcome(delivery=delivery, kind=k, task_id="t-1", record=None) for k in OutcomeKind]
    (document,) = documents("shop", outcomes, started_s=time.time(), tasks=())
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert ["App", "Queue"] in directive["Dimensions"]
    return {m["Name"] for m in directive["Metrics"]}


def test_the_failure_rate_alarm_is_metric_math_on_the_metrics_sqsq_writes() -> None:
    doc = _doc(_limits_app(alarm_failure_rate=0.25), "ecs")
    rates = _alarms(doc, "-failure-rate")
    assert sorted(rates) == [
        "ops-default-failure-rate",
        "ops-fast-failure-rate",
        "ops-slow-failure-rate",
    ]
    emitted = _emitted_names()
    for name, alarm in rates.items():
        logical = name.removeprefix("ops-").removesuffix("-failure-rate")
        assert alarm["Threshold"] == 0.25
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
        assert (
            {s["Metric"]["MetricName"] for s in stats.values()}
            == {
                "TasksSucceeded",
                "TasksFailed",
            }
            <= emitted
        )
        for stat in stats.values():
            assert stat["Metric"]["Namespace"] == NAMESPACE
            assert stat["Metric"]["Dimensions"] == [
                {"Name": "App", "Value": "ops"},
                {"Name": "Queue", "Value": logical},
            ]
            assert stat["Stat"] == "Sum"
        (returned,) = [m for m in alarm["Metrics"] if m["ReturnData"]]
        assert returned["Expression"] == FAILURE_RATE
        assert set(_names(FAILURE_RATE)) == set(stats)


def _names(expression: str) -> list[str]:
    return [
        n.id
        for n in ast.walk(ast.parse(expression, mode="eval"))
        if isinstance(n, ast.Name) and n.id not in ("IF", "FILL")
    ]


def _evaluate(expression: str, values: dict[str, float | None]) -> float | None:
    """CloudWatch metric math at one timestamp, for the functions the alarm uses:
    a missing datapoint (None) makes arithmetic missing, ``FILL(m, v)`` replaces it,
    ``IF(c, a, b)`` picks a branch; the value None is "no datapoint"."""

    def run(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return run(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "FILL":
                value = run(node.args[0])
                return run(node.args[1]) if value is None else value
            if node.func.id == "IF":
                condition = run(node.args[0])
                if condition is None:
                    return None
                return run(node.args[1] if condition else node.args[2])
        if isinstance(node, ast.BinOp | ast.Compare):
            left = run(node.left)
            right = run(node.right if isinstance(node, ast.BinOp) else node.comparators[0])
            if left is None or right is None:
                return None
            operations: dict[type, Callable[[float, float], Any]] = {
                ast.Add: lambda a, b: a + b,
                ast.Div: lambda a, b: a / b if b else None,
                ast.GtE: lambda a, b: a >= b,
            }
            op = node.op if isinstance(node, ast.BinOp) else node.ops[0]
            return operations[type(op)](left, right)
        raise AssertionError(f"not modelled: {ast.dump(node)}")

    return run(ast.parse(expression, mode="eval"))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("succeeded", "failed", "rate"),
    [
        (90, 10, 0.1),
        (0, 12, 1.0),
        (FAILURE_RATE_MIN_TASKS - 1, None, 0.0),  # no failure in the period: no datapoint
        (None, FAILURE_RATE_MIN_TASKS, 1.0),  # nothing succeeded: no datapoint
        (3, 5, 0.0),  # fewer than FAILURE_RATE_MIN_TASKS finished: a lone failure is no rate
        (None, None, 0.0),  # an idle period
    ],
)
def test_the_failure_rate_expression(
    succeeded: float | None, failed: float | None, rate: float
) -> None:
    result = _evaluate(FAILURE_RATE, {"succeeded": succeeded, "failed": failed})
    assert result is not None and math.isclose(result, rate)


# --- dashboard ------------------------------------------------------------------------


def _body(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dashboard's body as JSON (pseudo parameters and variables filled in) and
    its Fn::Sub variables."""
    (dashboard,) = _of_type(doc, "AWS::CloudWatch::Dashboard").values()
    sub = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    text, variables = (sub, {}) if isinstance(sub, str) else sub
    names = set(re.findall(r"\$\{([^}]+)\}", text))
    pseudo = {"AWS::Region", "AWS::Partition", "AWS::AccountId"}
    assert names - pseudo <= set(variables) | set(doc["Parameters"]), names
    filled = re.sub(r"\$\{([^}]+)\}", lambda m: f"<{m.group(1)}>", text)
    return json.loads(filled), variables


@pytest.mark.parametrize("target", TARGETS)
def test_the_dashboard_shows_queues_tasks_workers_and_alarms(target: Target) -> None:
    doc = _doc(QUICKSTART, target)
    (dashboard,) = _of_type(doc, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "quickstart-sqsq"
    body, variables = _body(doc)
    graphs = {
        w["properties"]["title"]: w["properties"] for w in body["widgets"] if w["type"] == "metric"
    }
    for graph in graphs.values():
        assert graph["region"] == "<AWS::Region>"

    def series(title: str) -> set[tuple[str, ...]]:
        return {
            tuple(m[:-1]) if isinstance(m[-1], dict) else tuple(m) for m in graphs[title]["metrics"]
        }

    queues = ["quickstart-default", "quickstart-emails"]
    assert series("Messages waiting and in flight") == {
        ("AWS/SQS", metric, "QueueName", q)
        for q in queues
        for metric in (
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
        )
    }
    assert series("Age of the oldest message (s)") == {
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", q) for q in queues
    }
    assert graphs["Age of the oldest message (s)"]["annotations"]["horizontal"] == [
        {"label": "alarm", "value": MAX_WAIT_S}
    ]
    finished = series("Tasks finished")
    assert {m[1] for m in finished} == _emitted_names() - {"RunTime", "QueueLatency"}
    assert {(m[0], m[2], m[3], m[4], m[5]) for m in finished} == {
        (NAMESPACE, "App", "quickstart", "Queue", q) for q in ("default", "emails")
    }
    assert {m[1] for m in series("Run time and queue latency, p90 (ms)")} == {
        "RunTime",
        "QueueLatency",
    }
    assert series("Dead-letter queues") == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", q + "-dlq") for q in queues
    }
    workers = series("Workers")
    expected = {
        "lambda": ("AWS/Lambda", "ConcurrentExecutions", {"Function": {"Ref": "TaskFunction"}}),
        "ecs": (
            "ECS/ContainerInsights",
            "RunningTaskCount",
            {"Service": {"Fn::GetAtt": ["Service", "Name"]}},
        ),
        "ec2": (
            "AWS/AutoScaling",
            "GroupInServiceInstances",
            {"Group": {"Ref": "AutoScalingGroup"}},
        ),
    }[target]
    assert expected[:2] in {m[:2] for m in workers}
    assert variables == expected[2]
    (status,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    named = {a.rsplit(":alarm:", 1)[1] for a in status["properties"]["alarms"]}
    assert named == {
        a["Properties"]["AlarmName"] for a in _of_type(doc, "AWS::CloudWatch::Alarm").values()
    }


def test_a_dashboard_name_keeps_only_the_characters_cloudwatch_allows() -> None:
    assert dashboard_name("shop.orders v2") == "shop-orders-v2-sqsq"


# --- log retention --------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("app_path", "handler"), [(QUICKSTART, None), (EVENTS, EVENTS_HANDLER)])
def test_every_log_group_written_to_is_in_the_template_with_a_retention(
    target: Target, app_path: str, handler: str | None
) -> None:
    doc = _doc(app_path, target, handler=handler)
    groups = _of_type(doc, "AWS::Logs::LogGroup")
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    written = []  # where what the template runs writes its logs
    for resource in doc["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            written.append(resource["Properties"]["LoggingConfig"]["LogGroup"])
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            for container in resource["Properties"]["ContainerDefinitions"]:
                written.append(container["LogConfiguration"]["Options"]["awslogs-group"])
    assert sorted(w["Ref"] for w in written) == sorted(groups)
    if groups:
        assert doc["Parameters"]["LogRetentionDays"]["Default"] == 14
    else:  # EC2: the worker logs to the instance's journal
        assert target == "ec2"


# --- the ECS health check -------------------------------------------------------------


def test_the_ecs_container_checks_its_health_with_sqsq_status() -> None:
    doc = _doc(QUICKSTART, "ecs")
    (container,) = doc["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    check = container["HealthCheck"]
    assert check["Command"] == ["CMD-SHELL", health_command(sqsq.load_app(QUICKSTART), QUICKSTART)]
    # within ECS's bounds ("HealthCheck", ECS API Reference)
    assert 5 <= check["Interval"] <= 300 and 2 <= check["Timeout"] <= 120
    assert check["Timeout"] < check["Interval"] and 1 <= check["Retries"] <= 10
    assert 0 <= check["StartPeriod"] <= 300


def test_ecs_workers_write_the_metrics_the_failure_rate_reads_when_asked() -> None:
    doc = _doc(QUICKSTART, "ecs")
    (container,) = doc["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["SQSQ_WORKER_METRICS"] == {"Ref": "WorkerMetrics"}
    parameter = doc["Parameters"]["WorkerMetrics"]
    assert parameter["Default"] == "off"  # custom metrics are billed: opt-in
    from typing import get_args

    from sqsq.settings_model import Settings

    allowed = get_args(Settings.model_fields["worker_metrics"].annotation)
    assert set(parameter["AllowedValues"]) <= set(allowed)


def test_no_health_check_without_heartbeats() -> None:
    doc = _doc(_limits_app(heartbeat_interval_s=0), "ecs")
    (container,) = doc["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert "HealthCheck" not in container


def _check(worker: Any, command: str | None = None) -> subprocess.CompletedProcess[str]:
    """The container's health check command, run by a shell as ECS runs it."""
    env = worker.env(PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    return subprocess.run(
        ["/bin/sh", "-c", command or health_command(sqsq.load_app(QUICKSTART), QUICKSTART)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _until(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_the_health_check_command_passes_while_this_hosts_worker_is_alive(
    quickstart: sqsq.App, worker: Any
) -> None:
    before = _check(worker)
    assert before.returncode == 1, before.stderr
    assert "0 worker(s) alive < --min-workers 1" in before.stderr
    process = worker.start(QUICKSTART, SQSQ_HEARTBEAT_INTERVAL_S="1")
    last: list[subprocess.CompletedProcess[str]] = []
    assert _until(lambda: last.append(_check(worker)) or last[-1].returncode == 0), last[-1].stderr
    assert last[-1].stdout == ""  # the report goes to /dev/null, a breach to stderr
    # what one check costs, from a new process (the report's own request count)
    command = health_command(sqsq.load_app(QUICKSTART), QUICKSTART)
    report = json.loads(_check(worker, command.replace("> /dev/null", "--json")).stdout)
    assert report["requests"] == {
        "sqs.GetQueueUrl": 2,  # the default queue and its DLQ
        "sqs.GetQueueAttributes": 2,
        "dynamodb.Query": 1,  # the heartbeats
        "cloudwatch.GetMetricData": 1,  # refused on ECS: the task role does not allow it
    }
    process.send_signal(signal.SIGKILL)  # a dead worker's heartbeat expires (3 intervals)
    process.wait(timeout=30)
    assert _until(lambda: last.append(_check(worker)) or last[-1].returncode == 1), last[-1].stderr


# --- linted and deployed --------------------------------------------------------------


def test_cfn_lint_passes_an_app_with_time_limits_and_alarm_settings(tmp_path: Path) -> None:
    from sqsq.deploy import dump

    path = tmp_path / "ops.yaml"
    path.write_text(dump(_doc(_limits_app(alarm_max_age_s=300, alarm_failure_rate=0.5), "ecs")))
    result = cfn_lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_the_alarms_and_dashboard_are_created(local_aws: Any, target: Target) -> None:
    kind = cloudformation_kind(local_aws)
    outputs = deploy_stack(local_aws, target, QUICKSTART)
    resources = stack_resources(local_aws, outputs["StackName"])
    cloudwatch = boto3.client("cloudwatch", endpoint_url=local_aws.url, region_name="us-east-1")
    doc = _doc(QUICKSTART, target)
    if kind == "moto":  # moto's CloudFormation creates dashboards, not alarms
        (name,) = [p for t, p in resources.values() if t == "AWS::CloudWatch::Dashboard"]
        body = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
        assert {w["properties"]["title"] for w in body["widgets"]} == {
            w["properties"]["title"] for w in _body(doc)[0]["widgets"]
        }
        assert all(
            w["properties"]["region"] == "us-east-1"
            for w in body["widgets"]
            if w["type"] == "metric"
        )
        return
    # LocalStack's creates alarms, metric math too, not dashboards
    expected = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in _of_type(doc, "AWS::CloudWatch::Alarm").values()
    }
    described = cloudwatch.describe_alarms(AlarmNames=sorted(expected))["MetricAlarms"]
    assert {a["AlarmName"] for a in described} == set(expected)
    for alarm in described:
        assert alarm["Threshold"] == expected[alarm["AlarmName"]]["Threshold"]
        if alarm["AlarmName"].endswith("-failure-rate"):
            (returned,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
            assert returned["Expression"] == FAILURE_RATE
