"""The claim check under SIGKILL (issue 24): every offloaded task ends, and no object
is ever deleted before its message.

``PAYLOADS_CRASH_TASKS`` tasks (300 in CI: each costs a PutObject, a GetObject and
moto's per-request time; the issue's 2,000 is the same test with the variable set) go
through S3 (``payload_always_through_s3``) to a queue with a 3 s visibility timeout.
Workers are SIGKILLed ``KILLS`` times while they run them, then one drains the rest.
Every task must end SUCCESS, and no message is a ``payload_missing`` dead letter: a
second delivery of a message whose first run deleted the object (after deleting *its*
receive, ``payload_delete=True``) finds the task's final result and is let go. What a
kill leaves — objects whose message was deleted just before the kill, before their
own delete — is what the lifecycle rule and ``sqsq gc`` remove: counted, bounded by
the messages in hand at each kill, and gone after ``gc``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

import sqsq
import sqsq.cli.commands
from sqsq.cli import cli
from tests.apps.payloads import BUCKET, digest
from tests.faults.helpers import counts, set_queue, wait_for

APP = "tests.apps.payloads:app"
TASKS = int(os.environ.get("PAYLOADS_CRASH_TASKS", "300"))
KILLS = 4
CONCURRENCY = 8

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600 if TASKS <= 300 else 3600)]


def _objects() -> list[str]:
    keys: list[str] = []
    for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def test_every_offloaded_task_ends_through_several_sigkills(local_aws: Any, worker: Any) -> None:
    from sqsq.dlq import REDRIVE_POLICY_REASON, describe, peek
    from sqsq.resources import apply
    from tests.apps.payloads import app

    apply(app)
    for key in _objects():  # an external endpoint (conformance) keeps buckets
        boto3.client("s3").delete_object(Bucket=BUCKET, Key=key)
    url = set_queue(app, "default", VisibilityTimeout="3")
    producer = sqsq.App("payloads", payload_bucket=BUCKET, payload_always_through_s3=True)
    try:
        results = [producer.send_task(digest.name, args=[f"{i:06d}" * 200]) for i in range(TASKS)]
    finally:
        producer.close()
    assert len(_objects()) == TASKS

    rng = random.Random(24)
    in_hand = 0
    logs = ""
    for _ in range(KILLS):
        process = worker.start(APP, "-c", str(CONCURRENCY), "--wait-time", "1")
        wait_for(lambda: counts(app, "payloads-default")[1] > 0, 120, "messages in hand")
        time.sleep(rng.uniform(0.2, 1.5))  # then kill it mid-work
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert process.stderr is not None
        logs += process.stderr.read()
        in_hand += CONCURRENCY + 10 + 25 * 4  # its slots, prefetch and settle backlog
    # burst workers until every result is in: a burst worker stops when the queue looks
    # empty, while messages the kills held are still invisible (3 s visibility timeout)
    deadline = time.monotonic() + 300
    while True:
        done = worker.run(APP, "-c", str(CONCURRENCY), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        logs += done.stderr
        if all(r.ready() for r in results) or time.monotonic() > deadline:
            break
        time.sleep(3.5)  # the visibility timeout of messages still held
    wait_for(lambda: all(r.ready() for r in results), 10, "every task's result")
    let_go = logs.count("not run: a duplicate of task")

    assert [r.state for r in results].count(sqsq.State.SUCCESS) == TASKS
    again = sum(1 for r in results if r.record is not None and r.record.attempts > 1)
    assert again > 0  # the kills hit messages in hand: they came back and ran
    # no object went before its message, and a second delivery of a message whose
    # first run deleted the object is let go (its task's result is final), never a
    # payload_missing. A message whose run was stored while a kill kept it from being
    # deleted can come back more often than the queue's maxReceiveCount allows: SQS
    # then moves it to the DLQ.
    dead = peek(app.clients.sync("sqs"), url + "-dlq")
    reasons = [describe(m).reason for m in dead]
    assert set(reasons) <= {REDRIVE_POLICY_REASON}, reasons
    left = _objects()
    # what the kills left between a message's delete and its object's: the lifecycle
    # rule's (or gc's) to remove, never more than the messages in hand at the kills
    print(
        f"{TASKS} tasks, {KILLS} kills, {again} delivered again, {let_go} duplicates "
        f"let go (object deleted by their first run), {len(reasons)} moved to the DLQ "
        f"by SQS: {len(left)} objects left"
    )
    assert len(left) <= min(in_hand, TASKS)

    gc = CliRunner().invoke(cli, ["gc", APP, "--older-than", "0"])
    assert gc.exit_code == 0, gc.output
    assert _objects() == []
