"""A small shop's background work, run by the quick start, the demo and the tests.

- ``charge``: charge an order (a pydantic model in, a dict out);
- ``render_email``: render an email to a file (its own queue, ``emails``);
- ``build_report``: a report that takes a few seconds;
- ``price_quote``: an ``async def`` task, awaited on the worker's event loop;
- ``refund``: a task that fails (the failure is recorded with its traceback);
- ``daily-sales-report``: a periodic task, every day at 06:00 Paris time, on an
  EventBridge Scheduler schedule (``sqsq schedule sync``; locally ``sqsq dev`` fires it).

Configuration comes from ``SQSQ_*`` variables (``sqsq dev`` and the demo point
``SQSQ_ENDPOINT_URL`` at the embedded local endpoint).
"""

from __future__ import annotations

import asyncio
import os
import time
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel

import sqsq

app = sqsq.App("quickstart")
#: The Lambda handler (``sqsq infra --target lambda``: ``examples.quickstart.app.lambda_handler``).
lambda_handler = app.lambda_handler


class Order(BaseModel):
    order_id: str
    cents: int
    currency: str = "EUR"


@app.task
def charge(order: Order, idempotency_token: str | None = None) -> dict[str, object]:
    """Charge an order; returns the (fake) payment."""
    if order.cents <= 0:
        raise ValueError(f"cannot charge {order.cents} cents for {order.order_id}")
    return {"order_id": order.order_id, "charged": order.cents, "currency": order.currency}


@app.task(queue="emails")
def render_email(to: str, subject: str, out_dir: str = "demo-output") -> str:
    """Render an email into ``out_dir`` and return the file's path."""
    path = Path(out_dir) / f"{to.replace('@', '_at_')}.eml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"To: {to}\nSubject: {subject}\n\nThanks for your order!\n")
    return str(path)


@app.task
def build_report(rows: int, seconds: float = 2.0) -> dict[str, object]:
    """A slow report: sleeps ``seconds``, then sums ``rows`` rows."""
    time.sleep(seconds)
    return {"rows": rows, "total": sum(range(rows)), "pid": os.getpid()}


@app.task
async def price_quote(sku: str, quantity: int, unit_price: Decimal) -> str:
    """An async task: the worker awaits it on its event loop."""
    await asyncio.sleep(0.1)
    return str(unit_price * quantity)


@app.task
def refund(order_id: str) -> None:
    """Always fails: shows how a FAILURE is recorded."""
    raise RuntimeError(f"refunds for {order_id} are handled by the payments team")


@app.periodic_task(
    "cron(0 6 * * ? *)", name="daily-sales-report", timezone="Europe/Paris", bind=True
)
def daily_sales_report(self: sqsq.task.BoundTask) -> str:
    """Runs once per fire, even if Scheduler delivers a fire twice (its idempotency
    key is the schedule and the fire time)."""
    return f"sales report for the fire of {self.request.scheduled_at}"
