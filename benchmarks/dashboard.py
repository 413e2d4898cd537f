"""Dashboard page times and DynamoDB requests per page view, with N results stored.

    python -m benchmarks.dashboard [--results 100000] [--views 20] [--json]

1. starts the embedded local endpoint in its own process (``python -m sqsq.local``);
2. creates a table with the listing index (``listing_index=True``) and stores N
   result items — the items a worker writes (``dynamodb.result_item``), with
   BatchWriteItem from 8 threads: 90 % SUCCESS, 8 % FAILURE (10 tasks x 5 exception
   types), 2 % RETRY, finished over the last 7 days;
3. serves the dashboard in this process (uvicorn on a loopback port) and GETs each
   page ``--views`` times, one at a time;
4. prints per page p50 / p95 milliseconds, the DynamoDB requests per view (the App's
   request counter) and this process's RSS before and after the page views (the
   dashboard keeps nothing, so it should not grow with N).

Not a test: nothing asserts on time. moto evaluates a GSI Query by walking the table's
items, so its page times grow with N where DynamoDB's do not (a Query reads only its
partition); the requests per view are what carries over to AWS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = [f"bench.task_{i}" for i in range(10)]
ERRORS = ["ValueError", "KeyError", "TimeoutError", "RuntimeError", "OSError"]


def records(count: int, seed: int = 23) -> list[Any]:
    from sqsq.result import ResultRecord, State

    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        roll = rng.random()
        state = State.SUCCESS if roll < 0.9 else State.FAILURE if roll < 0.98 else State.RETRY
        failed = state is not State.SUCCESS
        finished = now - timedelta(seconds=rng.uniform(0, 7 * 86_400))
        out.append(
            ResultRecord(
                f"bench-{i:07d}",
                state,
                task=rng.choice(TASKS),
                queue="default",
                value=i if not failed else None,
                exc_type=rng.choice(ERRORS) if failed else None,
                exc_message="something broke" if failed else None,
                traceback="Traceback (most recent call last):\n  ...\n" if failed else None,
                attempts=1,
                worker="bench:1",
                started_at=finished - timedelta(seconds=1),
                finished_at=finished,
                expires_at=int(now.timestamp()) + 86_400 * 8,
            )
        )
    return out


def store(app: Any, rows: list[Any]) -> float:
    from sqsq.dynamodb import ResultStore, result_item

    results = ResultStore(app.clients, app.table_name)
    chunks = [rows[i : i + 500] for i in range(0, len(rows), 500)]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        failed = pool.map(
            lambda chunk: results.put_results((r.task_id, result_item(r)) for r in chunk), chunks
        )
        assert not set().union(*failed), "some results were not stored"
    return time.monotonic() - started


def rss_mb() -> float:
    """This process's resident memory now, MB (Linux: /proc/self/status VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(base: str, app: Any, path: str, views: int) -> dict[str, Any]:
    times, requests = [], []
    for _ in range(views):
        before = app.clients.counter.snapshot()
        started = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=600) as response:
            assert response.status == 200, path
            response.read()
        times.append((time.perf_counter() - started) * 1000)
        after = app.clients.counter.snapshot()
        requests.append(
            sum(n - before.get(k, 0) for k, n in after.items() if k.startswith("dynamodb."))
        )
    times.sort()
    return {
        "page": path,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[min(len(times), math.ceil(len(times) * 0.95)) - 1], 1),
        "dynamodb_requests": statistics.median(requests),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.throughput import start_endpoint
    from sqsq.local import LOCAL_ENVIRONMENT

    endpoint, url = start_endpoint()
    try:
        os.environ.update({**LOCAL_ENVIRONMENT, "SQSQ_ENDPOINT_URL": url})
        import sqsq
        from sqsq.resources import apply
        from tests.dashboard_helpers import served

        app = sqsq.App("benchdash", listing_index=True)
        apply(app)
        rows = records(args.results)
        stored_s = store(app, rows)
        failed = next(r for r in rows if r.state.value == "FAILURE")
        del rows  # the generated records are the benchmark's, not the dashboard's
        pages = [
            "/apps/benchdash/tasks",
            "/apps/benchdash/tasks?state=FAILURE",
            f"/apps/benchdash/tasks?state=FAILURE&task={TASKS[3]}&since=24h",
            "/apps/benchdash/errors?since=1h",
            "/apps/benchdash/errors?since=24h",
            f"/apps/benchdash/tasks/{failed.task_id}",
        ]
        with served([app]) as base:
            serving_mb = rss_mb()
            found = [measure(base, app, page, args.views) for page in pages]
            served_mb = rss_mb()
        report = {
            "results": args.results,
            "stored_s": round(stored_s, 1),
            "pages": found,
            "rss_mb_before_views": round(serving_mb, 1),
            "rss_mb_after_views": round(served_mb, 1),
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(
                f"{args.results} results stored in {stored_s:.1f} s; RSS {serving_mb:.0f} MB "
                f"before the page views, {served_mb:.0f} MB after"
            )
            print(f"{'page':70} {'p50 ms':>8} {'p95 ms':>8} {'DynamoDB req':>13}")
            for row in found:
                print(
                    f"{row['page']:70} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f} "
                    f"{row['dynamodb_requests']:13}"
                )
    finally:
        endpoint.terminate()
        endpoint.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
