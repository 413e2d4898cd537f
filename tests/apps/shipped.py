"""The app the deployed-stack runs ship (tests/test_deployed_runs.py): a quick task, a
long one near its ``time_limit``, and a periodic task — deployed with ``sqsq infra``
(lambda and ecs), then run by what the stack made: the Lambda function through the
simulated SQS event source mapping, the ECS task definition's command as a process;
the periodic task fired by the simulated EventBridge Scheduler.

Effects are appended to ``$SHIPPED_EFFECTS`` (one line per body run), so a test
counts how often each body ran.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

import sqsq

app = sqsq.App("shipped")
lambda_handler = app.lambda_handler

#: ``long_job``'s limit, seconds: every task has a limit, so the derived Lambda timeout
#: is this + 3 s to start + a 2 s margin = 17 s, and a run near the limit must fit.
LONG_LIMIT_S = 12


def _effect(line: str) -> None:
    path = os.environ.get("SHIPPED_EFFECTS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@app.task(time_limit=5)
def work(n: int) -> int:
    _effect(f"work {n}")
    return n * 2


@app.task(time_limit=LONG_LIMIT_S)
def long_job(seconds: float) -> float:
    """Runs ``seconds`` (a test gives it most of its time_limit)."""
    time.sleep(seconds)
    _effect("long_job")
    return seconds


@app.periodic_task("rate(1 minute)", name="minutely", bind=True, time_limit=5)
def minutely(self: sqsq.task.BoundTask) -> str | None:
    """Returns the fire time it was sent for (Scheduler's scheduled-time)."""
    scheduled: datetime | None = self.request.scheduled_at
    _effect(f"minutely {scheduled.isoformat() if scheduled else None}")
    return scheduled.isoformat() if scheduled else None
