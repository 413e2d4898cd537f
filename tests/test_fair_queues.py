"""Fair queues: ``fair_key`` / ``message_group_id`` set ``MessageGroupId`` on a standard
queue (SQS fair queues), on the wire of SendMessage and SendMessageBatch, and the
messages still run on a worker as on any standard queue (no FIFO ordering)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sqsq
import sqsq.resources
from sqsq import State
from tests.apps import prio

PRIO = "tests.apps.prio:app"


@pytest.fixture
def prio_app(local_aws: Any) -> sqsq.App:
    """The test app ``tests.apps.prio`` with its queues and table created."""
    sqsq.resources.apply(prio.app)
    return prio.app


@pytest.fixture
def sent(prio_app: sqsq.App) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every SendMessage / SendMessageBatch entry the app's client
    makes (botocore's ``provide-client-params`` hook), one dict per message."""
    seen: list[dict[str, Any]] = []

    def one(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)

    def batch(params: dict[str, Any], **_: Any) -> None:
        seen.extend(params["Entries"])

    sqs = prio_app.clients.sync("sqs")
    sqs.meta.events.register("provide-client-params.sqs.SendMessage", one)
    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", batch)
    yield seen
    sqs.meta.events.unregister("provide-client-params.sqs.SendMessage", one)
    sqs.meta.events.unregister("provide-client-params.sqs.SendMessageBatch", batch)


def _group_of(entries: list[dict[str, Any]], task_id: str) -> str | None:
    (entry,) = [e for e in entries if task_id in e["MessageBody"]]
    assert "MessageDeduplicationId" not in entry  # a standard queue: no FIFO fields
    return entry.get("MessageGroupId")


def test_fair_key_sets_message_group_id_on_the_wire_and_the_worker_runs_them(
    prio_app: sqsq.App, sent: list[dict[str, Any]], worker: Any
) -> None:
    one = prio.tenant_job.delay("acme", 1)
    other = prio.tenant_job.apply_async(("globex", 2))
    chosen = prio.tenant_job.apply_async(("acme", 3), message_group_id="vip-acme")
    many = prio.tenant_job.delay_many([("acme", 4), ("initech", 5)])

    assert _group_of(sent, one.id) == "acme"
    assert _group_of(sent, other.id) == "globex"
    assert _group_of(sent, chosen.id) == "vip-acme"
    assert [_group_of(sent, r.id) for r in many] == ["acme", "initech"]
    assert not prio.app.queue_name(prio.tenant_job.queue).endswith(".fifo")

    done = worker.run(PRIO, "-Q", "default")

    assert done.returncode == 0, done.stderr
    results = [one, other, chosen, *many]
    assert [r.get(timeout=5) for r in results] == [
        "acme:1",
        "globex:2",
        "acme:3",
        "acme:4",
        "initech:5",
    ]
    assert all(r.state is State.SUCCESS for r in results)


def test_a_task_without_fair_key_sends_no_group(
    prio_app: sqsq.App, sent: list[dict[str, Any]]
) -> None:
    result = prio.started_low.delay("/nonexistent")

    assert _group_of(sent, result.id) is None


@pytest.mark.parametrize("bad", ["two words", "x" * 129, "é"])
def test_a_group_sqs_would_refuse_fails_before_sending(
    prio_app: sqsq.App, sent: list[dict[str, Any]], bad: str
) -> None:
    with pytest.raises(sqsq.EnqueueError, match="SQS_MAX_MESSAGE_GROUP_ID_CHARS"):
        prio.tenant_job.delay(bad, 1)
    assert sent == []


def test_a_fair_key_that_cannot_be_rendered_names_the_option(prio_app: sqsq.App) -> None:
    @prio_app.task(name="prio.bad_fair_key", fair_key="{customer}")
    def bad(tenant_id: str) -> None: ...

    try:
        with pytest.raises(sqsq.EnqueueError, match="fair_key"):
            bad.delay("acme")
    finally:
        del prio_app.tasks["prio.bad_fair_key"]


def test_canvas_sends_carry_the_fair_key(prio_app: sqsq.App, sent: list[dict[str, Any]]) -> None:
    result = sqsq.group(prio.tenant_job.s("acme", 1), prio.tenant_job.s("globex", 2)).apply_async()

    assert result.id
    assert sorted(str(e.get("MessageGroupId")) for e in sent) == ["acme", "globex"]
