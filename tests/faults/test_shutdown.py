"""Fault 7: SIGTERM during a batch, and SIGINT twice.

- Running tasks finish within ``--grace``; exit code 0; messages never started
  are visible to another worker at once; nothing is lost.
- Tasks still running when the grace period ends have their messages released
  (visibility 0): another worker picks them up at once.
- A second SIGINT exits immediately (exit code 130).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from sqsq import State
from tests.faults.faultapp import lines, sleepy
from tests.faults.helpers import counts, set_queue, wait_for

APP = "tests.faults.faultapp:app"

pytestmark = pytest.mark.slow


def _starts(path: Path) -> list[str]:
    return [line for line in lines(str(path)) if line.startswith("start")]


@pytest.mark.parametrize(
    ("sleep_s", "grace_s", "finished"),
    [(2.0, 25.0, True), (30.0, 1.0, False)],
    ids=["tasks-finish-within-grace", "grace-runs-out-messages-released"],
)
def test_sigterm_during_a_batch(
    faults: Any, worker: Any, tmp_path: Path, sleep_s: float, grace_s: float, finished: bool
) -> None:
    set_queue(faults, "busy", VisibilityTimeout="120")  # a lost message would hide for 2 min
    out = tmp_path / "runs.txt"
    results = sleepy.delay_many((sleep_s, str(out)) for _ in range(10))
    first = worker.start(APP, "-Q", "busy", "-c", "3", "--grace", str(grace_s))
    wait_for(lambda: len(_starts(out)) == 3, 30, "three tasks to start")
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert "warm shutdown" in stderr
    done = [line for line in lines(str(out)) if line.startswith("done")]
    assert len(done) == (3 if finished else 0)
    assert counts(faults, faults.queue_name("busy")) == (10 - len(done), 0)  # all visible now

    second = worker.run(APP, "-Q", "busy", "-c", "10", timeout=120) if finished else None
    if second is not None:
        assert second.returncode == 0, second.stderr
        assert all(r.get(timeout=5) == "slept" for r in results)
    else:
        # the released messages come straight back: a second worker starts all 10 at once
        again = worker.start(APP, "-Q", "busy", "-c", "10")
        wait_for(lambda: len(_starts(out)) == 3 + 10, 30, "the released tasks to start again")
        again.send_signal(signal.SIGKILL)
        again.wait(timeout=30)
        assert all(r.state is State.PENDING for r in results)


def test_second_sigint_exits_at_once(faults: Any, worker: Any, tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    sleepy.delay(60, str(out))
    process = worker.start(APP, "-Q", "busy", "-c", "1")
    wait_for(lambda: len(_starts(out)) == 1, 30, "the task to start")
    process.send_signal(signal.SIGINT)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:  # signals do not queue: wait until the first was handled
        seen.append(line)
        if "warm shutdown" in line:
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, "".join(seen) + stderr
    assert "cold shutdown" in stderr


def test_sigterm_with_the_default_long_poll_exits_within_grace(
    faults: Any, worker: Any, tmp_path: Path
) -> None:
    """The grace deadline counts from the signal, not from when the open 20 s long
    poll returns: a worker with a long task running and a poll open exits within
    grace + 2 s, with the long task's lease released."""
    set_queue(faults, "busy", VisibilityTimeout="120")  # a kept lease would hide it for 2 min
    out = tmp_path / "runs.txt"
    sleepy.delay(60, str(out))
    grace = 3.0
    # -c 2: one slot stays free, so a 20 s long poll is open beside the running task
    process = worker.start(APP, "-Q", "busy", "-c", "2", "--wait-time", "20", "--grace", str(grace))
    wait_for(lambda: len(_starts(out)) == 1, 30, "the long task to start")
    process.send_signal(signal.SIGTERM)
    # within grace + 2 s (+ 3 s for a loaded machine); waiting out the poll took 20 s + grace
    _, stderr = process.communicate(timeout=grace + 2 + 3)
    assert process.returncode == 0, stderr
    assert "still running at the grace deadline" in stderr
    assert counts(faults, faults.queue_name("busy")) == (1, 0), stderr  # released, not hidden
