"""Celery's canvas on SQS and DynamoDB (``sqsq.workflows``), through real workers on
the local endpoint: chains, groups, chords (exactly once under duplicates and a
SIGKILL), errbacks, nesting, and a chord completed through the Lambda handler."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq import State, TaskFailed
from sqsq.testing import LambdaContext, sqs_event
from sqsq.workflows import GroupResult
from sqsq.workflows.plan import plan, send
from tests.apps.canvas import add, boom, collect, errback, kill_when_counted, mul, tsum
from tests.faults.helpers import counts, set_queue, wait_for

CANVAS = "tests.apps.canvas:app"


@pytest.fixture
def canvas(local_aws: Any) -> Iterator[Any]:
    """The canvas test app, its queues and table created."""
    from sqsq.resources import apply
    from tests.apps.canvas import app

    apply(app)
    yield app


@pytest.fixture
def running(canvas: Any, worker: Any) -> Iterator[subprocess.Popen[str]]:
    """One worker on every queue of the canvas app, stopped at the end."""
    process = worker.start(CANVAS, "-c", "4")
    yield process
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def drained(app: Any, *queues: str) -> bool:
    return all(counts(app, app.queue_name(q)) == (0, 0) for q in queues)


# --- signatures ----------------------------------------------------------------------------


def test_signatures_are_json_and_compose_with_pipe(canvas: Any) -> None:
    sig = add.s(1, 2).set(countdown=5)
    assert sig.to_dict() == {
        "t": "task",
        "task": add.name,
        "args": [1, 2],
        "kwargs": {},
        "options": {"countdown": 5},
    }
    assert add.si(1, 2).immutable
    flow = add.s(1, 1) | add.s(2) | mul.s(3)
    assert isinstance(flow, sqsq.chain)
    assert [s.to_dict()["task"] for s in flow.tasks] == [add.name, add.name, mul.name]
    json.dumps(flow.to_dict())  # travels in an envelope
    with pytest.raises(sqsq.ConfigurationError, match="unknown signature option"):
        add.s(1, 2).set(priority=3)


def test_a_group_followed_by_a_step_is_a_chord(canvas: Any) -> None:
    flow = sqsq.chain(add.s(1, 1), sqsq.group(add.s(1), add.s(2)), tsum.s(), mul.s(10))
    assert [type(t).__name__ for t in flow.tasks] == ["Signature", "chord"]


# --- chain ------------------------------------------------------------------------------------


def test_three_step_chain_passes_each_result_on(running: Any) -> None:
    result = sqsq.chain(add.s(1, 2), add.s(3), mul.s(10)).delay()
    assert result.get(timeout=90) == 60
    assert result.parent.get(timeout=5) == 6
    assert result.parent.parent.get(timeout=5) == 3
    assert result.parent.parent.parent is None


def test_a_failed_step_stops_the_chain_marks_the_rest_and_runs_the_errback(
    running: Any, tmp_path: Path
) -> None:
    errors = tmp_path / "errors"
    flow = sqsq.chain(add.s(1, 1), boom.s(), add.s(1), mul.s(2))
    flow.link_error(errback.s(str(errors)))
    result = flow.delay()
    with pytest.raises(TaskFailed) as failed:
        result.get(timeout=90)
    assert failed.value.remote_type == "sqsq.workflows.ChainError"
    assert "boom" in str(failed.value) and "ValueError: boom 2" in str(failed.value)
    assert result.parent.state is State.FAILURE  # marked too: it will never run
    wait_for(lambda: len(lines(errors)) == 1, 60, "the errback")
    assert lines(errors) == [result.parent.parent.id]  # the errback got the failed task's id


def test_link_runs_a_callback_with_the_result(running: Any, tmp_path: Path) -> None:
    path = tmp_path / "collected"
    sig = add.s(2, 3)
    sig.link(collect.s(str(path)))
    assert sig.delay().get(timeout=60) == 5
    wait_for(lambda: lines(path) == ["5"], 60, "the link callback")


# --- group -----------------------------------------------------------------------------------


def test_group_of_100_returns_results_in_order(running: Any) -> None:
    result = sqsq.group(add.s(i, i) for i in range(100)).delay()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=180, interval=1) == [2 * i for i in range(100)]
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 100


def test_map_starmap_and_chunks(running: Any) -> None:
    assert tsum.map([[1, 2], [3]]).delay().get(timeout=90) == [3, 3]
    assert add.starmap([(1, 2), (3, 4)]).delay().get(timeout=90) == [3, 7]
    assert add.chunks([(i, i) for i in range(5)], 2).delay().get(timeout=90) == [
        [0, 2],
        [4, 6],
        [8],
    ]


# --- chord -----------------------------------------------------------------------------------


def test_chord_of_50_delivered_twice_fires_its_callback_once(
    canvas: Any, worker: Any, tmp_path: Path
) -> None:
    path = tmp_path / "callback"
    flow = sqsq.chord((add.s(i, i) for i in range(50)), collect.s(str(path)))
    result = flow.freeze()
    frozen = flow.to_dict()
    send(canvas, frozen)  # the chord item, then each member once ...
    sqs = canvas.clients.sync("sqs")
    url = canvas.directory.url(canvas.queue_name("default"))
    members = plan(canvas, frozen).messages
    assert len(members) == 50
    for start in range(0, 50, 10):  # ... and each envelope a second time, plain boto3
        entries = [
            {"Id": str(i), "MessageBody": m.body} for i, m in enumerate(members[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")

    process = worker.start(CANVAS, "-c", "4")
    assert result.get(timeout=240, interval=1) == [2 * i for i in range(50)]
    wait_for(lambda: drained(canvas, "default"), 120, "the duplicates to be consumed")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert [json.loads(line) for line in lines(path)] == [[2 * i for i in range(50)]]


def test_chord_fires_once_when_the_worker_is_killed_after_the_last_count(
    canvas: Any, worker: Any, tmp_path: Path
) -> None:
    path = tmp_path / "callback"
    set_queue(canvas, "default", VisibilityTimeout="2")
    flow = sqsq.chord((add.s(i, 1) for i in range(5)), collect.s(str(path)).set(queue="late"))
    result = flow.freeze()
    chord_id = flow.options["chord_id"]
    # The callback's queue does not exist yet: the finisher counts, cannot send the
    # callback, keeps its message — and is killed right then.
    send(canvas, flow.to_dict())
    kill_when_counted.delay(chord_id, 5)
    first = worker.start(CANVAS, "-c", "4", "-Q", "default,killer")
    first.wait(timeout=120)
    assert first.returncode == -signal.SIGKILL
    assert result.state is State.PENDING
    assert counts(canvas, canvas.queue_name("default"))[0:2] != (0, 0)  # the finisher's is kept

    canvas.clients.sync("sqs").create_queue(QueueName=canvas.queue_name("late"))
    second = worker.start(CANVAS, "-c", "4", "-Q", "default,late")
    assert result.get(timeout=120) == [i + 1 for i in range(5)]
    wait_for(lambda: drained(canvas, "default", "late"), 60, "the queues to drain")
    second.send_signal(signal.SIGTERM)
    second.communicate(timeout=60)
    assert [json.loads(line) for line in lines(path)] == [[i + 1 for i in range(5)]]


def test_a_failed_member_runs_the_errback_not_the_callback(
    running: Any, canvas: Any, tmp_path: Path
) -> None:
    called, errors = tmp_path / "callback", tmp_path / "errors"
    body = collect.s(str(called)).on_error(errback.s(str(errors)))
    result = sqsq.chord([add.s(1, 1), boom.s(7), add.s(2, 2)], body).delay()
    with pytest.raises(TaskFailed) as failed:
        result.get(timeout=90)
    assert failed.value.remote_type == "sqsq.workflows.ChordError"
    message = str(failed.value)
    assert "member 1 of chord" in message and boom.name in message
    assert "ValueError: boom 7" in message
    wait_for(lambda: len(lines(errors)) == 1, 60, "the errback")
    assert lines(errors) == [result.id]
    wait_for(lambda: drained(canvas, "default"), 60, "every member to finish")
    assert not called.exists()


def test_a_chord_sent_from_asyncio(running: Any, canvas: Any) -> None:
    async def produce() -> Any:
        try:
            return await sqsq.chord([add.s(1, 1), add.s(2, 2)], tsum.s()).adelay()
        finally:
            await canvas.aclose()

    assert asyncio.run(produce()).get(timeout=90) == 6


# --- nesting ---------------------------------------------------------------------------------


def test_nested_canvases(running: Any) -> None:
    group_of_chains = sqsq.group(add.s(1, 1) | mul.s(10), add.s(2, 2) | mul.s(10))
    assert group_of_chains.delay().get(timeout=90) == [20, 40]

    chain_of_groups = sqsq.chain(
        add.s(1, 1), sqsq.group(add.s(1), add.s(2)), sqsq.group(tsum.s(), tsum.s())
    )
    assert chain_of_groups.delay().get(timeout=90) == [7, 7]

    chord_in_chain = sqsq.chain(add.s(1, 1), sqsq.chord([add.s(1), add.s(2)], tsum.s()), mul.s(10))
    result = chord_in_chain.delay()
    assert result.get(timeout=90) == 70
    assert result.parent.get(timeout=5) == 7  # the chord's body
    assert result.parent.parent.get(timeout=5) == [3, 4]  # its header
    assert result.parent.parent.parent.get(timeout=5) == 2


def test_a_chord_in_a_chords_header(running: Any, tmp_path: Path) -> None:
    inner = sqsq.chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    assert sqsq.chord([inner, add.s(3, 3)], tsum.s()).delay().get(timeout=90) == 12

    errors = tmp_path / "errors"
    failing = sqsq.chord([add.s(1, 1), boom.s(5)], tsum.s())
    outer = sqsq.chord([failing, add.s(3, 3)], tsum.s().on_error(errback.s(str(errors))))
    with pytest.raises(TaskFailed) as failed:
        outer.delay().get(timeout=90)
    assert failed.value.remote_type == "sqsq.workflows.ChordError"
    message = str(failed.value)  # names the outer member, then the inner one
    assert "member 0 of chord" in message and "member 1 of chord" in message
    assert "ValueError: boom 5" in message
    wait_for(lambda: len(lines(errors)) == 1, 60, "the outer chord's errback")


def test_link_options_of_apply_async_and_group_links(running: Any, tmp_path: Path) -> None:
    path = tmp_path / "collected"
    assert add.s(1, 1).apply_async(link=collect.s(str(path))).get(timeout=60) == 2
    members = sqsq.group(add.s(2, 2), add.s(3, 3))
    members.link(collect.s(str(path)))
    assert members.delay().get(timeout=60) == [4, 6]
    wait_for(lambda: sorted(lines(path)) == ["2", "4", "6"], 60, "every callback")


# --- Lambda ----------------------------------------------------------------------------------


def invoke(app: Any, queue: str, expected: int) -> list[str]:
    """Receive ``expected`` messages of ``queue`` as Lambda's poller would, run them
    through ``app.lambda_handler``, delete those not reported; returns the reported ids."""
    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name(queue))
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    messages: list[dict[str, Any]] = []

    def received() -> bool:
        messages.extend(
            sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=5,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
        )
        return len(messages) >= expected

    wait_for(received, 60, f"{expected} messages in {queue}", interval=0)
    response = app.lambda_handler(sqs_event(messages, arn), LambdaContext())
    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    for m in messages:  # Lambda's poller deletes what was not reported
        if m["MessageId"] not in reported:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return reported


def test_a_chord_completes_through_the_lambda_handler(canvas: Any, tmp_path: Path) -> None:
    path = tmp_path / "callback"
    result = sqsq.chord([add.s(i, i) for i in range(3)], collect.s(str(path))).delay()
    assert invoke(canvas, "default", 3) == []  # the members: the last counted sends the body
    assert invoke(canvas, "default", 1) == []  # the body
    assert result.get(timeout=5) == [0, 2, 4]
    assert [json.loads(line) for line in lines(path)] == [[0, 2, 4]]


def test_lambda_reports_a_member_whose_follow_up_failed(canvas: Any, tmp_path: Path) -> None:
    path = tmp_path / "callback"
    body = collect.s(str(path)).set(queue="late")  # its queue does not exist yet
    result = sqsq.chord([add.s(i, i) for i in range(3)], body).delay()
    reported = invoke(canvas, "default", 3)
    assert len(reported) == 1  # the finisher: counted, body not sent, message kept
    assert result.state is State.PENDING

    canvas.clients.sync("sqs").create_queue(QueueName=canvas.queue_name("late"))
    assert invoke(canvas, "default", 1) == []  # redelivered: the body is sent now
    assert invoke(canvas, "late", 1) == []
    assert result.get(timeout=5) == [0, 2, 4]
    assert [json.loads(line) for line in lines(path)] == [[0, 2, 4]]
