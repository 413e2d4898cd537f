"""Reading results: AsyncResult states over stored items, eager ``apply()``, and the
result TTL written by a real worker."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
from sqsq import State
from sqsq.dynamodb import record_from_item, result_item, result_key
from sqsq.errors import ResultTimeout, TaskFailed, TaskRevoked
from sqsq.result import ResultRecord

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "shop.py", line 3, in charge\n'
    "    raise ValueError('card declined')\n"
    "ValueError: card declined\n"
)


def _store(app: sqsq.App, *records: ResultRecord) -> None:
    failed = app.results.put_results([(r.task_id, result_item(r)) for r in records])
    assert failed == set()


def _record(task_id: str, state: State, **fields: Any) -> ResultRecord:
    now = datetime.now(UTC)
    defaults: dict[str, Any] = {
        "task": "examples.quickstart.app.charge",
        "queue": "default",
        "attempts": 1,
        "worker": "test:1",
        "message_id": f"m-{task_id}",
        "enqueued_at": now - timedelta(seconds=2),
        "started_at": now - timedelta(seconds=1),
        "finished_at": now,
        "expires_at": int(time.time()) + 3600,
    }
    return ResultRecord(task_id=task_id, state=state, **{**defaults, **fields})


def _reads(app: sqsq.App) -> int:
    return app.clients.counter.snapshot().get("dynamodb.GetItem", 0)


# --- stored states --------------------------------------------------------------------------


def test_unknown_id_is_pending(quickstart: sqsq.App) -> None:
    result = quickstart.AsyncResult("no-such-task")
    assert result.state is State.PENDING
    assert result.status is State.PENDING
    assert not result.ready()
    assert not result.successful()
    assert not result.failed()
    assert result.result is None
    assert result.record is None
    assert result.traceback is None


def test_get_of_a_pending_result_times_out(quickstart: sqsq.App) -> None:
    result = quickstart.AsyncResult("still-pending")
    before = _reads(quickstart)
    with pytest.raises(ResultTimeout) as info:
        result.get(timeout=0.5, interval=0.1)
    assert isinstance(info.value, TimeoutError)
    assert "still-pending" in str(info.value)
    assert _reads(quickstart) - before >= 2  # it polled, more than once


def test_success_record(quickstart: sqsq.App) -> None:
    value = {"order_id": "o-1", "charged": 500, "items": [1, 2.5, None, "x"]}
    stored = _record("ok-1", State.SUCCESS, value=value, attempts=2)
    _store(quickstart, stored)
    result = quickstart.AsyncResult("ok-1")
    assert result.state is State.SUCCESS
    assert result.ready() and result.successful() and not result.failed()
    assert result.get(timeout=1) == value
    assert result.result == value
    assert result.traceback is None
    record = result.record
    assert record is not None
    assert (record.task, record.queue, record.attempts, record.worker) == (
        "examples.quickstart.app.charge",
        "default",
        2,
        "test:1",
    )
    assert record.message_id == "m-ok-1"
    assert record.finished_at is not None and stored.finished_at is not None
    assert abs(record.finished_at - stored.finished_at) < timedelta(milliseconds=1)
    assert record.expires_at == stored.expires_at


@pytest.mark.parametrize("value", [None, 0, "", [], False, "é ☃"])
def test_success_with_falsy_or_unicode_values(quickstart: sqsq.App, value: Any) -> None:
    _store(quickstart, _record("falsy", State.SUCCESS, value=value))
    result = quickstart.AsyncResult("falsy")
    assert result.state is State.SUCCESS
    assert result.get(timeout=1) == value


def test_failure_record_raises_task_failed_with_the_remote_details(quickstart: sqsq.App) -> None:
    _store(
        quickstart,
        _record(
            "bad-1",
            State.FAILURE,
            exc_type="ValueError",
            exc_message="card declined",
            traceback=TRACEBACK,
        ),
    )
    result = quickstart.AsyncResult("bad-1")
    assert result.state is State.FAILURE
    assert result.ready() and result.failed() and not result.successful()
    with pytest.raises(TaskFailed) as info:
        result.get(timeout=1)
    error = info.value
    assert not isinstance(error, TaskRevoked)
    assert error.task_id == "bad-1"
    assert error.remote_type == "ValueError"
    assert error.remote_message == "card declined"
    assert error.remote_traceback == TRACEBACK
    assert "ValueError: card declined" in str(error)

    returned = result.get(timeout=1, propagate=False)
    assert isinstance(returned, TaskFailed)
    assert (returned.remote_type, returned.remote_message) == ("ValueError", "card declined")
    assert isinstance(result.result, TaskFailed)  # .result never raises
    assert result.traceback == TRACEBACK


def test_dead_lettered_failure_keeps_its_reason(quickstart: sqsq.App) -> None:
    _store(
        quickstart,
        _record(
            "dl-1",
            State.FAILURE,
            exc_type="sqsq.errors.UnknownTask",
            exc_message="no task named 'x'",
            dead_letter_reason="unknown_task",
        ),
    )
    result = quickstart.AsyncResult("dl-1")
    assert result.record is not None and result.record.dead_letter_reason == "unknown_task"
    with pytest.raises(TaskFailed) as info:
        result.get(timeout=1)
    assert info.value.remote_type == "sqsq.errors.UnknownTask"
    assert info.value.remote_traceback is None


def test_revoked_raises_task_revoked(quickstart: sqsq.App) -> None:
    _store(quickstart, _record("rev-1", State.REVOKED))
    result = quickstart.AsyncResult("rev-1")
    assert result.state is State.REVOKED
    assert result.ready()
    assert not result.successful()
    with pytest.raises(TaskRevoked) as info:
        result.get(timeout=1)
    assert isinstance(info.value, TaskFailed)
    assert info.value.task_id == "rev-1"
    assert isinstance(result.get(timeout=1, propagate=False), TaskRevoked)


def test_record_past_expires_at_reads_as_pending(quickstart: sqsq.App) -> None:
    # DynamoDB's TTL deletion lags (and the local endpoint never runs it):
    # the item is still there, but a reader must treat it as gone.
    _store(
        quickstart,
        _record("old-1", State.SUCCESS, value=1, expires_at=int(time.time()) - 5),
    )
    raw = quickstart.clients.sync("dynamodb").get_item(
        TableName=quickstart.table_name, Key=result_key("old-1"), ConsistentRead=True
    )
    assert "Item" in raw  # really stored
    result = quickstart.AsyncResult("old-1")
    assert result.state is State.PENDING
    assert result.record is None
    with pytest.raises(ResultTimeout):
        result.get(timeout=0.3, interval=0.1)


def test_record_without_expires_at_never_expires(quickstart: sqsq.App) -> None:
    _store(quickstart, _record("forever", State.SUCCESS, value=7, expires_at=None))
    assert quickstart.AsyncResult("forever").get(timeout=1) == 7


def test_non_final_states_are_polled_again(quickstart: sqsq.App) -> None:
    _store(
        quickstart,
        _record("retry-1", State.RETRY, exc_type="TimeoutError", exc_message="slow upstream"),
    )
    result = quickstart.AsyncResult("retry-1")
    assert result.state is State.RETRY
    assert not result.ready()
    assert isinstance(result.result, TaskFailed)
    _store(quickstart, _record("retry-1", State.SUCCESS, value="done", attempts=2))
    assert result.state is State.SUCCESS
    assert result.get(timeout=1) == "done"


def test_final_results_are_cached(quickstart: sqsq.App) -> None:
    _store(quickstart, _record("cached", State.SUCCESS, value=1))
    result = quickstart.AsyncResult("cached")
    assert result.get(timeout=1) == 1
    before = _reads(quickstart)
    for _ in range(3):
        assert result.state is State.SUCCESS
        assert result.get() == 1
    assert _reads(quickstart) == before


def test_an_async_result_is_a_handle_on_an_id(quickstart: sqsq.App) -> None:
    before = quickstart.clients.counter.snapshot()
    a, b = quickstart.AsyncResult("same"), quickstart.AsyncResult("same")
    assert a == b and hash(a) == hash(b)
    assert a != quickstart.AsyncResult("other")
    assert "same" in repr(a)
    assert quickstart.clients.counter.snapshot() == before  # no read until asked


def test_item_attributes_are_typed_for_dynamodb(quickstart: sqsq.App) -> None:
    record = _record("typed", State.SUCCESS, value={"a": 1})
    item = result_item(record)
    assert item["pk"] == {"S": "task#typed"} and item["sk"] == {"S": "result"}
    assert set(item["expires_at"]) == {"N"}  # TTL needs a Number of epoch seconds
    assert set(item["attempts"]) == {"N"}
    parsed = record_from_item(item)
    assert parsed is not None
    assert parsed.value == {"a": 1}
    assert replace(parsed, enqueued_at=None, started_at=None, finished_at=None) == replace(
        record, enqueued_at=None, started_at=None, finished_at=None
    )


# --- eager apply -----------------------------------------------------------------------------


@pytest.fixture
def eager_app(sqsq_endpoint: Any) -> Iterator[sqsq.App]:
    """A fresh App pointed at the local endpoint, so a stray request would be counted."""
    app = sqsq.App("eager", endpoint_url=sqsq_endpoint.url, region_name="us-east-1")
    yield app
    app.close()


def test_apply_success_makes_no_aws_request(eager_app: sqsq.App) -> None:
    @eager_app.task
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    result = add.apply(2, b=3)
    assert result.state is State.SUCCESS
    assert result.successful() and result.ready()
    assert result.get() == {"sum": 5}
    assert result.result == {"sum": 5}
    record = result.record
    assert record is not None
    assert record.task == add.name
    assert record.worker == "eager"
    assert record.started_at is not None and record.finished_at is not None
    assert eager_app.clients.counter.snapshot() == {}


def test_apply_failure_carries_type_message_and_traceback(eager_app: sqsq.App) -> None:
    @eager_app.task
    def explode(order_id: str) -> None:
        raise ValueError(f"cannot refund {order_id}")

    result = explode.apply("o-9")
    assert result.state is State.FAILURE
    assert result.failed()
    with pytest.raises(TaskFailed) as info:
        result.get()
    assert info.value.remote_type == "ValueError"
    assert info.value.remote_message == "cannot refund o-9"
    assert info.value.remote_traceback is not None
    assert "in explode" in info.value.remote_traceback
    assert info.value.remote_traceback.rstrip().endswith("ValueError: cannot refund o-9")
    assert result.traceback == info.value.remote_traceback
    assert isinstance(result.get(propagate=False), TaskFailed)
    assert eager_app.clients.counter.snapshot() == {}


def test_apply_runs_arguments_through_the_wire_format(eager_app: sqsq.App) -> None:
    @eager_app.task
    def shift(when: datetime, days: int) -> datetime:
        assert isinstance(when, datetime)
        return when + timedelta(days=days)

    result = shift.apply(datetime(2024, 2, 28, tzinfo=UTC), "2")
    assert result.get() == "2024-03-01T00:00:00+00:00"  # JSON out, like a worker stores it


def test_apply_refuses_what_delay_refuses(eager_app: sqsq.App) -> None:
    @eager_app.task
    def one(a: int) -> int:
        return a

    with pytest.raises(sqsq.ArgumentError):
        one.apply()
    with pytest.raises(sqsq.NotSerializable):
        one.apply({1})
    assert eager_app.clients.counter.snapshot() == {}


def test_apply_with_store_result_false_still_returns_the_value(eager_app: sqsq.App) -> None:
    @eager_app.task(store_result=False)
    def fire_and_forget(x: int) -> int:
        return x * 10

    result = fire_and_forget.apply(4)
    assert result.get() == 40
    assert result.state is State.SUCCESS
    assert eager_app.clients.counter.snapshot() == {}


def test_apply_of_an_async_task(eager_app: sqsq.App) -> None:
    @eager_app.task
    async def later(x: int) -> int:
        return x + 1

    assert later.apply(1).get() == 2
    assert eager_app.clients.counter.snapshot() == {}


def test_apply_of_an_unserializable_return_value_is_a_failure(eager_app: sqsq.App) -> None:
    @eager_app.task
    def leaky() -> object:
        return {1, 2}

    result = leaky.apply()
    assert result.state is State.FAILURE
    assert result.record is not None
    assert result.record.exc_type == "sqsq.errors.ResultNotSerializable"


# --- result TTL from a real worker ------------------------------------------------------------

TTL_APP = """
import sqsq

