"""The dashboard's test app (tests/test_listing.py, tests/test_dashboard*.py), with the
``listing`` index on.

- ``add``: returns ``a + b`` (SUCCESS: never listed);
- ``boom``: raises ``ValueError(note)`` (FAILURE, dead-lettered with its traceback);
- ``flaky``: fails (autoretry, 1 s apart) until its ``tries``-th try, then returns it;
- ``fragile``: fails (FAILURE, dead-lettered) while the file ``path`` is missing,
  then returns ``"fixed"`` — what a replay after a fix runs;
- ``tick``: a periodic task (``rate(5 minutes)``), for the schedules page.

The user ``ops`` (password :data:`PASSWORD`) may act when the dashboard allows it.

Its resources are created by the tests (``sqsq.resources.apply(app)``).
"""

from __future__ import annotations

from pathlib import Path

import sqsq
from sqsq.task import BoundTask

#: ``ops``'s password (HTTP basic) for ``sqsq dashboard --allow-actions``.
PASSWORD = "correct horse"

app = sqsq.App("dash", listing_index=True, dashboard_users={"ops": PASSWORD})


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


@app.task
def fragile(path: str) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(path)
    return "fixed"


@app.periodic_task("rate(5 minutes)", name="tick")
def tick() -> str:
    return "tick"
