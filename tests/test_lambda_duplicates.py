"""Two records with one idempotency key in one Lambda batch: the second resolves to the
first one's outcome in the same invocation — one body run, both records resolved (not
listed), no message sent on — on SQS events built from really received messages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import sqsq
from sqsq import State
from sqsq.local import LocalEndpoint
from sqsq.testing import LambdaContext
from tests.apps import reliability as rel
from tests.test_lambda_reliability import DEFAULT, event_of, listed


@pytest.fixture
def rapp(local_aws: LocalEndpoint) -> sqsq.App:
    return rel.setup()


def sends(app: sqsq.App) -> int:
    counts = app.clients.counter.snapshot()
    return counts.get("sqs.SendMessage", 0) + counts.get("sqs.SendMessageBatch", 0)


def test_a_duplicate_in_the_same_batch_gets_the_first_value_in_the_invocation(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.log")
    first = rel.charge_once.delay("o-7", 500, path)
    second = rel.charge_once.delay("o-7", 500, path)
    event, _ = event_of(DEFAULT, 2)
    before = sends(rapp)

    started = time.monotonic()
    response = rapp.lambda_handler(event, LambdaContext())
    took_s = time.monotonic() - started
    print(f"two records with one key: the invocation took {took_s:.3f} s")

    assert listed(response) == []
    assert rel.lines(path) == ["o-7"]  # one body run
    assert sends(rapp) == before  # nothing sent on (before: the second was re-sent, delayed)
    value = {"order_id": "o-7", "cents": 500, "run": 1}
    assert first.get(timeout=0) == value
    assert second.get(timeout=0) == value
    assert second.record is not None
    assert second.record.extra["duplicate_of"] == first.id
    assert rel.counts(DEFAULT) == (0, 0)  # both deleted


def test_a_duplicate_in_the_same_batch_with_other_arguments_is_a_conflict(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.log")
    first = rel.charge_once.delay("o-8", 500, path)
    other = rel.charge_once.delay("o-8", 999, path)
    event, _ = event_of(DEFAULT, 2)

    response = rapp.lambda_handler(event, LambdaContext())

    assert listed(response) == []
    assert rel.lines(path) == ["o-8"]
    assert first.state is State.SUCCESS
    record = other.record
    assert record is not None and record.state is State.FAILURE
    assert record.dead_letter_reason == "idempotency_conflict"


def test_a_duplicate_in_the_same_batch_resolves_to_the_first_final_failure(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    path = str(tmp_path / "runs.log")
    first = rel.fails_first.delay("k-9", path)
    second = rel.fails_first.delay("k-9", path)
    event, _ = event_of(DEFAULT, 2)
    before = sends(rapp)

    response = rapp.lambda_handler(event, LambdaContext())

    assert listed(response) == []
    assert rel.lines(path) == ["k-9"]  # not run a second time
    for result in (first, second):
        record = result.record
        assert record is not None and record.state is State.FAILURE
        assert (record.exc_type, record.exc_message) == ("ValueError", "first run fails")
    assert second.record is not None and second.record.extra["duplicate_of"] == first.id
    # the two dead letters are copied to the DLQ (one SendMessageBatch), nothing re-sent
    assert sends(rapp) - before == 1
    assert rel.counts(DEFAULT) == (0, 0)
