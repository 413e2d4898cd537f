"""``sqsq worker`` as a real subprocess: running, failing, settling, signals, logs, batching."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
import sqsq.resources
from examples.quickstart.app import Order, charge, refund, render_email
from sqsq import State
from tests.apps import misc
from tests.helpers import queue_counts as counts_at

QUICKSTART = "examples.quickstart.app:app"
MISC = "tests.apps.misc:app"


# --- helpers ----------------------------------------------------------------------------


def queue_counts(app: sqsq.App, queue: str = "default") -> tuple[int, int]:
    """(ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible) of a queue."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=app.queue_name(queue))["QueueUrl"]
    return counts_at(sqs, url)


def send_raw(app: sqsq.App, body: dict[str, Any], queue: str = "default") -> str:
    """Send a hand-written JSON body with plain boto3; returns the SQS MessageId."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=app.queue_name(queue))["QueueUrl"]
    return str(sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))["MessageId"])


def json_records(stderr: str) -> list[dict[str, Any]]:
    """Every non-empty stderr line, parsed; fails on a line that is not a JSON object."""
    records = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"stderr line is not JSON: {line!r}\n--- stderr ---\n{stderr}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def summary_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker's final ``worker ... stopped`` record."""
    found = [
        r
        for r in records
        if str(r.get("logger", "")).startswith("sqsq.worker")
        and str(r.get("message", "")).startswith("worker ")
        and "stopped" in str(r.get("message", ""))
    ]
    assert len(found) == 1, records
    return found[0]


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    process: subprocess.Popen[str] | None = None,
    timeout: float = 60,
) -> None:
    """Poll ``predicate`` until true; fail if ``process`` dies or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"worker exited ({process.returncode}) before {what}:\n{stderr}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_stderr_until(process: subprocess.Popen[str], text: str) -> list[str]:
    """Read the worker's stderr line by line until a line contains ``text``."""
    assert process.stderr is not None
    lines = []
    while True:
        line = process.stderr.readline()
        if not line:
            pytest.fail(f"worker stderr ended before {text!r}:\n{''.join(lines)}")
        lines.append(line)
        if text in line:
            return lines


@pytest.fixture
def misc_app(local_aws: Any) -> sqsq.App:
    """The test app ``tests.apps.misc`` with its queues and table created."""
    sqsq.resources.apply(misc.app)
    return misc.app


# --- running tasks ----------------------------------------------------------------------


def test_plain_boto3_message_runs_under_its_message_id(quickstart: Any, worker: Any) -> None:
    sync_id = send_raw(
        quickstart,
        {
            "task": "examples.quickstart.app.charge",
            "args": [{"order_id": "f-1", "cents": 250}],
            "kwargs": {},
        },
    )
    async_id = send_raw(
        quickstart,
        {
            "task": "examples.quickstart.app.price_quote",
            "args": ["sku-1", 3],
            "kwargs": {"unit_price": "1.25"},
        },
    )

    done = worker.run(QUICKSTART, "--log-format", "json")

    assert done.returncode == 0, done.stderr
    charged = quickstart.AsyncResult(sync_id)
    assert charged.state is State.SUCCESS
    assert charged.result == {"order_id": "f-1", "charged": 250, "currency": "EUR"}
    assert charged.record.message_id == sync_id
    assert charged.record.task == "examples.quickstart.app.charge"
    quote = quickstart.AsyncResult(async_id)
    assert quote.state is State.SUCCESS
    assert quote.result == "3.75"
    assert queue_counts(quickstart) == (0, 0)

    # --log-format json: every stderr line is a JSON object; task lines carry the fields.
    records = json_records(done.stderr)
    task_lines = {r["task_id"]: r for r in records if "task_id" in r and "duration_s" in r}
    assert set(task_lines) == {sync_id, async_id}
    for task_id, name in (
        (sync_id, "examples.quickstart.app.charge"),
        (async_id, "examples.quickstart.app.price_quote"),
    ):
        line = task_lines[task_id]
        assert line["task"] == name
        assert line["queue"] == "default"
        assert isinstance(line["duration_s"], int | float) and line["duration_s"] >= 0
        assert line["state"] == "SUCCESS"
    summary = summary_record(records)
    assert summary["counters"]["succeeded"] == 2


