"""A test app with a task no Lambda function can hold (``time_limit`` over 900 s) on
its own queue, and a quick one on the default queue (tests/test_lambda_esm.py)."""

from __future__ import annotations

import sqsq

app = sqsq.App("toolong")
lambda_handler = app.lambda_handler


@app.task
def quick(n: int) -> int:
    return n


@app.task(queue="batch", time_limit=3600)
def nightly() -> None:
    """An hour-long job: a worker's, not a Lambda's."""
