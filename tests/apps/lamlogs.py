"""A Lambda function whose log format is JSON (``LoggingConfig: {LogFormat: JSON}``):
the runtime's handler on the root logger writes every record as one JSON object
with its extra attributes — here python-json-logger stands in for the runtime's
formatter. Its task logs a line of its own through its own logger."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

import sqsq

for handler in logging.getLogger().handlers:
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
logging.getLogger().setLevel("INFO")

app = sqsq.App("lamlogs", lambda_safety_margin_s=0.5)
log = logging.getLogger("lamlogs.tasks")


@app.task(name="lamlogs.hello")
def hello(n: int) -> int:
    log.info("hello %d", n)
    return n


@app.task(name="lamlogs.nap")
def nap(seconds: float) -> None:
    import time

    time.sleep(seconds)


@app.task(name="lamlogs.charge")
def charge(items: int) -> int:
    from sqsq.metrics import add_metric

    add_metric("ItemsCharged", "Count", items)
    add_metric("ChargeSize", "Bytes", items * 100)
    return items


handler = app.lambda_handler
