"""The dashboard's test app (tests/test_listing.py, tests/test_dashboard*.py), with the
``listing`` index on.

- ``add``: returns ``a + b`` (SUCCESS: never listed);
- ``boom``: raises ``ValueError(note)`` (FAILURE, dead-lettered with its traceback);
- ``flaky``: fails (autoretry, 1 s apart) until its ``tries``-th try, then returns it;
- ``tick``: a periodic task (``rate(5 minutes)``), for the schedules page.

Its resources are created by the tests (``sqsq.resources.apply(app)``).
"""

from __future__ import annotations

import sqsq
from sqsq.task import BoundTask

app = sqsq.App("dash", listing_index=True)


class Flaky(Exception):
    """What ``flaky`` raises before its last try."""


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def boom(note: str) -> None:
    raise ValueError(note)


@app.task(bind=True, autoretry_for=(Flaky,), default_retry_delay=1, max_retries=5)
def flaky(self: BoundTask, tries: int) -> int:
    attempt = self.request.retries + 1
    if attempt < tries:
        raise Flaky(f"try {attempt}")
    return attempt


@app.periodic_task("rate(5 minutes)", name="tick")
def tick() -> str:
    return "tick"
