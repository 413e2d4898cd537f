"""Issue 18, events: a route wildcard against a hostile 10 KB event value.

``re`` turned the route ``{"wildcard": "*-*-*.log"}`` into ``.*-.*-.*\\.log``, which
backtracks cubically on ``"-" * 10_000``: the worker froze on its event loop for
minutes, ignored SIGTERM, and the 9 messages received with the event never ran. The
matcher now scans each value once (tests/test_events_patterns.py counts its steps):
here a real worker receives the event with 9 neighbours, routes the event to the next
route that matches, runs every neighbour, and honours SIGTERM at once.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps.trust import lines, route_neighbour
from tests.faults.helpers import wait_for

APP = "tests.apps.trust:app"

pytestmark = pytest.mark.slow


@pytest.fixture
def trust(local_aws: Any) -> Iterator[Any]:
    from sqsq.resources import apply
    from tests.apps.trust import app

    apply(app)
    yield app


def test_a_hostile_value_does_not_freeze_the_worker(
    trust: Any, worker: Any, tmp_path: Path
) -> None:
    out = str(tmp_path / "runs.txt")
    sqs = trust.clients.sync("sqs")
    url = trust.directory.url(trust.queue_name("routes"))
    hostile = {"kind": "log", "file": "-" * 10_000, "path": out}  # no ".log": no match
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(hostile))
    results = route_neighbour.delay_many((n, out) for n in range(9))

    process = worker.start(APP, "-Q", "routes", "-c", "10")
    wait_for(lambda: len(lines(out)) == 10, 30, "the event and its 9 neighbours to run")
    assert [r.get(timeout=10) for r in results] == list(range(9))
    assert sorted(lines(out)) == sorted(["other 10000", *(f"neighbour {n}" for n in range(9))])

    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert time.monotonic() - stopped < 10, "SIGTERM was not honoured promptly"
