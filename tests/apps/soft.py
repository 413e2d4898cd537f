"""A test app for ``soft_time_limit`` (tests/test_soft_time_limit.py): each task runs
past its 1 s soft limit, well under its hard ``time_limit``, and records what its
body saw in the result it returns.

- ``spin``: a pure-Python loop (reached in every pool) that catches the exception
  and returns what it caught;
- ``nap``: ``time.sleep(30)``, a blocking call: interrupted on a process's main thread
  (SIGALRM), not in a pool thread;
- ``escape``: a loop that lets the exception out; ``autoretry_for`` names it and
  ``max_retries=0``, so the retry policy judges it (``max_retries_exceeded``);
- ``anap``: ``async def``, catches it at its ``await asyncio.sleep(30)``.

Its resources are created by the tests (``sqsq.resources.apply(app)``).
"""

from __future__ import annotations

import asyncio
import time

import sqsq

app = sqsq.App("soft")

#: Longest a body waits for the exception, seconds (under every time_limit below).
WAIT_S = 15.0


def _loop() -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        pass


@app.task(soft_time_limit=1, time_limit=25)
def spin() -> str:
    try:
        _loop()
    except sqsq.SoftTimeLimitExceeded as exc:
        return f"caught: {exc}"
    return "not interrupted"


@app.task(soft_time_limit=1, time_limit=40)
def nap() -> str:
    try:
        time.sleep(30)
    except sqsq.SoftTimeLimitExceeded as exc:
        return f"caught: {exc}"
    return "not interrupted"


@app.task(
    soft_time_limit=1, time_limit=25, autoretry_for=(sqsq.SoftTimeLimitExceeded,), max_retries=0
)
def escape() -> str:
    _loop()
    return "not interrupted"


@app.task(soft_time_limit=1, time_limit=25)
async def anap() -> str:
    try:
        await asyncio.sleep(WAIT_S)
    except sqsq.SoftTimeLimitExceeded as exc:
        await asyncio.sleep(0)  # the body goes on awaiting after it
        return f"caught: {exc}"
    return "not interrupted"
