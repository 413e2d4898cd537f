"""The execution core on its own (no AWS): deliveries in, outcomes out."""

from __future__ import annotations

import json
from typing import Any

import sqsq
from sqsq.delivery import Delivery
from sqsq.execution import Executor
from sqsq.outcome import OutcomeKind, Prepared

app = sqsq.App("core")


def _explode(order_id: str) -> str:
    raise TypeError("key functions can fail too")


@app.task(idempotency_key=_explode)
def keyed(order_id: str) -> str:
    return order_id


@app.task(autoretry_for=(ValueError,), max_retries=2, retry_backoff=1, retry_jitter=False)
def flaky() -> None:
    raise ValueError("down")


def _delivery(body: dict[str, Any], receive_count: int = 1) -> Delivery:
    return Delivery("m-1", "rh-1", json.dumps(body), "default", receive_count=receive_count)


def test_an_expires_without_offset_is_utc_and_expires_the_task() -> None:
    body = {"task": keyed.name, "args": ["o-1"], "expires": "2020-01-01T00:00:00"}
    outcome = Executor(app, "test").prepare(_delivery(body))
    assert not isinstance(outcome, Prepared)
    assert outcome.kind is OutcomeKind.REVOKED
    assert outcome.record is not None and outcome.record.exc_type == "sqsq.errors.TaskExpired"


def test_a_failing_idempotency_key_function_dead_letters_the_message() -> None:
    outcome = Executor(app, "test").prepare(_delivery({"task": keyed.name, "args": ["o-1"]}))
    assert not isinstance(outcome, Prepared)
    assert outcome.kind is OutcomeKind.DEAD_LETTER
    assert outcome.note is not None and "key functions can fail too" in outcome.note.message


def test_retries_then_failure_with_the_reason() -> None:
    executor = Executor(app, "test")
    kinds = []
    for attempt in (1, 2, 3):
        prepared = executor.prepare(_delivery({"task": flaky.name}, receive_count=attempt))
        assert isinstance(prepared, Prepared)
        outcome = executor.call(prepared)
        kinds.append((outcome.kind, outcome.delay_s))
    assert kinds == [(OutcomeKind.RETRY, 1), (OutcomeKind.RETRY, 2), (OutcomeKind.FAILURE, 0.0)]
    assert outcome.note is not None and outcome.note.reason == "max_retries_exceeded"
    assert outcome.record is not None and outcome.record.exc_type == "ValueError"
