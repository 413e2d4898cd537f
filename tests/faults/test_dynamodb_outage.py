"""DynamoDB alone goes away under a running worker (issue 7).

The worker reaches DynamoDB through a cuttable TCP proxy (``AWS_ENDPOINT_URL_DYNAMODB``)
and SQS directly. Idempotent tasks, the default visibility timeout (30 s). While
claims fail the worker stops receiving; what it received is sent on with a delay
(its receives are not used up: the queue's maxReceiveCount is lowered to 2);
finished outcomes wait, their leases kept, until they can be stored. 0 silent
dead letters, 0 second effects.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sqsq import State
from tests.faults.faultapp import lines, record_key
from tests.faults.helpers import TcpProxy, counts, set_queue, wait_for

APP = "tests.faults.faultapp:app"
N = 40
OUTAGE_S = 45

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_dynamodb_outage_no_silent_dead_letter_no_second_effect(
    faults: Any, worker: Any, tmp_path: Path, sqsq_endpoint: Any
) -> None:
    out, gate = tmp_path / "effects.txt", tmp_path / "gate"
    gate.touch()
    dynamodb = sqsq_endpoint.url_for("dynamodb")
    if dynamodb is None:
        pytest.skip("needs an endpoint on this machine to put a proxy in front of")
    host, port = dynamodb.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    # every receive counts: 2 receives without an outcome and SQS moves a message
    sqs = faults.clients.sync("sqs")
    url = faults.directory.url(faults.queue_name("keys"))
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    set_queue(faults, "keys", RedrivePolicy=json.dumps({**policy, "maxReceiveCount": 2}))
    try:
        results = record_key.delay_many((k, str(out), str(gate), 10) for k in range(N))
        env = {"AWS_ENDPOINT_URL_DYNAMODB": proxy.url, "SQSQ_MAX_ATTEMPTS": "2"}
        env.pop("SQSQ_ENDPOINT_URL", None)
        assert "SQSQ_ENDPOINT_URL" not in os.environ
        process = worker.start(APP, "-Q", "keys", "-c", "4", **env)
        wait_for(lambda: len(lines(str(out))) >= 10, 90, "the first keys to run")
        time.sleep(1)  # the gated keys are claimed and running
        proxy.cut()
        gate.unlink()  # the running bodies finish during the outage
        time.sleep(OUTAGE_S)
        assert process.poll() is None, "the worker died during the outage"
        proxy.restore()
        for result in results:
            assert result.get(timeout=180) is not None
        assert all(r.state is State.SUCCESS for r in results)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        proxy.close()
    effects = Counter(lines(str(out)))
    assert effects == Counter(str(k) for k in range(N)), "a key ran twice or never"
    dlq = faults.queue_name("keys") + "-dlq"
    assert counts(faults, dlq) == (0, 0), "a message went to the DLQ"
    assert counts(faults, faults.queue_name("keys")) == (0, 0)
    # (On LocalStack + dynalite too, since TcpProxy.cut stopped letting one more
    # connection through: before, the pause was not seen there.)
    assert "receiving pauses" in stderr
