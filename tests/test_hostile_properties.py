"""Property tests (issue 7): arbitrary bodies, JSON values, depths, sizes, unicode and
message attributes, thrown at a real worker and at the Lambda handler.

Every message ends either with its outcome stored (SUCCESS) or as a FAILURE result
with a reason *and* a DLQ copy carrying that reason; a well-formed neighbour returns
exactly its argument; after each batch the worker is alive and runs a probe.
"""

from __future__ import annotations

import json
import string
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sqsq.result import State
from sqsq.testing import LambdaContext, sqs_event
from tests.faults.helpers import wait_for
from tests.helpers import examples, log_lines
from tests.test_hostile import APP, arn, nested, result, url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Characters SQS accepts in a body: #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF.
_sqs_chars = st.characters(
    codec="utf-8",
    exclude_categories=("Cs",),
    exclude_characters="".join(chr(c) for c in range(0x20) if c not in (9, 10, 13))
    + "\ufffe\uffff",
)
_sqs_text = st.text(_sqs_chars, min_size=1, max_size=100)
# any str, lone surrogates and control characters included (json.dumps escapes them)
_any_text = st.text(max_size=60)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _any_text
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_any_text.filter(lambda k: k != "id"), inner, max_size=4)
    ),
    max_leaves=12,
)
_deep = st.integers(min_value=90, max_value=1500).map(nested)
_big = st.sampled_from([20_000, 150_000, 405_000]).map(lambda n: "y" * n)
_values = st.one_of(*[_json] * 6, _deep, _big)


@st.composite
def _message(draw: Any) -> tuple[str | None, str, bool]:
    """(task id or None for "the MessageId", body, well-formed echo call?)."""
    kind = draw(st.sampled_from(["echo", "echo", "envelope", "text", "json"]))
    if kind == "text":
        return None, draw(_sqs_text.filter(lambda s: s.strip() != "")), False
    if kind == "json":
        value = draw(_values)
        if isinstance(value, dict):
            value.pop("id", None)
        return None, json.dumps(value), False
    task_id = str(uuid.uuid4())
    if kind == "echo":
        body = {"id": task_id, "task": "tests.apps.hostile.echo", "args": [draw(_values)]}
        return task_id, json.dumps(body), True
    body = draw(
        st.fixed_dictionaries(
            {"id": st.just(task_id)},
            optional={
                "task": st.one_of(_any_text, st.just("tests.apps.hostile.echo")),
                "args": _values,
                "kwargs": _values,
                "version": st.integers(),
                "idempotency_key": _any_text,
                "eta": _json,
                "headers": _json,
            },
        )
    )
    return task_id, json.dumps(body), False


_attribute_names = st.one_of(
    st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=20).filter(
        lambda n: (
            not n.lower().startswith(("aws", "amazon"))
            and ".." not in n
            and not n.startswith(".")
            and not n.endswith(".")
        )
    ),
    st.sampled_from(["sqsq-dead-letter", "sqsq-dead-letter-reason"]),
)
_attributes = st.dictionaries(
    _attribute_names,
    st.one_of(
        _sqs_text.map(lambda v: {"DataType": "String", "StringValue": v}),
        st.binary(min_size=1, max_size=32).map(lambda v: {"DataType": "Binary", "BinaryValue": v}),
        st.integers().map(lambda v: {"DataType": "Number", "StringValue": str(v)}),
    ),
    max_size=10,
)
_batches = st.lists(st.tuples(_message(), _attributes), min_size=1, max_size=10)


def _send(app: Any, batch: list[tuple[tuple[str | None, str, bool], dict[str, Any]]]) -> list[Any]:
    """Send each message; returns (task id, body, echo?) with MessageIds filled in."""
    sqs = app.clients.sync("sqs")
    sent = []
    for (task_id, body, echo), attributes in batch:
        extra = {"MessageAttributes": attributes} if attributes else {}
        response = sqs.send_message(QueueUrl=url(app), MessageBody=body, **extra)
        sent.append((task_id or response["MessageId"], body, echo))
    return sent


