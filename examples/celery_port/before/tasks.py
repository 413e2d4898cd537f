"""A shop's background work on Celery with Amazon SQS as the broker — *before* the port.

- ``shop.price_line``: prices one order line from a flaky price service, retried with
  exponential backoff (``autoretry_for``);
- ``shop.order_total`` / ``shop.send_receipt``: a chord over the lines, then a chain;
- ``shop.remind_cart``: sent with a countdown and an expiry;
- ``shop.expire_carts``: a periodic task run by ``celery beat`` (crontab).

Run with ``celery -A examples.celery_port.before.tasks worker -Q default,emails`` and
``celery -A examples.celery_port.before.tasks beat``.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, group
from celery.result import AsyncResult
from celery.schedules import crontab

app = Celery("shop")
app.conf.update(
    broker_url="sqs://",  # credentials and region from the environment
    broker_transport_options={
        "region": "us-east-1",
        "queue_name_prefix": "shop-",
        "visibility_timeout": 3600,  # must exceed the longest task *and* countdown
        "polling_interval": 1,
    },
    result_backend="dynamodb://@us-east-1/shop-celery-results",
    task_default_queue="default",
    task_routes={"shop.send_receipt": {"queue": "emails"}},
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    beat_schedule={
        "expire-carts": {
            "task": "shop.expire_carts",
            "schedule": crontab(minute=0, hour="*/6"),
            "args": (24,),
        },
    },
)

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
def price_line(self: Any, sku: str, quantity: int) -> int:
    """One order line's price; the price service fails ``FLAKY[sku]`` times first."""
    if self.request.retries < FLAKY.get(sku, 0):
        raise ConnectionError(f"price service unavailable for {sku}")
    return PRICES[sku] * quantity


@app.task(name="shop.order_total")
def order_total(lines: list[int], order_id: str) -> dict[str, Any]:
    """The chord's body: the order's total from its lines' prices."""
    return {"order_id": order_id, "lines": len(lines), "total_cents": sum(lines)}


@app.task(name="shop.send_receipt")
def send_receipt(total: dict[str, Any], email: str) -> str:
    """The chain's last step (routed to the ``emails`` queue)."""
    return f"receipt {total['order_id']}: {total['total_cents']} cents to {email}"


@app.task(name="shop.remind_cart")
def remind_cart(cart_id: str) -> str:
    """Sent with a countdown; not worth running once it has expired."""
    return f"reminded {cart_id}"


@app.task(name="shop.expire_carts")
def expire_carts(max_age_hours: int) -> str:
    """Run by beat every six hours."""
    return f"expired carts older than {max_age_hours} h"


def checkout(order_id: str, items: list[tuple[str, int]], email: str) -> AsyncResult:
    """Price every line in parallel, total them (a chord), then send the receipt (a chain)."""
    workflow = (
        group(price_line.s(sku, quantity) for sku, quantity in items)
        | order_total.s(order_id)
        | send_receipt.s(email)
    )
    return workflow.apply_async()


def remind_later(cart_id: str, countdown: float = 1800) -> AsyncResult:
    """A reminder in ``countdown`` seconds (30 minutes), dropped if no worker got to it
    within two hours."""
    return remind_cart.apply_async((cart_id,), countdown=countdown, expires=7200)
