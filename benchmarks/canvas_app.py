"""The canvas benchmark's app (``benchmarks/workflows.py``): a trivial member task and
a trivial chord callback, so the figures measure sqsq's requests, not the work.

Configuration comes from ``SQSQ_*`` variables, set by the benchmark before import.
"""

from __future__ import annotations

from typing import Any

import sqsq

app = sqsq.App("canvasbench")


@app.task
def noop(i: int) -> int:
    """Return ``i``."""
    return i


@app.task
def total(values: list[Any]) -> int:
    """The chord callback: the sum of the members' results."""
    return sum(values)
