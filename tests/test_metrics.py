"""The Lambda handler writes its batch's metrics in the Embedded Metric Format on
stdout, per queue and task; every line validates against the specification's JSON
schema and carries the counts, run times and queue latencies of the batch. The
worker's interval aggregate (``Aggregate(keep=…)``) samples its value arrays to the
specification's limit and keeps exact counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from examples.quickstart.app import Order, charge, refund
from sqsq.metrics import (
    MAX_DIMENSIONS,
    MAX_METRICS,
    MAX_VALUES,
    NAMESPACE,
    UNREGISTERED_TASK,
    Aggregate,
)
from sqsq.testing import LambdaContext
from tests.test_lambda import event_for, send_raw

SCHEMA = json.loads((Path(__file__).parent / "data" / "emf_schema.json").read_text())


def emf_lines(text: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def check_emf(document: dict[str, Any]) -> None:
    """The schema, plus the rules it cannot express: every dimension is a string
    member of the root, at most 30 in a set; at most 100 metrics in a directive,
    each a number or an array of at most 100 numbers."""
    jsonschema.validate(document, SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        assert len(directive["Metrics"]) <= MAX_METRICS
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= MAX_DIMENSIONS
            for key in dimension_set:
                assert isinstance(document[key], str)
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert len(values) <= MAX_VALUES
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def test_handler_writes_emf_metrics_per_task_that_follow_the_specification(
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

    documents = emf_lines(capsys.readouterr().out)
    documents = [d for d in documents if "ColdStart" not in d]  # the process's first call
    for document in documents:
        check_emf(document)
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        # the per-queue aggregate and the per-task figures, from one document
        assert directive["Dimensions"] == [["App", "Queue"], ["App", "Queue", "Task"]]
        assert (document["App"], document["Queue"]) == ("quickstart", "default")
        assert document["_aws"]["Timestamp"] >= sent_ms
        units = {m["Name"]: m.get("Unit") for m in directive["Metrics"]}
        assert units["TasksSucceeded"] == "Count"
        assert all(units[n] == "Milliseconds" for n in ("RunTime", "QueueLatency") if n in units)
    by_task = {d["Task"]: d for d in documents}
    assert sorted(by_task) == [UNREGISTERED_TASK, charge.name, refund.name]
    counts = {
        t: (d["TasksSucceeded"], d["TasksFailed"], d["TasksDeadLettered"], d["TasksRetried"])
        for t, d in by_task.items()
    }
    assert counts == {
        charge.name: (2, 0, 0, 0),
        refund.name: (0, 1, 0, 0),
        UNREGISTERED_TASK: (0, 0, 1, 0),  # "no.such.task" is not made a dimension value
    }
    assert len(by_task[charge.name]["RunTime"]) == 2
    assert len(by_task[refund.name]["RunTime"]) == 1
    assert "RunTime" not in by_task[UNREGISTERED_TASK]  # it never ran
    assert sum(len(d["QueueLatency"]) for d in documents) == 4
    assert all(v >= 0 for d in documents for v in d["QueueLatency"])


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
    docs = documents(
        "shop", outcomes, started_s=sent.timestamp() + 2, now_s=sent.timestamp() + 3, tasks=()
    )
    assert [len(d["RunTime"]) for d in docs] == [100, 100, 50]
    assert docs[0]["TasksSucceeded"] == 250 and "TasksSucceeded" not in docs[1]
    assert docs[0]["QueueLatency"][0] == 2000.0
    for document in docs:
        check_emf(document)


def _outcomes(n: int, kind: Any = None) -> list[Any]:
    from datetime import UTC, datetime

    from sqsq.delivery import Delivery
    from sqsq.outcome import Outcome, OutcomeKind
    from sqsq.result import ResultRecord, State

    sent = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Outcome(
            delivery=Delivery(
                message_id=str(i), receipt_handle="r", body="{}", queue="default", sent_at=sent
            ),
            kind=kind or OutcomeKind.SUCCESS,
            task_id=str(i),
            record=ResultRecord(task_id=str(i), state=State.SUCCESS, task="shop.charge"),
            duration_s=(i + 1) / 1000,
        )
        for i in range(n)
    ]


def test_the_worker_aggregate_samples_values_and_keeps_exact_counts() -> None:
    import random

    aggregate = Aggregate(keep=MAX_VALUES, rng=random.Random(7))
    for outcome in _outcomes(1000):
        aggregate.add(outcome, "shop.charge", reached_s=outcome.delivery.sent_at.timestamp() + 1)
    (document,) = aggregate.documents("shop", members={"Worker": "host:1"})
    check_emf(document)
    assert document["TasksSucceeded"] == 1000
    assert document["Worker"] == "host:1"
    assert len(document["RunTime"]) == len(document["QueueLatency"]) == MAX_VALUES
    run_ms = document["RunTime"]
    assert len(set(run_ms)) == MAX_VALUES and set(run_ms) <= {float(i + 1) for i in range(1000)}
    assert max(run_ms) > MAX_VALUES  # a sample of all of them, not the first hundred
    assert document["QueueLatency"] == [1000.0] * MAX_VALUES


def test_task_dimension_names_only_registered_tasks() -> None:
    from sqsq.metrics import task_of

    (outcome,) = _outcomes(1)
    assert task_of(outcome, {"shop.charge"}) == "shop.charge"
    assert task_of(outcome, {"shop.refund"}) == UNREGISTERED_TASK
    outcome.record = None  # an undecodable body
    assert task_of(outcome, {"shop.charge"}) == UNREGISTERED_TASK
