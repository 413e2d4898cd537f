"""``soft_time_limit`` (Celery's name): ``SoftTimeLimitExceeded`` raised inside the
body, on a real worker process per pool kind, in the Lambda handler and in
``apply()``; the hard ``time_limit`` still stops a body that ignores it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import sqsq
from sqsq import State
from sqsq.local import LocalEndpoint
from tests.apps import soft
from tests.conftest import WorkerFactory

APP = "tests.apps.soft:app"


@pytest.fixture
def soft_app(local_aws: LocalEndpoint) -> Iterator[sqsq.App]:
    import sqsq.resources

    sqsq.resources.apply(soft.app)
    yield soft.app


def caught(result: sqsq.AsyncResult, task: Any) -> None:
    value = result.get(timeout=0)
    assert value == f"caught: {task.name} ran past its soft time limit of 1 s", value


def escaped(result: sqsq.AsyncResult) -> None:
    record = result.record
    assert record is not None
    assert record.state is State.FAILURE
    assert record.exc_type == "sqsq.errors.SoftTimeLimitExceeded"
    # judged by the retry policy (autoretry_for names it, max_retries=0), unlike a
    # hard time limit, which is final ("time_limit_exceeded")
    assert record.dead_letter_reason == "max_retries_exceeded"


def run(worker: WorkerFactory, *args: str) -> None:
    done = worker.run(APP, "--queues", "default", "--concurrency", "2", *args, timeout=120)
    assert done.returncode == 0, done.stderr


def test_threads_pool(soft_app: sqsq.App, worker: WorkerFactory) -> None:
    spin, escape, anap = soft.spin.delay(), soft.escape.delay(), soft.anap.delay()
    run(worker)
    caught(spin, soft.spin)  # a pool thread: PyThreadState_SetAsyncExc, at the next bytecode
    escaped(escape)
    caught(anap, soft.anap)  # the worker's loop: at the body's await


def test_processes_pool(soft_app: sqsq.App, worker: WorkerFactory) -> None:
    spin, nap, escape = soft.spin.delay(), soft.nap.delay(), soft.escape.delay()
    anap = soft.anap.delay()
    run(worker, "--pool", "processes")
    caught(spin, soft.spin)  # the child's main thread: SIGALRM
    caught(nap, soft.nap)  # the signal interrupts the blocking sleep
    escaped(escape)
    caught(anap, soft.anap)


def test_lambda_handler(soft_app: sqsq.App) -> None:
    from sqsq.testing import LambdaContext, sqs_event
    from tests.test_lambda import queue_arn, receive

    results = [soft.spin.delay(), soft.escape.delay(), soft.anap.delay()]
    name = soft_app.queue_name("default")
    event = sqs_event(receive(name, 3), queue_arn(name))
    response = soft_app.lambda_handler(event, LambdaContext(remaining_ms=120_000))
    assert response == {"batchItemFailures": []}
    by_task = {r.record.task: r for r in results if r.record is not None}
    caught(by_task[soft.spin.name], soft.spin)
    escaped(by_task[soft.escape.name])
    caught(by_task[soft.anap.name], soft.anap)


def test_apply(soft_app: sqsq.App) -> None:
    caught(soft.spin.apply(), soft.spin)
    caught(soft.anap.apply(), soft.anap)
    escaped(soft.escape.apply())


def test_the_hard_limit_still_stops_a_body_that_ignores_the_soft_one(
    local_aws: LocalEndpoint,
) -> None:
    app = sqsq.App("stubborn")

    @app.task(soft_time_limit=0.2, time_limit=1)
    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except sqsq.SoftTimeLimitExceeded:
            await asyncio.sleep(10)  # ignores it
        return "done"

    record = stubborn.apply().record
    assert record is not None
    assert record.exc_type == "sqsq.errors.TimeLimitExceeded"


def test_soft_time_limit_must_be_under_time_limit() -> None:
    app = sqsq.App("softcheck", region_name="us-east-1")
    with pytest.raises(sqsq.ConfigurationError, match="soft_time_limit"):
        app.task(soft_time_limit=5, time_limit=5)(lambda: None)
    with pytest.raises(sqsq.ConfigurationError, match="soft_time_limit"):
        app.task(soft_time_limit=-1)(lambda: None)
