"""Powertools for AWS Lambda inside sqsq's Lambda handler: a function whose handler
is wrapped by Powertools' ``Logger.inject_lambda_context``,
``Metrics.log_metrics`` and ``Tracer.capture_lambda_handler``, with a task that
logs, adds metrics and traces through them, keeps all three working — the task's
Powertools log line carries Powertools' own keys and sqsq's record keys
(``message_id``, ``task_id``, ``task``), Powertools' EMF document holds the task's
metrics (valid against the EMF specification's schema), and the task's X-Ray
subsegment reaches the daemon address — while sqsq's handler settles the batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

import sqsq.resources
from sqsq.testing import sqs_event
from sqsq.testing.lambda_runtime import Subprocess
from tests.apps.lampowertools import app, charge
from tests.test_lambda import queue_arn, receive
from tests.test_metrics import check_emf

REPO = Path(__file__).resolve().parent.parent
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def daemon() -> Any:
    """A UDP socket where the X-Ray SDK sends its segments (the X-Ray daemon's place)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


@pytest.fixture
def function(local_aws: Any, daemon: socket.socket, tmp_path: Path) -> Any:
    sqsq.resources.apply(app)
    environ = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "SQSQ_"))}
    environ |= {
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "LAMBDA_TASK_ROOT": str(tmp_path),  # the X-Ray SDK's sign that it runs in Lambda
        "_X_AMZN_TRACE_ID": TRACE,
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
    }
    runtime = Subprocess("tests.apps.lampowertools.handler", [REPO], environ)
    yield runtime
    runtime.kill()


def test_powertools_logger_metrics_and_tracer_work_inside_a_task(
    function: Subprocess, daemon: socket.socket
) -> None:
    result = charge.delay("o-17", 1250)
    (message,) = receive("lampt-default", 1)
    event = sqs_event([message], queue_arn("lampt-default"))

    response, error, _, _ = function.invoke(event, 30.0, "req-1", "arn:aws:lambda:::orders")

    assert error is None and response == {"batchItemFailures": []}
    assert result.get(timeout=10) == 1250
    lines = [json.loads(line) for line in function.take_logs("req-1") if line.startswith("{")]

    # Logger: Powertools' line, with its own keys and the record's
    (line,) = [line for line in lines if line.get("message") == "charging"]
    assert line["service"] == "orders" and line["cents"] == 1250
    assert line["function_request_id"] == "req-1" and line["cold_start"] is True
    assert line["message_id"] == message["MessageId"]
    assert line["task_id"] == result.id and line["task"] == "lampt.charge"

    # Metrics: Powertools' own EMF document, flushed by log_metrics after sqsq's handler
    emf = [d for d in lines if "_aws" in d]
    orders = [d for d in emf if d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Orders"]
    for document in orders:
        check_emf(document)
    names = [{m["Name"] for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]} for d in orders]
    assert sorted(names, key=len) == [{"ColdStart"}, {"OrdersCharged", "ChargedCents"}]
    (document,) = [d for d in orders if "ChargedCents" in d]
    assert document["ChargedCents"] == [1250.0] and document["service"] == "orders"

    # Tracer: the task's subsegment, with its annotation, sent to the daemon
    subsegments = []
    while not any(s.get("name") == "## tests.apps.lampowertools.charge" for s in subsegments):
        datagram = daemon.recv(65536).decode()
        subsegments.append(json.loads(datagram.split("\n", 1)[1]))
    (traced,) = [s for s in subsegments if s.get("name") == "## tests.apps.lampowertools.charge"]
    assert traced["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert traced["annotations"]["order"] == "o-17"
