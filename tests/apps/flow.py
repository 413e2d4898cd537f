"""Test-only tasks for the flow-control tests: a rate-limited task beside an
unlimited one on the same queue, a per-key limit, a queue with a queue-wide limit,
and concurrency-limited tasks that record when their bodies run.

``setup`` creates the resources on a freshly reset endpoint.
"""

from __future__ import annotations

import os
import time

import sqsq

#: The limited task's rate (tasks per second).
LIMITED_RATE = 20

app = sqsq.App(
    "flowt",
    visibility_timeout_s=10,
    queue_rate_limits={"metered": "10/s"},
)


@app.task(rate_limit=f"{LIMITED_RATE}/s")
def limited(i: int) -> int:
    return i


@app.task
def unlimited(i: int) -> int:
    return i


@app.task(rate_limit="5/s", rate_key="{customer}")
def per_customer(customer: str, i: int) -> str:
    return customer


@app.task(queue="metered")
def metered(i: int) -> int:
    return i


@app.task(concurrency_limit=2, concurrency_key="{account}", visibility_timeout=30)
def exclusive(account: str, path: str, hold_s: float) -> str:
    """Writes ``start``/``end`` lines with times and pid to ``path``, holding ``hold_s``."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(f"start {time.time():.6f} {os.getpid()}\n")
    time.sleep(hold_s)
    with open(path, "a", encoding="utf-8") as file:
        file.write(f"end {time.time():.6f} {os.getpid()}\n")
    return account


#: The lease of ``solo``'s slot (its message's visibility timeout), seconds.
SOLO_LEASE_S = 4


@app.task(concurrency_limit=1, concurrency_key="{account}", visibility_timeout=SOLO_LEASE_S)
def solo(account: str, path: str, hold_s: float) -> str:
    """One at a time per account. Holds ``hold_s`` only on the first run of all
    (``path`` did not exist), so a redelivered copy of a killed run is short."""
    first = not os.path.exists(path)
    with open(path, "a", encoding="utf-8") as file:
        file.write(f"start {time.time():.6f} {os.getpid()}\n")
    time.sleep(hold_s if first else 0.1)
    with open(path, "a", encoding="utf-8") as file:
        file.write(f"end {time.time():.6f} {os.getpid()}\n")
    return account


def setup() -> sqsq.App:
    """Create the app's queues and table; forget cached queue URLs."""
    from sqsq.resources import apply
    from sqsq.sqs import dead_letter_name

    for logical in app.queues():
        name = app.queue_name(logical)
        app.directory.forget(name)
        app.directory.forget(dead_letter_name(name))
    apply(app)
    app.flow = None
    app._revocations = None
    return app
