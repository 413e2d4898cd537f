"""``track_started``: STARTED seen while a task runs (real worker process, Lambda
handler), replaced by the outcome, never written over one; its cost in requests
per task with and without the option; the attempt timeline after two retries."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
from sqsq import State
from sqsq.dynamodb import result_item
from sqsq.result import ResultRecord
from sqsq.testing import LambdaContext, sqs_event
from tests.apps.started import app, flaky, held, look, plain, quick
from tests.test_worker import json_records, summary_record

APP = "tests.apps.started:app"
#: Longest a test waits for what it expects to become true, seconds.
WAIT_S = 60.0


@pytest.fixture
def started(local_aws: Any) -> Iterator[sqsq.App]:
    from sqsq.resources import apply

    apply(app)
    yield app


def _until(what: Any, description: str, process: subprocess.Popen[str] | None = None) -> Any:
    """Poll ``what()`` until it returns something truthy (a wait, not a timing claim)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker exited before: {description}")
        time.sleep(0.1)
    raise AssertionError(f"never: {description}")


def test_a_running_task_reads_started_with_its_worker_then_its_outcome(
    started: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    result = held.delay(str(go))
    process = worker.start(APP, SQSQ_HEARTBEAT_INTERVAL_S="0")

    record = _until(
        lambda: (r := result.record) is not None and r.state is State.STARTED and r,
        "STARTED while the body runs",
        process,
    )
    assert record.worker == f"{socket.gethostname()}:{process.pid}"
    assert record.started_at is not None and record.started_at <= datetime.now(UTC)
    assert record.finished_at is None
    assert record.attempts == 1 and record.task == held.name
    assert not result.ready() and result.result is None
    (running,) = result.attempts()
    assert (running.state, running.worker, running.finished_at) == (
        State.STARTED,
        record.worker,
        None,
    )

    go.touch()
    assert result.get(timeout=WAIT_S) == "released"
    final = result.record
    assert final is not None and final.state is State.SUCCESS
    assert final.worker == record.worker and final.started_at is not None
    (done,) = result.attempts()
    assert done.state is State.SUCCESS and done.finished_at is not None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.mark.parametrize(("task", "puts"), [(plain, 0), (quick, 1)], ids=["off", "on"])
def test_requests_per_task_with_and_without_the_option(
    started: sqsq.App, worker: Any, task: Any, puts: int
) -> None:
    results = task.delay_many([(i,) for i in range(10)])

    done = worker.run(APP, "--log-format", "json", SQSQ_HEARTBEAT_INTERVAL_S="0")

    assert done.returncode == 0, done.stderr
    assert [r.get(timeout=WAIT_S) for r in results] == list(range(10))
    requests = summary_record(json_records(done.stderr))["requests"]
    # the STARTED writes: one PutItem per task with the option, none without;
    # the outcomes still go out in BatchWriteItems
    assert requests.get("dynamodb.PutItem", 0) == 10 * puts, requests
    assert 1 <= requests.get("dynamodb.BatchWriteItem", 0) <= 10, requests


#: The DynamoDB writes a task's run makes (reads, e.g. the revocation view's Query,
#: depend on what an earlier test left cached in the app).
WRITES = ("dynamodb.PutItem", "dynamodb.BatchWriteItem", "dynamodb.UpdateItem")


def _lambda_run(started: sqsq.App, task: Any) -> tuple[Any, dict[str, int]]:
    result = task.delay()
    sqs = boto3.client("sqs")
    name = started.queue_name(task.queue)
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
    )["Messages"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    before = started.clients.counter.snapshot()
    response = started.lambda_handler(
        sqs_event(messages, arn["QueueArn"]), LambdaContext(request_id="req-7")
    )
    after = started.clients.counter.snapshot()
    assert response == {"batchItemFailures": []}
    spent = {
        k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0) and k in WRITES
    }
    return result, spent