def test_sync_tasks_in_thread_pool_async_tasks_on_the_loop(misc_app: sqsq.App, worker: Any) -> None:
    sync_runs = misc.thread_name.delay_many([()] * 3)
    async_runs = misc.athread_name.delay_many([()] * 3)

    done = worker.run(MISC)

    assert done.returncode == 0, done.stderr
    for result in sync_runs:
        assert result.get(timeout=5).startswith("sqsq-task"), result.result
    for result in async_runs:
        assert result.get(timeout=5) == "MainThread"


def test_failure_is_recorded_and_worker_goes_on_until_sigterm(quickstart: Any, worker: Any) -> None:
    process = worker.start(QUICKSTART)
    failed = refund.delay("o-9")
    wait_until(lambda: failed.ready(), "the failing task's result", process)

    record = failed.record
    assert record is not None and record.state is State.FAILURE
    assert record.exc_type == "RuntimeError"
    assert record.exc_message == "refunds for o-9 are handled by the payments team"
    assert record.traceback is not None
    assert "Traceback (most recent call last)" in record.traceback
    assert "in refund" in record.traceback
    assert "RuntimeError: refunds for o-9" in record.traceback
    with pytest.raises(sqsq.TaskFailed) as raised:
        failed.get(timeout=1)
    assert raised.value.remote_type == "RuntimeError"

    # The same worker process keeps running and takes later messages.
    later = charge.delay(Order(order_id="o-10", cents=100))
    wait_until(lambda: later.ready(), "a later task's result", process)
    assert later.result == {"order_id": "o-10", "charged": 100, "currency": "EUR"}
    assert process.poll() is None
    wait_until(lambda: queue_counts(quickstart) == (0, 0), "both messages deleted", process)

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "warm shutdown" in stderr
    summary = [
        line for line in stderr.splitlines() if "sqsq.worker" in line and " stopped " in line
    ]
    assert len(summary) == 1, stderr
    assert "failed=1" in summary[0] and "succeeded=1" in summary[0]
    assert "Traceback" not in stderr


def test_unstorable_return_values_fail_with_result_not_serializable(
    misc_app: sqsq.App, worker: Any
) -> None:
    not_json = misc.not_json.delay()
    too_big = misc.huge.delay(500_000)  # over DynamoDB's 400 KB item limit
    fine = misc.add.delay(2, 3)

    done = worker.run(MISC)

    assert done.returncode == 0, done.stderr
    assert fine.get(timeout=5) == 5
    for result, words in (
        (not_json, "not JSON-serializable"),
        (too_big, "DYNAMODB_MAX_ITEM_BYTES"),
    ):
        record = result.record
        assert record is not None and record.state is State.FAILURE
        assert record.exc_type == "sqsq.errors.ResultNotSerializable"
        assert record.exc_message is not None and words in record.exc_message
        assert record.value is None
    # deleted after the FAILURE was stored, not left to come back forever
    assert queue_counts(misc_app) == (0, 0)


# --- settling: the outcome is stored before the message goes ----------------------------


def test_fifty_tasks_are_stored_then_deleted_in_batches(quickstart: Any, worker: Any) -> None:
    results = charge.delay_many([(Order(order_id=f"b-{i}", cents=i + 1),) for i in range(50)])

    # no heartbeat: its PutItems are not results' (tests/test_heartbeats.py)
    done = worker.run(QUICKSTART, "--log-format", "json", SQSQ_HEARTBEAT_INTERVAL_S="0")

    assert done.returncode == 0, done.stderr
    for i, result in enumerate(results):
        assert result.state is State.SUCCESS
        assert result.result["charged"] == i + 1
    assert queue_counts(quickstart) == (0, 0)
    summary = summary_record(json_records(done.stderr))
    assert summary["counters"]["succeeded"] == 50
    requests = summary["requests"]
    assert "sqs.DeleteMessage" not in requests, requests
    assert "dynamodb.PutItem" not in requests, requests
    assert 1 <= requests.get("sqs.DeleteMessageBatch", 0) <= 50 / 5, requests
    assert 1 <= requests.get("dynamodb.BatchWriteItem", 0) <= 50 / 10, requests


