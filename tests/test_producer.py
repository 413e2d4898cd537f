"""Producers against the local endpoint: delay, apply_async, delay_many, send_task,
errors raised before any request, and the asyncio twins over aiobotocore."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import sqsq
from examples.quickstart.app import Order, charge, price_quote, render_email
from sqsq import limits
from sqsq.envelope import decode
from sqsq.errors import (
    ArgumentError,
    ConfigurationError,
    EnqueueError,
    MessageTooLarge,
    NotSerializable,
    ResultTimeout,
)


@pytest.fixture
def sqs(local_aws: Any) -> Iterator[Any]:
    """A plain boto3 SQS client on the local endpoint (not counted by any App)."""
    client = boto3.client("sqs", endpoint_url=local_aws.url, region_name="us-east-1")
    yield client
    client.close()


def _url(sqs: Any, name: str) -> str:
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


def _receive_all(sqs: Any, name: str, expected: int) -> list[dict[str, Any]]:
    """Receive (and delete) until ``expected`` messages came back or the queue is drained."""
    url = _url(sqs, name)
    messages: list[dict[str, Any]] = []
    empty = 0
    while len(messages) < expected and empty < 3:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        empty = 0 if batch else empty + 1
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        messages.extend(batch)
    return messages


def _depth(sqs: Any, name: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=_url(sqs, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesDelayed"]
    )


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


# --- delay / apply_async ----------------------------------------------------------------


def test_delay_sends_one_envelope_to_the_tasks_queue(quickstart: sqsq.App, sqs: Any) -> None:
    before = quickstart.clients.counter.snapshot()
    result = charge.delay(Order(order_id="o-1", cents=500))
    requests = _diff(quickstart.clients.counter.snapshot(), before)
    assert requests.get("sqs.SendMessage") == 1
    assert "sqs.SendMessageBatch" not in requests

    [message] = _receive_all(sqs, "quickstart-default", 1)
    envelope = decode(message["Body"], message["MessageId"])
    assert isinstance(result, sqsq.AsyncResult)
    assert envelope.task_id == result.id
    assert envelope.task == "examples.quickstart.app.charge"
    assert envelope.args == [{"order_id": "o-1", "cents": 500, "currency": "EUR"}]
    assert envelope.kwargs == {}
    assert envelope.queue == "default"
    assert envelope.eta is None
    assert envelope.sent_at is not None and envelope.sent_at.tzinfo is not None


def test_apply_async_task_id_and_queue(quickstart: sqsq.App, sqs: Any) -> None:
    result = charge.apply_async(
        [Order(order_id="o-2", cents=1)],
        {"idempotency_token": "tok"},
        queue="emails",
        task_id="my-chosen-id",
    )
    assert result.id == "my-chosen-id"
    assert _depth(sqs, "quickstart-default") == 0
    [message] = _receive_all(sqs, "quickstart-emails", 1)
    envelope = decode(message["Body"], message["MessageId"])
    assert envelope.task_id == "my-chosen-id"
    assert envelope.queue == "emails"
    assert envelope.kwargs == {"idempotency_token": "tok"}


def test_countdown_delays_delivery(quickstart: sqsq.App, sqs: Any) -> None:
    result = charge.apply_async([Order(order_id="o-3", cents=1)], countdown=3)
    url = _url(sqs, "quickstart-default")
    immediate = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
    assert immediate == []  # DelaySeconds=3: not receivable yet
    delayed = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert delayed["ApproximateNumberOfMessagesDelayed"] == "1"

    messages = sqs.receive_message(
        QueueUrl=url, WaitTimeSeconds=10, MessageSystemAttributeNames=["All"]
    ).get("Messages", [])
    assert len(messages) == 1
    attributes = messages[0]["Attributes"]
    waited_ms = int(attributes["ApproximateFirstReceiveTimestamp"]) - int(
        attributes["SentTimestamp"]
    )
    assert waited_ms >= 2_900  # SQS held it back for the countdown
    envelope = decode(messages[0]["Body"], messages[0]["MessageId"])
    assert envelope.task_id == result.id
    assert envelope.eta is not None and envelope.sent_at is not None
    assert envelope.eta - envelope.sent_at == timedelta(seconds=3)


def test_countdown_as_timedelta_and_eta(quickstart: sqsq.App, sqs: Any) -> None:
    charge.apply_async([Order(order_id="a", cents=1)], countdown=timedelta(seconds=2))
    charge.apply_async([Order(order_id="b", cents=1)], eta=datetime.now(UTC) + timedelta(seconds=2))
    url = _url(sqs, "quickstart-default")
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessages"],
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "2"
    assert attributes["ApproximateNumberOfMessages"] == "0"


@pytest.mark.parametrize(
    "options",
    [
        {"countdown": limits.SQS_MAX_DELAY_S + 1},
        {"countdown": 900.5},
        {"countdown": timedelta(minutes=16)},
        {"countdown": -1},
        {"countdown": float("nan")},
        {"eta": datetime.now(UTC) + timedelta(hours=1)},
        {"eta": datetime(2030, 1, 1)},  # naive
        {"countdown": 1, "eta": datetime.now(UTC)},
    ],
)
def test_bad_countdown_or_eta_raises_before_any_request(
    quickstart: sqsq.App, sqs: Any, options: dict[str, Any]
) -> None:
    before = quickstart.clients.counter.snapshot()
    with pytest.raises(EnqueueError):
        charge.apply_async([Order(order_id="o", cents=1)], **options)
    assert _diff(quickstart.clients.counter.snapshot(), before) == {}
    assert _depth(sqs, "quickstart-default") == 0


def test_eta_over_900_s_ahead_names_eta(quickstart: sqsq.App) -> None:
    with pytest.raises(EnqueueError, match=r"^eta .* is over SQS_MAX_DELAY_S=900") as info:
        charge.apply_async(
            [Order(order_id="o", cents=1)], eta=datetime.now(UTC) + timedelta(minutes=20)
        )
    assert "countdown" not in str(info.value)


def test_countdown_over_900_names_the_sqs_limit(quickstart: sqsq.App) -> None:
    with pytest.raises(EnqueueError, match="SQS_MAX_DELAY_S=900"):
        charge.apply_async([Order(order_id="o", cents=1)], countdown=901)


def test_countdown_of_exactly_900_is_accepted(quickstart: sqsq.App, sqs: Any) -> None:
    charge.apply_async([Order(order_id="o", cents=1)], countdown=900)
    assert _depth(sqs, "quickstart-default") == 1


# --- delay_many ----------------------------------------------------------------------------


def test_delay_many_uses_send_message_batch(quickstart: sqsq.App, sqs: Any) -> None:
    before = quickstart.clients.counter.snapshot()
    results = render_email.delay_many([(f"user{i}@example.com", f"s{i}") for i in range(25)])
    requests = _diff(quickstart.clients.counter.snapshot(), before)
    assert requests.get("sqs.SendMessageBatch") == 3  # 10 + 10 + 5
    assert "sqs.SendMessage" not in requests
    assert len(results) == 25
    assert len({r.id for r in results}) == 25

    messages = _receive_all(sqs, "quickstart-emails", 25)
    assert len(messages) == 25
    by_id = {decode(m["Body"], m["MessageId"]).task_id: decode(m["Body"]) for m in messages}
    for i, result in enumerate(results):  # results are in the order of the tuples
        assert by_id[result.id].args == [f"user{i}@example.com", f"s{i}"]


def test_delay_many_respects_the_batch_byte_limit(quickstart: sqsq.App, sqs: Any) -> None:
    big = "x" * 400_000
    before = quickstart.clients.counter.snapshot()
    results = render_email.delay_many([(f"u{i}@example.com", big) for i in range(3)])
    requests = _diff(quickstart.clients.counter.snapshot(), before)
    assert requests.get("sqs.SendMessageBatch", 0) >= 2  # 3 x 400 KB > 1 MiB
    assert "sqs.SendMessage" not in requests
    messages = _receive_all(sqs, "quickstart-emails", 3)
    assert sorted(decode(m["Body"]).task_id for m in messages) == sorted(r.id for r in results)


def test_delay_many_of_nothing_sends_nothing(quickstart: sqsq.App) -> None:
    before = quickstart.clients.counter.snapshot()
    assert render_email.delay_many([]) == []
    assert _diff(quickstart.clients.counter.snapshot(), before) == {}


@pytest.mark.parametrize(
    "bad",
    [
        ("late@example.com",),  # does not bind
        ("late@example.com", {"not", "json"}),  # not serializable
        ("late@example.com", "x" * (limits.SQS_MAX_MESSAGE_BYTES + 1)),  # too large
    ],
)
def test_a_bad_argument_anywhere_in_delay_many_sends_nothing(
    quickstart: sqsq.App, sqs: Any, bad: tuple[Any, ...]
) -> None:
    calls: list[tuple[Any, ...]] = [(f"u{i}@example.com", "hi") for i in range(14)]
    calls.append(bad)
    before = quickstart.clients.counter.snapshot()
    with pytest.raises(EnqueueError):
        render_email.delay_many(calls)
    assert _diff(quickstart.clients.counter.snapshot(), before) == {}
    assert _depth(sqs, "quickstart-emails") == 0


# --- send_task -------------------------------------------------------------------------


def test_send_task_by_name_goes_to_the_registered_tasks_queue(
    quickstart: sqsq.App, sqs: Any
) -> None:
    result = quickstart.send_task(
        "examples.quickstart.app.render_email", ["a@example.com", "Hello"], {"out_dir": "o"}
    )
    [message] = _receive_all(sqs, "quickstart-emails", 1)
    envelope = decode(message["Body"], message["MessageId"])
    assert envelope.task_id == result.id
    assert envelope.task == "examples.quickstart.app.render_email"
    assert envelope.args == ["a@example.com", "Hello"]
    assert envelope.kwargs == {"out_dir": "o"}


def test_send_task_of_an_unknown_name_uses_the_default_queue_and_checks_no_signature(
    quickstart: sqsq.App, sqs: Any
) -> None:
    result = quickstart.send_task("elsewhere.task", [1, 2, 3], task_id="t-x", countdown=0)
    assert result.id == "t-x"
    [message] = _receive_all(sqs, "quickstart-default", 1)
    assert decode(message["Body"]).task == "elsewhere.task"
    # a known task by name is not checked against its signature either (by design)
    quickstart.send_task("examples.quickstart.app.charge", ["too", "many", "args"])
    assert _depth(sqs, "quickstart-default") == 1


def test_send_task_checks_json_and_size_before_any_request(quickstart: sqsq.App) -> None:
    before = quickstart.clients.counter.snapshot()
    with pytest.raises(NotSerializable, match=r"^kwargs\['s'\]"):
        quickstart.send_task("x.y", [], {"s": {1}})
    with pytest.raises(MessageTooLarge):
        quickstart.send_task("x.y", ["x" * 1_100_000])
    assert _diff(quickstart.clients.counter.snapshot(), before) == {}


# --- errors before any request ------------------------------------------------------------


def test_not_serializable_and_too_large_make_zero_sqs_requests(
    quickstart: sqsq.App, sqs: Any
) -> None:
    before = quickstart.clients.counter.snapshot()
    with pytest.raises(NotSerializable, match=r"^args\[1\]") as info:
        render_email.delay("a@example.com", {"a", "set"})
    assert "builtins.set" in str(info.value)
    with pytest.raises(NotSerializable, match=r"^kwargs\['out_dir'\]"):
        render_email.delay("a@example.com", "s", out_dir=object())
    with pytest.raises(MessageTooLarge) as too_large:
        render_email.delay("a@example.com", "x" * limits.SQS_MAX_MESSAGE_BYTES)
    assert isinstance(too_large.value, EnqueueError)
    assert "SQS_MAX_MESSAGE_BYTES" in str(too_large.value)
    assert quickstart.clients.counter.total("sqs") == sum(
        n for k, n in before.items() if k.startswith("sqs.")
    )
    assert _diff(quickstart.clients.counter.snapshot(), before) == {}
    assert _depth(sqs, "quickstart-emails") == 0


def test_queue_that_does_not_exist_raises_configuration_error(local_aws: Any) -> None:
    app = sqsq.App("ghost")

    @app.task
    def haunt(n: int) -> int:
        return n

    with pytest.raises(ConfigurationError, match="sqsq resources create") as info:
        haunt.delay(1)
    assert "ghost-default" in str(info.value)
    with pytest.raises(ConfigurationError, match="sqsq resources create"):
        haunt.delay_many([(1,), (2,)])
    app.close()


def test_queue_deleted_after_first_use_raises_configuration_error(
    quickstart: sqsq.App, sqs: Any
) -> None:
    charge.delay(Order(order_id="o", cents=1))  # the queue URL is now known
    sqs.delete_queue(QueueUrl=_url(sqs, "quickstart-default"))
    with pytest.raises(ConfigurationError, match="sqsq resources create"):
        charge.delay(Order(order_id="o", cents=2))


def test_unknown_logical_queue_raises_configuration_error(quickstart: sqsq.App) -> None:
    with pytest.raises(ConfigurationError, match="'quickstart-nowhere' does not exist"):
        charge.apply_async([Order(order_id="o", cents=1)], queue="nowhere")


# --- asyncio producers --------------------------------------------------------------------


def test_adelay_and_aapply_async(quickstart: sqsq.App, sqs: Any) -> None:
    async def produce() -> tuple[sqsq.AsyncResult, sqsq.AsyncResult, sqsq.AsyncResult]:
        try:
            first = await charge.adelay(Order(order_id="a-1", cents=5))
            second = await charge.aapply_async(
                [Order(order_id="a-2", cents=6)], queue="emails", task_id="async-id"
            )
            third = await charge.aapply_async([Order(order_id="a-3", cents=7)], countdown=2)
            return first, second, third
        finally:
            await quickstart.aclose()

    before = quickstart.clients.counter.snapshot()
    first, second, third = asyncio.run(produce())
    requests = _diff(quickstart.clients.counter.snapshot(), before)
    assert requests.get("sqs.SendMessage") == 3
    assert second.id == "async-id"

    [default] = _receive_all(sqs, "quickstart-default", 1)
    assert decode(default["Body"]).task_id == first.id
    assert decode(default["Body"]).args == [{"order_id": "a-1", "cents": 5, "currency": "EUR"}]
    [emails] = _receive_all(sqs, "quickstart-emails", 1)
    assert decode(emails["Body"]).task_id == "async-id"
    delayed = _receive_all(sqs, "quickstart-default", 1)
    assert [decode(m["Body"]).task_id for m in delayed] == [third.id]
    assert decode(delayed[0]["Body"]).eta is not None


def test_async_producer_errors_are_raised_before_any_request(quickstart: sqsq.App) -> None:
    async def produce() -> None:
        try:
            with pytest.raises(ArgumentError):
                await charge.adelay()
            with pytest.raises(NotSerializable):
                await price_quote.adelay("sku", 1, {1.5})
            with pytest.raises(EnqueueError):
                await price_quote.aapply_async(["sku", 1, "1.5"], countdown=901)
            with pytest.raises(ConfigurationError, match="sqsq resources create"):
                await price_quote.aapply_async(["sku", 1, "1.5"], queue="missing")
        finally:
            await quickstart.aclose()

    before = quickstart.clients.counter.snapshot()
    asyncio.run(produce())
    requests = _diff(quickstart.clients.counter.snapshot(), before)
    assert set(requests) <= {"sqs.GetQueueUrl"}  # only the lookup of the missing queue


def test_async_round_trip_through_a_worker(quickstart: sqsq.App, worker: Any) -> None:
    async def produce() -> tuple[str, str]:
        try:
            ok = await price_quote.adelay("sku-1", 3, "1.25")
            bad = await charge.adelay(Order(order_id="o", cents=0))
            return ok.id, bad.id
        finally:
            await quickstart.aclose()

    ok_id, bad_id = asyncio.run(produce())
    done = worker.run()
    assert done.returncode == 0, done.stderr

    async def read() -> tuple[Any, Any]:
        try:
            value = await quickstart.AsyncResult(ok_id).aget(timeout=10)
            error = await quickstart.AsyncResult(bad_id).aget(timeout=10, propagate=False)
            with pytest.raises(sqsq.TaskFailed):
                await quickstart.AsyncResult(bad_id).aget(timeout=10)
            with pytest.raises(ResultTimeout):
                await quickstart.AsyncResult("never-sent").aget(timeout=0.3, interval=0.1)
            return value, error
        finally:
            await quickstart.aclose()

    value, error = asyncio.run(read())
    assert value == "3.75"
    assert isinstance(error, sqsq.TaskFailed)
    assert error.remote_type == "ValueError"
    assert "cannot charge 0 cents" in error.remote_message


def test_message_body_is_plain_json_any_producer_could_send(quickstart: sqsq.App, sqs: Any) -> None:
    charge.delay(Order(order_id="o-json", cents=9))
    [message] = _receive_all(sqs, "quickstart-default", 1)
    body = json.loads(message["Body"])
    assert body["version"] == 1
    assert body["task"] == "examples.quickstart.app.charge"
    assert message.get("MessageAttributes") in (None, {})