def test_the_lambda_handler_writes_started_before_the_body(started: sqsq.App) -> None:
    result, spent = _lambda_run(started, look)

    # the body read its own result: STARTED, written by this invocation
    assert result.get(timeout=WAIT_S) == "STARTED"
    record = result.record
    assert record is not None and record.worker == "lambda:req-7"
    # PutItem: STARTED; BatchWriteItem: the outcome
    assert spent == {"dynamodb.PutItem": 1, "dynamodb.BatchWriteItem": 1}, spent


def test_the_lambda_handler_without_the_option_writes_once(started: sqsq.App) -> None:
    plain_look = app.task(name="started.plain_look")(lambda: "ran")
    try:
        result, spent = _lambda_run(started, plain_look)
    finally:
        del app.tasks["started.plain_look"]

    assert result.get(timeout=WAIT_S) == "ran"
    assert spent == {"dynamodb.BatchWriteItem": 1}, spent


def _stored(started: sqsq.App, task_id: str) -> State:
    record = started.results.get_result(task_id)
    assert record is not None
    return record.state


def test_started_never_replaces_an_outcome_or_its_own_attempts_retry(started: sqsq.App) -> None:
    now = datetime.now(UTC)
    run = ResultRecord(task_id="t-1", state=State.STARTED, attempts=1, started_at=now)
    assert started.results.start(run) is True  # nothing stored yet
    assert _stored(started, "t-1") is State.STARTED

    for final in (State.SUCCESS, State.FAILURE, State.REVOKED):
        started.results.put_results([("t-1", result_item(replace(run, state=final)))])
        # a late STARTED of the same attempt, or of a later one: refused
        assert started.results.start(run) is False
        assert started.results.start(replace(run, attempts=2)) is False
        assert _stored(started, "t-1") is final

    retry = replace(run, state=State.RETRY, attempts=2)
    started.results.put_results([("t-1", result_item(retry))])
    assert started.results.start(replace(run, attempts=2)) is False  # its own RETRY
    assert started.results.start(replace(run, attempts=3)) is True  # the next try
    assert _stored(started, "t-1") is State.STARTED


def test_the_timeline_after_two_retries(started: sqsq.App, worker: Any) -> None:
    result = flaky.delay(3)
    process = worker.start(APP, SQSQ_HEARTBEAT_INTERVAL_S="0")

    assert result.get(timeout=WAIT_S) == 3
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0

    tries = result.attempts()
    assert [(a.number, a.state) for a in tries] == [
        (1, State.RETRY),
        (2, State.RETRY),
        (3, State.SUCCESS),
    ]
    me = f"{socket.gethostname()}:{process.pid}"
    for attempt in tries:
        assert attempt.worker == me
        assert attempt.started_at is not None and attempt.finished_at is not None
        assert attempt.started_at <= attempt.finished_at
    assert [a.exc_type for a in tries[:2]] == ["tests.apps.started.Flaky"] * 2
    assert [a.exc_message for a in tries[:2]] == ["try 1 of 3", "try 2 of 3"]
    assert [a.retry_delay_s for a in tries] == [1, 1, None]
    assert tries[0].finished_at <= tries[1].started_at  # type: ignore[operator]

    shown = subprocess.run(
        [sys.executable, "-m", "sqsq", "result", APP, result.id],
        env=worker.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    timeline = lines[lines.index("timeline:") + 1 :]
    assert [line.split()[:3] for line in timeline] == [
        ["#1", "RETRY", me],
        ["#2", "RETRY", me],
        ["#3", "SUCCESS", me],
    ]
    assert "tests.apps.started.Flaky: try 1 of 3" in timeline[0]
    as_json = subprocess.run(
        [sys.executable, "-m", "sqsq", "result", APP, result.id, "--json"],
        env=worker.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    shown_json = json.loads(as_json.stdout)
    assert [a["state"] for a in shown_json["timeline"]] == ["RETRY", "RETRY", "SUCCESS"]
