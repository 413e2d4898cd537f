"""``sqsq worker --metrics``: real worker processes report per-task metrics of what
they settled — EMF lines on stdout (validated against the specification's schema)
that add up to what ran, and a Prometheus endpoint scraped over HTTP during the run
(threads and processes: the parent counts). Neither makes an AWS request."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from examples.quickstart.app import Order, charge, refund
from sqsq.metrics import UNREGISTERED_TASK
from tests.conftest import QUICKSTART, WorkerFactory
from tests.test_lambda import send_raw
from tests.test_metrics import check_emf, emf_lines
from tests.test_worker import json_records, read_stderr_until, summary_record, wait_until

COUNTS = ("TasksSucceeded", "TasksFailed", "TasksRetried", "TasksDeadLettered")


def send_mix() -> dict[str, tuple[int, int, int, int]]:
    """3 charges that succeed, 2 that fail, 1 refund (fails), 1 unknown task; the
    expected (succeeded, failed, retried, dead-lettered) per task."""
    for i in range(3):
        charge.delay(Order(order_id=f"ok-{i}", cents=100 + i))
    for i in range(2):
        charge.delay(Order(order_id=f"bad-{i}", cents=0))
    refund.delay("r-1")
    send_raw("quickstart-default", {"task": "no.such.task", "args": []})
    return {
        charge.name: (3, 2, 0, 0),
        refund.name: (0, 1, 0, 0),
        UNREGISTERED_TASK: (0, 0, 0, 1),
    }


def totals(documents: list[dict[str, Any]]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for document in documents:
        assert (document["App"], document["Queue"]) == ("quickstart", "default")
        counts = tuple(document.get(name, 0) for name in COUNTS)
        before = out.get(document["Task"], (0, 0, 0, 0))
        out[document["Task"]] = tuple(a + b for a, b in zip(before, counts, strict=True))
    return out


def only_sqs_and_dynamodb(requests: dict[str, int]) -> None:
    """The metrics add no AWS request (no CloudWatch, no CloudWatch Logs)."""
    assert {key.split(".")[0] for key in requests} <= {"sqs", "dynamodb"}, requests


def test_burst_worker_writes_emf_per_task_at_shutdown(quickstart: Any, worker: Any) -> None:
    expected = send_mix()
    done = worker.run(
        QUICKSTART, "--metrics", "emf", "--log-format", "json", SQSQ_HEARTBEAT_INTERVAL_S="0"
    )
    assert done.returncode == 0, done.stderr
    documents = emf_lines(done.stdout)
    for document in documents:
        check_emf(document)
        assert document["Worker"]  # a plain member, not a dimension
        assert "Worker" not in {
            k for s in document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for k in s
        }
    # a 60 s interval: one line per (queue, task), written at shutdown
    assert sorted(d["Task"] for d in documents) == sorted(expected)
    assert totals(documents) == expected
    by_task = {d["Task"]: d for d in documents}
    assert len(by_task[charge.name]["RunTime"]) == 5
    assert len(by_task[charge.name]["QueueLatency"]) == 5
    # the summary line counts the same outcomes
    summary = summary_record(json_records(done.stderr))
    counters = summary["counters"]
    assert counters["succeeded"] == 3 and counters["failed"] == 3
    assert counters["dead_lettered"] == 1
    only_sqs_and_dynamodb(summary["requests"])


def test_running_worker_writes_emf_every_interval(quickstart: Any, worker: Any) -> None:
    process = worker.start(QUICKSTART, "--metrics", "emf", "--metrics-interval", "0.5")
    read_stderr_until(process, "consuming")
    charge.delay(Order(order_id="i-1", cents=100))
    assert process.stdout is not None
    seen: list[dict[str, Any]] = []
    while not seen:  # a line while the worker runs (before any signal)
        line = process.stdout.readline()
        assert line, "stdout closed before a metrics line"
        seen = emf_lines(line)
    (document,) = seen
    check_emf(document)
    assert (document["Task"], document["TasksSucceeded"]) == (charge.name, 1)
    assert process.poll() is None
    failed = refund.delay("i-2")
    wait_until(failed.ready, "the refund's FAILURE stored", process)
    process.send_signal(signal.SIGTERM)  # its line comes at the next interval or at exit
    rest, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    later = emf_lines(rest)
    assert totals([document, *later]) == {charge.name: (1, 0, 0, 0), refund.name: (0, 1, 0, 0)}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The endpoint's samples, ``{(name, sorted labels): value}``, over real HTTP."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have)
    )


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_prometheus_endpoint_scraped_during_a_run(quickstart: Any, worker: Any, pool: str) -> None:
    process = worker.start(
        QUICKSTART,
        "--metrics",
        "prometheus",
        "--metrics-port",
        "0",
        "--pool",
        pool,
        SQSQ_WORKER_METRICS_ADDRESS="127.0.0.1",
    )
    lines = read_stderr_until(process, "Prometheus metrics on")
    port = int(re.search(r":(\d+)/metrics", lines[-1]).group(1))  # type: ignore[union-attr]
    read_stderr_until(process, "consuming")
    expected = send_mix()
    worker_id = ""

    def all_counted() -> bool:
        samples = scrape(port)
        return (
            value(samples, "sqsq_task_succeeded_total")
            + value(samples, "sqsq_task_failed_total")
            + value(samples, "sqsq_task_dead_lettered_total")
            >= 7
        )

    wait_until(all_counted, "every outcome counted on the endpoint", process)
    samples = scrape(port)
    for task, (ok, failed, retried, dead) in expected.items():
        labels = {"task": task, "queue": "default"}
        assert value(samples, "sqsq_task_succeeded_total", **labels) == ok
        assert value(samples, "sqsq_task_failed_total", **labels) == failed
        assert value(samples, "sqsq_task_retried_total", **labels) == retried
        assert value(samples, "sqsq_task_dead_lettered_total", **labels) == dead
        assert value(samples, "sqsq_task_queue_latency_count", **labels) == ok + failed + dead
    assert value(samples, "sqsq_task_runtime_count", task=charge.name) == 5
    assert value(samples, "sqsq_task_runtime_count", task=UNREGISTERED_TASK) == 0
    workers = {dict(have)["worker"] for (n, have) in samples if n == "sqsq_task_succeeded_total"}
    (worker_id,) = workers
    assert value(samples, "sqsq_worker_tasks_active", worker=worker_id) == 0
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_prometheus_without_the_extra_is_a_usage_error(
    quickstart: Any, worker: WorkerFactory, tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked"
    (blocked / "prometheus_client").mkdir(parents=True)
    (blocked / "prometheus_client" / "__init__.py").write_text(
        "raise ImportError('No module named prometheus_client')\n"
    )
    done = subprocess.run(
        worker.command(QUICKSTART, "--metrics", "prometheus", "--burst"),
        cwd=tmp_path,
        env=worker.env(PYTHONPATH=f"{blocked}:{worker.env()['PYTHONPATH']}"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'sqsq[prometheus]'" in done.stderr


def test_a_port_in_use_is_a_usage_error(quickstart: Any, worker: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = worker.run(
            QUICKSTART,
            "--metrics",
            "prometheus",
            "--metrics-port",
            str(port),
            SQSQ_WORKER_METRICS_ADDRESS="127.0.0.1",
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
