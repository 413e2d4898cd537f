"""Test-only tasks for the hostile-input tests (issue 7): tasks that raise what a
worker must survive, return what cannot be stored, and a probe that shows the
worker still runs work. Side effects append a line to the file named by ``path``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import sqsq

app = sqsq.App("hostile", visibility_timeout_s=10)


def mark(path: str, text: str = "run") -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(text + "\n")
        file.flush()
        os.fsync(file.fileno())


def lines(path: str | Path) -> list[str]:
    file = Path(path)
    return file.read_text(encoding="utf-8").splitlines() if file.exists() else []


@app.task
def probe(n: int) -> int:
    """Shows the worker still runs work."""
    return n


@app.task
def echo(value: Any) -> Any:
    """Returns its argument (a neighbour in a batch)."""
    return value


@app.task
def deep_return(depth: int) -> Any:
    """Returns a list nested ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@app.task
def self_list() -> Any:
    """Returns a list that contains itself."""
    value: list[Any] = [1]
    value.append(value)
    return value


@app.task
def raise_base(kind: str, path: str) -> None:
    """Raises a BaseException subclass, as a task's own code might."""
    mark(path, kind)
    if kind == "cancelled":
        raise asyncio.CancelledError("the task's own cancellation")
    if kind == "exit0":
        sys.exit(0)
    if kind == "exit3":
        sys.exit(3)
    if kind == "interrupt":
        raise KeyboardInterrupt
    if kind == "generator":
        raise GeneratorExit
    raise ValueError(kind)


@app.task
async def araise_base(kind: str, path: str) -> None:
    """``async def`` twin of :func:`raise_base` (runs on the worker's loop)."""
    mark(path, kind)
    await asyncio.sleep(0)
    if kind == "cancelled":
        raise asyncio.CancelledError("the task's own cancellation")
    if kind == "exit0":
        sys.exit(0)
    if kind == "interrupt":
        raise KeyboardInterrupt
    if kind == "generator":
        raise GeneratorExit
    raise ValueError(kind)


@app.task
async def asleep(seconds: float, path: str) -> str:
    """Sleeps on the loop (cancelled by a shutdown past its grace)."""
    mark(path, "start")
    await asyncio.sleep(seconds)
    mark(path, "done")
    return "slept"


@app.task(idempotency_key="{key}")
def keyed(key: str, path: str) -> str:
    """One effect per key."""
    mark(path, key)
    return key


@app.task(idempotency_key="{key}", time_limit=1)
def keyed_slow(key: str, seconds: float, path: str) -> str:
    """Runs past its 1 s time limit (in a thread it is abandoned, not killed)."""
    mark(path, f"start {key}")
    time.sleep(seconds)
    mark(path, f"done {key}")
    return key


@app.task(idempotency_key="{key}")
def keyed_sleep(key: str, seconds: float, path: str) -> str:
    """One effect per key, after ``seconds`` of work."""
    time.sleep(seconds)
    mark(path, key)
    return key


@app.task
def big(chars: int) -> str:
    """Returns ``chars`` characters (just under sqsq's item size check, over moto's)."""
    return "x" * chars


@app.task(idempotency_key="{key}")
def keyed_big(key: str, chars: int, path: str) -> str:
    """One effect per key, then a value the table refuses (as ``big``)."""
    mark(path, key)
    return "x" * chars


@app.task
def die_after(seconds: float) -> None:
    """The process dies (as a Lambda killed at its timeout) after ``seconds``."""
    time.sleep(seconds)
    os._exit(137)


@app.task(queue="steps.fifo")
def step(n: int, path: str, fail: bool = False) -> int:
    """One step of a FIFO group; ``fail`` rejects it (FAILURE, to the DLQ at once)."""
    mark(path, str(n))
    if fail:
        raise sqsq.errors.Reject(f"step {n} rejected")
    return n
