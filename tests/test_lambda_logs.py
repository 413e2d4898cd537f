"""The Lambda handler's log lines, read as a function with the JSON log format
writes them: each carries the invocation's keys (Powertools Logger's names:
``function_request_id``, ``cold_start``, ``xray_trace_id``, ``function_name``) and,
while a record is handled, ``message_id``, ``task_id`` and ``task`` — the task's
own lines too. A record left for lack of time is said to be left, never
dead-lettered."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

import sqsq.resources
from sqsq.testing import LambdaContext, sqs_event
from sqsq.testing.lambda_runtime import Subprocess
from tests.apps.lamlogs import app, hello, nap
from tests.test_lambda import queue_arn, receive, send_raw

REPO = Path(__file__).resolve().parent.parent
FUNCTION_TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
MESSAGE_TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=1234567890abcdef;Sampled=1"


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """The log lines that are JSON objects, EMF documents left out."""
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    return [line for line in parsed if "_aws" not in line]


@pytest.fixture
def function(local_aws: Any) -> Any:
    """The lamlogs function in one execution environment (a process), JSON logs."""
    sqsq.resources.apply(app)
    environ = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "SQSQ_"))}
    environ |= {"AWS_LAMBDA_FUNCTION_NAME": "lamlogs", "_X_AMZN_TRACE_ID": FUNCTION_TRACE}
    runtime = Subprocess("tests.apps.lamlogs.handler", [REPO], environ)
    yield runtime
    runtime.kill()


def invoke(function: Subprocess, event: dict[str, Any], request_id: str) -> list[dict[str, Any]]:
    response, error, _, _ = function.invoke(event, 30.0, request_id, "arn:aws:lambda:::lamlogs")
    assert error is None and response == {"batchItemFailures": []}
    return json_lines(function.take_logs(request_id))


def test_every_line_of_a_record_carries_the_invocation_and_the_record(function: Any) -> None:
    first, second = hello.delay(1), hello.delay(2)
    messages = sorted(receive("lamlogs-default", 2), key=lambda m: json.loads(m["Body"])["id"])
    event = sqs_event(messages, queue_arn("lamlogs-default"))
    traced = next(r for r in event["Records"] if json.loads(r["body"])["id"] == first.id)
    traced["attributes"]["AWSTraceHeader"] = MESSAGE_TRACE

    lines = invoke(function, event, "req-cold")

    for result, n, trace in ((first, 1, MESSAGE_TRACE), (second, 2, FUNCTION_TRACE)):
        message_id = next(m["MessageId"] for m in messages if result.id in m["Body"])
        own = [line for line in lines if line.get("message_id") == message_id]
        assert {line["message"] for line in own} >= {
            f"hello {n}",
            f"task lamlogs.hello[{result.id}] SUCCESS in {own[-1]['duration_s']:.3f}s",
        }
        for line in own:
            assert line["task_id"] == result.id
            assert line["task"] == "lamlogs.hello"
            assert line["function_request_id"] == "req-cold"
            assert line["function_name"] == "lamlogs"
            assert line["cold_start"] is True
            assert line["xray_trace_id"] == trace.split(";")[0].removeprefix("Root=")

    hello.delay(3)
    warm = invoke(
        function, sqs_event(receive("lamlogs-default", 1), queue_arn("lamlogs-default")), "req-warm"
    )
    (line,) = [line for line in warm if line["message"] == "hello 3"]
    assert line["cold_start"] is False
    assert line["function_request_id"] == "req-warm"


def test_a_dead_letter_left_for_lack_of_time_is_not_said_to_be_dead_lettered(
    local_aws: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Margin 0.5 s, 1.2 s left: the nap (0.9 s) starts; the undecodable record after
    it needs the margin to be stored and copied, and 0.3 s are left: it is listed,
    and its lines say so."""
    sqsq.resources.apply(app)
    nap.delay(0.9)
    bad_id = send_raw("lamlogs-default", {"task": 42})
    messages = sorted(receive("lamlogs-default", 2), key=lambda m: m["MessageId"] == bad_id)
    caplog.set_level(logging.INFO)

    response = app.lambda_handler(
        sqs_event(messages, queue_arn("lamlogs-default")), LambdaContext(remaining_ms=1_200)
    )

    assert response == {"batchItemFailures": [{"itemIdentifier": bad_id}]}
    about = [r for r in caplog.records if getattr(r, "message_id", None) == bad_id]
    assert not [r for r in about if "dead-lettered" in r.getMessage()]
    assert any(r.getMessage().startswith(f"not dead-lettering message {bad_id}") for r in about)
    assert all(getattr(r, "function_request_id", None) == "test-request" for r in about)
