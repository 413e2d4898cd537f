"""Global rate limits on real worker processes: a task limited to 20/s beside an
unlimited one on the same queue, served by four workers at once."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.limits import queue_left, result_items
from sqsq.sqs import dead_letter_name
from sqsq.testing import external_endpoints
from tests.apps import flow
from tests.helpers import queue_counts

APP = "tests.apps.flow:app"
#: Seconds the producer feeds the queue; the limited task is fed above its rate
#: (24/s against 20/s), so its backlog never runs dry while the windows are measured.
FEED_S = 28.0
LIMITED_PER_TICK, UNLIMITED_PER_TICK, TICK_S = 6, 2, 0.25
WINDOW_S = 10.0
#: Seconds after the first limited start that the windows begin: the first slots'
#: put-backs come back up to a second late (SQS's DelaySeconds are whole seconds),
#: a shift of the start, not of the rate.
WARM_UP_S = 3.0
#: LocalStack's SQS moves delayed messages to the visible ones once a second
#: (``QueueUpdateWorker``, period 1 s, in ``localstack/services/sqs/provider.py``), not
#: at their delay as SQS does, so a put-back comes back up to a second later than its
#: slot, and a slot more than 2 s late is dropped: there the rate converges more
#: slowly (measured: windows 158, 167, 173, 184, then 194–206 of 200 in one run;
#: 189–211 throughout in another). There the test asserts the limit is never
#: exceeded (+10 %) and the under-rate stays within what that granularity explains.
WARM_UP_EXTERNAL_S = 8.0
LOW_EXTERNAL = 0.75
#: On moto, the floor of a window (the limit is not needlessly conservative): 0.75 of
#: the rate, as on the external endpoint. 0.9 held on a quiet machine (191–210 of 200),
#: but with the suite's other worker processes on the same 2 cores the feed and the
#: four workers' own pace fell to 179–194, and in a fresh CI run to 164–181 (slots
#: taken, not refused) — the ceiling (+10 %) is the limit's property; the floor only
#: catches a limiter that starves its task.
LOW_MOTO = 0.75


def _start(worker: Any, count: int) -> list[subprocess.Popen[str]]:
    """``count`` workers logging JSON to files (a pipe nobody reads until the end
    would fill up and stall them)."""
    processes = []
    for n in range(count):
        log = open(worker.tmp_path / f"worker-{n}.log", "w+", encoding="utf-8")  # noqa: SIM115
        command = worker.command(APP, "-Q", "default", "--concurrency", "8", "--log-format", "json")
        process = subprocess.Popen(
            [*command, "--wait-time", "2"],
            cwd=worker.tmp_path,
            env=worker.env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        process.log = log  # type: ignore[attr-defined]
        worker.processes.append(process)  # killed at teardown if still running
        processes.append(process)
    return processes


def _stopped(process: subprocess.Popen[str]) -> str:
    """Wait for ``process`` to exit; its log."""
    process.wait(timeout=60)
    log = process.log  # type: ignore[attr-defined]
    log.seek(0)
    text: str = log.read()
    log.close()
    return text


def _ts(item: dict[str, Any], name: str) -> float:
    return datetime.fromisoformat(item[name]["S"]).timestamp()


def _summary(stderr: str) -> dict[str, Any]:
    for line in stderr.splitlines():
        if '"worker.stopped"' in line:
            record: dict[str, Any] = json.loads(line)
            return record
    raise AssertionError(f"no worker.stopped record in:\n{stderr[-3000:]}")


@pytest.mark.slow
def test_four_workers_hold_a_rate_limit_and_leave_the_unlimited_task_alone(worker: Any) -> None:
    app = flow.setup()
    workers = _start(worker, 4)
    for process in workers:  # every worker polls before the feed starts
        deadline = time.monotonic() + 30
        while "consuming" not in Path(process.log.name).read_text() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.1)
    sent = Counter[str]()
    i = 0
    start = time.time()
    while time.time() - start < FEED_S:
        tick = time.monotonic()
        flow.limited.delay_many([(i + n,) for n in range(LIMITED_PER_TICK)])
        flow.unlimited.delay_many([(i + n,) for n in range(UNLIMITED_PER_TICK)])
        sent["limited"] += LIMITED_PER_TICK
        sent["unlimited"] += UNLIMITED_PER_TICK
        i += LIMITED_PER_TICK
        time.sleep(max(0.0, TICK_S - (time.monotonic() - tick)))
    feed_end = time.time()
    sqs = app.clients.sync("sqs")
    url = sqs.get_queue_url(QueueName=app.queue_name("default"))["QueueUrl"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and queue_left(sqs, url):  # the backlog drains at 20/s
        time.sleep(1.0)
    for process in workers:
        process.send_signal(signal.SIGTERM)
    logs = [_stopped(process) for process in workers]
    summaries = [_summary(log) for log in logs]
    # SQS delivers at least once, and moto's threaded server can hand one message to
    # two concurrent receives (getmoto/moto#519): both runs then read receive count 2.
    # Such a broker duplicate ran twice; it is not a put-back counted as an attempt.
    runs = Counter[str](
        record["task_id"]
        for log in logs
        for line in log.splitlines()
        if line.startswith("{") and " SUCCESS in " in (record := json.loads(line))["message"]
    )
    print("workers:", [s["counters"] for s in summaries], "left:", queue_left(sqs, url))
    items = result_items(app)

    by_task: dict[str, list[dict[str, Any]]] = {"limited": [], "unlimited": []}
    for item in items:
        by_task[item["task"]["S"].rsplit(".", 1)[-1]].append(item)
    assert {k: len(v) for k, v in by_task.items()} == dict(sent)
    for item in items:  # put back, never an attempt
        assert item["state"]["S"] == "SUCCESS"
        task_id = item["pk"]["S"].removeprefix("task#")
        assert item["attempts"]["N"] == "1" or runs[task_id] > 1, item
    dlq = app.clients.sync("sqs").get_queue_url(
        QueueName=dead_letter_name(app.queue_name("default"))
    )["QueueUrl"]
    assert queue_counts(app.clients.sync("sqs"), dlq) == (0, 0)

    # the limited task's rate over every 10 s window while its backlog lasted
    starts = sorted(_ts(item, "started_at") for item in by_task["limited"])
    first = starts[0]
    counts = []
    edge = first + (WARM_UP_S if external_endpoints() is None else WARM_UP_EXTERNAL_S)
    while edge + WINDOW_S <= feed_end:
        counts.append(sum(edge <= t < edge + WINDOW_S for t in starts))
        edge += 1.0
    rate = flow.LIMITED_RATE * WINDOW_S
    print(f"limited starts per {WINDOW_S:g} s window: {counts}")
    assert len(counts) >= 5
    low = LOW_MOTO if external_endpoints() is None else LOW_EXTERNAL
    assert all(low * rate <= c <= 1.1 * rate for c in counts), counts

    # the unlimited task did not wait behind it: all of it ran during the feed
    # (its rate, 8/s, is what a run without the limited task serves)
    unlimited_late = [it for it in by_task["unlimited"] if _ts(it, "finished_at") > feed_end + 5]
    assert not unlimited_late, len(unlimited_late)

    requests = Counter[str]()
    for summary in summaries:
        requests.update(summary["requests"])
    tasks = sum(sent.values())
    dynamodb = {k: v for k, v in requests.items() if k.startswith("dynamodb.")}
    per_task = sum(dynamodb.values()) / tasks
    bucket_writes = requests["dynamodb.UpdateItem"] / sent["limited"]
    print(
        f"DynamoDB requests: {dynamodb}; {per_task:.3f} per task; bucket writes per "
        f"limited task {bucket_writes:.3f}; SQS: "
        f"{ {k: v for k, v in requests.items() if k.startswith('sqs.')} }"
    )
    assert bucket_writes <= 0.25  # 0.1 per task in batches, plus wrong first guesses


@pytest.mark.slow
def test_a_queue_limit_is_admission_at_the_poller(worker: Any) -> None:
    """``queue_rate_limits={"metered": "10/s"}``: the poller receives only what the
    bucket admits, so nothing is put back and the starts follow the rate (the first
    slots may come one horizon early: 1.5 batches of 5)."""
    app = flow.setup()
    count = 60
    flow.metered.delay_many([(i,) for i in range(count)])
    process = worker.start(APP, "-Q", "metered", "--log-format", "json")
    sqs = app.clients.sync("sqs")
    url = sqs.get_queue_url(QueueName=app.queue_name("metered"))["QueueUrl"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and queue_left(sqs, url):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    summary = _summary(process.communicate(timeout=60)[1])
    assert summary["counters"]["succeeded"] == count
    assert "resent" not in summary["counters"]  # admitted, never put back
    starts = sorted(_ts(i, "started_at") for i in result_items(app))
    assert len(starts) == count
    burst = math.ceil(1.5 * 5)
    assert starts[-1] - starts[0] >= (count - 1 - burst) / 10
