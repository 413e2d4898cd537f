"""An app with periodic tasks, for the schedule tests (``tests.apps.periodic:app``)."""

from __future__ import annotations

from datetime import datetime

import sqsq

app = sqsq.App("periodic")


@app.periodic_task("rate(1 minute)", name="tick", bind=True)
def tick(self: sqsq.task.BoundTask) -> str | None:
    """Returns the fire time it was sent for."""
    scheduled: datetime | None = self.request.scheduled_at
    return scheduled.isoformat() if scheduled else None


@app.periodic_task(sqsq.crontab(minute=0, hour=12), name="noon", args=("noon",))
def report(kind: str) -> str:
    return f"report {kind}"


@app.task(name="cleanup")
def cleanup(days: int) -> int:
    return days


app.add_periodic_task(
    "cron(30 2 ? * MON-FRI *)",
    cleanup,
    name="nightly-cleanup",
    kwargs={"days": 7},
    timezone="Europe/Paris",
)


@app.task(name="retry-tomorrow", bind=True, max_retries=3)
def retry_tomorrow(self: sqsq.task.BoundTask) -> int:
    """Asks for a retry a day later (past SQS's 12 h visibility cap) on its first attempt."""
    if self.request.attempt == 1:
        raise self.retry(countdown=86_400)
    return self.request.attempt
