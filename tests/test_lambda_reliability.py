"""``app.lambda_handler`` and reliability: retries, idempotent duplicates, revocations,
FIFO groups and the heartbeat, on SQS events built from really received messages."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq import State
from sqsq.idempotency import item_key, key_pk
from sqsq.local import LocalEndpoint
from sqsq.testing import LambdaContext, sqs_event
from tests.apps import reliability as rel

DEFAULT = "reliab-default"
FIFO = "reliab-orders.fifo"
LEASE = "reliab-lease"


@pytest.fixture
def rapp(local_aws: LocalEndpoint) -> sqsq.App:
    return rel.setup()


def event_of(queue: str, expected: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An SQS event of the next ``expected`` messages of ``queue``, as Lambda's poller
    would receive them, and the messages."""
    messages: list[dict[str, Any]] = []
    while len(messages) < expected:
        batch = rel.receive(queue, wait_s=1, limit=expected - len(messages))
        assert batch, f"only {len(messages)} of {expected} messages in {queue}"
        messages += batch
    return sqs_event(messages, rel.queue_arn(queue)), messages


def listed(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def task_ids(messages: list[dict[str, Any]]) -> list[str]:
    return [json.loads(m["Body"])["id"] for m in messages]


def test_autoretried_record_is_listed_and_comes_back_after_the_backoff(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.log")
    result = rel.lambda_flaky.delay(path)
    event, messages = event_of(DEFAULT, 1)

    response = rapp.lambda_handler(event, LambdaContext())

    assert listed(response) == [messages[0]["MessageId"]]
    assert rel.lines(path) == ["run"]
    assert result.state is State.RETRY
    (attempt,) = rapp.results.attempts(result.id)
    assert (attempt["state"], attempt["retry_delay_s"]) == ("RETRY", 2)
    # its visibility was set to the 2 s backoff: not receivable now, but after the delay
    assert rel.receive(DEFAULT) == []
    assert rel.counts(DEFAULT) == (0, 1)
    (again,) = rel.receive(DEFAULT, wait_s=5)
    assert again["MessageId"] == messages[0]["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_idempotent_duplicate_is_not_run_and_not_listed(rapp: sqsq.App, tmp_path: Path) -> None:
    path = str(tmp_path / "runs.log")
    first = rel.charge_once.delay("o-5", 500, path)
    event, _ = event_of(DEFAULT, 1)
    assert listed(rapp.lambda_handler(event, LambdaContext(request_id="first"))) == []

    duplicate = rel.charge_once.delay("o-5", 500, path)
    event, _ = event_of(DEFAULT, 1)
    assert listed(rapp.lambda_handler(event, LambdaContext(request_id="second"))) == []

    assert rel.lines(path) == ["o-5"]
    assert duplicate.get(timeout=0) == first.get(timeout=0)
    record = duplicate.record
    assert record is not None and record.extra == {"duplicate_of": first.id}
    assert record.worker == "lambda:second"


def test_revoked_record_is_revoked_and_not_listed(rapp: sqsq.App, tmp_path: Path) -> None:
    path = str(tmp_path / "runs.log")
    revoked = rel.counted.delay(path, "revoked")
    kept = rel.counted.delay(path, "kept")
    revoked.revoke()
    time.sleep(rapp.settings.revocation_interval_s)  # a revocation reaches a runner within it
    event, _ = event_of(DEFAULT, 2)

    assert listed(rapp.lambda_handler(event, LambdaContext())) == []

    assert rel.lines(path) == ["kept"]
    assert revoked.state is State.REVOKED
    with pytest.raises(sqsq.TaskRevoked):
        revoked.get(timeout=0)
    assert kept.get(timeout=0) == "kept"


def test_fifo_retry_lists_the_later_records_of_its_group(rapp: sqsq.App, tmp_path: Path) -> None:
    path = str(tmp_path / "runs.log")
    g1_first = rel.fifo_flaky.apply_async((path, "g1", 1), message_group_id="g1")
    g1_second = rel.fifo_step.apply_async((path, "g1", 2), message_group_id="g1")
    g2_only = rel.fifo_step.apply_async((path, "g2", 1), message_group_id="g2")
    g1_third = rel.fifo_step.apply_async((path, "g1", 3), message_group_id="g1")
    _, received = event_of(FIFO, 4)
    order = [g1_first.id, g1_second.id, g2_only.id, g1_third.id]
    g1 = [i for i in task_ids(received) if i != g2_only.id]
    assert g1 == [g1_first.id, g1_second.id, g1_third.id]  # FIFO order within a group
    # SQS promises no order across groups: the event interleaves them as this test needs
    messages = sorted(received, key=lambda m: order.index(json.loads(m["Body"])["id"]))
    event = sqs_event(messages, rel.queue_arn(FIFO))
    ids = dict(zip(task_ids(messages), (m["MessageId"] for m in messages), strict=True))

    response = rapp.lambda_handler(event, LambdaContext())

    assert listed(response) == [ids[g1_first.id], ids[g1_second.id], ids[g1_third.id]]
    assert rel.lines(path) == ["g1:1", "g2:1"]  # g1's later steps did not run
    assert g1_first.state is State.RETRY
    assert g1_second.state is State.PENDING and g1_third.state is State.PENDING
    assert g2_only.get(timeout=0) == "g2:1"


def test_heartbeat_keeps_the_next_record_invisible_during_a_long_one(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    rel.sqs().set_queue_attributes(
        QueueUrl=rel.queue_url(LEASE), Attributes={"VisibilityTimeout": "1"}
    )
    path = str(tmp_path / "runs.log")
    slow = rel.lease_step.delay(path, "slow", 3.0)  # 3 x the queue's visibility timeout
    waiting = rel.lease_step.delay(path, "next", 0.0)
    event, _ = event_of(LEASE, 2)
    received_at = time.monotonic()
    responses: list[dict[str, Any]] = []
    handler = threading.Thread(
        target=lambda: responses.append(rapp.lambda_handler(event, LambdaContext()))
    )

    handler.start()
    stolen: list[str] = []
    polled_at: list[float] = []
    while handler.is_alive():  # another consumer polls the queue meanwhile
        polled_at.append(time.monotonic())
        stolen += task_ids(rel.receive(LEASE))
        time.sleep(0.2)
    handler.join()

    # it polled after the 1 s visibility timeout of the receive had run out: without
    # the heartbeat, "next" would have been visible to it then
    assert any(t - received_at > 1.5 for t in polled_at), polled_at
    assert stolen == []
    assert responses == [{"batchItemFailures": []}]
    assert rel.lines(path) == ["slow", "next"]
    assert slow.get(timeout=0) == "slow" and waiting.get(timeout=0) == "next"
    for result in (slow, waiting):
        record = result.record
        assert record is not None and record.attempts == 1


def test_idempotency_key_stays_claimed_while_a_long_record_runs(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    """A function whose app leases for 1 s runs a keyed record for 4 s; a duplicate
    delivered to a second invocation meanwhile must wait, not run the body again."""
    rel.sqs().set_queue_attributes(
        QueueUrl=rel.queue_url(LEASE), Attributes={"VisibilityTimeout": "1"}
    )
    function = rel.short_app
    function.directory.forget(LEASE)
    path = str(tmp_path / "runs.log")
    rel.slow_once.delay("k-1", path, 4.0)
    rel.slow_once.delay("k-1", path, 4.0)
    first_event, _ = event_of(LEASE, 1)
    second_event, _ = event_of(LEASE, 1)
    handler = threading.Thread(target=function.lambda_handler, args=(first_event, None))

    handler.start()
    try:
        pk = key_pk(rel.slow_once.name, "k-1")
        deadline = time.monotonic() + 10
        while not (item := stored_item(pk)) and time.monotonic() < deadline:
            time.sleep(0.05)
        lease_end = int(item["lease_expires_at"]["N"])
        time.sleep(max(0.0, lease_end + 1 - time.time()))  # past the 1 s lease of the claim
        assert handler.is_alive()  # the first run still goes on
        response = function.lambda_handler(second_event, LambdaContext(request_id="second"))
    finally:
        handler.join()

    assert rel.lines(path) == ["k-1"]
    assert listed(response) == []  # the duplicate was sent on with a delay, not listed
    assert delayed(LEASE) + len(rel.receive(LEASE)) == 1


def delayed(queue: str) -> int:
    """Messages of ``queue`` not yet due (sent with DelaySeconds)."""
    attributes = rel.sqs().get_queue_attributes(
        QueueUrl=rel.queue_url(queue), AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def stored_item(pk: str) -> dict[str, Any]:
    response = rel.app.clients.sync("dynamodb").get_item(
        TableName=rel.app.table_name, Key=item_key(pk), ConsistentRead=True
    )
    return dict(response.get("Item", {}))