app = sqsq.App("ttlapp")


@app.task(name="ttl.short", result_ttl=120)
def short(x: int) -> int:
    return x + 1


@app.task(name="ttl.default")
def default(x: int) -> int:
    return x * 2
"""


def test_result_ttl_sets_expires_at_on_stored_results(
    worker: Any, tmp_path: Path, local_aws: Any
) -> None:
    (tmp_path / "ttl_worker_app.py").write_text(textwrap.dedent(TTL_APP))
    app = sqsq.App("ttlapp")

    @app.task(name="ttl.short", result_ttl=120)
    def short(x: int) -> int:
        return x + 1

    @app.task(name="ttl.default")
    def default(x: int) -> int:
        return x * 2

    from sqsq.resources import apply

    apply(app)
    brief = short.delay(1)
    normal = default.delay(2)
    done = worker.run("ttl_worker_app:app", SQSQ_RESULT_TTL_S="7200")
    assert done.returncode == 0, done.stderr
    assert brief.get(timeout=5) == 2
    assert normal.get(timeout=5) == 4

    for result, ttl in ((brief, 120), (normal, 7200)):
        record = result.record
        assert record is not None and record.finished_at is not None
        assert record.expires_at is not None
        assert abs(record.expires_at - (record.finished_at.timestamp() + ttl)) <= 1

    ddb = boto3.client(
        "dynamodb", endpoint_url=local_aws.url_for("dynamodb"), region_name="us-east-1"
    )
    try:
        item = ddb.get_item(TableName="ttlapp-sqsq", Key=result_key(brief.id))["Item"]
        ttl = ddb.describe_time_to_live(TableName="ttlapp-sqsq")["TimeToLiveDescription"]
    finally:
        ddb.close()
    assert "N" in item["expires_at"]  # a Number: what DynamoDB TTL reads
    if local_aws.has_ttl:  # dynalite has no TTL calls (resources create warns)
        assert ttl["AttributeName"] == "expires_at"
    app.close()
