"""Issue 18, worker: an ``async def`` task that blocks the event loop past the
visibility timeout.

The leases were extended by a coroutine on the blocked loop: the messages held beside
the blocking task (and its own) became visible again, and a second worker ran them a
second time. Leases are now extended from a thread of their own, and a watchdog thread
logs the blocked loop with the task's name and how long it blocked.

Worker A receives a blocking task (3 × the 2 s visibility) and 6 neighbours (3 async,
3 sync) in one receive; worker B polls the same queue from the moment the loop
blocks. Every body runs exactly once, and A's log names the blocking task.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps.trust import async_neighbour, blocks_the_loop, lines, sync_neighbour
from tests.faults.helpers import set_queue, wait_for

APP = "tests.apps.trust:app"
VISIBILITY_S = 2
BLOCK_S = 3 * VISIBILITY_S

pytestmark = pytest.mark.slow


@pytest.fixture
def trust(local_aws: Any) -> Iterator[Any]:
    from sqsq.resources import apply
    from tests.apps.trust import app

    apply(app)
    yield app


def test_a_task_blocking_the_loop_does_not_make_its_neighbours_run_twice(
    trust: Any, worker: Any, tmp_path: Path
) -> None:
    set_queue(trust, "loop", VisibilityTimeout=str(VISIBILITY_S))
    out = str(tmp_path / "runs.txt")
    results = [blocks_the_loop.delay(BLOCK_S, out)]
    results += [async_neighbour.delay(n, out) for n in range(3)]
    results += [sync_neighbour.delay(n, out) for n in range(3)]

    a = worker.start(APP, "-Q", "loop", "-c", "10")
    wait_for(lambda: "blocker start" in lines(out), 30, "the blocking task to start")
    b = worker.start(APP, "-Q", "loop", "-c", "10")  # takes what A's leases let go
    for result in results:
        result.get(timeout=60)
    wait_for(lambda: "blocker done" in lines(out), 30, "the blocking task to end")
    stderrs = []
    for process in (a, b):
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        stderrs.append(stderr)

    expected = ["blocker start", "blocker done"]
    expected += [f"async {n}" for n in range(3)] + [f"sync {n}" for n in range(3)]
    assert sorted(lines(out)) == sorted(expected)  # each body ran exactly once
    blocked = [
        line
        for line in stderrs[0].splitlines()
        if "event loop" in line and "tests.apps.trust.blocks_the_loop" in line
    ]
    assert blocked, stderrs[0]
    durations = [float(m) for line in blocked for m in re.findall(r"(\d+(?:\.\d+)?) ?s\b", line)]
    assert any(BLOCK_S - 1 <= d <= BLOCK_S + 3 for d in durations), blocked