def _drain_dlq(app: Any, into: dict[str, list[str]]) -> None:
    """Move what is in the DLQ into ``into`` (body → reasons of its copies; "" when
    the message's own 10 attributes left no room for sqsq's) and delete it."""
    sqs = app.clients.sync("sqs")
    dlq = sqs.get_queue_url(QueueName=app.queue_name("default") + "-dlq")["QueueUrl"]
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return
        for message in messages:
            attributes = message.get("MessageAttributes", {})
            reason = attributes.get("sqsq-dead-letter-reason", {}).get("StringValue", "")
            into.setdefault(message["Body"], []).append(reason)
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])


def _check(app: Any, sent: list[Any], dead: dict[str, list[str]]) -> None:
    for task_id, body, echo in sent:
        record = result(app, task_id)
        assert record is not None, body[:200]
        if record.state is State.SUCCESS:
            if echo:
                assert record.value == json.loads(body)["args"][0]
            continue
        assert record.state is State.FAILURE, (record, body[:200])
        assert record.dead_letter_reason, body[:200]
        copies = dead.get(body) or []
        assert copies, ("no DLQ copy", task_id, body[:200])
        reason = copies.pop(0)
        assert reason in (record.dead_letter_reason, ""), (reason, record, body[:200])
        if echo:  # a well-formed echo fails only when its value cannot be stored
            assert record.dead_letter_reason in {"undecodable_message", "result_too_large"}


_settings = settings(
    max_examples=examples(15),  # each example is a batch through SQS: ~1 s
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each try is slow
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def test_worker_property(hostile: Any, worker: Any) -> None:
    process = worker.start(APP, "-c", "4")
    # read the worker's logs as they come, so a full pipe never blocks it
    logged, _ = log_lines(process)
    dead: dict[str, list[str]] = {}

    @_settings
    @given(_batches)
    def run(batch: list[Any]) -> None:
        sent = _send(hostile, batch)

        def settled() -> bool:
            _drain_dlq(hostile, dead)
            failed: dict[str, int] = {}  # body → how many of its messages failed
            for task_id, body, _ in sent:
                record = result(hostile, task_id)
                if record is None:
                    return False
                if record.state is not State.SUCCESS:
                    failed[body] = failed.get(body, 0) + 1
            return all(len(dead.get(body, [])) >= n for body, n in failed.items())

        try:
            wait_for(settled, 90, "every message's outcome")
        except AssertionError:
            # printed, not only raised: hypothesis' replay of a failed batch may end in
            # FlakyStrategyDefinition, which hides this message (pytest shows stdout)
            _drain_dlq(hostile, dead)
            for task_id, body, _ in sent:
                record = result(hostile, task_id)
                state = None if record is None else (record.state, record.dead_letter_reason)
                print("unsettled batch:", task_id, repr(body[:300]), state, dead.get(body))
            print("".join(logged[-40:]))
            raise AssertionError("".join(logged[-40:])) from None
        _check(hostile, sent, dead)
        assert process.poll() is None, "the worker exited"
        probe = str(uuid.uuid4())
        hostile.clients.sync("sqs").send_message(
            QueueUrl=url(hostile),
            MessageBody=json.dumps({"id": probe, "task": "tests.apps.hostile.probe", "args": [5]}),
        )
        wait_for(lambda: result(hostile, probe) is not None, 30, "the probe")
        assert result(hostile, probe).value == 5

    run()


def test_lambda_property(hostile: Any) -> None:
    dead: dict[str, list[str]] = {}
    sqs = hostile.clients.sync("sqs")

    @_settings
    @given(_batches)
    def run(batch: list[Any]) -> None:
        sent = _send(hostile, batch)
        messages: list[dict[str, Any]] = []
        while len(messages) < len(sent):
            received = sqs.receive_message(
                QueueUrl=url(hostile),
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            assert received
            messages += received

        response = hostile.lambda_handler(sqs_event(messages, arn(hostile)), LambdaContext())

        assert response == {"batchItemFailures": []}
        _drain_dlq(hostile, dead)
        _check(hostile, sent, dead)

    run()
