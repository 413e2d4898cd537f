"""Helpers shared by the test modules (not fixtures: those live in conftest.py)."""

from __future__ import annotations

from typing import Any


def queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    """``(visible, in flight)``: ApproximateNumberOfMessages and
    ApproximateNumberOfMessagesNotVisible of the queue at ``url``."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )
