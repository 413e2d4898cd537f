"""Fault 4: a task that kills its own worker every time reaches the DLQ through the
redrive policy (maxReceiveCount), and the next worker is not stuck on it."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from sqsq.sqs import dead_letter_name
from tests.faults.faultapp import kill_my_worker, ping
from tests.faults.helpers import counts, set_queue

APP = "tests.faults.faultapp:app"
MAX_RECEIVES = 2
VISIBILITY_S = 1

pytestmark = pytest.mark.slow


def test_self_killing_task_is_dead_lettered_by_the_redrive_policy(faults: Any, worker: Any) -> None:
    source = faults.queue_name("crash")
    sqs = faults.clients.sync("sqs")
    dlq_url = sqs.get_queue_url(QueueName=dead_letter_name(source))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    set_queue(
        faults,
        "crash",
        VisibilityTimeout=str(VISIBILITY_S),
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}),
    )
    poison = kill_my_worker.delay()
    for _ in range(MAX_RECEIVES):
        crashed = worker.run(APP, "-Q", "crash", "-c", "1")
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        time.sleep(VISIBILITY_S + 0.5)  # the message becomes visible again

    healthy = ping.delay(7)
    after = worker.run(APP, "-Q", "crash", "-c", "1")
    assert after.returncode == 0, after.stderr
    assert healthy.get(timeout=5) == 7

    assert counts(faults, source) == (0, 0)
    assert counts(faults, dead_letter_name(source)) == (1, 0)
    moved = sqs.receive_message(QueueUrl=dlq_url)["Messages"][0]
    assert json.loads(moved["Body"])["id"] == poison.id
    assert poison.state.value == "PENDING"  # no worker lived to record anything
