"""Tasks for the fault suite: side effects go to files named in the arguments, so a
test can count exactly how often a body ran, whatever process ran it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import sqsq

app = sqsq.App("faults")


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@app.task(queue="keys", idempotency_key="{key}")
def record_key(key: int, path: str, gate: str, hold_from: int) -> int:
    """Append ``key`` to ``path``; keys ≥ ``hold_from`` first wait while ``gate`` exists."""
    if key >= hold_from:
        while os.path.exists(gate):
            time.sleep(0.02)
    _append(path, str(key))
    return key


@app.task(queue="lease")
def long_job(seconds: float, path: str) -> int:
    """Record each start (pid) in ``path``, then work for ``seconds``."""
    _append(path, f"start {os.getpid()}")
    time.sleep(seconds)
    return os.getpid()


@app.task(
    queue="retry",
    autoretry_for=(ValueError,),
    max_retries=3,
    retry_backoff=1,
    retry_jitter=False,
)
def always_fails(path: str) -> None:
    """Raise every time (each attempt is appended to ``path``)."""
    _append(path, f"attempt {time.time()}")
    raise ValueError("the payment provider is down")


@app.task(queue="crash")
def kill_my_worker() -> None:
    """Kill the worker process that runs it (a segfault, an OOM kill...)."""
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(queue="crash")
def ping(n: int) -> int:
    return n


@app.task(queue="busy")
def sleepy(seconds: float, path: str) -> str:
    """Sleep, then append a line (so a test sees which runs completed)."""
    _append(path, f"start {os.getpid()}")
    time.sleep(seconds)
    _append(path, f"done {os.getpid()}")
    return "slept"


@app.task(queue="garbage")
def valid(n: int) -> int:
    return n


def lines(path: str) -> list[str]:
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []


@app.task(queue="redrive")
def fails_at_once(path: str, token: str) -> None:
    """Append ``token``, then fail (no retries: straight to the DLQ)."""
    _append(path, token)
    raise ValueError(f"still broken: {token}")
