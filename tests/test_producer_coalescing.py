"""Concurrent producer calls share SendMessageBatch calls (``sqsq.sender.Sender``).

Requests are counted with botocore's ``before-send`` event (the App's
``clients.counter``). Coroutines started together share batches deterministically
(each yields one loop iteration before sending). Threads do once concurrency has
been seen: each thread test runs a first round that shows the lane concurrency,
then counts a second round with ``send_linger_s`` raised to 1 s, so a batch that
starts alone waits (up to 1 s, or until it holds 10 entries) for the threads that
are still starting.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import sqsq
from sqsq import limits
from sqsq.envelope import decode
from sqsq.errors import ConfigurationError, EnqueueError
from sqsq.producer import build
from sqsq.resources import apply
from sqsq.sender import Lane, _Call

QUEUE = "coalesce-default"


def _app(**settings: Any) -> sqsq.App:
    app = sqsq.App("coalesce", **settings)

    @app.task(name="echo", store_result=False)
    def echo(text: str) -> str:
        return text

    return app


@pytest.fixture
def sqs(local_aws: Any) -> Iterator[Any]:
    client = boto3.client("sqs", endpoint_url=local_aws.url, region_name="us-east-1")
    yield client
    client.close()


@pytest.fixture
def app(local_aws: Any) -> Iterator[sqsq.App]:
    """The app at sqsq's default settings, its queue created."""
    app = _app()
    apply(app)
    yield app
    app.close()


@pytest.fixture
def lingering_app(local_aws: Any) -> Iterator[sqsq.App]:
    """The app with ``send_linger_s=1``: deterministic batches for starting threads."""
    app = _app(send_linger_s=1.0)
    apply(app)
    yield app
    app.close()


def _sends(app: sqsq.App, before: dict[str, int]) -> tuple[int, int]:
    """(SendMessage, SendMessageBatch) requests since ``before``.

    A batch of one entry goes out as SendMessage (the same one request)."""
    after = app.clients.counter.snapshot()
    return (
        after.get("sqs.SendMessage", 0) - before.get("sqs.SendMessage", 0),
        after.get("sqs.SendMessageBatch", 0) - before.get("sqs.SendMessageBatch", 0),
    )


def _received_ids(sqs: Any, expected: int) -> list[str]:
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    ids: list[str] = []
    empty = 0
    while len(ids) < expected and empty < 3:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = batch.get("Messages", [])
        empty = 0 if messages else empty + 1
        for message in messages:
            ids.append(decode(message["Body"]).task_id)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return ids


def _gather(app: sqsq.App, texts: list[str]) -> list[Any]:
    """``adelay`` every text concurrently on one loop; results or exceptions, in order."""
    echo = app.tasks["echo"]

    async def produce() -> list[Any]:
        try:
            return await asyncio.gather(*(echo.adelay(t) for t in texts), return_exceptions=True)
        finally:
            await app.aclose()

    return asyncio.run(produce())


def _threads(app: sqsq.App, texts: list[str]) -> list[Any]:
    """``delay`` every text from its own thread, all started together."""
    echo = app.tasks["echo"]
    results: list[Any] = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = echo.delay(texts[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- coroutines -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 10, 11, 25])
def test_concurrent_coroutines_make_one_batch_call_per_ten(app: sqsq.App, sqs: Any, n: int) -> None:
    before = app.clients.counter.snapshot()
    results = _gather(app, [f"t{i}" for i in range(n)])
    assert sum(_sends(app, before)) == math.ceil(n / limits.SQS_MAX_BATCH_ENTRIES)
    assert _sends(app, before)[1] == n // limits.SQS_MAX_BATCH_ENTRIES + (n % 10 > 1)
    ids = [r.id for r in results]
    assert len(set(ids)) == n  # each caller its own task id
    assert sorted(_received_ids(sqs, n)) == sorted(ids)


def test_a_lone_coroutine_uses_send_message(app: sqsq.App, sqs: Any) -> None:
    before = app.clients.counter.snapshot()
    [result] = _gather(app, ["alone"])
    assert _sends(app, before) == (1, 0)
    assert _received_ids(sqs, 1) == [result.id]


def test_coalescing_switched_off_sends_one_message_per_call(local_aws: Any, sqs: Any) -> None:
    app = _app(coalesce_sends=False)
    apply(app)
    before = app.clients.counter.snapshot()
    results = _gather(app, [f"t{i}" for i in range(12)])
    assert _sends(app, before) == (12, 0)
    assert sorted(_received_ids(sqs, 12)) == sorted(r.id for r in results)
    app.close()


def test_a_coroutine_cancelled_before_its_batch_left_is_not_sent(app: sqsq.App, sqs: Any) -> None:
    echo = app.tasks["echo"]

    async def produce() -> tuple[list[Any], bool]:
        try:
            calls = [asyncio.ensure_future(echo.adelay(f"t{i}")) for i in range(5)]
            await asyncio.sleep(0)  # every call has joined the lane; none has sent
            calls[2].cancel()
            results = await asyncio.gather(*calls, return_exceptions=True)
            return results, calls[2].cancelled()
        finally:
            await app.aclose()

    before = app.clients.counter.snapshot()
    results, cancelled = asyncio.run(produce())
    assert cancelled
    sent = [r for i, r in enumerate(results) if i != 2]
    assert _sends(app, before) == (0, 1)
    assert sorted(_received_ids(sqs, 5)) == sorted(r.id for r in sent)


