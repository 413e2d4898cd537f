"""A second app for ``sqsq infra``: FIFO queues (one scheduled, so content-based
deduplication), retries raising maxReceiveCount, periodic tasks on both kinds of
queue, a longer visibility timeout (a 30 s Lambda function) and a longer grace."""

from __future__ import annotations

import sqsq

app = sqsq.App("shop", visibility_timeout_s=200, shutdown_grace_s=40, max_receive_count=3)
lambda_handler = app.lambda_handler


@app.task(queue="orders.fifo", max_retries=6)
def place(order_id: str) -> str:
    return order_id


@app.task(queue="ledger.fifo")
def book(entry: str) -> str:
    return entry


@app.task(max_retries=1)
def ping() -> str:
    return "pong"


@app.periodic_task("rate(15 minutes)", name="sweep-orders", queue="orders.fifo", args=("sweep",))
def sweep(order_id: str) -> str:
    return order_id


@app.periodic_task(sqsq.crontab(minute=0, hour=7), name="morning-ping", timezone="Europe/Berlin")
def morning() -> str:
    return "morning"
