"""Tasks a Step Functions state machine runs through sqsq (docs/guides/stepfunctions.md).

- ``orders.reserve_stock``: reserves stock; raises :class:`OutOfStock` past 100 items,
  which fails the waiting execution (error ``examples.stepfunctions.app.OutOfStock``);
- ``orders.pack``: takes ``seconds`` to pack, long enough for heartbeats.

The state machines are ``callback.asl.json`` (waits for the task's outcome) and
``send.asl.json`` (fire and forget). Configuration comes from ``SQSQ_*`` variables.
"""

from __future__ import annotations

import time

import sqsq

app = sqsq.App("orders")
lambda_handler = app.lambda_handler


class OutOfStock(Exception):
    """Not enough stock for the order."""


@app.task(name="orders.reserve_stock")
def reserve_stock(sku: str, quantity: int) -> dict[str, object]:
    """Reserve ``quantity`` items of ``sku``; returns the reservation."""
    if quantity > 100:
        raise OutOfStock(f"only 100 of {sku} left, {quantity} asked for")
    return {"sku": sku, "reserved": quantity}


@app.task(name="orders.pack")
def pack(sku: str, seconds: float) -> str:
    """Pack an order, which takes ``seconds``."""
    time.sleep(seconds)
    return f"packed {sku}"
