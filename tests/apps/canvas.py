"""A test app for the canvas tests (``sqsq.workflows``): small arithmetic tasks,
and tasks whose every run is appended to a file, so a test can count exactly how
often a callback or an errback ran, whatever process ran it.

It does not import ``sqsq.workflows``: the worker's App loads it when an envelope
carries a workflow (``App.follow_ups()``, the facade's bridge to the capability).
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import sqsq

app = sqsq.App("canvas")


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def tsum(values: list[Any]) -> int:
    """Sum of a list of numbers (or of lists of numbers)."""
    return sum(sum(v) if isinstance(v, list) else v for v in values)


@app.task
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


@app.task
def collect(results: Any, path: str) -> Any:
    """A chord callback: append ``results`` (one JSON line per run) to ``path``."""
    _append(path, json.dumps(results))
    return results


@app.task
def errback(task_id: str, path: str) -> str:
    """An errback: append the failed task's id to ``path``."""
    _append(path, task_id)
    return task_id


@app.task(queue="killer")
def kill_when_counted(chord_id: str, size: int) -> None:
    """SIGKILL this worker once chord ``chord_id`` has counted ``size`` members."""
    client = app.clients.sync("dynamodb")
    key = {"pk": {"S": f"chord#{chord_id}"}, "sk": {"S": "chord"}}
    while True:
        item = client.get_item(TableName=app.table_name, Key=key, ConsistentRead=True).get("Item")
        if item and int(item.get("done", {"N": "0"})["N"]) >= size:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.01)
