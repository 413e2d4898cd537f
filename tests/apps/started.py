"""A test app for ``track_started`` (tests/test_track_started.py).

- ``held``: tracked; waits until the file ``path`` exists (the test creates it
  once it has seen STARTED), then returns the state its own result read at start;
- ``quick`` / ``plain``: the same trivial body, tracked and not (request counts);
- ``flaky``: tracked; fails (autoretry) until its third try, then returns the try.

Its resources are created by the tests (``sqsq.resources.apply(app)``).
"""

from __future__ import annotations

import time
from pathlib import Path

import sqsq
from sqsq.task import BoundTask

app = sqsq.App("started")

#: Longest ``held`` waits for its file, seconds (the test fails long before).
HOLD_S = 60.0


class Flaky(Exception):
    """What ``flaky`` raises on its first two tries."""


@app.task(track_started=True)
def held(path: str) -> str:
    deadline = time.monotonic() + HOLD_S
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "released"


@app.task(track_started=True)
def quick(n: int) -> int:
    return n


@app.task
def plain(n: int) -> int:
    return n


@app.task(bind=True, track_started=True, autoretry_for=(Flaky,), default_retry_delay=1)
def flaky(self: BoundTask, tries: int) -> int:
    attempt = self.request.retries + 1
    if attempt < tries:
        raise Flaky(f"try {attempt} of {tries}")
    return attempt


@app.task(bind=True, track_started=True)
def look(self: BoundTask) -> str:
    """Returns the state its own result has while it runs (the Lambda path writes
    STARTED before the body)."""
    return app.AsyncResult(self.request.id).state.value
