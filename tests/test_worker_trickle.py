"""A trickle of messages settles in batches like a backlog; an idempotency key's
completion is written without waiting for the linger.

Real worker subprocesses against the local endpoint; requests are counted by the
worker itself (its ``worker.stopped`` record, ``app.clients.counter``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
import sqsq.resources
from sqsq import State
from sqsq.dynamodb import result_key
from sqsq.idempotency import item_key, key_pk
from tests.apps import misc, reliability
from tests.helpers import queue_counts

MISC = "tests.apps.misc:app"
RELIABILITY = "tests.apps.reliability:app"
#: Messages in one trickle, and the pause between two of them, seconds: long
#: beside a local receive's round trip, so that without a window each receive
#: would bring one message.
TRICKLE = 16
SPACING_S = 0.1


def stop(process: subprocess.Popen[str]) -> dict[str, Any]:
    """SIGTERM the worker; the ``requests`` of its ``worker.stopped`` record."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    for line in stderr.splitlines():
        record = json.loads(line)
        if record.get("event") == "worker.stopped":
            return dict(record["requests"])
    pytest.fail(f"no worker.stopped record:\n{stderr}")


def started(process: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """``process`` once its worker logged that it is consuming (its receivers start)."""
    assert process.stderr is not None
    while "consuming" not in (line := process.stderr.readline()):
        assert line, f"the worker exited ({process.wait()}) before consuming"
    return process


def trickle(app: sqsq.App, worker: Any, window_s: float) -> dict[str, Any]:
    """Send :data:`TRICKLE` ``add`` tasks one by one to an idle worker, wait for every
    result, stop the worker; its requests."""
    process = started(
        worker.start(
            MISC,
            "--log-format",
            "json",
            "--concurrency",
            "4",
            "--wait-time",
            "1",
            "--grace",
            "1",
            SQSQ_RECEIVE_BATCHING_WINDOW_S=str(window_s),
            SQSQ_SETTLE_LINGER_S=str(window_s),
            SQSQ_HEARTBEAT_INTERVAL_S="0",  # its PutItems are not results' (test_heartbeats)
        )
    )
    results = []
    start = time.monotonic()
    for i in range(TRICKLE):  # on a schedule: a slow send does not stretch the trickle
        time.sleep(max(0.0, start + i * SPACING_S - time.monotonic()))
        results.append(misc.add.delay(i, 1))
    assert [r.get(timeout=30, interval=0.05) for r in results] == [i + 1 for i in range(TRICKLE)]
    requests = stop(process)
    assert queue_counts(boto3.client("sqs"), app.directory.url(app.queue_name("default"))) == (
        0,
        0,
    )
    # a long poll the worker cancelled at shutdown stays open on the endpoint for up to
    # its WaitTimeSeconds (1 s) and would take the next trickle's first message
    time.sleep(1.5)
    return requests


def test_a_trickle_is_received_stored_and_deleted_in_batches(local_aws: Any, worker: Any) -> None:
    sqsq.resources.apply(misc.app)

    batched = trickle(misc.app, worker, window_s=0.5)
    one_by_one = trickle(misc.app, worker, window_s=0)

    # a window of 0.5 s over a 1.5 s trickle: a handful of writes and deletes, and of
    # receives (plus the empty long polls after the trickle)
    for action in ("sqs.DeleteMessageBatch", "dynamodb.BatchWriteItem"):
        assert 1 <= batched.get(action, 0) <= TRICKLE / 2, batched
    assert 1 <= batched.get("sqs.ReceiveMessage", 0) <= TRICKLE / 2 + 2, batched
    assert "sqs.DeleteMessage" not in batched and "dynamodb.PutItem" not in batched
    # window 0, the behaviour before it: a receive, a write and a delete per message
    # of a trickle this slow
    for action in ("sqs.ReceiveMessage", "sqs.DeleteMessageBatch", "dynamodb.BatchWriteItem"):
        assert one_by_one.get(action, 0) >= 2 * batched.get(action, 0), (one_by_one, batched)


def test_an_idempotent_completion_is_written_while_its_delete_lingers(
    local_aws: Any, worker: Any, tmp_path: Path
) -> None:
    """With a 60 s linger while a trickle lasts, the result that completes the key is
    stored at once; the message itself is deleted only when the trickle ends (its
    next 20 s long poll comes back empty) or, here, at shutdown."""
    app = reliability.setup()
    process = worker.start(
        RELIABILITY,
        "--log-format",
        "json",
        "--wait-time",
        "20",
        "--grace",
        "1",
        SQSQ_SETTLE_LINGER_S="60",
    )
    ran = tmp_path / "ran"
    result = reliability.charge_once.delay("o-trickle", 700, str(ran))
    table = boto3.client("dynamodb")
    key = item_key(key_pk(reliability.charge_once.name, "o-trickle"))

    def completed() -> bool:
        """The key answered: its item points to its owner, whose result says SUCCESS."""
        item = table.get_item(TableName=app.table_name, Key=key, ConsistentRead=True)
        owner = item.get("Item", {}).get("task_id", {}).get("S")
        if owner is None:
            return False
        stored = table.get_item(
            TableName=app.table_name, Key=result_key(owner), ConsistentRead=True
        )
        return stored.get("Item", {}).get("state", {}).get("S") == "SUCCESS"

    deadline = time.monotonic() + 15  # far below the 60 s linger
    while not completed():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the completion waited for the linger"
        time.sleep(0.05)

    assert result.state is State.SUCCESS
    url = app.directory.url(app.queue_name("default"))
    assert queue_counts(boto3.client("sqs"), url) == (0, 1)  # stored, not yet deleted
    requests = stop(process)
    assert queue_counts(boto3.client("sqs"), url) == (0, 0)
    assert requests.get("dynamodb.BatchWriteItem") == 1, requests
    assert requests.get("sqs.DeleteMessageBatch") == 1, requests
    assert ran.read_text().count("o-trickle") == 1
