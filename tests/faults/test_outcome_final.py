"""A stored outcome is final for the body (issue 18).

Each test is a row of the adversarial run against main, with real worker processes
(or the Lambda handler on real SQS receives) on the local endpoint, and a cuttable
TCP proxy where a service goes away:

- a chord body that fails is not run again when the chord's last member comes back
  after the body was sent (its worker died before recording the chord fired);
- a chord whose body, given its members' results, is over SQS's message size fails
  with reason ``chord_body_too_large`` instead of re-running its last member;
- with Step Functions unreachable, a body with a task token runs once; its message
  goes to the DLQ with reason ``task_token_report_failed`` (worker and Lambda);
- a FIFO worker holds its messages (and stops receiving) while DynamoDB claims fail,
  instead of returning them until SQS moves them to the DLQ without a reason;
- a duplicate delivery of a failed schedule fire resolves to its failure.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq import State, TaskFailed
from sqsq.dlq import redrive
from sqsq.schedules.scheduler import input_template, render
from sqsq.sqs import dead_letter_name
from sqsq.testing import LambdaContext, sqs_event
from tests.apps.final import add, big, collect, failing_body, fifo_key, token_job
from tests.faults.helpers import TcpProxy, counts, set_queue, wait_for

APP = "tests.apps.final:app"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture
def final(local_aws: Any) -> Any:
    """The test app, its queues and table created."""
    from sqsq.resources import apply
    from tests.apps.final import app

    apply(app)
    return app


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def url_of(app: Any, queue: str) -> str:
    return str(app.directory.url(app.queue_name(queue)))


def max_receives(app: Any, queue: str, count: int, **attributes: str) -> None:
    """Lower the queue's maxReceiveCount (SQS moves a message received more often to
    the DLQ without a reason) and set other attributes."""
    sqs = app.clients.sync("sqs")
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=url_of(app, queue), AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )
    set_queue(
        app, queue, RedrivePolicy=json.dumps({**policy, "maxReceiveCount": count}), **attributes
    )


def dead_letters(app: Any, queue: str) -> list[str | None]:
    """The ``sqsq-dead-letter-reason`` of every message in ``queue``'s DLQ (None: moved
    by SQS's redrive policy, without a reason); the messages are left in place."""
    sqs = app.clients.sync("sqs")
    url = sqs.get_queue_url(QueueName=dead_letter_name(app.queue_name(queue)))["QueueUrl"]
    seen: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=600,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        seen += messages
    for message in seen:
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return sorted(
        (
            m.get("MessageAttributes", {}).get("sqsq-dead-letter-reason", {}).get("StringValue")
            for m in seen
        ),
        key=str,
    )


def stop(process: Any) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return str(stderr)


# --- canvas ------------------------------------------------------------------------------


def test_a_failing_chord_body_runs_once_when_its_last_member_comes_back(
    final: Any, worker: Any, tmp_path: Path
) -> None:
    from sqsq.workflows.plan import chord_key, plan, send

    runs = tmp_path / "body"
    flow = sqsq.chord([add.s(1, 1), add.s(2, 2)], failing_body.s(str(runs)))
    result = flow.freeze()
    frozen = flow.to_dict()
    send(final, frozen)
    process = worker.start(APP, "-c", "2", "-Q", "default")
    with pytest.raises(TaskFailed, match="the body failed"):
        result.get(timeout=90)
    wait_for(lambda: counts(final, final.queue_name("default")) == (0, 0), 60, "the queue")
    assert len(lines(runs)) == 1
    # The worker that sent the body died before it recorded the chord fired, so SQS
    # delivers the last member again (or delivered it twice meanwhile): it finds the
    # chord complete and not fired, and sends the body again.
    final.clients.sync("dynamodb").update_item(
        TableName=final.table_name,
        Key=chord_key(flow.options["chord_id"]),
        UpdateExpression="REMOVE fired",
    )
    member = plan(final, frozen).messages[-1]
    final.clients.sync("sqs").send_message(
        QueueUrl=url_of(final, "default"), MessageBody=member.body
    )
    dlq = final.queue_name("default") + "-dlq"
    wait_for(
        lambda: len(lines(runs)) > 1 or counts(final, dlq)[0] >= 2,
        90,
        "the body sent again to run or to resolve to its failure",
    )
    wait_for(lambda: counts(final, final.queue_name("default")) == (0, 0), 60, "the queue")
    stderr = stop(process)
    assert len(lines(runs)) == 1, f"the failed body ran again\n{stderr[-3000:]}"
    record = result.record
    assert record is not None and record.state is State.FAILURE
    assert record.exc_type == "ValueError"
    assert dead_letters(final, "default") == ["task_failed", "task_failed"]


