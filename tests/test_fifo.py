"""FIFO queues: resources, per-group order on a real worker, SQS deduplication from
idempotency keys, the FIFO dead-letter queue, and what FIFO cannot do (delays)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq import State
from sqsq.local import LocalEndpoint
from tests.apps import reliability as rel

FIFO = "reliab-orders.fifo"
FIFO_DLQ = "reliab-orders-dlq.fifo"
STEP = "tests.apps.reliability.fifo_step"
STEPS = 4


def attributes(name: str) -> dict[str, str]:
    response = rel.sqs().get_queue_attributes(QueueUrl=rel.queue_url(name), AttributeNames=["All"])
    return dict(response["Attributes"])


def enqueue_groups(path: str) -> dict[str, list[sqsq.AsyncResult]]:
    """Steps 1..4 of groups A and B, interleaved; later steps sleep less, so running a
    group's messages side by side would finish them out of order."""
    groups: dict[str, list[sqsq.AsyncResult]] = {"A": [], "B": []}
    for seq in range(1, STEPS + 1):
        pause = (STEPS - seq) * 0.2
        groups["A"].append(rel.fifo_step.apply_async((path, "A", seq, pause), message_group_id="A"))
        groups["B"].append(
            rel.fifo_step.apply_async(
                kwargs={"path": path, "group": "B", "seq": seq, "pause": pause},
                message_group_id="B",
            )
        )
    return groups


def run_burst(tmp: Path, *args: str) -> tuple[int, str]:
    return rel.run_burst(tmp, "--queues", "orders.fifo", *args)


def in_group(runs: list[str], group: str) -> list[str]:
    return [line for line in runs if line.startswith(f"{group}:")]


ORDER = {g: [f"{g}:{n}" for n in range(1, STEPS + 1)] for g in "AB"}


# --- resources and producer ---------------------------------------------------------------


def test_resources_create_a_fifo_queue_with_a_fifo_dlq(local_aws: LocalEndpoint) -> None:
    rel.setup()
    queue, dlq = attributes(FIFO), attributes(FIFO_DLQ)
    assert queue["FifoQueue"] == "true" and dlq["FifoQueue"] == "true"
    assert queue["ContentBasedDeduplication"] == "false"
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert dlq["QueueArn"].endswith(":reliab-orders-dlq.fifo")
    rows = {(c.kind, c.name): c.action for c in sqsq.resources.plan(rel.app)}
    assert rows[("queue", FIFO)] == rows[("dead-letter queue", FIFO_DLQ)] == "ok"  # idempotent


def test_same_idempotency_key_within_five_minutes_is_one_message(
    local_aws: LocalEndpoint, tmp_path: Path
) -> None:
    rel.setup()
    path = str(tmp_path / "runs.log")
    first = rel.fifo_step.apply_async((path, "A", 1), idempotency_key="order-7")
    second = rel.fifo_step.apply_async((path, "A", 2), idempotency_key="order-7")
    other = rel.fifo_step.apply_async((path, "A", 3), idempotency_key="order-8")
    assert first.id == second.id != other.id  # one task: SQS keeps one message of the two
    assert rel.counts(FIFO) == (2, 0)

    messages = rel.receive(FIFO)
    by_task = {json.loads(m["Body"])["id"]: m["Attributes"] for m in messages}
    assert set(by_task) == {first.id, other.id}
    expected = hashlib.sha256(f"{STEP}\0order-7".encode()).hexdigest()
    assert by_task[first.id]["MessageDeduplicationId"] == expected
    assert by_task[first.id]["MessageGroupId"] == STEP  # default group: the task name
    assert by_task[other.id]["MessageDeduplicationId"] != expected


def test_without_a_key_each_message_is_its_own(local_aws: LocalEndpoint, tmp_path: Path) -> None:
    rel.setup()
    results = [rel.fifo_step.delay(str(tmp_path / "x"), "A", 1) for _ in range(2)]
    assert rel.counts(FIFO) == (2, 0)
    dedup = {m["Attributes"]["MessageDeduplicationId"] for m in rel.receive(FIFO)}
    assert dedup == {r.id for r in results}  # the task id


