"""Time limits on real workers (asyncio cancel, thread abandoned, child process killed),
``--max-tasks-per-child``, and lease extension of a task longer than its queue's
visibility timeout."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq import State
from sqsq.idempotency import item_key, key_pk
from sqsq.local import LocalEndpoint
from tests.apps import reliability as rel

LEASE_QUEUE = "reliab-lease"


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_for(predicate: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def assert_time_limit_failure(result: sqsq.AsyncResult) -> sqsq.ResultRecord:
    record = result.record
    assert record is not None
    assert record.state is State.FAILURE
    assert record.exc_type == "sqsq.errors.TimeLimitExceeded"
    assert record.dead_letter_reason == "time_limit_exceeded"
    assert record.attempts == 1  # a time limit is final: never retried
    return record


# --- threads pool: asyncio and threads -----------------------------------------------------


@dataclass
class ThreadsRun:
    async_result: sqsq.AsyncResult
    sync_result: sqsq.AsyncResult
    quick_result: sqsq.AsyncResult
    info: sqsq.AsyncResult
    after: sqsq.AsyncResult
    runs: dict[str, list[str]]
    dead_letters: dict[str, dict[str, Any]]
    exit_code: int
    stderr: str


@pytest.fixture(scope="module")
def threads_run(
    sqsq_endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadsRun]:
    """An async and a sync task past their 1 s limits, then a quick task, one at a time
    (``--concurrency 1``) on a ``--burst`` worker with the default thread pool."""
    sqsq_endpoint.reset()
    rel.setup()
    tmp = tmp_path_factory.mktemp("threads")
    names = ("async", "sync", "quick", "after")
    paths = {name: str(tmp / f"{name}.log") for name in names}
    async_result = rel.async_sleeper.delay(paths["async"], 30)
    sync_result = rel.sync_sleeper.delay(paths["sync"], 4)
    quick_result = rel.sync_sleeper.delay(paths["quick"], 0)  # same 1 s limit, no sleep
    info = rel.request_info.apply_async(("o-1",), {"cents": 7})
    after = rel.counted.delay(paths["after"], "after")
    returncode, stderr = rel.run_burst(tmp, "--queues", "default", "--concurrency", "1")
    for result in (async_result, sync_result, quick_result, info, after):
        result.ready()
    yield ThreadsRun(
        async_result,
        sync_result,
        quick_result,
        info,
        after,
        {name: rel.lines(path) for name, path in paths.items()},
        rel.dead_letters(),
        returncode,
        stderr,
    )


def test_async_task_is_cancelled_at_its_time_limit(threads_run: ThreadsRun) -> None:
    record = assert_time_limit_failure(threads_run.async_result)
    assert threads_run.runs["async"] == ["start"]  # cancelled in its sleep, never at "end"
    assert record.started_at is not None and record.finished_at is not None
    copy = threads_run.dead_letters[threads_run.async_result.id]
    assert copy["reason"] == "time_limit_exceeded"
    with pytest.raises(sqsq.TaskFailed) as failed:
        threads_run.async_result.get(timeout=0)
    assert failed.value.remote_type == "sqsq.errors.TimeLimitExceeded"


def test_sync_task_in_a_thread_fails_at_its_time_limit(threads_run: ThreadsRun) -> None:
    record = assert_time_limit_failure(threads_run.sync_result)
    assert threads_run.dead_letters[record.task_id]["reason"] == "time_limit_exceeded"
    assert f":{threads_run.runs['sync'][0]}" in str(record.worker)  # a thread of the worker


def test_the_next_sync_task_is_not_charged_for_an_abandoned_thread(
    threads_run: ThreadsRun,
) -> None:
    # quick_result sleeps 0 s under the same 1 s limit; it is received after the
    # sleeper was abandoned, while that thread still sleeps (--concurrency 1)
    assert threads_run.quick_result.get(timeout=0, propagate=False) == int(
        threads_run.runs["quick"][0]
    )


def test_worker_goes_on_after_time_limits_and_exits_zero(threads_run: ThreadsRun) -> None:
    assert threads_run.exit_code == 0, threads_run.stderr
    assert threads_run.after.get(timeout=0) == "after"
    assert threads_run.runs["after"] == ["after"]


# --- processes pool ------------------------------------------------------------------------


@pytest.fixture
def rapp(local_aws: LocalEndpoint) -> sqsq.App:
    return rel.setup()


def test_process_pool_kills_the_child_at_the_time_limit(rapp: sqsq.App, tmp_path: Path) -> None:
    path = str(tmp_path / "sleeper.log")
    sleeper = rel.sync_sleeper.delay(path, 60)
    process = rel.spawn_worker(
        tmp_path,
        "--queues",
        "default",
        "--wait-time",
        "1",
        "--pool",
        "processes",
        "--concurrency",
        "1",
    )
    try:
        with pytest.raises(sqsq.TaskFailed):
            sleeper.get(timeout=40)
        assert_time_limit_failure(sleeper)
        pid = int(rel.lines(path)[0])
        assert pid != process.pid
        wait_for(lambda: not alive(pid), f"the timed-out child {pid} to be gone")
        # the pool replaced the killed child and goes on
        first, second = rel.whoami.delay(), rel.whoami.delay()
        pids = {first.get(timeout=40), second.get(timeout=40)}
        assert pid not in pids and process.pid not in pids
        assert len(pids) == 1  # without --max-tasks-per-child the new child is reused
    finally:
        code, stderr = rel.stop_worker(process)
    assert code == 0, stderr
    assert rel.lines(path) == [str(pid)]  # killed before "end"


@dataclass
class ProcessesRun:
    whoami: list[sqsq.AsyncResult]
    info: sqsq.AsyncResult
    exit_code: int
    stderr: str


@pytest.fixture(scope="module")
def processes_run(
    sqsq_endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> ProcessesRun:
    """Three ``whoami`` and one bound task on a ``--burst`` worker with
    ``--pool processes --concurrency 1 --max-tasks-per-child 1``."""
    sqsq_endpoint.reset()
    rel.setup()
    results = [rel.whoami.delay() for _ in range(3)]
    info = rel.request_info.apply_async(("o-1",), {"cents": 7})
    process = rel.spawn_worker(
        tmp_path_factory.mktemp("processes"),
        "--burst",
        "--queues",
        "default",
        "--pool",
        "processes",
        "--concurrency",
        "1",
        "--max-tasks-per-child",
        "1",
    )
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    for result in [*results, info]:
        result.ready()
    return ProcessesRun(results, info, process.returncode, stderr)


def test_max_tasks_per_child_one_runs_each_task_in_a_new_process(
    processes_run: ProcessesRun,
) -> None:
    assert processes_run.exit_code == 0, processes_run.stderr
    pids = [r.get(timeout=0) for r in processes_run.whoami]
    assert len(set(pids)) == 3, pids
    assert os.getpid() not in pids


def expected_request(result: sqsq.AsyncResult) -> dict[str, object]:
    return {
        "id": result.id,
        "task": "tests.apps.reliability.request_info",
        "args": ["o-1", 7],  # validated and bound: cents=7 is positional-or-keyword
        "kwargs": {},
        "attempt": 1,
        "retries": 0,
        "queue": "default",
        "idempotency_key": None,
    }


def test_bound_request_in_a_thread(threads_run: ThreadsRun) -> None:
    info = threads_run.info.get(timeout=0)
    assert info.pop("pid") == int(threads_run.runs["sync"][0])  # the worker process
    assert info == expected_request(threads_run.info)


def test_bound_request_in_a_child_process_is_the_same(processes_run: ProcessesRun) -> None:
    info = processes_run.info.get(timeout=0)
    assert info.pop("pid") not in {r.get(timeout=0) for r in processes_run.whoami}
    assert info == expected_request(processes_run.info)


# --- leases ----------------------------------------------------------------------------------


def test_lease_is_extended_past_a_short_queue_visibility_timeout(
    rapp: sqsq.App, tmp_path: Path
) -> None:
    """The task (visibility_timeout=2, an idempotency key) runs 5 s; its queue's
    VisibilityTimeout is 1 s. The heartbeat keeps the message invisible and the key's
    lease alive, so the task runs once, on its first receive."""
    rel.sqs().set_queue_attributes(
        QueueUrl=rel.queue_url(LEASE_QUEUE), Attributes={"VisibilityTimeout": "1"}
    )
    path = str(tmp_path / "lease.log")
    result = rel.long_lease.delay(path, 5)
    pk = key_pk(rel.long_lease.name, path)
    process = rel.spawn_worker(
        tmp_path, "--queues", "lease", "--wait-time", "1", "--log-format", "json"
    )
    try:
        wait_for(lambda: rel.lines(path) == ["run"], "the task to start", timeout=30)
        first_lease = claimed_until(pk)
        time.sleep(max(0.0, first_lease + 1 - time.time()))  # the first 2 s lease is over
        assert rel.lines(path) == ["run"]  # still running
        intruder = rapp.idempotency.claim(pk, "intruder", lease_s=1, ttl_s=60)
        assert (intruder.status, intruder.owner) == ("IN_PROGRESS", result.id)
        assert result.get(timeout=40) == 1
    finally:
        code, stderr = rel.stop_worker(process)
    assert code == 0, stderr
    record = result.record
    assert record is not None and record.attempts == 1, stderr
    assert rel.lines(path) == ["run", "end"], stderr
    summary = [json.loads(line) for line in stderr.splitlines() if '"counters"' in line]
    assert summary and summary[-1]["counters"]["received"] == 1, stderr
    assert summary[-1]["counters"]["leases_extended"] >= 2, stderr


def claimed_until(pk: str) -> int:
    """``lease_expires_at`` of an idempotency item, once it exists."""
    client = rel.app.clients.sync("dynamodb")
    found: dict[str, Any] = {}

    def claimed() -> bool:
        found.update(
            client.get_item(
                TableName=rel.app.table_name, Key=item_key(pk), ConsistentRead=True
            ).get("Item", {})
        )
        return "lease_expires_at" in found

    wait_for(claimed, f"the claim of {pk}")
    return int(found["lease_expires_at"]["N"])
