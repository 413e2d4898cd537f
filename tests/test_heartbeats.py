"""Worker heartbeats: one PutItem per interval, gone at a clean exit, ignored once
expired (a SIGKILLed worker), and a failing write never stops the worker."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

import sqsq
from sqsq.status import collect
from sqsq.worker.heartbeat import (
    HEARTBEAT_MISSES,
    WorkerHeartbeat,
    heartbeat_key,
    worker_from_item,
)
from tests.conftest import QUICKSTART
from tests.helpers import until

#: Heartbeat interval of the test workers, seconds (SQSQ_HEARTBEAT_INTERVAL_S).
INTERVAL_S = 1.0
#: Longest a test waits for what it expects to become true, seconds.
WAIT_S = 60.0


def _until(what: Callable[[], Any], description: str) -> Any:
    return until(what, description, WAIT_S)


def _pids(app: sqsq.App) -> set[int]:
    return {w.pid for w in collect(app, failure_sample=0).workers}


def _item(app: sqsq.App, pid: int) -> dict[str, Any] | None:
    """The heartbeat item of worker ``pid`` as stored (expired or not)."""
    worker_id = f"{os.uname().nodename}:{pid}"
    key = heartbeat_key(app.name, worker_id)
    response = app.clients.sync("dynamodb").get_item(
        TableName=app.table_name, Key=key, ConsistentRead=True
    )
    item: dict[str, Any] | None = response.get("Item")
    return item


def test_sigkilled_worker_disappears_within_its_ttl_and_a_stopped_one_at_once(
    quickstart: sqsq.App, worker: Any
) -> None:
    env = {"SQSQ_HEARTBEAT_INTERVAL_S": str(INTERVAL_S)}
    first, second = worker.start(**env), worker.start(**env)
    both = {first.pid, second.pid}
    _until(lambda: _pids(quickstart) == both, "both workers listed")

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    _until(lambda: _pids(quickstart) == {second.pid}, "the killed worker gone")
    # the reader ignored it: its item is still stored (moto applies no TTL; AWS's
    # deletes lazily), and its expires_at is past
    left = _item(quickstart, first.pid)
    assert left is not None
    assert float(left["expires_at"]["N"]) <= time.time()
    assert worker_from_item(left) is None

    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0
    assert _item(quickstart, second.pid) is None  # a clean exit deletes the item
    assert _pids(quickstart) == set()


def test_one_put_item_per_interval_and_one_delete_at_exit(
    quickstart: sqsq.App, worker: Any
) -> None:
    """Counted by the worker's own botocore ``before-send`` hook (the summary line)."""
    env = {"SQSQ_HEARTBEAT_INTERVAL_S": str(INTERVAL_S)}
    process = worker.start(QUICKSTART, "--log-format", "json", **env)
    _until(lambda: _pids(quickstart) == {process.pid}, "the worker listed")
    seen: set[str] = set()  # each write stamps a new last_seen

    def three_writes() -> bool:
        item = _item(quickstart, process.pid)
        seen.update([item["last_seen"]["N"]] if item else [])
        return len(seen) >= 3

    _until(three_writes, "three heartbeats")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    summary = next(
        json.loads(line)
        for line in stderr.splitlines()
        if line.startswith("{") and json.loads(line).get("event") == "worker.stopped"
    )
    requests = {k: n for k, n in summary["requests"].items() if k.startswith("dynamodb.")}
    puts = requests.pop("dynamodb.PutItem")
    assert requests == {"dynamodb.DeleteItem": 1}  # an idle worker: nothing else
    # the first write at start, then at most one per interval
    assert 3 <= puts <= summary["elapsed_s"] / INTERVAL_S + 1


def test_a_heartbeat_carries_the_workers_counts(quickstart: sqsq.App, worker: Any) -> None:
    from examples.quickstart.app import charge, refund

    process = worker.start(QUICKSTART, "-c", "3", SQSQ_HEARTBEAT_INTERVAL_S=str(INTERVAL_S))
    results = [charge.delay({"order_id": f"o-{i}", "cents": 5}) for i in range(3)]
    failing = refund.delay("o-9")
    for result in [*results, failing]:
        result.get(timeout=60, propagate=False)

    def counted() -> Any:
        found = [w for w in collect(quickstart, failure_sample=0).workers if w.pid == process.pid]
        return found and found[0].processed == 4 and found[0]

    info = _until(counted, "the worker's counts in its heartbeat")
    assert (info.failed, info.concurrency, info.pool) == (1, 3, "threads")
    assert set(info.queues) == {quickstart.queue_name(q) for q in quickstart.queues()}
    assert info.host == os.uname().nodename
    assert info.expires_at == pytest.approx(info.last_seen + HEARTBEAT_MISSES * INTERVAL_S, abs=1)


def test_a_failing_heartbeat_is_logged_once_and_never_raises(
    local_aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = sqsq.App("heartbeat-nowhere", table_name="no-such-table")
    heartbeat = WorkerHeartbeat(
        app,
        worker_id="h:1",
        queues=["q"],
        concurrency=1,
        pool="threads",
        interval_s=INTERVAL_S,
        busy=lambda: 0,
        counters={},
    )

    async def beats() -> list[bool]:
        try:
            written = [await heartbeat.beat() for _ in range(3)]
            await heartbeat.stop()  # a delete that fails too: never raises
            return written
        finally:
            await app.aclose()

    with caplog.at_level(logging.WARNING, logger="sqsq.worker.heartbeat"):
        assert asyncio.run(beats()) == [False, False, False]
    warnings = [r for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "no-such-table" in warnings[0].getMessage()


def test_heartbeat_interval_zero_writes_none(quickstart: sqsq.App, worker: Any) -> None:
    from examples.quickstart.app import charge

    process = worker.start(SQSQ_HEARTBEAT_INTERVAL_S="0")
    charge.delay({"order_id": "o-1", "cents": 5}).get(timeout=60)
    assert _item(quickstart, process.pid) is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
