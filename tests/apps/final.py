"""Tasks for the "a stored outcome is final for the body" tests (issue 18,
``tests/faults/test_outcome_final.py``): every body appends one line to a file
named in its arguments (or, for the periodic task, in ``FINAL_FIRES``), so a test
counts exactly how often a body ran, whatever process ran it."""

from __future__ import annotations

import os
from typing import Any

import sqsq

app = sqsq.App("final")


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def failing_body(results: list[Any], path: str) -> None:
    """A chord body that fails for good (no retries)."""
    _append(path, f"run {os.getpid()}")
    raise ValueError(f"the body failed on {results}")


@app.task
def big(n: int, chars: int, path: str) -> str:
    """A chord member whose result is ``chars`` characters long."""
    _append(path, f"member {n}")
    return str(n) * chars


@app.task
def collect(results: list[Any], path: str) -> int:
    _append(path, "body")
    return len(results)


@app.task(queue="tokens")
def token_job(path: str) -> str:
    """A task a Step Functions waitForTaskToken state sends (minimal form + token)."""
    _append(path, f"run {os.getpid()}")
    return "done"


@app.task(queue="keys.fifo", idempotency_key="{key}")
def fifo_key(key: int, path: str) -> int:
    _append(path, str(key))
    return key


@app.periodic_task("rate(1 hour)", name="fails-when-fired", queue="fires")
def fails_when_fired() -> None:
    """A periodic task that fails: each run appends to the file named by ``FINAL_FIRES``."""
    _append(os.environ["FINAL_FIRES"], f"run {os.getpid()}")
    raise ValueError("the fire failed")