# --- threads --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 25])
def test_concurrent_threads_make_one_batch_call_per_ten_once_concurrency_was_seen(
    lingering_app: sqsq.App, sqs: Any, n: int
) -> None:
    app = lingering_app
    first = _threads(app, [f"warm{i}" for i in range(n)])  # shows the lane concurrency
    assert all(isinstance(r, sqsq.AsyncResult) for r in first)
    before = app.clients.counter.snapshot()
    results = _threads(app, [f"t{i}" for i in range(n)])
    assert sum(_sends(app, before)) == math.ceil(n / limits.SQS_MAX_BATCH_ENTRIES)
    assert _sends(app, before)[1] == n // limits.SQS_MAX_BATCH_ENTRIES + (n % 10 > 1)
    ids = [r.id for r in results]
    assert len(set(ids)) == n
    assert sorted(_received_ids(sqs, 2 * n)) == sorted([r.id for r in first] + ids)


def test_a_lone_sequential_producer_uses_send_message_per_call(
    lingering_app: sqsq.App, sqs: Any
) -> None:
    app = lingering_app  # even with a long linger: a sequential caller never finds company
    echo = app.tasks["echo"]
    before = app.clients.counter.snapshot()
    results = [echo.delay(f"t{i}") for i in range(5)]
    assert _sends(app, before) == (5, 0)
    assert sorted(_received_ids(sqs, 5)) == sorted(r.id for r in results)


# --- failures -------------------------------------------------------------------------------


def _lower_maximum_message_size(sqs: Any) -> None:
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": "1024"})


@pytest.mark.parametrize("concurrency", ["coroutines", "threads"])
def test_a_refused_message_raises_for_its_caller_only(
    app: sqsq.App, sqs: Any, concurrency: str
) -> None:
    # SQS refuses a body over the queue's MaximumMessageSize (moto refuses the whole
    # SendMessageBatch call then; the sender retries each entry alone).
    _lower_maximum_message_size(sqs)
    texts = ["small"] * 3 + ["x" * 2000] + ["small"] * 3
    run = _gather if concurrency == "coroutines" else _threads
    results = run(app, texts)
    error = results[3]
    assert isinstance(error, EnqueueError), error
    assert "1024" in str(error)
    [(failed_id, reason)] = error.failed
    assert "InvalidParameterValue" in reason
    ok = [r for i, r in enumerate(results) if i != 3]
    assert all(isinstance(r, sqsq.AsyncResult) for r in ok)
    assert failed_id not in {r.id for r in ok}
    assert sorted(_received_ids(sqs, 6)) == sorted(r.id for r in ok)


def test_a_lone_refused_message_raises_enqueue_error(app: sqsq.App, sqs: Any) -> None:
    _lower_maximum_message_size(sqs)
    with pytest.raises(EnqueueError, match="InvalidParameterValue"):
        app.tasks["echo"].delay("x" * 2000)


def test_an_error_of_the_whole_call_raises_for_every_caller(app: sqsq.App, sqs: Any) -> None:
    app.tasks["echo"].delay("the queue URL is now cached")
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"])
    before = app.clients.counter.snapshot()
    results = _gather(app, [f"t{i}" for i in range(4)])
    assert _sends(app, before) == (0, 1)
    assert all(isinstance(r, ConfigurationError) for r in results), results
    assert all("sqsq resources create" in str(r) for r in results)


# --- the lane's rules (pure state, no I/O) ----------------------------------------------------


def _call(text: str = "x") -> _Call:
    message = build("echo", [text], {}, queue="default", queue_name=QUEUE)
    return _Call(message, len(message.body))


def test_a_lone_call_is_sent_at_once_even_with_a_linger() -> None:
    lane = Lane(linger_s=1.0)
    call = _call()
    lane.join(call, now=100.0)
    assert lane.take(now=100.0) == ([call], None)


def test_after_concurrency_a_lone_call_lingers_then_goes_alone() -> None:
    lane = Lane(linger_s=0.005)
    first, second, third = _call(), _call(), _call()
    lane.join(first, now=100.0)
    lane.join(second, now=100.0)  # found the lane busy: concurrency
    assert lane.take(now=100.0) == (None, pytest.approx(0.005))  # lingers for more
    assert lane.take(now=100.006) == ([first, second], None)
    lane.finish([first, second], [None, None])
    lane.join(third, now=100.1)
    assert lane.take(now=100.1) == (None, pytest.approx(0.005))
    assert lane.take(now=100.106) == ([third], None)
    # ... and a second later concurrency is forgotten: no linger
    lane.finish([third], [None])
    fourth = _call()
    lane.join(fourth, now=102.0)
    assert lane.take(now=102.0) == ([fourth], None)


def test_callers_wait_while_a_partial_batch_is_in_flight_but_a_full_one_goes() -> None:
    lane = Lane(linger_s=0.0)
    first = _call()
    lane.join(first, now=1.0)
    assert lane.take(now=1.0) == ([first], None)
    waiting = [_call() for _ in range(3)]
    for call in waiting:
        lane.join(call, now=1.0)
    assert lane.take(now=1.0) == (None, None)  # until the batch in flight is answered
    more = [_call() for _ in range(7)]
    for call in more:
        lane.join(call, now=1.0)
    assert lane.take(now=1.0) == ([*waiting, *more], None)  # 10 entries: full, goes at once
    assert lane.in_flight == 2


def test_a_batch_stops_at_the_batch_byte_limit() -> None:
    lane = Lane(linger_s=0.0)
    big = [_call("x" * 400_000) for _ in range(3)]
    for call in big:
        lane.join(call, now=1.0)
    batch, _ = lane.take(now=1.0)
    assert batch == big[:2]  # a third would pass SQS_MAX_BATCH_BYTES: the batch is full
    assert sum(c.size for c in big) > limits.SQS_MAX_BATCH_BYTES
