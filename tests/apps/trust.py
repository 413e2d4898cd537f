"""Test-only app for issue 18's "trust under attack" rows (tests/faults/test_trust_*.py):
a route whose wildcard backtracks under ``re``, an ``async def`` task that blocks the
event loop, and neighbours that append one line per run to a file (so a test counts
exactly how often each body ran, whatever process ran it)."""

from __future__ import annotations

import os
import time
from typing import Any

import sqsq

app = sqsq.App("trust", visibility_timeout_s=2)


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@app.route({"kind": ["log"], "file": [{"wildcard": "*-*-*.log"}]}, queue="routes")
def rotated_log(event: dict[str, Any]) -> str:
    _append(event["path"], "rotated")
    return "rotated"


@app.route({"kind": ["log"]}, queue="routes")
def other_log(event: dict[str, Any]) -> str:
    _append(event["path"], f"other {len(event['file'])}")
    return "other"


@app.task(queue="routes")
def route_neighbour(n: int, path: str) -> int:
    _append(path, f"neighbour {n}")
    return n


@app.task(queue="loop")
async def blocks_the_loop(seconds: float, path: str) -> str:
    """Blocks the worker's event loop (a sync call in an ``async def``)."""
    _append(path, "blocker start")
    time.sleep(seconds)
    _append(path, "blocker done")
    return "blocked"


@app.task(queue="loop")
async def async_neighbour(n: int, path: str) -> int:
    _append(path, f"async {n}")
    return n


@app.task(queue="loop")
def sync_neighbour(n: int, path: str) -> int:
    _append(path, f"sync {n}")
    return n


def lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        return []
