"""The Lambda handler's EMF documents beyond the outcome counts: ``ColdStart`` on an
execution environment's first invocation, a task's own metrics
(``sqsq.metrics.add_metric``) in its (queue, task) document, and ``TasksNotStarted``
for records left for lack of time — each document valid against the EMF schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

import sqsq.resources
from sqsq.metrics import NAMESPACE, add_metric
from sqsq.testing import LambdaContext, sqs_event
from tests.apps.lamlogs import app, charge, hello, nap
from tests.test_lambda import queue_arn, receive
from tests.test_lambda_logs import function  # noqa: F401 - the fixture
from tests.test_metrics import check_emf, emf_lines


def test_cold_start_is_counted_on_the_first_invocation_only(function: Any) -> None:  # noqa: F811
    hello.delay(1)
    event = sqs_event(receive("lamlogs-default", 1), queue_arn("lamlogs-default"))
    function.invoke(event, 30.0, "req-1", "arn:aws:lambda:::lamlogs")
    cold = emf_lines("\n".join(function.take_logs("req-1")))
    hello.delay(2)
    event = sqs_event(receive("lamlogs-default", 1), queue_arn("lamlogs-default"))
    function.invoke(event, 30.0, "req-2", "arn:aws:lambda:::lamlogs")
    warm = emf_lines("\n".join(function.take_logs("req-2")))

    for document in cold + warm:
        check_emf(document)
    (start,) = [d for d in cold if "ColdStart" in d]
    assert start["ColdStart"] == 1 and start["App"] == "lamlogs"
    assert start["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": NAMESPACE,
            "Dimensions": [["App"]],
            "Metrics": [{"Name": "ColdStart", "Unit": "Count"}],
        }
    ]
    assert [d["TasksSucceeded"] for d in cold if "Task" in d] == [1]
    assert not [d for d in warm if "ColdStart" in d]
    assert [d["TasksSucceeded"] for d in warm] == [1]


def test_a_tasks_own_metrics_join_its_document(
    local_aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sqsq.resources.apply(app)
    charge.delay(3)
    charge.delay(5)
    hello.delay(1)
    event = sqs_event(receive("lamlogs-default", 3), queue_arn("lamlogs-default"))
    capsys.readouterr()

    app.lambda_handler(event, LambdaContext())

    documents = [d for d in emf_lines(capsys.readouterr().out) if "Task" in d]
    for document in documents:
        check_emf(document)
    by_task = {d["Task"]: d for d in documents}
    own = by_task["lamlogs.charge"]
    assert sorted(own["ItemsCharged"]) == [3.0, 5.0]
    assert sorted(own["ChargeSize"]) == [300.0, 500.0]
    (directive,) = own["_aws"]["CloudWatchMetrics"]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert (units["ItemsCharged"], units["ChargeSize"]) == ("Count", "Bytes")
    assert directive["Dimensions"] == [["App", "Queue"], ["App", "Queue", "Task"]]
    assert "ItemsCharged" not in by_task["lamlogs.hello"]


def test_add_metric_outside_a_lambda_invocation_adds_nothing_and_checks_its_input() -> None:
    assert add_metric("ItemsCharged", "Count", 1) is False
    assert charge.apply(2).get() == 2  # eager: the task's add_metric is a no-op
    for name, unit, value in (
        ("RunTime", "Count", 1),
        ("", "Count", 1),
        ("Items", "Things", 1),
        ("Items", "Count", float("nan")),
    ):
        with pytest.raises(ValueError):
            add_metric(name, unit, value)


def test_records_left_for_lack_of_time_are_counted(
    local_aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Margin 0.5 s, 1.2 s left: the nap (0.9 s) runs, the two hellos after it are left."""
    sqsq.resources.apply(app)
    nap.delay(0.9)
    messages = receive("lamlogs-default", 1)
    hello.delay(1)
    hello.delay(2)
    messages += receive("lamlogs-default", 2)
    capsys.readouterr()

    response = app.lambda_handler(
        sqs_event(messages, queue_arn("lamlogs-default")), LambdaContext(remaining_ms=1_200)
    )

    assert len(response["batchItemFailures"]) == 2
    documents = [d for d in emf_lines(capsys.readouterr().out) if "Task" in d]
    for document in documents:
        check_emf(document)
    by_task = {d["Task"]: d for d in documents}
    assert by_task["lamlogs.hello"]["TasksNotStarted"] == 2
    assert by_task["lamlogs.hello"]["TasksSucceeded"] == 0
    assert "TasksNotStarted" not in by_task["lamlogs.nap"]
    assert json.dumps(by_task["lamlogs.nap"]["TasksSucceeded"]) == "1"