def test_sigkill_mid_run_loses_no_message(misc_app: sqsq.App, worker: Any, tmp_path: Path) -> None:
    """Whatever instant the worker dies at, a message without a stored result is
    still in the queue (visible, or in flight until its visibility timeout)."""
    total = 30
    results = misc.marker.delay_many([(str(tmp_path / f"m{i}"), 0.3) for i in range(total)])
    process = worker.start(MISC, "--concurrency", "5")
    wait_until(lambda: any(r.ready() for r in results), "a first result", process)

    process.kill()
    process.communicate(timeout=30)

    stored = [r for r in results if r.ready()]
    assert stored, "nothing was stored before the kill"
    visible, in_flight = queue_counts(misc_app)
    assert total - len(stored) <= visible + in_flight, (len(stored), visible, in_flight)


def test_outcomes_that_cannot_be_stored_keep_their_messages(
    misc_app: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    """The worker's results table does not exist: every task runs, no outcome can be
    stored, so no message may be deleted (nor copied to the DLQ)."""
    paths = [tmp_path / f"ran{i}" for i in range(3)]
    results = misc.marker.delay_many([(str(p),) for p in paths])
    results.append(misc.boom.delay("failing, unstored"))
    process = worker.start(MISC, "--log-format", "json", SQSQ_TABLE_NAME="missing")
    wait_until(lambda: all(p.exists() for p in paths), "the tasks to run", process)
    read_stderr_until(process, '"logger": "sqsq.settle"')  # the failed BatchWriteItem

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert [r.state for r in results] == [State.PENDING] * len(results)
    visible, in_flight = queue_counts(misc_app)
    assert visible + in_flight == len(results)
    assert queue_counts(misc_app, "default-dlq") == (0, 0)


# --- queues, concurrency, burst ------------------------------------------------------------


def test_queues_option_consumes_only_that_queue_with_concurrency_one(
    quickstart: Any, worker: Any, tmp_path: Path
) -> None:
    out = tmp_path / "mail"
    emails = [render_email.delay(f"u{i}@example.com", "hi", str(out)) for i in range(4)]
    other = charge.delay(Order(order_id="o-q", cents=5))

    done = worker.run(QUICKSTART, "--queues", "emails", "--concurrency", "1")

    assert done.returncode == 0, done.stderr
    for i, result in enumerate(emails):
        assert result.get(timeout=5) == str(out / f"u{i}_at_example.com.eml")
    assert queue_counts(quickstart, "emails") == (0, 0)
    assert other.state is State.PENDING
    assert queue_counts(quickstart, "default") == (1, 0)


def test_burst_exits_zero_on_empty_queues(quickstart: Any, worker: Any) -> None:
    done = worker.run(QUICKSTART, "--log-format", "json")

    assert done.returncode == 0, done.stderr
    summary = summary_record(json_records(done.stderr))
    assert summary["counters"].get("received", 0) == 0, summary
    assert "Traceback" not in done.stderr


def test_missing_queue_is_a_clear_error_without_traceback(local_aws: Any, worker: Any) -> None:
    done = worker.run(MISC)  # no `resources create` for this app

    assert done.returncode != 0
    assert "sqsq resources create" in done.stderr
    assert "misc-default" in done.stderr
    assert "Traceback" not in done.stderr


# --- signals ----------------------------------------------------------------------------


def test_sigterm_lets_the_running_task_finish(
    misc_app: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    result = misc.marker.delay(str(started), 1.5)
    process = worker.start(MISC, "--log-format", "json")
    wait_until(started.exists, "the task to start", process)

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert result.get(timeout=5) == str(started)
    assert queue_counts(misc_app) == (0, 0)
    summary = summary_record(json_records(stderr))
    assert summary["counters"]["succeeded"] == 1


def test_second_signal_exits_at_once_and_the_message_comes_back(
    misc_app: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    result = misc.marker.delay(str(started), 60)
    process = worker.start(MISC)
    wait_until(started.exists, "the task to start", process)

    process.send_signal(signal.SIGTERM)
    read_stderr_until(process, "warm shutdown")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)

    assert process.returncode == 130
    assert result.state is State.PENDING
    assert queue_counts(misc_app) == (0, 1)  # in flight until its visibility timeout
