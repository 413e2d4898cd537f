"""Both sides of a gradual move off Celery, on one SQS queue (tests/test_celery_interop*.py).

``app`` is the sqsq port, ``celery_app`` the Celery app it replaces; both register
``interop.add`` and ``interop.tag``, and every run appends one JSON line
``{"by", "id", "value"}`` to the file named by ``CELERY_INTEROP_RUNS``, so a test
can tell who ran what, and how often. The Celery app reaches the test endpoint
through kombu's SQS transport (broker ``sqs://``, the queue predefined by URL), as
``/work/shared/bench``'s does; it is built on first use (``celery_app()``), after
the test created the queue.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import sqsq
from sqsq.interop import use_celery
from sqsq.task import BoundTask

app = sqsq.App("celeryi")
#: The Celery queue name; its SQS queue is the sqsq app's default queue.
CELERY_QUEUE = "celery"
use_celery(app, queues={"default": CELERY_QUEUE})


def record(by: str, task_id: str | None, value: Any) -> None:
    path = os.environ.get("CELERY_INTEROP_RUNS")
    if path:
        line = json.dumps({"by": by, "id": task_id, "value": value}) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@app.task(name="interop.add", bind=True)
def add(self: BoundTask, a: int, b: int) -> int:
    record("sqsq", self.request.id, a + b)
    return a + b


@app.task(name="interop.tag", bind=True)
def tag(self: BoundTask, value: Any, label: str) -> str:
    record("sqsq", self.request.id, f"{label}:{value}")
    return f"{label}:{value}"


@app.task(name="interop.mul", protocol="celery")
def mul(a: int, b: int) -> int:
    """Still run by Celery workers: calls are sent in Celery's protocol."""
    record("sqsq", None, a * b)
    return a * b


@cache
def celery_app() -> Any:
    """The Celery app, its broker the test endpoint's SQS (``AWS_ENDPOINT_URL_SQS``,
    set by the test kit — on the conformance pass SQS and DynamoDB differ)."""
    import boto3
    from celery import Celery

    endpoint = urlsplit(os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ["AWS_ENDPOINT_URL"])
    url = boto3.client("sqs").get_queue_url(QueueName=app.queue_name("default"))["QueueUrl"]
    capp = Celery("celeryi")
    capp.conf.update(
        broker_url=f"sqs://testing:testing@{endpoint.hostname}:{endpoint.port}",
        broker_transport_options={
            "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "is_secure": False,
            "wait_time_seconds": 1,
            "polling_interval": 0.2,
            "predefined_queues": {CELERY_QUEUE: {"url": url}},
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=CELERY_QUEUE,
        task_ignore_result=True,
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        worker_prefetch_multiplier=1,
    )

    @capp.task(name="interop.add", bind=True, shared=False)
    def add(self: Any, a: int, b: int) -> int:
        record("celery", self.request.id, a + b)
        return a + b

    @capp.task(name="interop.tag", bind=True, shared=False)
    def tag(self: Any, value: Any, label: str) -> str:
        record("celery", self.request.id, f"{label}:{value}")
        return f"{label}:{value}"

    @capp.task(name="interop.mul", bind=True, shared=False)
    def mul(self: Any, a: int, b: int) -> int:
        record("celery", self.request.id, a * b)
        return a * b

    return capp


def __getattr__(name: str) -> Any:
    """``celery`` for ``celery -A tests.apps.celery_interop worker``."""
    if name == "celery":
        return celery_app()
    raise AttributeError(name)
