"""Fault 2: a task running 3× its queue's visibility timeout keeps its message.

The worker extends the visibility timeout (ChangeMessageVisibilityBatch) while
the task runs, so a second worker polling the same queue the whole time never
receives it: one start, one delivery.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.faults.faultapp import lines, long_job
from tests.faults.helpers import set_queue, wait_for

APP = "tests.faults.faultapp:app"
VISIBILITY_S = 2

pytestmark = pytest.mark.slow


def _summary(stderr: str) -> dict[str, Any]:
    for line in reversed(stderr.splitlines()):
        if line.startswith("{") and '"worker.stopped"' in line:
            return dict(json.loads(line))
    raise AssertionError(f"no summary line in:\n{stderr}")


def test_long_task_runs_once_with_one_delivery(faults: Any, worker: Any, tmp_path: Path) -> None:
    set_queue(faults, "lease", VisibilityTimeout=str(VISIBILITY_S))
    out = tmp_path / "starts.txt"
    workers = [worker.start(APP, "-Q", "lease", "--log-format", "json") for _ in range(2)]
    result = long_job.delay(3 * VISIBILITY_S, str(out))
    wait_for(lambda: len(lines(str(out))) == 1, 30, "the task to start")
    pid = result.get(timeout=60)  # both workers poll the queue the whole time

    summaries = []
    for process in workers:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        summaries.append(_summary(stderr))

    assert lines(str(out)) == [f"start {pid}"]
    record = result.record
    assert record is not None and record.attempts == 1
    ran = [s for s in summaries if s["counters"].get("succeeded")]
    assert len(ran) == 1
    assert ran[0]["counters"]["leases_extended"] >= 2
    assert ran[0]["requests"].get("sqs.ChangeMessageVisibilityBatch", 0) >= 2
    assert sum(s["counters"].get("received", 0) for s in summaries) == 1
