"""Eager mode like Celery's: ``apply()`` runs retries in place, its result never
waits, Celery's positional forms, ``task_always_eager`` / ``task_eager_propagates``.

Every app points at the local endpoint, so a request eager mode should not make
would be counted (``clients.counter``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import sqsq
from sqsq import State, TaskFailed
from sqsq.task import BoundTask


@pytest.fixture
def app(sqsq_endpoint: Any) -> Iterator[sqsq.App]:
    app = sqsq.App("eagerx", endpoint_url=sqsq_endpoint.url, region_name="us-east-1")
    yield app
    app.close()


@pytest.fixture
def always(sqsq_endpoint: Any) -> Iterator[sqsq.App]:
    app = sqsq.App(
        "always", endpoint_url=sqsq_endpoint.url, region_name="us-east-1", task_always_eager=True
    )
    yield app
    app.close()


class Flaky(Exception):
    pass


def flaky_task(
    app: sqsq.App, fail_times: int, name: str = "flaky", **options: Any
) -> tuple[Any, list[int]]:
    """A task that raises Flaky on its first ``fail_times`` runs; the list records
    the attempt numbers it saw."""
    seen: list[int] = []

    @app.task(bind=True, name=name, **options)
    def flaky(self: BoundTask, x: int) -> int:
        seen.append(self.request.attempt)
        if len(seen) <= fail_times:
            raise Flaky(f"run {len(seen)}")
        return x * 2

    return flaky, seen


# --- retries in place ------------------------------------------------------------


def test_autoretry_runs_again_in_place_until_success(app: sqsq.App) -> None:
    flaky, seen = flaky_task(app, 2, autoretry_for=(Flaky,), max_retries=3, retry_backoff=60)
    result = flaky.apply(21)
    assert result.state is State.SUCCESS
    assert result.get() == 42
    assert seen == [1, 2, 3]  # each run saw the attempt a worker would have counted
    assert result.record is not None and result.record.attempts == 3
    assert app.clients.counter.snapshot() == {}


def test_bound_self_retry_runs_again_in_place(app: sqsq.App) -> None:
    runs: list[int] = []

    @app.task(bind=True, max_retries=5)
    def poll(self: BoundTask, job: str) -> str:
        runs.append(self.request.retries)
        if len(runs) < 4:
            raise self.retry(countdown=3600)  # an hour: never slept by default
        return f"{job} done"

    result = poll.apply("j-1")
    assert result.get() == "j-1 done"
    assert runs == [0, 1, 2, 3]
    assert result.record is not None and result.record.attempts == 4


def test_max_retries_exhausted_is_failure_and_get_raises_at_once(app: sqsq.App) -> None:
    flaky, seen = flaky_task(app, 100, autoretry_for=(Flaky,), max_retries=2)
    result = flaky.apply(1)
    assert seen == [1, 2, 3]  # the first run and two retries
    assert result.state is State.FAILURE
    record = result.record
    assert record is not None
    assert record.attempts == 3
    assert record.dead_letter_reason == "max_retries_exceeded"
    with pytest.raises(TaskFailed) as info:
        result.get()  # no timeout: an eager result never waits
    assert info.value.remote_type.endswith("Flaky")
    assert info.value.remote_message == "run 3"


def test_an_exception_not_in_autoretry_for_fails_on_the_first_run(app: sqsq.App) -> None:
    flaky, seen = flaky_task(app, 1, autoretry_for=(KeyError,), max_retries=5)
    result = flaky.apply(1)
    assert seen == [1]
    assert result.state is State.FAILURE


def test_sleep_waits_out_the_countdown(app: sqsq.App) -> None:
    flaky, _ = flaky_task(app, 1, autoretry_for=(Flaky,), default_retry_delay=1)
    flaky_nosleep, _ = flaky_task(
        app, 1, "nosleep", autoretry_for=(Flaky,), default_retry_delay=3600
    )
    start = time.monotonic()
    assert flaky.apply(2, sleep=True).get() == 4
    slept = time.monotonic() - start
    assert slept >= 1.0  # a lower bound only: the countdown was waited out
    assert flaky_nosleep.apply(2).get() == 4  # an hour's countdown, not waited


def test_throw_and_task_eager_propagates(sqsq_endpoint: Any) -> None:
    app = sqsq.App(
        "propagates",
        endpoint_url=sqsq_endpoint.url,
        region_name="us-east-1",
        task_eager_propagates=True,
    )

    @app.task
    def boom() -> None:
        raise ValueError("no")

    with pytest.raises(TaskFailed) as info:
        boom.apply()
    assert info.value.remote_type == "ValueError"
    assert boom.apply(throw=False).state is State.FAILURE
    app.close()


def test_apply_task_id(app: sqsq.App) -> None:
    @app.task
    def one() -> int:
        return 1

    assert one.apply(task_id="t-1").id == "t-1"


# --- which form --------------------------------------------------------------------


def test_celery_positional_forms(app: sqsq.App) -> None:
    @app.task
    def add(x: int, y: int = 0) -> int:
        return x + y

    assert add.apply(1, 2).get() == 3  # sqsq's direct form
    assert add.apply((1, 2)).get() == 3  # Celery's apply(args)
    assert add.apply([1, 2]).get() == 3
    assert add.apply((1,), {"y": 5}).get() == 6  # Celery's apply(args, kwargs)
    assert add.apply((1,), kwargs={"y": 5}).get() == 6
    assert add.apply(args=(4,), kwargs={"y": 1}).get() == 5
    assert add.apply((7,), None).get() == 7


def test_annotations_tell_the_forms_apart(app: sqsq.App) -> None:
    @app.task
    def total(items: list[int], weights: dict[str, int] | None = None) -> int:
        return sum(items) + len(weights or {})

    # read as Celery's, total(1, 2, a=1) does not bind: the direct form
    assert total.apply([1, 2], {"a": 1}).get() == 4
    # Celery's meaning, asked for by keyword
    assert total.apply(args=([5],)).get() == 5


def test_a_call_that_fits_both_forms_is_refused(app: sqsq.App) -> None:
    @app.task
    def pair(x, y):  # type: ignore[no-untyped-def]
        return [x, y]

    with pytest.raises(sqsq.ArgumentError, match="ambiguous call") as caught:
        pair.apply((1,), {"y": 5})
    assert "args=" in str(caught.value)
    assert pair.apply(args=(1,), kwargs={"y": 5}).get() == [1, 5]  # Celery's
    assert pair.apply(x=(1,), y={"y": 5}).get() == [[1], {"y": 5}]  # the direct form
    assert pair.apply((1, 2)).get() == [1, 2]  # direct does not bind: Celery's


def test_a_parameter_named_like_an_option_is_the_functions(app: sqsq.App) -> None:
    @app.task
    def takes(args: list[int], sleep: int = 0) -> int:
        return sum(args) + sleep

    assert takes.apply(args=[1, 2], sleep=4).get() == 7


def test_variadic_parameters_are_not_named_like_an_option(app: sqsq.App) -> None:
    @app.task
    def anything(*args: int, **kwargs: int) -> list[int]:
        return [*args, *kwargs.values()]

    assert anything.apply(args=(1, 2), kwargs={"z": 3}).get() == [1, 2, 3]  # Celery's
    assert anything.apply(1, 2, z=3).get() == [1, 2, 3]  # direct


def test_wrong_arguments_name_the_signature(app: sqsq.App) -> None:
    @app.task
    def add(x: int, y: int = 0) -> int:
        return x + y

    for call in (
        lambda: add.apply(1, 2, 3),
        lambda: add.apply((1, 2, 3)),
        lambda: add.apply("one"),
        lambda: add.apply(args=(1, 2, 3)),
    ):
        with pytest.raises(sqsq.ArgumentError) as info:
            call()
        assert "(x: int, y: int = 0)" in str(info.value)
        assert add.name in str(info.value)
    assert app.clients.counter.snapshot() == {}


# --- task_always_eager -------------------------------------------------------------


def test_always_eager_runs_delay_apply_async_and_send_task_here(always: sqsq.App) -> None:
    flaky, seen = flaky_task(always, 1, autoretry_for=(Flaky,), max_retries=2)

    assert flaky.delay(5).get() == 10
    assert seen == [1, 2]
    assert flaky.apply_async((6,), countdown=600, task_id="t-6").get() == 12
    result = always.send_task(flaky.name, args=[7])
    assert result.get() == 14
    assert [r.get() for r in flaky.delay_many([(1,), (2,)])] == [2, 4]
    assert always.clients.counter.snapshot() == {}  # nothing sent, nothing stored


def test_always_eager_send_task_of_an_unknown_name_is_still_sent(always: sqsq.App) -> None:
    with pytest.raises(sqsq.AWSError):  # it tries SQS: the queue does not exist there
        always.send_task("elsewhere.task", args=[1])
    assert always.clients.counter.snapshot() != {}


def test_always_eager_adelay(always: sqsq.App) -> None:
    @always.task
    def double(x: int) -> int:
        return x * 2

    async def produce() -> Any:
        result = await double.adelay(4)
        return await result.aget()

    assert asyncio.run(produce()) == 8


def test_always_eager_from_the_environment(
    sqsq_endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQSQ_TASK_ALWAYS_EAGER", "true")
    app = sqsq.App("envalways", endpoint_url=sqsq_endpoint.url, region_name="us-east-1")
    assert app.settings.task_always_eager

    @app.task
    def f() -> str:
        return "here"

    assert f.delay().get() == "here"
    app.close()


def test_always_eager_runs_a_chain_step_after_step(always: sqsq.App) -> None:
    from sqsq.workflows import chain, group

    @always.task
    def add(x: int, y: int) -> int:
        return x + y

    @always.task
    def halve(x: int) -> int:
        if x % 2:
            raise ValueError(f"{x} is odd")
        return x // 2

    result = (add.s(1, 3) | halve.s() | add.si(10, 10)).delay()
    assert result.get() == 20
    assert result.parent.get() == 2 and result.parent.parent.get() == 4
    stopped = chain(add.s(1, 2), halve.s(), add.s(100)).apply_async()
    assert stopped.state is State.FAILURE  # the odd sum stopped it at halve
    assert stopped.record is not None and stopped.record.task == halve.name
    with pytest.raises(sqsq.ConfigurationError, match="not run eagerly"):
        group(add.s(1, 1), add.s(2, 2)).delay()
    assert always.clients.counter.snapshot() == {}
