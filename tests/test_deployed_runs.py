"""Deployed, then run: the stacks ``sqsq infra`` generates for ``tests/apps/shipped.py``
are created (``tests/deployed.py: deploy_stack``), and what they made runs real tasks
end to end under AWS's rules —

- **lambda**: the function the stack describes, driven by the simulated SQS event
  source mapping (``sqsq.testing.lambda_esm``) against the stack's queues and table,
  with the template's Timeout (17 s, derived from the tasks' time limits), handler and
  environment; on moto the deployed function's configuration is checked to be that;
- **ecs**: the deployed task definition's command, run as a real ``sqsq worker``
  process with its environment;

each with a long task near its ``time_limit`` and a periodic task fired by the
simulated EventBridge Scheduler (``sqsq.testing.scheduler``) from the template's
schedule — neither emulator fires schedules, and neither runs the function.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from sqsq import State
from sqsq.deploy import Options, render
from sqsq.testing.lambda_esm import EventSourceMapping
from sqsq.testing.scheduler import SimulatedScheduler, schedules_from_template
from tests.deployed import cloudformation_kind, deploy_stack, pause_event_sources, stack_resources
from tests.helpers import ROOT

APP = "tests.apps.shipped:app"

pytestmark = pytest.mark.slow


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s} s")
        time.sleep(0.2)


def _queue_arns(doc: dict[str, Any], physical: dict[str, str]) -> dict[str, str]:
    """``<Queue>.Arn`` of each queue of the stack, for the template's schedules."""
    sqs = boto3.client("sqs")
    arns = {}
    for logical, resource in doc["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue":
            url = (
                physical.get(logical)
                or sqs.get_queue_url(QueueName=resource["Properties"]["QueueName"])["QueueUrl"]
            )
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            arns[f"{logical}.Arn"] = attributes["Attributes"]["QueueArn"]
    return arns


def _fire_minutely(doc: dict[str, Any], physical: dict[str, str]) -> list[str]:
    """Two minutes of the template's ``rate(1 minute)`` schedule, sent by the simulated
    Scheduler to the stack's queue; the fires' ids (Scheduler's execution ids)."""
    resolve = {
        **_queue_arns(doc, physical),
        "SchedulerRole.Arn": "arn:aws:iam::123456789012:role/shipped-sqsq-scheduler",
        "ScheduleGroup": "shipped-sqsq",
    }
    schedules = schedules_from_template(doc, resolve=resolve)
    assert [s.name for s in schedules] == ["minutely"]
    scheduler = SimulatedScheduler(schedules=schedules, sqs_client=boto3.client("sqs"))
    run = scheduler.advance(timedelta(minutes=2))
    sent = run.select("minutely", outcome="sent")
    assert len(sent) == 2, run.outcomes()
    return [fire.execution_id for fire in sent]


def _effects(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines()) if path.exists() else []


def test_the_deployed_lambda_runs_tasks_a_long_one_and_scheduled_fires(
    local_aws: Any, tmp_path: Path
) -> None:
    from tests.apps import shipped

    kind = cloudformation_kind(local_aws)
    outputs = deploy_stack(local_aws, "lambda", APP)
    stack = outputs["StackName"]
    resources = stack_resources(local_aws, stack)
    physical = {logical: value for logical, (_, value) in resources.items()}
    doc = render(shipped.app, "lambda", Options(APP))
    function = doc["Resources"]["TaskFunction"]["Properties"]
    assert function["Timeout"] == shipped.LONG_LIMIT_S + 3 + 2 == 17
    if kind == "moto":  # the deployed function is the template's
        pause_event_sources(local_aws, stack)  # moto's own mapping would invoke in Docker
        deployed = boto3.client("lambda").get_function_configuration(
            FunctionName=physical["TaskFunction"]
        )
        assert deployed["Timeout"] == function["Timeout"]
        assert deployed["Handler"] == function["Handler"] == "tests.apps.shipped.lambda_handler"
        assert deployed["Environment"]["Variables"]["SQSQ_LAMBDA_SAFETY_MARGIN_S"] == "2"
    effects = tmp_path / "effects"
    work = [shipped.work.delay(n) for n in range(3)]
    fires = _fire_minutely(doc, physical)

    with EventSourceMapping.from_template(
        doc,
        physical_ids=physical,
        code_dir=ROOT,
        environ={"SHIPPED_EFFECTS": str(effects)},
    ) as esm:
        assert esm.timeout_s == 17
        first = esm.drain(
            until=lambda: (
                all(r.ready() for r in work)
                and all(shipped.app.AsyncResult(f).ready() for f in fires)
            ),
            timeout_s=90,
        )
        # alone, so the batch's other records do not wait on it (they would not fit after it)
        long = shipped.long_job.delay(shipped.LONG_LIMIT_S - 2)
        second = esm.drain(until=long.ready, timeout_s=60)

    invocations = first + second
    assert not any(i.error or i.timed_out or i.violations for i in invocations), invocations
    assert [r.get(timeout=5) for r in work] == [0, 2, 4]
    scheduled = sorted(shipped.app.AsyncResult(f).get(timeout=5) for f in fires)
    assert len(set(scheduled)) == 2
    assert long.get(timeout=5) == shipped.LONG_LIMIT_S - 2
    (long_run,) = second
    assert shipped.LONG_LIMIT_S - 2 <= long_run.duration_s < 17
    assert _effects(effects) == sorted(
        ["work 0", "work 1", "work 2", "long_job", *(f"minutely {t}" for t in scheduled)]
    )


def test_the_deployed_ecs_task_runs_tasks_a_long_one_and_scheduled_fires(
    local_aws: Any, worker: Any, tmp_path: Path
) -> None:
    from tests.apps import shipped

    if cloudformation_kind(local_aws) != "moto":
        pytest.skip("ECS task definitions are created on moto's CloudFormation only")
    outputs = deploy_stack(local_aws, "ecs", APP)
    resources = stack_resources(local_aws, outputs["StackName"])
    physical = {logical: value for logical, (_, value) in resources.items()}
    ecs = boto3.client("ecs")
    task_definition = next(v for t, v in resources.values() if t == "AWS::ECS::TaskDefinition")
    (container,) = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"][
        "containerDefinitions"
    ]
    assert container["entryPoint"] == ["sqsq"] and container["command"][:2] == ["worker", APP]
    env = {e["name"]: e["value"] for e in container["environment"]}
    effects = tmp_path / "effects"
    process = worker.start(*container["command"][1:], **env, SHIPPED_EFFECTS=str(effects))

    doc = render(shipped.app, "ecs", Options(APP))
    fires = _fire_minutely(doc, physical)
    long = shipped.long_job.delay(shipped.LONG_LIMIT_S - 2)
    work = [shipped.work.delay(n) for n in range(3)]
    _wait(
        lambda: (
            long.ready()
            and all(r.ready() for r in work)
            and all(shipped.app.AsyncResult(f).ready() for f in fires)
        ),
        "every result",
    )
    assert long.state == State.SUCCESS and long.result == shipped.LONG_LIMIT_S - 2
    assert [r.get(timeout=5) for r in work] == [0, 2, 4]
    scheduled = sorted(shipped.app.AsyncResult(f).get(timeout=5) for f in fires)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr
    assert _effects(effects) == sorted(
        ["work 0", "work 1", "work 2", "long_job", *(f"minutely {t}" for t in scheduled)]
    )
