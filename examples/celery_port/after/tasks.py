"""The same shop's background work on sqsq — *after* the port of ``../before/tasks.py``.

- ``shop.price_line``: prices one order line from a flaky price service, retried with
  exponential backoff (``autoretry_for``; the same message made visible again);
- ``shop.order_total`` / ``shop.send_receipt``: a chord over the lines, then a chain;
- ``shop.remind_cart``: sent with a countdown and an expiry;
- ``shop.expire_carts``: a periodic task on an EventBridge Scheduler schedule.

Run with ``sqsq resources create examples.celery_port.after.tasks:app``, ``sqsq schedule
sync examples.celery_port.after.tasks:app`` (at deploy time: there is no beat process)
and ``sqsq worker examples.celery_port.after.tasks:app``.
"""

from __future__ import annotations

from typing import Any

import sqsq
from sqsq.task import BoundTask

# Queues shop-default and shop-emails (each with a DLQ), table shop-sqsq; region,
# endpoint and credentials from the environment (SQSQ_*, AWS_*).
app = sqsq.App("shop")

#: Prices in cents. A SKU not listed here is a permanent failure (KeyError).
PRICES = {"tea": 450, "mug": 1200, "pot": 3500}
#: How many times the price service fails for a SKU before it answers.
FLAKY = {"mug": 2}


@app.task(
    name="shop.price_line",
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
    time_limit=30,
)
def price_line(self: BoundTask, sku: str, quantity: int) -> int:
    """One order line's price; the price service fails ``FLAKY[sku]`` times first."""
    if self.request.retries < FLAKY.get(sku, 0):
        raise ConnectionError(f"price service unavailable for {sku}")
    return PRICES[sku] * quantity


@app.task(name="shop.order_total")
def order_total(lines: list[int], order_id: str) -> dict[str, Any]:
    """The chord's body: the order's total from its lines' prices."""
    return {"order_id": order_id, "lines": len(lines), "total_cents": sum(lines)}


@app.task(name="shop.send_receipt", queue="emails")
def send_receipt(total: dict[str, Any], email: str) -> str:
    """The chain's last step (on the ``emails`` queue)."""
    return f"receipt {total['order_id']}: {total['total_cents']} cents to {email}"


@app.task(name="shop.remind_cart")
def remind_cart(cart_id: str) -> str:
    """Sent with a countdown; not worth running once it has expired."""
    return f"reminded {cart_id}"


@app.task(name="shop.expire_carts")
def expire_carts(max_age_hours: int) -> str:
    """Sent every six hours by EventBridge Scheduler (``sqsq schedule sync``)."""
    return f"expired carts older than {max_age_hours} h"


# Celery's beat_schedule entry, as one EventBridge Scheduler schedule.
app.add_periodic_task(
    sqsq.crontab(minute=0, hour="*/6"), expire_carts, name="expire-carts", args=(24,)
)


def checkout(order_id: str, items: list[tuple[str, int]], email: str) -> sqsq.AsyncResult:
    """Price every line in parallel, total them (a chord), then send the receipt (a chain)."""
    workflow = (
        sqsq.group(price_line.s(sku, quantity) for sku, quantity in items)
        | order_total.s(order_id)
        | send_receipt.s(email)
    )
    result = workflow.apply_async()
    assert isinstance(result, sqsq.AsyncResult)  # a chain's result is its last step's
    return result


def remind_later(cart_id: str, countdown: float = 1800) -> sqsq.AsyncResult:
    """A reminder in ``countdown`` seconds (30 minutes), dropped if no worker got to it
    within two hours."""
    return remind_cart.apply_async((cart_id,), countdown=countdown, expires=7200)
