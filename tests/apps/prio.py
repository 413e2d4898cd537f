"""A test app for queue priorities and fair queues.

- ``started_high`` / ``started_low`` (queues ``high`` and ``low``): append the
  queue's name to ``path`` when they start, then sleep ``seconds``;
- ``tenant_job`` (queue ``default``, ``fair_key="{tenant_id}"``): returns its tenant.

Its resources are created by the tests (``sqsq.resources.apply(app)``).
"""

from __future__ import annotations

import threading
import time

import sqsq

app = sqsq.App("prio")

_lock = threading.Lock()


def _started(path: str, queue: str, seconds: float) -> None:
    with _lock, open(path, "a", encoding="utf-8") as log:
        log.write(queue + "\n")
    time.sleep(seconds)


@app.task(queue="high")
def started_high(path: str, seconds: float = 0.0) -> None:
    _started(path, "high", seconds)


@app.task(queue="low")
def started_low(path: str, seconds: float = 0.0) -> None:
    _started(path, "low", seconds)


@app.task(fair_key="{tenant_id}")
def tenant_job(tenant_id: str, n: int) -> str:
    return f"{tenant_id}:{n}"
