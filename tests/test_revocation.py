"""Revocation and expiry on a real worker: REVOKED is recorded, the body does not run,
the message is deleted; ``expires`` as seconds, aware datetimes and hand-written bodies."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq import State
from sqsq.errors import TaskExpired, TaskRevoked
from sqsq.local import LocalEndpoint
from tests.apps import reliability as rel

COUNTED = "tests.apps.reliability.counted"


@dataclass
class Scenario:
    results: dict[str, sqsq.AsyncResult]
    runs: list[str]
    source_counts: tuple[int, int]
    dead_letters: dict[str, dict[str, Any]]
    exit_code: int
    stderr: str

    def record(self, name: str) -> sqsq.ResultRecord:
        record = self.results[name].record
        assert record is not None, f"{name}: no result\n{self.stderr}"
        return record


def send_raw(body: dict[str, Any]) -> str:
    """A hand-written body sent with plain boto3; its MessageId (the task id)."""
    response = rel.sqs().send_message(
        QueueUrl=rel.queue_url("reliab-default"), MessageBody=json.dumps(body)
    )
    return str(response["MessageId"])


@pytest.fixture(scope="module")
def scenario(
    sqsq_endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    """Everything enqueued (and revoked, or let expire) before one ``--burst`` worker."""
    sqsq_endpoint.reset()
    rel.setup()
    tmp = tmp_path_factory.mktemp("revocation")
    path = str(tmp / "runs.log")
    in_two_hours = timezone(timedelta(hours=2))
    results = {
        "revoked": rel.counted.delay(path, "revoked"),
        "kept": rel.counted.delay(path, "kept"),
        "expires_seconds": rel.counted.apply_async((path, "expires_seconds"), expires=0.3),
        "expires_timedelta": rel.counted.apply_async(
            (path, "expires_timedelta"), expires=timedelta(milliseconds=300)
        ),
        "expires_datetime": rel.counted.apply_async(
            (path, "expires_datetime"),
            expires=(datetime.now(UTC) + timedelta(milliseconds=300)).astimezone(in_two_hours),
        ),
        "expires_past": rel.counted.apply_async(
            (path, "expires_past"), expires=datetime(2020, 1, 1, tzinfo=UTC)
        ),
        "expires_later": rel.counted.apply_async(
            (path, "expires_later"), expires=timedelta(minutes=10)
        ),
    }
    results["revoked"].revoke()
    raw_past = send_raw(
        {"task": COUNTED, "args": [path, "raw_past"], "expires": "2000-01-01T00:00:00Z"}
    )
    raw_future = send_raw(
        {"task": COUNTED, "args": [path, "raw_future"], "expires": "2999-01-01T00:00:00+00:00"}
    )
    results["raw_past"] = rel.app.AsyncResult(raw_past)
    results["raw_future"] = rel.app.AsyncResult(raw_future)
    time.sleep(0.5)  # the 300 ms expiries pass before any worker sees them

    returncode, stderr = rel.run_burst(tmp, "--queues", "default")
    for result in results.values():
        result.ready()  # final records are cached from here on
    yield Scenario(
        results,
        rel.lines(path),
        rel.counts("reliab-default"),
        rel.dead_letters(),
        returncode,
        stderr,
    )


def test_worker_runs_only_what_is_neither_revoked_nor_expired(scenario: Scenario) -> None:
    assert scenario.exit_code == 0, scenario.stderr
    assert sorted(scenario.runs) == ["expires_later", "kept", "raw_future"]
    assert scenario.results["kept"].get(timeout=0) == "kept"
    assert scenario.results["expires_later"].get(timeout=0) == "expires_later"
    assert scenario.results["raw_future"].get(timeout=0) == "raw_future"


def test_every_message_is_deleted_and_none_dead_lettered(scenario: Scenario) -> None:
    assert scenario.source_counts == (0, 0)
    assert scenario.dead_letters == {}


def test_revoked_before_the_worker_ran_is_revoked(scenario: Scenario) -> None:
    record = scenario.record("revoked")
    assert record.state is State.REVOKED
    assert record.exc_type == "sqsq.errors.TaskRevoked"
    assert record.dead_letter_reason is None
    assert record.started_at is None  # never started
    result = scenario.results["revoked"]
    assert result.ready() and not result.successful() and not result.failed()
    with pytest.raises(TaskRevoked) as revoked:
        result.get(timeout=0)
    assert type(revoked.value) is TaskRevoked


@pytest.mark.parametrize(
    "name", ["expires_seconds", "expires_timedelta", "expires_datetime", "expires_past"]
)
def test_expired_tasks_are_revoked_with_task_expired(scenario: Scenario, name: str) -> None:
    record = scenario.record(name)
    assert record.state is State.REVOKED
    assert record.exc_type == "sqsq.errors.TaskExpired"
    assert record.started_at is None
    with pytest.raises(TaskExpired):
        scenario.results[name].get(timeout=0)


def test_expires_in_a_hand_written_body_is_honoured(scenario: Scenario) -> None:
    record = scenario.record("raw_past")
    assert record.task_id == record.message_id  # no id in the body: the MessageId
    assert record.state is State.REVOKED
    assert record.exc_type == "sqsq.errors.TaskExpired"
    assert "2000-01-01" in (record.exc_message or "")
    with pytest.raises(TaskExpired):
        scenario.results["raw_past"].get(timeout=0)


@pytest.mark.parametrize(
    "expires",
    [0, -5, float("nan"), timedelta(seconds=-1), datetime(2030, 1, 1)],  # last: naive
)
def test_bad_expires_is_refused_at_enqueue(expires: Any) -> None:
    with pytest.raises(sqsq.EnqueueError):
        rel.counted.apply_async(("/nonexistent", "x"), expires=expires)


def test_an_eager_result_cannot_be_revoked() -> None:
    result = rel.counted.apply("/dev/null", "eager")
    assert result.get(timeout=0) == "eager"
    with pytest.raises(sqsq.ResultError):
        result.revoke()


def test_revoked_before_it_starts_never_runs_across_two_workers(
    worker: Any, tmp_path: Path
) -> None:
    """Two busy workers; tasks revoked while they work, before their messages are
    due, never run; each worker reads revocations with about one Query per
    ``revocation_interval_s`` and no read per task."""
    from sqsq.resources import apply

    apply(rel.app)
    path = str(tmp_path / "runs.txt")
    busy = [rel.counted.delay(path, f"busy-{i}") for i in range(30)]
    later = {
        name: rel.counted.apply_async((path, name), countdown=4)
        for name in ("revoked-0", "revoked-1", "revoked-2", "kept-0", "kept-1")
    }
    workers = [
        worker.start(
            "tests.apps.reliability:app",
            "-c",
            "1",
            "--prefetch",
            "0",
            "--log-format",
            "json",
            SQSQ_REVOCATION_INTERVAL_S="0.5",
        )
        for _ in range(2)
    ]
    for name, result in later.items():
        if name.startswith("revoked"):
            result.revoke()
    for i, result in enumerate(busy):
        assert result.get(timeout=60) == f"busy-{i}"
    for name in ("kept-0", "kept-1"):
        assert later[name].get(timeout=60) == name
    for name in ("revoked-0", "revoked-1", "revoked-2"):
        deadline = time.monotonic() + 30
        while later[name].state is State.PENDING and time.monotonic() < deadline:
            time.sleep(0.2)
        assert later[name].state is State.REVOKED, name
    for process in workers:
        process.send_signal(signal.SIGTERM)
    summaries = []
    for process in workers:
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        summaries.append(next(r for r in _json_lines(stderr) if r.get("event") == "worker.stopped"))
    runs = Path(path).read_text().splitlines()
    assert not [r for r in runs if r.startswith("revoked")], runs
    assert sorted(r for r in runs if r.startswith("kept")) == ["kept-0", "kept-1"]
    for summary in summaries:
        requests = summary["requests"]
        assert "dynamodb.BatchGetItem" not in requests and "dynamodb.GetItem" not in requests
        # at most one Query per interval while busy (+1 for the first); never one per task
        assert requests.get("dynamodb.Query", 0) <= summary["elapsed_s"] / 0.5 + 1, summary


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
