"""S3 requests and bytes per offloaded task (issue 24's closing note).

    python -m benchmarks.payloads --tasks 50 --size 2000000 [--result-size 0]

Starts the embedded local endpoint in this process, creates the app's queues, table
and bucket, enqueues ``--tasks`` calls whose argument is ``--size`` characters with
``delay_many`` (so they go through S3), drains them with an in-process burst worker,
and prints the requests per task by API action (``app.clients.counter``: producer and
worker share the App) and the payload bytes per task that crossed S3. Not a test:
nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--size", type=int, default=2_000_000, help="argument characters")
    parser.add_argument("--result-size", type=int, default=0, help="result characters")
    args = parser.parse_args()

    from sqsq.local import LocalEndpoint

    with LocalEndpoint() as endpoint:
        os.environ.update(endpoint.environ())
        import sqsq
        import sqsq.resources

        app = sqsq.App("bench-payloads", payload_bucket="bench-payloads", payload_delete=True)

        @app.task
        def echo(data: str, result_size: int) -> str:
            return "r" * result_size if result_size else str(len(data))

        sqsq.resources.apply(app)
        before = app.clients.counter.snapshot()
        started = time.monotonic()
        results = echo.delay_many([("x" * args.size, args.result_size)] * args.tasks)
        sqsq.Worker(app, burst=True, wait_time_s=1).run()
        assert all(r.get(timeout=30) is not None for r in results)
        elapsed = time.monotonic() - started
        after = app.clients.counter.snapshot()
        calls = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
        left = app.clients.sync("s3").list_objects_v2(Bucket="bench-payloads").get("KeyCount", 0)
        per_task: dict[str, Any] = {k: round(n / args.tasks, 3) for k, n in sorted(calls.items())}
        report = {
            "tasks": args.tasks,
            "argument_chars": args.size,
            "result_chars": args.result_size,
            "seconds": round(elapsed, 1),
            "requests_per_task": per_task,
            "s3_requests_per_task": round(
                sum(n for k, n in calls.items() if k.startswith("s3.")) / args.tasks, 3
            ),
            "objects_left": left,
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
