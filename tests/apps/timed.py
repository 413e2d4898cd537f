"""A test app for the Lambda function's timing (tests/test_lambda_esm.py), run by the
simulated SQS event source mapping in a subprocess execution environment.

- ``quick``: returns its argument, and appends it to ``$TIMED_EFFECTS`` (one line per
  run, so a test counts how often a body ran);
- ``sleepy``: no ``time_limit``; sleeps ``seconds`` the first time it runs for a
  ``token`` (a marker file under ``$TIMED_EFFECTS``'s directory), at once after;
- ``boom``: always raises ``ValueError``;
- ``report``: ``time_limit=60``, sleeps ``seconds`` (a long task near its limit).

Its resources are created by the tests (``sqsq.resources.apply(app)``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import sqsq

app = sqsq.App("timed")
lambda_handler = app.lambda_handler


def _effect(line: str) -> None:
    path = os.environ.get("TIMED_EFFECTS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@app.task
def quick(n: int) -> int:
    _effect(f"quick {n}")
    return n


@app.task
def sleepy(seconds: float, token: str) -> str:
    marker = Path(os.environ.get("TIMED_EFFECTS", "/tmp/timed")).with_name(f"slept-{token}")
    _effect(f"sleepy {token}")
    if not marker.exists():
        marker.touch()
        time.sleep(seconds)
    return token


@app.task
def boom() -> None:
    raise ValueError("boom")


@app.task(time_limit=60)
def report(seconds: float) -> float:
    time.sleep(seconds)
    _effect("report")
    return seconds
