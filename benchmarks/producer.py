"""Concurrent producers: SendMessage / SendMessageBatch requests per task.

::

    python -m sqsq.local            (own process: moto's CPU does not share our GIL)
         ▲
         └── this process: T threads (or T coroutines) each calling noop.delay(i) in a loop

For every case the endpoint is reset (moto's SendMessageBatch slows down as its
store fills: cases must not pay for each other's messages) and a fresh App
creates its queue and enqueues N tasks; the requests come
from ``app.clients.counter`` (botocore's ``before-send`` hook: one count per
HTTP attempt). Cases:

* ``sequential``: one thread calling ``delay()`` in a loop (the peer benchmark's
  producer) — coalescing must cost it nothing: 1.00 SendMessage per task;
* ``threads`` at each ``--lingers`` value: T threads calling ``delay()`` at once
  (a web app with T request threads) — target ≤ 0.15 SendMessageBatch per task
  at T = 20; and the same with ``--few`` threads, where the linger matters;
* ``threads, coalescing off``: the same with ``coalesce_sends=False``;
* ``coroutines``: T coroutines calling ``adelay()`` on one event loop.

moto bounds the absolute rates (a few ms per request on 2 cores); requests per
task are the figures to trust. Run from the repository root::

    python -m benchmarks.producer --tasks 2000 [--threads 20] [--lingers 0,0.002,0.005] [--json]

Exit status: 0 when the threaded cases at the default linger meet the target, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.throughput import start_endpoint, stop_endpoint

#: Target for T ≥ 20 concurrent callers: SendMessageBatch requests per task.
TARGET_BATCH_PER_TASK = 0.15


@dataclass
class Case:
    """One measured case."""

    name: str
    tasks: int
    callers: int
    linger_s: float | None
    coalesce: bool
    enqueue_s: float
    send_message: int
    send_message_batch: int

    @property
    def batch_per_task(self) -> float:
        return self.send_message_batch / self.tasks

    @property
    def sends_per_task(self) -> float:
        return (self.send_message + self.send_message_batch) / self.tasks

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "send_message_batch_per_task": round(self.batch_per_task, 4),
            "send_requests_per_task": round(self.sends_per_task, 4),
            "tasks_per_s": round(self.tasks / self.enqueue_s, 1),
        }


def _reset_endpoint() -> None:
    """Empty the local endpoint (moto's ``/moto-api/reset``)."""
    import urllib.request

    url = os.environ["SQSQ_ENDPOINT_URL"] + "/moto-api/reset"
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30):
        pass


def _app(queue: str, **settings: Any) -> Any:
    import sqsq
    from sqsq.resources import apply

    _reset_endpoint()
    app = sqsq.App("bench", default_queue=queue, **settings)

    @app.task(name="noop", store_result=False)
    def noop(i: int) -> int:
        return i

    apply(app)
    app.tasks["noop"].delay(-1)  # queue URL and connection ready (not counted)
    return app


def _count(app: Any, before: dict[str, int], key: str) -> int:
    return int(app.clients.counter.snapshot().get(key, 0) - before.get(key, 0))


def run_case(
    name: str, tasks: int, callers: int, *, coalesce: bool, linger_s: float | None, asyncio_: bool
) -> Case:
    settings: dict[str, Any] = {"coalesce_sends": coalesce}
    if linger_s is not None:
        settings["send_linger_s"] = linger_s
    app = _app(f"p{abs(hash(name)) % 10**8}", **settings)
    noop = app.tasks["noop"]
    shares = [range(k, tasks, callers) for k in range(callers)]
    before = app.clients.counter.snapshot()
    started = time.perf_counter()
    if asyncio_:

        async def produce() -> None:
            async def caller(share: range) -> None:
                for i in share:
                    await noop.adelay(i)

            try:
                await asyncio.gather(*(caller(s) for s in shares))
            finally:
                await app.aclose()

        asyncio.run(produce())
    else:

        def caller(share: range) -> None:
            for i in share:
                noop.delay(i)

        threads = [threading.Thread(target=caller, args=(s,)) for s in shares]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elapsed = time.perf_counter() - started
    case = Case(
        name=name,
        tasks=tasks,
        callers=callers,
        linger_s=app.settings.send_linger_s if coalesce else None,
        coalesce=coalesce,
        enqueue_s=round(elapsed, 3),
        send_message=_count(app, before, "sqs.SendMessage"),
        send_message_batch=_count(app, before, "sqs.SendMessageBatch"),
    )
    app.close()
    return case


def render(cases: list[Case]) -> str:
    lines = [
        "| case | callers | linger ms | tasks/s enqueue | SendMessage/task | "
        "SendMessageBatch/task | send requests/task |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        linger = "—" if c.linger_s is None else f"{c.linger_s * 1000:g}"
        lines.append(
            f"| {c.name} | {c.callers} | {linger} | {c.tasks / c.enqueue_s:.0f} | "
            f"{c.send_message / c.tasks:.3f} | {c.batch_per_task:.3f} | {c.sends_per_task:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument(
        "--few", type=int, default=4, help="also run the lingers with this many threads"
    )
    parser.add_argument("--lingers", default="0,0.002,0.005", help="send_linger_s values, s")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    endpoint, url = start_endpoint()
    try:
        from sqsq.local import LOCAL_ENVIRONMENT

        os.environ.update({**LOCAL_ENVIRONMENT, "SQSQ_ENDPOINT_URL": url})
        n, t = args.tasks, args.threads
        cases = [run_case("sequential", n, 1, coalesce=True, linger_s=None, asyncio_=False)]
        for callers in sorted({args.few, t} - {0}):
            for linger in (float(x) for x in args.lingers.split(",") if x):
                cases.append(
                    run_case("threads", n, callers, coalesce=True, linger_s=linger, asyncio_=False)
                )
        cases.append(
            run_case("threads, coalescing off", n, t, coalesce=False, linger_s=None, asyncio_=False)
        )
        cases.append(run_case("coroutines", n, t, coalesce=True, linger_s=None, asyncio_=True))
    finally:
        stop_endpoint(endpoint)

    if args.json:
        print(json.dumps([c.as_json() for c in cases], indent=1))
    else:
        print(render(cases))
    threaded = [c for c in cases if c.name == "threads" and c.callers >= 20]
    return 0 if threaded and all(c.batch_per_task <= TARGET_BATCH_PER_TASK for c in threaded) else 1


if __name__ == "__main__":
    raise SystemExit(main())
