"""Fault 3: a task that always raises ends in the DLQ after exactly max_retries retries.

The delays between attempts grow (exponential backoff, read from the stored
attempt timestamps), the reason is readable with ``sqsq dlq ls``, and
``sqsq dlq redrive`` brings the message back to its queue.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sqsq import State
from tests.faults.faultapp import always_fails, lines
from tests.faults.helpers import counts

APP = "tests.faults.faultapp:app"

pytestmark = pytest.mark.slow


def _sqsq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sqsq", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_always_failing_task_reaches_dlq_and_comes_back(
    faults: Any, worker: Any, tmp_path: Path, sqsq_endpoint: Any
) -> None:
    out = tmp_path / "attempts.txt"
    result = always_fails.delay(str(out))
    process = worker.start(APP, "-Q", "retry")
    result.get(timeout=60, propagate=False)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr

    max_retries = always_fails.retry_policy.max_retries
    assert max_retries == 3
    assert len(lines(str(out))) == max_retries + 1
    record = result.record
    assert record is not None
    assert record.state is State.FAILURE
    assert record.dead_letter_reason == "max_retries_exceeded"
    assert record.exc_type == "ValueError" and record.attempts == max_retries + 1

    attempts = faults.results.attempts(result.id)
    assert [a["state"] for a in attempts] == ["RETRY"] * max_retries + ["FAILURE"]
    starts = [datetime.fromisoformat(a["started_at"]) for a in attempts]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps == sorted(gaps) and gaps[0] >= 1 and gaps[-1] >= 4, gaps
    assert [a["retry_delay_s"] for a in attempts[:-1]] == [1, 2, 4]

    source = faults.queue_name("retry")
    assert counts(faults, source) == (0, 0)
    listing = _sqsq("dlq", "ls", APP, "retry", "--json")  # the logical queue
    assert listing.returncode == 0, listing.stderr
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [(r["task_id"], r["reason"], r["error_type"], r["attempts"]) for r in rows] == [
        (result.id, "max_retries_exceeded", "ValueError", max_retries + 1)
    ]
    assert counts(faults, source + "-dlq") == (1, 0)  # listing consumed nothing

    table = _sqsq("dlq", "ls", APP, source)  # or the physical name
    assert "max_retries_exceeded" in table.stdout and always_fails.name in table.stdout
    assert "1 visible, 0 in flight" in table.stdout

    redriven = _sqsq("dlq", "redrive", APP, "retry")
    assert redriven.returncode == 0, redriven.stderr
    assert counts(faults, source + "-dlq") == (0, 0)
    assert counts(faults, source) == (1, 0)
    sqs = faults.clients.sync("sqs")
    back = sqs.receive_message(
        QueueUrl=faults.directory.url(source), MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(back[0]["Body"])["id"] == result.id
    if not sqsq_endpoint.has_message_move_tasks:
        # sqsq's own move drops its dead-letter attributes; an SQS move task moves the
        # message as it is (they are replaced if it is dead-lettered again)
        assert "sqsq-dead-letter-reason" not in back[0].get("MessageAttributes", {})
