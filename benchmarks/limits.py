"""A global rate limit's accuracy and cost at N workers (default 8).

::

    python -m sqsq.local            (own process)
         ▲          ▲
         │          └── N × python -m sqsq worker benchmarks.limits:app --log-format json
    this process: sends ``limited`` (rate_limit = --rate) a 3 s backlog, then feeds it at 1.3 × its rate and
                  ``unlimited`` beside it on the same queue, for --seconds

Reported: the limited task's starts per 10 s window (sliding by 1 s, from
``WARM_UP_S`` after its first start to the end of the feed, while its backlog
lasts), as a ratio of the configured rate — min, mean, max; DynamoDB requests per
task (the bucket's UpdateItem/GetItem per limited task; everything per task) and
SQS requests per task, from the workers' ``worker.stopped`` records; put-backs.
Run from the repository root::

    python -m benchmarks.limits [--workers 8] [--rate 20] [--seconds 40] [--json]

Exit status: 0 when every window is within ±10 % and every task succeeded, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import sqsq
from benchmarks.throughput import start_endpoint, stop_endpoint, stopped_record, worker_consuming

ROOT = Path(__file__).resolve().parents[1]
APP = "benchmarks.limits:app"
#: The limited task's rate, tasks per second (the workers read it too).
RATE = float(os.environ.get("SQSQ_BENCH_LIMIT_RATE", "20"))
WINDOW_S = 10.0
#: Seconds after the first limited start before the windows begin (put-backs of the
#: first slots come back up to a second late: whole-second DelaySeconds).
WARM_UP_S = 3.0
#: Seconds of the limited task's rate sent before the feed starts (its backlog).
BACKLOG_S = 3
#: The unlimited task's feed, tasks per second.
UNLIMITED_PER_S = 10.0

app = sqsq.App("benchlim", visibility_timeout_s=30)


@app.task(name="bench.limited", rate_limit=RATE)  # named: this module also runs as __main__
def limited(i: int) -> int:
    return i


@app.task(name="bench.unlimited")
def unlimited(i: int) -> int:
    return i


def queue_left(sqs: Any, url: str) -> int:
    """Messages still in a queue: visible, in flight or delayed (put back)."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def result_items(app: sqsq.App) -> list[dict[str, Any]]:
    """Every result item of the app's table (a Scan: the caller's own reading)."""
    client = app.clients.sync("dynamodb")
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": app.table_name}
    while True:
        page = client.scan(**request)
        items += [i for i in page["Items"] if i["sk"]["S"] == "result"]
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _feed(seconds: float) -> tuple[Counter[str], float]:
    """Send a backlog of ``limited``, then ``limited`` at 1.3 × RATE and ``unlimited``
    at UNLIMITED_PER_S, in ticks (on a loaded machine the feed may fall behind:
    ``feed_per_s`` reports what it reached)."""
    tick_s, sent, i = 0.25, Counter[str](), BACKLOG_S * int(RATE)
    per_tick = max(1, round(RATE * 1.3 * tick_s)), max(1, round(UNLIMITED_PER_S * tick_s))
    for first in range(0, i, 10):  # a backlog from the start: the limit, not the feed, binds
        limited.delay_many([(n,) for n in range(first, min(first + 10, i))])
    sent["limited"] = i
    start = time.time()
    while time.time() - start < seconds:
        began = time.monotonic()
        limited.delay_many([(i + n,) for n in range(per_tick[0])])
        unlimited.delay_many([(i + n,) for n in range(per_tick[1])])
        sent["limited"] += per_tick[0]
        sent["unlimited"] += per_tick[1]
        i += per_tick[0]
        time.sleep(max(0.0, tick_s - (time.monotonic() - began)))
    return sent, time.time()


def run(workers: int, seconds: float) -> dict[str, Any]:
    from sqsq.resources import apply

    endpoint, url = start_endpoint()
    os.environ["AWS_ENDPOINT_URL"] = url
    from sqsq.local import LOCAL_ENVIRONMENT

    os.environ.update(LOCAL_ENVIRONMENT)
    processes: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        apply(app)
        logs = Path(tempfile.mkdtemp(prefix="sqsq-bench-limits-"))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SQSQ_BENCH_LIMIT_RATE": str(RATE)}
        for n in range(workers):
            log = logs / f"worker-{n}.log"
            with log.open("w") as out:
                command = [sys.executable, "-m", "sqsq", "worker", APP, "--log-format", "json"]
                process = subprocess.Popen(
                    [*command, "--wait-time", "2"], cwd=ROOT, env=env, stderr=out, text=True
                )
            processes.append((process, log))
        for process, log in processes:
            worker_consuming(process, log, 60)
        feed_start = time.time()
        sent, feed_end = _feed(seconds)
        sqs = app.clients.sync("sqs")
        queue_url = sqs.get_queue_url(QueueName=app.queue_name("default"))["QueueUrl"]
        deadline = time.monotonic() + 120
        while queue_left(sqs, queue_url) and time.monotonic() < deadline:
            time.sleep(1.0)
        requests, counters = Counter[str](), Counter[str]()
        for process, log in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            record = stopped_record(log.read_text()) or {}
            requests.update(record.get("requests", {}))
            counters.update(record.get("counters", {}))
        items = result_items(app)
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.kill()
        stop_endpoint(endpoint)
    starts = sorted(
        datetime.fromisoformat(i["started_at"]["S"]).timestamp()
        for i in items
        if i["task"]["S"].endswith(".limited") and "started_at" in i
    )
    windows, edge = [], (starts[0] if starts else feed_end) + WARM_UP_S
    while edge + WINDOW_S <= feed_end:
        windows.append(sum(edge <= t < edge + WINDOW_S for t in starts) / (RATE * WINDOW_S))
        edge += 1.0
    tasks = sum(sent.values())
    dynamodb = {k: v for k, v in requests.items() if k.startswith("dynamodb.")}
    bucket = requests["dynamodb.UpdateItem"] + requests["dynamodb.GetItem"]
    return {
        "workers": workers,
        "rate_per_s": RATE,
        "sent": dict(sent),
        "limited_feed_per_s": round(sent["limited"] / (feed_end - feed_start), 1),
        "succeeded": sum(i["state"]["S"] == "SUCCESS" for i in items),
        "states": dict(Counter(i["state"]["S"] for i in items)),
        "windows": [round(w, 3) for w in windows],
        "window_min": round(min(windows), 3) if windows else None,
        "window_mean": round(sum(windows) / len(windows), 3) if windows else None,
        "window_max": round(max(windows), 3) if windows else None,
        "bucket_requests_per_limited_task": round(bucket / max(sent["limited"], 1), 3),
        "dynamodb_per_task": round(sum(dynamodb.values()) / tasks, 3),
        "sqs_per_task": round(
            sum(v for k, v in requests.items() if k.startswith("sqs.")) / tasks, 3
        ),
        "put_backs": counters["resent"],
        "requests": dict(sorted(requests.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    if options.rate != RATE:  # the workers import this module: the rate goes by env
        os.environ["SQSQ_BENCH_LIMIT_RATE"] = str(options.rate)
        command = [sys.executable, "-m", "benchmarks.limits", *(argv or sys.argv[1:])]
        return subprocess.call(command, cwd=ROOT)
    report = run(options.workers, options.seconds)
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report.items():
            print(f"{name:>34}: {value}")
    within = report["windows"] and all(0.9 <= w <= 1.1 for w in report["windows"])
    return 0 if within and report["succeeded"] == sum(report["sent"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
