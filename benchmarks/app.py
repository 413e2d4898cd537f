"""The benchmark's app: one trivial task, so that the figures measure sqsq and AWS
requests rather than the work itself.

Configuration comes from ``SQSQ_*`` variables; ``benchmarks/throughput.py``
points ``SQSQ_ENDPOINT_URL`` at a local endpoint before importing this module.
"""

from __future__ import annotations

import sqsq

app = sqsq.App("bench")


@app.task
def noop(i: int) -> int:
    """Return ``i``: the cheapest task there is."""
    return i
