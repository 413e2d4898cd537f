"""Helpers of the fault suite (queue attributes and depths, waiting)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def set_queue(app: Any, queue: str, **attributes: str) -> str:
    """Set attributes of a logical queue; returns its URL."""
    sqs = app.clients.sync("sqs")
    url = app.directory.url(app.queue_name(queue))
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    app.directory.forget(app.queue_name(queue))
    return str(app.directory.url(app.queue_name(queue)))


def counts(app: Any, queue: str) -> tuple[int, int]:
    """(visible, in flight) messages of a physical queue name."""
    sqs = app.clients.sync("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``condition`` until true; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
