"""A test app with the odd tasks the worker tests need.

- ``thread_name`` / ``athread_name``: report where they ran (the worker's thread
  pool for sync functions, the event loop's thread for ``async def``);
- ``add``: a quick task;
- ``boom``: always raises ``ValueError``;
- ``not_json``: returns a ``set`` (not JSON-serializable);
- ``huge``: returns a string of ``size`` characters (over DynamoDB's 400 KB item limit);
- ``marker``: writes ``path`` when it starts, sleeps ``seconds``, returns ``path``.

Its resources are created by the tests (``sqsq.resources.apply(app)``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import sqsq

app = sqsq.App("misc")


@app.task
def thread_name() -> str:
    """The name of the thread that runs this (sync) task."""
    return threading.current_thread().name


@app.task
async def athread_name() -> str:
    """The name of the thread whose event loop awaits this (async) task."""
    await asyncio.sleep(0)
    return threading.current_thread().name


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def boom(message: str) -> None:
    raise ValueError(message)


@app.task
def not_json() -> object:
    return {1, 2, 3}


@app.task
def huge(size: int) -> str:
    return "x" * size


@app.task
def marker(path: str, seconds: float = 0.0) -> str:
    Path(path).write_text("started")
    time.sleep(seconds)
    return path
