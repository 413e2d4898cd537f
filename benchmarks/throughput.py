"""Throughput and AWS requests per task: ``delay_many`` in, one ``sqsq worker --burst`` out.

::

    python -m sqsq.local            (own process: moto's CPU does not share our GIL)
         ▲                ▲
         │                └── python -m sqsq worker benchmarks.app:app --burst --log-format json
    this process: resources.apply(app), noop.delay_many(N tasks)

With ``--rate R`` it measures a trickle instead of a backlog: the worker starts
first, and once it consumes, this process sends one ``noop.delay(i)`` every
``1/R`` seconds (a steady producer); the worker exits once the queue stays empty.

The producer's requests come from ``app.clients.counter`` (a botocore
``before-send`` hook: one count per HTTP attempt, retries included); the
worker's from the ``requests`` dict of its last log record (``"event":
"worker.stopped"``). Peak RSS of the worker is ``getrusage(RUSAGE_CHILDREN)``
read after it exits and before the endpoint process is reaped.

moto's ReceiveMessage rescans the queue, so absolute tasks/s on the local
endpoint says little about AWS; requests per task by API action are the
figures to trust. Run from the repository root::

    python -m benchmarks.throughput --tasks 2000 [--concurrency 50] [--json]
    python -m benchmarks.throughput --tasks 1000 --rate 55 --concurrency 4

Exit status: 0 when every task succeeded and the request targets hold, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
APP = "benchmarks.app:app"

#: Targets, requests per task (producer + worker).
#: (issue 6: results + delay_many ≤ 0.33 SQS and ≤ 0.10 DynamoDB requests per task)
TARGET_SQS_PER_TASK = 0.33
TARGET_DYNAMODB_PER_TASK = 0.10
#: Targets of a trickle (``--rate``), the worker's requests per task (issue 19: a
#: trickle batched like a backlog). The producer's one SendMessage per ``delay()`` is
#: the producer's own, and not counted against them.
TARGET_TRICKLE_WORKER_SQS_PER_TASK = 0.6
TARGET_TRICKLE_WORKER_DYNAMODB_PER_TASK = 0.2
#: Safety nets, seconds (not assertions: a hung process must not hang the benchmark).
ENDPOINT_START_TIMEOUT_S = 60.0
DEFAULT_WORKER_TIMEOUT_S = 1800.0


@dataclass
class Report:
    """Everything one run measured."""

    tasks: int
    concurrency: int
    enqueue_s: float
    drain_s: float
    worker_elapsed_s: float | None
    worker_exit_code: int
    worker_peak_rss_kib: int
    worker_counters: dict[str, int]
    producer_requests: dict[str, int]
    worker_requests: dict[str, int]
    rate: float | None = None  # tasks/s of a trickle; None: a backlog
    combined_requests: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        combined: Counter[str] = Counter(self.producer_requests)
        combined.update(self.worker_requests)
        self.combined_requests = dict(sorted(combined.items()))

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.drain_s if self.drain_s > 0 else 0.0

    def per_task(self, counts: Mapping[str, int], service: str | None = None) -> float:
        total = sum(n for k, n in counts.items() if service is None or k.startswith(service + "."))
        return total / self.tasks if self.tasks else 0.0

    @property
    def sqs_per_task(self) -> float:
        return self.per_task(self.combined_requests, "sqs")

    @property
    def dynamodb_per_task(self) -> float:
        return self.per_task(self.combined_requests, "dynamodb")

    @property
    def complete(self) -> bool:
        return self.worker_exit_code == 0 and self.worker_counters.get("succeeded", 0) == self.tasks

    @property
    def targets(self) -> tuple[str, float, float]:
        """Which requests the targets count (``combined`` or ``worker``), and the SQS and
        DynamoDB targets per task."""
        if self.rate is not None:
            return (
                "worker",
                TARGET_TRICKLE_WORKER_SQS_PER_TASK,
                TARGET_TRICKLE_WORKER_DYNAMODB_PER_TASK,
            )
        return "combined", TARGET_SQS_PER_TASK, TARGET_DYNAMODB_PER_TASK

    @property
    def targets_hold(self) -> bool:
        side, sqs, dynamodb = self.targets
        counts = self.worker_requests if side == "worker" else self.combined_requests
        return self.per_task(counts, "sqs") <= sqs and self.per_task(counts, "dynamodb") <= dynamodb

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        n = self.tasks or 1
        data["tasks_per_s"] = round(self.tasks_per_s, 2)
        data["requests_per_task"] = {
            side: {k: round(v / n, 4) for k, v in counts.items()}
            for side, counts in (
                ("producer", self.producer_requests),
                ("worker", self.worker_requests),
                ("combined", self.combined_requests),
            )
        }
        data["sqs_per_task"] = round(self.sqs_per_task, 4)
        data["dynamodb_per_task"] = round(self.dynamodb_per_task, 4)
        side, sqs, dynamodb = self.targets
        data["targets"] = {
            "requests": side,
            "sqs_per_task": sqs,
            "dynamodb_per_task": dynamodb,
            "hold": self.targets_hold,
        }
        data["complete"] = self.complete
        return data


# --- processes -----------------------------------------------------------------------------


def start_endpoint() -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m sqsq.local``; returns the process and its URL (stdout's first line)."""
    from sqsq.local import LOCAL_ENVIRONMENT

    process = subprocess.Popen(
        [sys.executable, "-m", "sqsq.local"],
        env={**os.environ, **LOCAL_ENVIRONMENT},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        process.wait(ENDPOINT_START_TIMEOUT_S)
        raise RuntimeError(f"python -m sqsq.local printed {url!r}, not a URL")
    return process, url


def stop_endpoint(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stopped_record(stderr: str) -> dict[str, Any] | None:
    """The worker's last ``worker.stopped`` JSON log record, if any."""
    for line in reversed(stderr.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            str(record.get("logger", "")).startswith("sqsq.worker")
            and record.get("event") == "worker.stopped"
        ):
            return dict(record)
    return None


def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in sorted(after.items()) if n - before.get(k, 0)}


# --- the run ---------------------------------------------------------------------------------


def worker_consuming(process: subprocess.Popen[str], log: Path, timeout_s: float) -> None:
    """Wait until the worker logged that it consumes (its receivers start)."""
    deadline = time.monotonic() + timeout_s
    while "consuming" not in log.read_text(encoding="utf-8", errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def trickle(tasks: int, rate: float) -> float:
    """Send ``tasks`` noop tasks, one ``delay()`` every ``1/rate`` s; seconds taken."""
    from benchmarks.app import noop

    started = time.perf_counter()
    for i in range(tasks):
        pause = started + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        noop.delay(i)
    return time.perf_counter() - started


def run(tasks: int, concurrency: int, worker_timeout_s: float, rate: float | None = None) -> Report:
    """Enqueue ``tasks`` noop tasks, drain them with one burst worker, measure; with
    ``rate``, send them one by one at that rate to a worker already consuming."""
    endpoint, url = start_endpoint()
    try:
        from sqsq.local import LOCAL_ENVIRONMENT

        env = {**LOCAL_ENVIRONMENT, "SQSQ_ENDPOINT_URL": url}
        os.environ.update(env)  # before the App is built: settings come from SQSQ_* variables
        from benchmarks.app import app, noop
        from sqsq.resources import apply

        apply(app)
        before = app.clients.counter.snapshot()
        enqueue_s = 0.0
        if rate is None:
            started = time.perf_counter()
            noop.delay_many((i,) for i in range(tasks))
            enqueue_s = time.perf_counter() - started

        command = [
            sys.executable,
            "-m",
            "sqsq",
            "worker",
            APP,
            "--burst",
            "--concurrency",
            str(concurrency),
            "--log-format",
            "json",
        ]
        worker_env = {**os.environ, **env}
        worker_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:  # a file: a pipe left unread fills up
            log = Path(folder) / "worker.log"
            log_file = log.open("w", encoding="utf-8")
            worker = subprocess.Popen(
                command,
                cwd=ROOT,
                env=worker_env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                text=True,
            )
            try:
                if rate is not None:
                    worker_consuming(worker, log, worker_timeout_s)
                    started = time.perf_counter()  # the drain: first send to the worker's exit
                    enqueue_s = trickle(tasks, rate)
                worker.wait(timeout=worker_timeout_s)
            except (subprocess.TimeoutExpired, RuntimeError):
                worker.kill()
                worker.wait()
            drain_s = time.perf_counter() - started
            log_file.close()
            stderr = log.read_text(encoding="utf-8")
        producer_requests = diff(app.clients.counter.snapshot(), before)
        # Only the worker has been reaped so far: the endpoint is still running.
        peak_rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

        record = stopped_record(stderr)
        if record is None:
            sys.stderr.write(stderr[-4000:])
        app.close()
        return Report(
            tasks=tasks,
            concurrency=concurrency,
            enqueue_s=round(enqueue_s, 3),
            drain_s=round(drain_s, 3),
            worker_elapsed_s=record.get("elapsed_s") if record else None,
            worker_exit_code=worker.returncode,
            worker_peak_rss_kib=peak_rss_kib,
            worker_counters=dict(sorted((record or {}).get("counters", {}).items())),
            producer_requests=producer_requests,
            worker_requests=dict(sorted((record or {}).get("requests", {}).items())),
            rate=rate,
        )
    finally:
        stop_endpoint(endpoint)


# --- output ----------------------------------------------------------------------------------


def _cell(counts: Mapping[str, int], key: str, n: int) -> str:
    return f"{counts[key] / n:10.3f}" if key in counts else f"{'-':>10}"


def render(report: Report) -> str:
    n = report.tasks or 1
    verdict = "hold" if report.targets_hold else "MISSED"
    worker_elapsed = (
        f"; the worker's own elapsed {report.worker_elapsed_s:.1f} s"
        if report.worker_elapsed_s is not None
        else ""
    )
    lines = [
        f"sqsq throughput: {report.tasks} tasks, one `sqsq worker --burst` "
        f"(concurrency {report.concurrency}), local moto endpoint",
        f"  enqueue  {report.enqueue_s:8.2f} s  "
        f"({report.tasks / report.enqueue_s if report.enqueue_s else 0:.0f} tasks/s, "
        + ("delay_many)" if report.rate is None else f"a trickle: delay() at {report.rate:g}/s)"),
        f"  drain    {report.drain_s:8.2f} s  ({report.tasks_per_s:.1f} tasks/s, "
        + ("worker start" if report.rate is None else "first send")
        + f" to exit{worker_elapsed})",
        f"  worker   exit {report.worker_exit_code}, "
        + (", ".join(f"{k}={v}" for k, v in report.worker_counters.items()) or "no summary")
        + f", peak RSS {report.worker_peak_rss_kib / 1024:.1f} MiB",
        "",
        f"  {'requests per task':<28}{'producer':>10}{'worker':>10}{'combined':>10}",
    ]
    for key in report.combined_requests:
        lines.append(
            f"  {key:<28}{_cell(report.producer_requests, key, n)}"
            f"{_cell(report.worker_requests, key, n)}{_cell(report.combined_requests, key, n)}"
        )
    side, sqs_target, dynamodb_target = report.targets
    for label, service, target in (
        ("SQS", "sqs", sqs_target),
        ("DynamoDB", "dynamodb", dynamodb_target),
    ):
        lines.append(
            f"  {label + ' total':<28}"
            f"{report.per_task(report.producer_requests, service):10.3f}"
            f"{report.per_task(report.worker_requests, service):10.3f}"
            f"{report.per_task(report.combined_requests, service):10.3f}"
            f"   target ({side}) <= {target:.2f}"
        )
    lines.append(f"  targets {verdict}" + ("" if report.complete else "; RUN INCOMPLETE"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks to enqueue (default 2000)")
    parser.add_argument(
        "--concurrency", type=int, default=50, help="the worker's --concurrency (default 50)"
    )
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=DEFAULT_WORKER_TIMEOUT_S,
        help="kill the worker after this many seconds (a safety net)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="a trickle: send one delay() every 1/RATE s to a worker already consuming",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    options = parser.parse_args(argv)
    if options.tasks < 1 or options.concurrency < 1:
        parser.error("--tasks and --concurrency must be >= 1")
    if options.rate is not None and options.rate <= 0:
        parser.error("--rate must be > 0")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    report = run(options.tasks, options.concurrency, options.worker_timeout, options.rate)
    print(json.dumps(report.as_json(), indent=2) if options.json else render(report))
    return 0 if report.complete and report.targets_hold else 1


if __name__ == "__main__":
    sys.exit(main())
