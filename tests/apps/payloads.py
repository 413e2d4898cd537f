"""Test-only tasks for the S3 claim check (issue 24, ``tests/test_payloads*.py``).

The bucket is ``sqsq-test-payloads`` unless ``TEST_PAYLOAD_BUCKET`` names another
("": none — a worker without a bucket still reads pointers).
"""

from __future__ import annotations

import hashlib
import os
import time

import sqsq

BUCKET = "sqsq-test-payloads"

app = sqsq.App(
    "payloads",
    visibility_timeout_s=30,
    payload_bucket=os.environ.get("TEST_PAYLOAD_BUCKET", BUCKET) or None,
    payload_delete=True,  # the default; the tests count what is left in the bucket
)
lambda_handler = app.lambda_handler


@app.task
def digest(data: str) -> dict[str, object]:
    """The length and sha256 of ``data`` (proves the whole argument arrived)."""
    return {"length": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()}


@app.task
def blob(n: int) -> str:
    """A result of ``n`` characters."""
    return "r" * n


@app.task
def lengths(values: list[str]) -> list[int]:
    """The length of each value (a chord's body)."""
    return [len(v) for v in values]


@app.task(concurrency_limit=1)
def metered(data: str) -> int:
    """One at a time: others received meanwhile are deferred (sent on as new messages)."""
    time.sleep(0.5)
    return len(data)


@app.task(idempotency_key="{n}")
def keyed_blob(n: int) -> str:
    """A large result under an idempotency key: a duplicate resolves to it."""
    return "k" * n


@app.task(store_result=False)
def unrecorded(data: str) -> int:
    """No result stored: its object is kept for the lifecycle rule (a duplicate has no
    final result to be let go by)."""
    return len(data)
