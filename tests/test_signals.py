"""Signals in Celery's names (``sqsq.signals``): each sent in a real worker (both
pools), in the Lambda handler and in ``apply()``, from the thread or process
that runs the body; receivers that raise change no outcome and stop no send;
publish signals once per message of ``delay_many``.

The receivers live in ``tests/apps/hooked.py`` and append what they saw to the
file named by ``SQSQ_TEST_SIGNALS_LOG``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq import State, signals
from sqsq.local import LocalEndpoint
from tests.apps import hooked
from tests.conftest import WorkerFactory

APP = "tests.apps.hooked:app"


@pytest.fixture
def hooked_app(local_aws: LocalEndpoint) -> Iterator[sqsq.App]:
    import sqsq.resources

    sqsq.resources.apply(hooked.app)
    yield hooked.app


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The receivers' log file, for this process and the workers it starts."""
    path = tmp_path / "signals.jsonl"
    monkeypatch.setenv(hooked.LOG_VARIABLE, str(path))
    return path


def seen(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def of(lines: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """The task signals of one task id, in the order they were sent."""
    return [
        line
        for line in lines
        if line.get("task_id") == task_id
        or (isinstance(line.get("request"), dict) and line["request"]["id"] == task_id)
    ]


def check_run(lines: list[dict[str, Any]], task_id: str, retval: Any, state: str) -> dict[str, Any]:
    """prerun, then success/failure, then postrun, all in one thread of one process;
    returns the prerun line."""
    run = of(lines, task_id)
    outcome = "task_success" if state == "SUCCESS" else "task_failure"
    assert [line["signal"] for line in run] == ["task_prerun", outcome, "task_postrun"], run
    if state == "SUCCESS":
        assert run[1]["result"] == retval and run[1]["runtime"] >= 0
    assert {(line["pid"], line["thread"]) for line in run} == {(run[0]["pid"], run[0]["thread"])}
    post = run[-1]
    assert post["state"] == state and post["retval"] == retval, post
    return run[0]


def test_worker_thread_pool(hooked_app: sqsq.App, worker: WorkerFactory, log: Path) -> None:
    ok, aok, fails = hooked.ok.delay(2), hooked.aok.delay(2), hooked.fails.delay("no")
    revoked = hooked.ok.delay(5)
    revoked.revoke()
    done = worker.run(APP, "--queues", "default", "--concurrency", "2", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = seen(log)
    # the raising receivers changed no outcome, and were logged
    assert ok.get(timeout=0) == 4 and aok.get(timeout=0) == 6
    assert fails.state is State.FAILURE and revoked.state is State.REVOKED
    assert "receiver explode raised RuntimeError (ignored)" in done.stderr
    first = check_run(lines, ok.id, 4, "SUCCESS")
    assert first["thread"] != "MainThread" and first["args"] == [2]  # a pool thread
    assert check_run(lines, aok.id, 6, "SUCCESS")["thread"] == "MainThread"  # the loop
    failed = check_run(lines, fails.id, {"exception": "ValueError", "message": "no"}, "FAILURE")
    failure = next(line for line in of(lines, fails.id) if line["signal"] == "task_failure")
    assert failure["exception"] == {"exception": "ValueError", "message": "no"}
    assert "ValueError: no" in failure["einfo"] and failed["kwargs"] == {}
    [gone] = of(lines, revoked.id)
    assert gone["signal"] == "task_revoked" and gone["expired"] is False
    assert gone["terminated"] is False and gone["request"]["attempt"] == 1
    [shutdown] = [line for line in lines if line["signal"] == "worker_shutdown"]
    assert shutdown["thread"] == "MainThread" and shutdown["pid"] == first["pid"]


def test_worker_retry_and_shutdown_on_sigterm(
    hooked_app: sqsq.App, worker: WorkerFactory, log: Path
) -> None:
    flaky = hooked.flaky.delay("k")
    process = worker.start(APP, "--queues", "default", "--wait-time", "1")
    with pytest.raises(sqsq.TaskFailed):  # a retry waits invisible: no --burst
        flaky.get(timeout=60)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    lines = seen(log)
    names = [line["signal"] for line in of(lines, flaky.id)]
    assert names == [
        *("task_prerun", "task_retry", "task_postrun"),
        *("task_prerun", "task_failure", "task_postrun"),
    ], names
    [retry] = [line for line in of(lines, flaky.id) if line["signal"] == "task_retry"]
    assert retry["reason"] == {"exception": "KeyError", "message": "'k'"}
    [shutdown] = [line for line in lines if line["signal"] == "worker_shutdown"]
    assert shutdown["pid"] == process.pid


def test_worker_process_pool(hooked_app: sqsq.App, worker: WorkerFactory, log: Path) -> None:
    ok, aok = hooked.ok.delay(1), hooked.aok.delay(1)
    done = worker.run(
        APP, "--queues", "default", "--pool", "processes", "--concurrency", "2", timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert ok.get(timeout=0) == 2 and aok.get(timeout=0) == 3
    lines = seen(log)
    children = {line["pid"] for line in lines if line["signal"] == "worker_process_init"}
    [shutdown] = [line for line in lines if line["signal"] == "worker_shutdown"]
    assert children and shutdown["pid"] not in children  # init in children, exit in the parent
    assert check_run(lines, ok.id, 2, "SUCCESS")["pid"] in children  # a sync body: a child
    in_loop = check_run(lines, aok.id, 3, "SUCCESS")  # an async body: the worker's loop
    assert (in_loop["pid"], in_loop["thread"]) == (shutdown["pid"], "MainThread")
    assert len([line for line in lines if line["signal"] == "worker_process_init"]) == len(
        children
    )  # once per child


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_time_limit_failure_is_sent_by_the_worker(
    hooked_app: sqsq.App, worker: WorkerFactory, log: Path, pool: str
) -> None:
    """A body given up at its hard time limit (thread abandoned, child killed) cannot
    send its outcome: the worker sends task_failure from its loop; no task_success."""
    late = hooked.overrun.delay(3)
    done = worker.run(APP, "--queues", "default", "--pool", pool, timeout=120)
    assert done.returncode == 0, done.stderr
    assert late.state is State.FAILURE
    run = of(seen(log), late.id)
    assert run[0]["signal"] == "task_prerun"
    [failure] = [line for line in run if line["signal"] == "task_failure"]
    assert failure["exception"]["exception"] == "TimeLimitExceeded"
    assert failure["thread"] == "MainThread" and "task_success" not in str(run)
    if pool == "processes":  # the child was killed: no postrun
        assert run[0]["pid"] != failure["pid"] and len(run) == 2


def test_lambda_handler(hooked_app: sqsq.App, log: Path) -> None:
    from sqsq.testing import LambdaContext, sqs_event
    from tests.test_lambda import queue_arn, receive

    ok, fails = hooked.ok.delay(3), hooked.fails.delay("lambda")
    name = hooked_app.queue_name("default")
    event = sqs_event(receive(name, 2), queue_arn(name))
    response = hooked_app.lambda_handler(event, LambdaContext(remaining_ms=120_000))
    assert response == {"batchItemFailures": []}
    assert ok.get(timeout=0) == 6 and fails.state is State.FAILURE
    lines = seen(log)
    here = threading.current_thread().name
    assert check_run(lines, ok.id, 6, "SUCCESS")["thread"] == here
    error = {"exception": "ValueError", "message": "lambda"}
    assert check_run(lines, fails.id, error, "FAILURE")["thread"] == here


def test_apply(log: Path) -> None:
    assert hooked.ok.apply(7).get() == 14
    assert hooked.aok.apply(1).get() == 3
    failed = hooked.flaky.apply("x")
    assert failed.state is State.FAILURE
    lines = seen(log)
    names = [line["signal"] for line in lines]
    assert names == [
        *("task_prerun", "task_success", "task_postrun"),
        *("task_prerun", "task_success", "task_postrun"),
        *("task_prerun", "task_retry", "task_postrun"),
        *("task_prerun", "task_failure", "task_postrun"),
    ], names
    retry = lines[7]
    assert retry["reason"] == {"exception": "KeyError", "message": "'x'"}
    assert retry["request"]["attempt"] == 1 and lines[10]["exception"]["exception"] == "KeyError"
    assert {line["thread"] for line in lines} == {threading.current_thread().name}


def test_publish_delay_many(hooked_app: sqsq.App, log: Path) -> None:
    results = hooked.ok.delay_many([(i,) for i in range(12)])  # two SendMessageBatch calls
    single = hooked.aok.delay(1)
    lines = seen(log)
    before = [line for line in lines if line["signal"] == "before_task_publish"]
    after = [line for line in lines if line["signal"] == "after_task_publish"]
    ids = [r.id for r in results] + [single.id]
    assert [line["headers"]["id"] for line in before] == ids  # once per message, in order
    assert [line["headers"]["id"] for line in after] == ids
    first = after[0]
    assert first["sender"] == hooked.ok.name and first["headers"]["task"] == hooked.ok.name
    assert first["body"]["args"] == [0] and first["body"]["id"] == results[0].id
    assert first["routing_key"] == hooked_app.queue_name("default") and first["exchange"] == ""
    assert before[0]["properties"]["delay_seconds"] == 0
    assert {line["thread"] for line in lines} == {threading.current_thread().name}


def test_publish_of_a_chain_step_by_the_worker(
    hooked_app: sqsq.App, worker: WorkerFactory, log: Path
) -> None:
    """A chain's next step is published by the worker that ran the step before it."""
    from sqsq.workflows import chain

    last = chain(hooked.ok.s(1), hooked.ok.s()).delay()
    done = worker.run(APP, "--queues", "default", timeout=120)
    assert done.returncode == 0, done.stderr
    assert last.get(timeout=0) == 4
    lines = seen(log)
    [shutdown] = [line for line in lines if line["signal"] == "worker_shutdown"]
    by_worker = [line for line in lines if line["pid"] == shutdown["pid"]]
    published = [line for line in by_worker if line["signal"].endswith("_publish")]
    assert [line["signal"] for line in published] == ["before_task_publish", "after_task_publish"]
    assert published[1]["headers"]["id"] == last.id and published[1]["body"]["args"] == [2]


# --- the Signal object ------------------------------------------------------------------


def test_connect_forms_sender_filter_and_disconnect() -> None:
    ping = signals.Signal("ping", ["n"])
    heard: list[tuple[str, Any, int]] = []

    @ping.connect
    def anyone(sender: Any, n: int, **kwargs: Any) -> None:
        assert kwargs["signal"] is ping
        heard.append(("anyone", sender, n))

    @ping.connect(sender=hooked.ok)
    def ok_only(sender: Any, n: int, **kwargs: Any) -> str:
        heard.append(("ok_only", sender, n))
        return "seen"

    def by_name(sender: Any, n: int, **kwargs: Any) -> None:
        heard.append(("by_name", sender, n))

    ping.connect(by_name, sender=hooked.ok.name)
    ping.connect(by_name, sender=hooked.ok.name)  # once only
    replies = ping.send(hooked.ok, n=1)
    assert replies == [(anyone, None), (ok_only, "seen"), (by_name, None)]
    ping.send(hooked.aok, n=2)
    ping.send(hooked.ok.name, n=3)  # the publish signals' sender: a task name
    assert heard == [
        ("anyone", hooked.ok, 1),
        ("ok_only", hooked.ok, 1),
        ("by_name", hooked.ok, 1),
        ("anyone", hooked.aok, 2),
        ("anyone", hooked.ok.name, 3),
        ("ok_only", hooked.ok.name, 3),
        ("by_name", hooked.ok.name, 3),
    ]
    assert ping.disconnect(by_name, sender=hooked.ok.name)
    assert not ping.disconnect(by_name, sender=hooked.ok.name)
    assert not ping.disconnect(ok_only)  # connected with a sender: disconnect names it
    assert ping.disconnect(ok_only, sender=hooked.ok) and ping.disconnect(anyone)
    assert ping.receivers == () and ping.send(hooked.ok, n=4) == []


def test_a_raising_receiver_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    ping = signals.Signal("ping")
    error = RuntimeError("broken")
    after: list[Any] = []

    def broken(**kwargs: Any) -> None:
        raise error

    ping.connect(broken)
    ping.connect(lambda sender, **kwargs: after.append(sender))
    with caplog.at_level(logging.ERROR, logger="sqsq.signals"):
        replies = ping.send("me")
    assert replies[0] == (broken, error) and after == ["me"]
    [entry] = caplog.records
    assert "ping: receiver" in entry.getMessage() and entry.exc_info is not None