@pytest.mark.parametrize("option", ["countdown", "countdown-timedelta", "eta"])
def test_a_delay_on_a_fifo_queue_raises_enqueue_error(option: str) -> None:
    options: dict[str, Any] = {
        "countdown": {"countdown": 5},
        "countdown-timedelta": {"countdown": timedelta(seconds=1)},
        # built when the test runs, not at collection: an eta must still be ahead
        "eta": {"eta": datetime.now(UTC) + timedelta(minutes=1)},
    }[option]
    with pytest.raises(sqsq.EnqueueError, match="FIFO"):
        rel.fifo_step.apply_async(("/nonexistent", "A", 1), **options)


# --- on a worker ---------------------------------------------------------------------------


@dataclass
class Scenario:
    groups: dict[str, list[sqsq.AsyncResult]]
    failing: sqsq.AsyncResult
    duplicates: tuple[sqsq.AsyncResult, sqsq.AsyncResult]
    counts_before: tuple[int, int]
    counts_after: tuple[int, int]
    runs: list[str]
    dead_letters: list[dict[str, Any]]
    exit_code: int
    stderr: str


@pytest.fixture(scope="module")
def scenario(
    sqsq_endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    """Two message groups, a failing task and a pair of calls sharing an idempotency
    key, all on the FIFO queue, then one ``--burst`` worker (default concurrency)."""
    sqsq_endpoint.reset()
    rel.setup()
    tmp = tmp_path_factory.mktemp("fifo")
    path = str(tmp / "runs.log")
    groups = enqueue_groups(path)
    failing = rel.fifo_fail.apply_async((path,), message_group_id="F")
    duplicates = (
        rel.fifo_step.apply_async((path, "D", 1), message_group_id="D", idempotency_key="d"),
        rel.fifo_step.apply_async((path, "D", 2), message_group_id="D", idempotency_key="d"),
    )
    counts_before = rel.counts(FIFO)
    code, stderr = run_burst(tmp)
    for result in [*groups["A"], *groups["B"], failing, *duplicates]:
        result.ready()  # final records are cached from here on
    yield Scenario(
        groups,
        failing,
        duplicates,
        counts_before,
        rel.counts(FIFO),
        rel.lines(path),
        rel.drain(FIFO_DLQ),
        code,
        stderr,
    )


def test_every_group_message_succeeds(scenario: Scenario) -> None:
    assert scenario.exit_code == 0, scenario.stderr
    for group, results in scenario.groups.items():
        assert [r.get(timeout=0) for r in results] == ORDER[group]
    assert sorted(in_group(scenario.runs, "A") + in_group(scenario.runs, "B")) == sorted(
        ORDER["A"] + ORDER["B"]
    )


def test_messages_of_a_group_run_in_order_with_default_concurrency(scenario: Scenario) -> None:
    assert in_group(scenario.runs, "A") == ORDER["A"]
    assert in_group(scenario.runs, "B") == ORDER["B"]


def test_messages_of_a_group_run_in_order_with_concurrency_one(
    local_aws: LocalEndpoint, tmp_path: Path
) -> None:
    rel.setup()
    path = str(tmp_path / "runs.log")
    groups = enqueue_groups(path)
    code, stderr = run_burst(tmp_path, "--concurrency", "1")
    assert code == 0, stderr
    runs = rel.lines(path)
    assert in_group(runs, "A") == ORDER["A"]
    assert in_group(runs, "B") == ORDER["B"]
    assert all(r.successful() for r in groups["A"] + groups["B"])


def test_a_failing_fifo_task_lands_in_the_fifo_dlq(scenario: Scenario) -> None:
    record = scenario.failing.record
    assert record is not None and record.state is State.FAILURE
    assert record.dead_letter_reason == "task_failed"
    (copy,) = scenario.dead_letters
    assert json.loads(copy["Body"])["id"] == scenario.failing.id
    assert copy["MessageAttributes"]["sqsq-dead-letter-reason"]["StringValue"] == "task_failed"
    assert copy["Attributes"]["MessageGroupId"] == "F"  # the group is kept in the DLQ
    assert scenario.counts_after == (0, 0)


def test_sqs_dropped_the_duplicate_before_any_worker_saw_it(scenario: Scenario) -> None:
    groups = 2 * STEPS
    assert scenario.counts_before == (groups + 1 + 1, 0)  # one of the two "d" messages
    first, _ = scenario.duplicates
    assert first.get(timeout=0) == "D:1"
    assert in_group(scenario.runs, "D") == ["D:1"]


def test_the_deduplicated_call_gets_the_first_result(scenario: Scenario) -> None:
    first, second = scenario.duplicates
    assert second.get(timeout=2) == first.get(timeout=0)
