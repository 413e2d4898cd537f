"""``sqsq dlq redrive`` with a worker running and a task that fails again at once:
the command ends and each dead-lettered message is redriven exactly once.

Two paths: sqsq's own move (the fallback; moto has no StartMessageMoveTask) and
SQS's message move task, which runs only against an endpoint that has it (the
second CI pass: LocalStack's SQS), where it must move the messages back to the
source queue although sqsq, not a redrive policy, put them in the DLQ.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.faults.faultapp import fails_at_once, lines
from tests.faults.helpers import counts, wait_for

APP = "tests.faults.faultapp:app"
MESSAGES = 25

pytestmark = pytest.mark.slow


def _sqsq(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sqsq", *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # a redrive that never ends fails the test here
        env=dict(os.environ),
    )


def _dead_lettered(faults: Any, worker: Any, path: str, n: int = MESSAGES) -> list[str]:
    """``n`` failed tasks in the "redrive" DLQ, each run once."""
    tokens = [f"t{i}" for i in range(n)]
    fails_at_once.delay_many([(path, token) for token in tokens])
    done = worker.run(APP, "-Q", "redrive")
    assert done.returncode == 0, done.stderr
    dlq = faults.queue_name("redrive") + "-dlq"
    wait_for(lambda: counts(faults, dlq) == (n, 0), 30, "every task in the DLQ")
    assert sorted(lines(path)) == sorted(tokens)
    return tokens


def _redrive_with_a_worker_running(
    faults: Any, worker: Any, tmp_path: Path, *options: str, n: int = MESSAGES
) -> subprocess.CompletedProcess[str]:
    path = str(tmp_path / "runs.txt")
    tokens = _dead_lettered(faults, worker, path, n)
    dlq = faults.queue_name("redrive") + "-dlq"
    other = _sqsq("dlq", "redrive", APP, "redrive", "--error", "KeyError")  # matches none
    assert other.returncode == 0, other.stderr
    assert counts(faults, dlq) == (n, 0)  # nothing moved, everything released
    running = worker.start(APP, "-Q", "redrive", "--wait-time", "1")

    redriven = _sqsq("dlq", "redrive", APP, "redrive", *options)

    # every message came back once, failed again at once and is in the DLQ again
    wait_for(lambda: len(lines(path)) >= 2 * n, 60, "the redriven runs")
    wait_for(lambda: counts(faults, dlq) == (n, 0), 60, "the DLQ copies")
    running.send_signal(signal.SIGTERM)
    _, stderr = running.communicate(timeout=60)
    assert running.returncode == 0, stderr
    assert collections.Counter(lines(path)) == dict.fromkeys(tokens, 2)
    assert counts(faults, faults.queue_name("redrive")) == (0, 0)
    return redriven


def test_fallback_redrive_moves_each_message_once_and_ends(
    faults: Any, worker: Any, tmp_path: Path
) -> None:
    redriven = _redrive_with_a_worker_running(
        faults, worker, tmp_path, "--task", fails_at_once.name
    )
    assert redriven.returncode == 0, redriven.stderr
    assert f"moved {MESSAGES} message(s)" in redriven.stdout
    # (on moto the copies of the re-failed tasks arrive while it runs: "N failed again")


def test_move_task_redrive_moves_each_message_once_and_ends(
    faults: Any, worker: Any, tmp_path: Path, sqsq_endpoint: Any
) -> None:
    if not sqsq_endpoint.has_message_move_tasks:
        pytest.skip(f"{sqsq_endpoint.name} has no StartMessageMoveTask (moto answers 500)")
    redriven = _redrive_with_a_worker_running(faults, worker, tmp_path)
    assert redriven.returncode == 0, redriven.stderr
    assert "message move task" in redriven.stdout
    assert f"COMPLETED: moved {MESSAGES} message(s)" in redriven.stdout


def test_slow_move_task_is_stopped_at_the_count_it_started_with(
    faults: Any, worker: Any, tmp_path: Path, sqsq_endpoint: Any
) -> None:
    """At 2 messages/s the worker dead-letters the first copies while the task still
    runs; a move task that drains until empty (LocalStack) would move them again and
    again — sqsq cancels it once the messages of its start have moved."""
    if not sqsq_endpoint.has_message_move_tasks:
        pytest.skip(f"{sqsq_endpoint.name} has no StartMessageMoveTask (moto answers 500)")
    n = 6
    redriven = _redrive_with_a_worker_running(faults, worker, tmp_path, "--rate", "2", n=n)
    assert redriven.returncode == 0, redriven.stderr
    assert f"COMPLETED: moved {n} message(s)" in redriven.stdout


def test_a_move_task_that_fails_exits_one_with_its_reason(
    faults: Any, worker: Any, tmp_path: Path, sqsq_endpoint: Any
) -> None:
    """The source queue disappears while a slow move task runs: the task FAILS and
    the command says so with exit 1 (it used to print "started" and exit 0)."""
    if not sqsq_endpoint.has_message_move_tasks:
        pytest.skip(f"{sqsq_endpoint.name} has no StartMessageMoveTask (moto answers 500)")
    _dead_lettered(faults, worker, str(tmp_path / "runs.txt"), 6)
    command = [sys.executable, "-m", "sqsq", "dlq", "redrive", APP, "redrive", "--rate", "1"]
    redrive = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        dlq = faults.queue_name("redrive") + "-dlq"
        wait_for(lambda: counts(faults, dlq)[0] < 6, 30, "the move task to start")
        sqs = faults.clients.sync("sqs")
        sqs.delete_queue(QueueUrl=faults.directory.url(faults.queue_name("redrive")))
        stdout, stderr = redrive.communicate(timeout=60)
    finally:
        if redrive.poll() is None:
            redrive.kill()
    assert redrive.returncode == 1, (stdout, stderr)
    assert "FAILED: moved" in stdout
    assert "Error: the message move task FAILED" in stderr
