"""The Lambda handler writes its batch's metrics in the Embedded Metric Format on
stdout; every line validates against the specification's JSON schema and carries
the counts, run times and queue latencies of the batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from examples.quickstart.app import Order, charge, refund
from sqsq.metrics import MAX_VALUES, NAMESPACE
from sqsq.testing import LambdaContext
from tests.test_lambda import event_for, send_raw

SCHEMA = json.loads((Path(__file__).parent / "data" / "emf_schema.json").read_text())


def emf_lines(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def check_emf(document: dict[str, Any]) -> None:
    """The schema, plus the rules it cannot express: every dimension is a string
    member of the root, every metric a number or an array of at most 100 numbers."""
    jsonschema.validate(document, SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(document[key], str)
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert len(values) <= MAX_VALUES
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def test_handler_writes_emf_metrics_that_follow_the_specification(
    quickstart: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    charge.delay(Order(order_id="m-1", cents=100))
    charge.delay(Order(order_id="m-2", cents=200))
    refund.delay("m-3")
    send_raw("quickstart-default", {"task": "no.such.task", "args": []})
    event, _ = event_for("quickstart-default", 4)
    sent_ms = max(int(r["attributes"]["SentTimestamp"]) for r in event["Records"])
    capsys.readouterr()

    quickstart.lambda_handler(event, LambdaContext())

    (document,) = emf_lines(capsys.readouterr().out)
    check_emf(document)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["App", "Queue"]]
    assert (document["App"], document["Queue"]) == ("quickstart", "default")
    assert document["TasksSucceeded"] == 2
    assert document["TasksFailed"] == 1
    assert document["TasksDeadLettered"] == 1
    assert document["TasksRetried"] == 0
    assert len(document["RunTime"]) == 3  # the unknown task never ran
    assert len(document["QueueLatency"]) == 4
    assert all(v >= 0 for v in document["QueueLatency"])
    assert document["_aws"]["Timestamp"] >= sent_ms
    units = {m["Name"]: m.get("Unit") for m in directive["Metrics"]}
    assert units["RunTime"] == units["QueueLatency"] == "Milliseconds"
    assert units["TasksSucceeded"] == "Count"


def test_the_schema_check_can_fail() -> None:
    bad = {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [{"Namespace": "x", "Dimensions": [], "Metrics": []}],
        }
    }
    with pytest.raises(jsonschema.ValidationError):
        check_emf(bad)


def test_large_batches_split_value_arrays_at_the_specification_limit() -> None:
    from datetime import UTC, datetime

    from sqsq.delivery import Delivery
    from sqsq.metrics import documents
    from sqsq.outcome import Outcome, OutcomeKind

    sent = datetime(2026, 1, 1, tzinfo=UTC)
    outcomes = [
        Outcome(
            delivery=Delivery(
                message_id=str(i), receipt_handle="r", body="{}", queue="default", sent_at=sent
            ),
            kind=OutcomeKind.SUCCESS,
            task_id=str(i),
            record=None,
            duration_s=0.01,
        )
        for i in range(250)
    ]
    docs = documents("shop", outcomes, started_s=sent.timestamp() + 2, now_s=sent.timestamp() + 3)
    assert [len(d["RunTime"]) for d in docs] == [100, 100, 50]
    assert docs[0]["TasksSucceeded"] == 250 and "TasksSucceeded" not in docs[1]
    assert docs[0]["QueueLatency"][0] == 2000.0
    for document in docs:
        check_emf(document)