def test_a_chord_whose_body_is_too_large_to_send_fails_with_that_reason(
    final: Any, worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    # four results of 300,000 characters: each fits a DynamoDB item, together they
    # are over SQS's 1 MiB message
    members = [big.s(n, 300_000, str(runs)) for n in range(4)]
    result = sqsq.chord(members, collect.s(str(runs))).delay()
    process = worker.start(APP, "-c", "4", "-Q", "default")
    with pytest.raises(TaskFailed) as failed:
        result.get(timeout=90)
    assert failed.value.remote_type == "sqsq.errors.ChordBodyTooLarge"
    assert "cannot be sent" in failed.value.remote_message
    record = result.record
    assert record is not None and record.dead_letter_reason == "chord_body_too_large"
    wait_for(lambda: counts(final, final.queue_name("default")) == (0, 0), 60, "the queue")
    stop(process)
    assert Counter(lines(runs)) == Counter(f"member {n}" for n in range(4))  # once each, no body
    assert counts(final, final.queue_name("default") + "-dlq") == (0, 0)


# --- Step Functions --------------------------------------------------------------------------


def _send_with_token(app: Any, path: Path, token: str) -> str:
    body = json.dumps({"task": token_job.name, "kwargs": {"path": str(path)}, "task_token": token})
    response = app.clients.sync("sqs").send_message(
        QueueUrl=url_of(app, "tokens"), MessageBody=body
    )
    return str(response["MessageId"])


def test_a_worker_that_cannot_report_to_step_functions_runs_the_body_once(
    final: Any, worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    unreachable = TcpProxy("127.0.0.1", 9)
    unreachable.cut()  # connection refused from here on
    max_receives(final, "tokens", 2, VisibilityTimeout="5")
    try:
        task_id = _send_with_token(final, runs, "token-unreachable")
        process = worker.start(
            APP, "-Q", "tokens", AWS_ENDPOINT_URL_SFN=unreachable.url, SQSQ_MAX_ATTEMPTS="1"
        )
        wait_for(lambda: counts(final, final.queue_name("tokens")) == (0, 0), 300, "the message")
        stderr = stop(process)
    finally:
        unreachable.close()
    assert len(lines(runs)) == 1, f"the body ran again\n{stderr[-3000:]}"
    record = final.results.get_result(task_id)
    assert record is not None and record.state is State.SUCCESS and record.value == "done"
    assert record.dead_letter_reason == "task_token_report_failed"
    assert dead_letters(final, "tokens") == ["task_token_report_failed"]


def test_lambda_gives_up_a_report_on_the_last_receive_without_running_the_body_again(
    final: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    unreachable = TcpProxy("127.0.0.1", 9)
    unreachable.cut()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", unreachable.url)
    max_receives(final, "tokens", 2)
    app = sqsq.App(final.name, max_attempts=1)
    app.task(name=token_job.name, queue="tokens")(token_job.fn)
    sqs = app.clients.sync("sqs")
    url = url_of(app, "tokens")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    task_id = _send_with_token(app, runs, "token-lambda")

    def invoke() -> dict[str, Any]:
        messages: list[dict[str, Any]] = []

        def received() -> bool:
            messages.extend(
                sqs.receive_message(
                    QueueUrl=url,
                    WaitTimeSeconds=1,
                    VisibilityTimeout=30,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            )
            return bool(messages)

        wait_for(received, 60, "the message", interval=0)
        response: dict[str, Any] = app.lambda_handler(
            sqs_event(messages, arn), LambdaContext(remaining_ms=60_000)
        )
        for m in messages:  # Lambda's poller: delete what was not listed, return the rest
            listed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            if m["MessageId"] in listed:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return response

    try:
        assert invoke() == {"batchItemFailures": [{"itemIdentifier": task_id}]}  # receive 1
        assert invoke() == {"batchItemFailures": []}  # receive 2: the last; given up
    finally:
        unreachable.close()
        app.close()
    assert len(lines(runs)) == 1
    record = app.results.get_result(task_id)
    assert record is not None and record.state is State.SUCCESS
    assert record.dead_letter_reason == "task_token_report_failed"
    assert counts(app, app.queue_name("tokens")) == (0, 0)
    assert dead_letters(app, "tokens") == ["task_token_report_failed"]


# --- FIFO worker, DynamoDB outage ------------------------------------------------------------

OUTAGE_S = 30


def test_a_fifo_worker_holds_its_messages_while_dynamodb_claims_fail(
    final: Any, worker: Any, tmp_path: Path, sqsq_endpoint: Any
) -> None:
    out = tmp_path / "effects"
    dynamodb = sqsq_endpoint.url_for("dynamodb")
    if dynamodb is None:
        pytest.skip("needs an endpoint on this machine to put a proxy in front of")
    host, port = dynamodb.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    # a 5 s visibility: returned messages come back soon; 2 receives and SQS moves them
    max_receives(final, "keys.fifo", 2, VisibilityTimeout="5")
    assert "SQSQ_ENDPOINT_URL" not in os.environ
    try:
        proxy.cut()
        results = fifo_key.delay_many((k, str(out)) for k in range(10))
        process = worker.start(
            APP,
            "-Q",
            "keys.fifo",
            "-c",
            "4",
            AWS_ENDPOINT_URL_DYNAMODB=proxy.url,
            SQSQ_MAX_ATTEMPTS="2",
        )
        time.sleep(OUTAGE_S)
        assert process.poll() is None, "the worker died during the outage"
        proxy.restore()
        for result in results:
            assert result.get(timeout=180) is not None
        stderr = stop(process)
    finally:
        proxy.close()
    assert Counter(lines(out)) == Counter(str(k) for k in range(10)), "a key ran twice or never"
    assert counts(final, dead_letter_name(final.queue_name("keys.fifo"))) == (0, 0)
    assert "receiving pauses" in stderr and "the FIFO message is held" in stderr


# --- schedules ------------------------------------------------------------------------------


def test_a_duplicate_of_a_failed_schedule_fire_resolves_to_its_failure(
    final: Any, worker: Any, tmp_path: Path
) -> None:
    fires = tmp_path / "fires"
    periodic = final.periodic_tasks["fails-when-fired"]
    at = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    arn = "arn:aws:scheduler:us-east-1:123456789012:schedule/sqsq-final/fails-when-fired"
    fire = render(
        input_template(periodic), scheduled_at=at, execution_id="exec-1", schedule_arn=arn
    )
    retried = render(  # Scheduler's own retry of the invocation: another execution id
        input_template(periodic), scheduled_at=at, execution_id="exec-2", schedule_arn=arn
    )
    sqs = final.clients.sync("sqs")
    url = url_of(final, "fires")
    sqs.send_message(QueueUrl=url, MessageBody=fire)
    first = worker.run(APP, "-Q", "fires", FINAL_FIRES=str(fires))
    assert first.returncode == 0, first.stderr
    assert len(lines(fires)) == 1
    sqs.send_message(QueueUrl=url, MessageBody=fire)  # SQS delivers the fire again
    sqs.send_message(QueueUrl=url, MessageBody=retried)
    second = worker.run(APP, "-Q", "fires", FINAL_FIRES=str(fires))
    assert second.returncode == 0, second.stderr
    assert len(lines(fires)) == 1, f"the failed fire ran again\n{second.stderr[-3000:]}"
    original = final.results.get_result("exec-1")
    assert original is not None and original.state is State.FAILURE
    assert original.exc_type == "ValueError" and "duplicate_of" not in original.extra
    duplicate = final.results.get_result("exec-2")
    assert duplicate is not None and duplicate.state is State.FAILURE
    assert duplicate.extra == {"duplicate_of": "exec-1"}
    assert duplicate.exc_message == "the fire failed"
    assert dead_letters(final, "fires") == ["task_failed"] * 3
    # Redriving is asking for a run: each redriven copy may retake the failed key (the
    # fire fails again each time; had it succeeded, the next copies would resolve to
    # its value)
    report = redrive(
        sqs,
        sqs.get_queue_url(QueueName=dead_letter_name(final.queue_name("fires")))["QueueUrl"],
        url,
    )
    assert report.moved == 3
    third = worker.run(APP, "-Q", "fires", "-c", "1", FINAL_FIRES=str(fires))
    assert third.returncode == 0, third.stderr
    assert len(lines(fires)) == 4, third.stderr[-3000:]
