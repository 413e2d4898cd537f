"""The worked Celery port (examples/celery_port, docs/migrating-from-celery.md).

The same inputs go to the Celery app (``before/``: Celery's own code, in eager mode —
``task_always_eager`` — so no broker or AWS account is needed) and to its sqsq port
(``after/``: the embedded endpoint, a real ``sqsq worker`` process, the periodic task
fired by the simulated EventBridge Scheduler), and both must give the same results:
a chord and chain over a line whose price service fails twice (retried with backoff),
a task that fails for good, a countdown with an expiry, and the periodic task.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import sqsq
from tests.conftest import WorkerFactory

AFTER = "examples.celery_port.after.tasks:app"

ORDER = ("o-1", [("tea", 2), ("mug", 1), ("pot", 1)], "ada@example.com")

#: What both apps give: (state, value, or the exception type's name for a failure).
EXPECTED = {
    "checkout": ("SUCCESS", "receipt o-1: 5600 cents to ada@example.com"),
    "flaky line": ("SUCCESS", 3600),
    "unknown sku": ("FAILURE", "KeyError"),
    "reminder": ("SUCCESS", "reminded cart-1"),
    "periodic": ("SUCCESS", "expired carts older than 24 h"),
}


@pytest.fixture
def celery_tasks() -> Iterator[Any]:
    """The Celery app's module, run eagerly: ``apply_async`` runs the task in this
    process through Celery's tracer (retries, chords and chains included)."""
    tasks = importlib.import_module("examples.celery_port.before.tasks")
    conf = tasks.app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, False
    yield tasks
    conf.task_always_eager, conf.task_eager_propagates = saved


def celery_outcome(result: Any) -> tuple[str, Any]:
    if result.state == "FAILURE":
        return result.state, type(result.result).__name__
    return result.state, result.get()


def sqsq_outcome(result: sqsq.AsyncResult, timeout: float = 30) -> tuple[str, Any]:
    try:
        value = result.get(timeout=timeout, interval=0.1)
    except sqsq.TaskFailed as exc:
        return result.state.value, exc.remote_type.rsplit(".", 1)[-1]
    return result.state.value, value


def test_the_celery_app_runs_eagerly(celery_tasks: Any) -> None:
    tasks = celery_tasks
    beat = tasks.app.conf.beat_schedule["expire-carts"]
    schedule = beat["schedule"]
    assert (schedule.minute, schedule.hour) == ({0}, {0, 6, 12, 18})
    outcomes = {
        "checkout": celery_outcome(tasks.checkout(*ORDER)),
        "flaky line": celery_outcome(tasks.price_line.delay("mug", 3)),
        "unknown sku": celery_outcome(tasks.price_line.delay("scone", 1)),
        "reminder": celery_outcome(tasks.remind_later("cart-1", countdown=1)),
        # what beat sends at each fire: the entry's task with its args
        "periodic": celery_outcome(tasks.app.tasks[beat["task"]].apply_async(beat["args"])),
    }
    assert outcomes == EXPECTED


def test_the_sqsq_port_gives_the_same_results(local_aws: Any, worker: WorkerFactory) -> None:
    from examples.celery_port.after import tasks
    from sqsq.resources import apply as create_resources
    from sqsq.schedules.scheduler import apply as sync_schedules
    from sqsq.testing import SimulatedScheduler

    app = tasks.app
    create_resources(app)  # sqsq resources create
    sync_schedules(app)  # sqsq schedule sync: beat_schedule, as EventBridge schedules
    periodic = app.periodic_tasks["expire-carts"]
    midnight = datetime(2026, 12, 5, tzinfo=UTC)
    assert periodic.next_fire_times(midnight - timedelta(seconds=1), 4) == [
        midnight + timedelta(hours=h) for h in (0, 6, 12, 18)
    ]

    process = worker.start(AFTER, "-c", "4", "--wait-time", "1")
    checkout = tasks.checkout(*ORDER)
    flaky = tasks.price_line.delay("mug", 3)
    unknown = tasks.price_line.delay("scone", 1)
    reminder = tasks.remind_later("cart-1", countdown=1)
    # EventBridge Scheduler's 06:00 fire, as AWS sends it (moto stores schedules but
    # never fires them): the envelope, to the queue, with the fire's execution id.
    fires = SimulatedScheduler.for_app(app, now=midnight + timedelta(hours=5, minutes=59))
    (fire,) = fires.advance(timedelta(minutes=2)).select("expire-carts", outcome="sent")
    assert fire.scheduled_time == midnight + timedelta(hours=6)

    outcomes = {
        "checkout": sqsq_outcome(checkout),
        "flaky line": sqsq_outcome(flaky),
        "unknown sku": sqsq_outcome(unknown),
        "reminder": sqsq_outcome(reminder),
        "periodic": sqsq_outcome(app.AsyncResult(fire.execution_id)),
    }
    assert process.poll() is None, process.communicate(timeout=5)
    assert outcomes == EXPECTED

    # How it got there: the flaky line ran three times on one message (two retries
    # with backoff); the unknown SKU failed at once (KeyError is not in
    # autoretry_for) and its message is in the dead-letter queue; the reminder waited
    # its countdown; the receipt ran on the emails queue.
    flaky_record, unknown_record = flaky.record, unknown.record
    assert flaky_record is not None and flaky_record.attempts == 3
    assert unknown_record is not None and unknown_record.attempts == 1
    assert unknown_record.dead_letter_reason is not None
    reminded = reminder.record
    assert reminded is not None and reminded.enqueued_at and reminded.started_at
    assert (reminded.started_at - reminded.enqueued_at).total_seconds() >= 0.9
    receipt = checkout.record
    assert receipt is not None and receipt.queue == "emails"
