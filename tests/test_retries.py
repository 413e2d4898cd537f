"""Retries on a real worker: backoff by visibility change, attempt history, exhaustion,
``self.retry``/``Retry``/``Reject``, dead-letter copies; plus RetryPolicy unit tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sqsq
import sqsq.resources
from sqsq import ResultRecord, State
from sqsq.local import LocalEndpoint
from sqsq.result import READY_STATES
from sqsq.retry import RetryPolicy
from tests.apps import reliability as rel

DEFAULT_QUEUE = "reliab-default"
DLQ = "reliab-default-dlq"


@dataclass
class Case:
    """One enqueued task of the scenario and everything known about it afterwards."""

    result: sqsq.AsyncResult
    path: Path
    record: ResultRecord | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    states_seen: set[State] = field(default_factory=set)


@dataclass
class Scenario:
    cases: dict[str, Case]
    dead_letters: dict[str, dict[str, Any]]
    source_counts: tuple[int, int]
    exit_code: int
    stderr: str


@pytest.fixture(scope="module")
def scenario(
    sqsq_endpoint: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    """Every retry case enqueued at once, run by one long-running worker until all are
    final (retries wait invisible, so ``--burst`` would exit early), then SIGTERM."""
    sqsq_endpoint.reset()
    rel.setup()
    tmp = tmp_path_factory.mktemp("retries")

    def case(name: str) -> Path:
        return tmp / f"{name}.log"

    cases = {
        "backoff": Case(rel.flaky.delay(str(case("backoff")), 2), case("backoff")),
        "exhausted": Case(rel.flaky.delay(str(case("exhausted")), 99), case("exhausted")),
        "not_listed": Case(
            rel.flaky.delay(str(case("not_listed")), 99, "value"), case("not_listed")
        ),
        # apply_async: Task's ParamSpec of a bind=True function includes ``self``
        "bound": Case(rel.bound_retry.apply_async((str(case("bound")),)), case("bound")),
        "raised": Case(rel.raise_retry.delay(str(case("raised"))), case("raised")),
        "rejected": Case(rel.rejecting.delay(str(case("rejected"))), case("rejected")),
        "revoked": Case(rel.flaky.delay(str(case("revoked")), 99), case("revoked")),
    }
    process = rel.spawn_worker(tmp, "--queues", "default", "--wait-time", "1")
    try:
        deadline = time.monotonic() + 60
        pending = dict(cases)
        while pending and time.monotonic() < deadline and process.poll() is None:
            for name, item in list(pending.items()):
                state = item.result.state
                if (
                    name == "revoked"
                    and state is State.RETRY
                    and not item.states_seen & {State.RETRY}
                ):
                    item.result.revoke()  # while its message waits out the backoff
                item.states_seen.add(state)
                if state in READY_STATES:
                    del pending[name]
            time.sleep(0.1)
    finally:
        code, stderr = rel.stop_worker(process)
    for item in cases.values():
        item.record = item.result.record
        item.attempts = rel.app.results.attempts(item.result.id)
        item.runs = rel.lines(item.path)
    yield Scenario(cases, rel.dead_letters(), rel.counts(DEFAULT_QUEUE), code, stderr)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def final(scenario: Scenario, name: str) -> tuple[Case, ResultRecord]:
    item = scenario.cases[name]
    assert item.record is not None, f"{name}: no result stored\n{scenario.stderr}"
    return item, item.record


# --- the worker scenario ---------------------------------------------------------------


def test_worker_settles_everything_and_exits_zero_on_sigterm(scenario: Scenario) -> None:
    assert scenario.exit_code == 0, scenario.stderr
    assert all(c.record is not None and c.record.ready for c in scenario.cases.values())
    # every message was deleted from the source queue once its outcome was stored
    assert scenario.source_counts == (0, 0)


def test_autoretry_backoff_records_retry_attempts_with_doubling_delays(
    scenario: Scenario,
) -> None:
    item, record = final(scenario, "backoff")
    assert record.state is State.SUCCESS
    assert record.value == 3
    assert record.attempts == 3  # ApproximateReceiveCount: one message, received 3 times
    assert item.runs == ["run"] * 3
    assert State.RETRY in item.states_seen  # the result read RETRY between attempts

    first, second = item.attempts  # RETRY attempts only: a success adds no history item
    assert [a["sk"] for a in item.attempts] == ["attempt#00001", "attempt#00002"]
    assert [a["state"] for a in item.attempts] == ["RETRY", "RETRY"]
    assert [float(a["retry_delay_s"]) for a in item.attempts] == [1.0, 2.0]
    assert [a["exc_type"] for a in item.attempts] == ["ConnectionError", "ConnectionError"]
    assert first["exc_message"] == "transient failure on run 1"
    # the message stayed invisible for the backoff between the attempts
    assert ts(second["started_at"]) - ts(first["finished_at"]) >= timedelta(seconds=1.0)
    assert record.started_at is not None
    assert record.started_at - ts(second["finished_at"]) >= timedelta(seconds=2.0)
    assert item.result.id not in scenario.dead_letters


def test_exhausted_retries_fail_with_max_retries_exceeded_and_a_dlq_copy(
    scenario: Scenario,
) -> None:
    item, record = final(scenario, "exhausted")
    assert record.state is State.FAILURE
    assert record.dead_letter_reason == "max_retries_exceeded"
    assert record.exc_type == "ConnectionError"
    assert record.exc_message == "transient failure on run 3"
    assert record.attempts == 3  # first run + max_retries=2
    assert len(item.runs) == 3
    assert [a["state"] for a in item.attempts] == ["RETRY", "RETRY", "FAILURE"]
    assert [a.get("retry_delay_s") for a in item.attempts] == [1, 2, None]
    with pytest.raises(sqsq.TaskFailed) as failed:
        item.result.get(timeout=1)
    assert failed.value.remote_type == "ConnectionError"

    copy = scenario.dead_letters[item.result.id]
    assert copy["reason"] == "max_retries_exceeded"
    assert copy["details"]["receive_count"] == 3
    assert copy["details"]["source_queue"] == DEFAULT_QUEUE
    assert json.loads(copy["message"]["Body"])["id"] == item.result.id


def test_exception_not_in_autoretry_for_fails_at_once(scenario: Scenario) -> None:
    item, record = final(scenario, "not_listed")
    assert record.state is State.FAILURE
    assert record.dead_letter_reason == "task_failed"
    assert record.exc_type == "ValueError"
    assert record.attempts == 1
    assert item.runs == ["run"]
    assert State.RETRY not in item.states_seen
    assert item.attempts == []  # no retry, and a first-attempt failure keeps no history
    assert scenario.dead_letters[item.result.id]["reason"] == "task_failed"


def test_bound_task_retries_itself_with_countdown(scenario: Scenario) -> None:
    item, record = final(scenario, "bound")
    assert record.state is State.SUCCESS
    assert record.value == {"attempt": 2, "retries": 1}
    assert item.runs == ["1,0", "2,1"]  # self.request.attempt, self.request.retries
    (retry,) = item.attempts
    assert retry["state"] == "RETRY"
    assert retry["exc_type"] == "TimeoutError"  # the exc given to self.retry() is recorded
    assert retry["retry_delay_s"] == 1
    assert record.started_at is not None
    assert record.started_at - ts(retry["finished_at"]) >= timedelta(seconds=1.0)


def test_raising_retry_with_countdown_retries_once(scenario: Scenario) -> None:
    item, record = final(scenario, "raised")
    assert record.state is State.SUCCESS
    assert record.value == 2
    assert record.attempts == 2
    (retry,) = item.attempts
    assert (retry["state"], retry["exc_type"], retry["retry_delay_s"]) == (
        "RETRY",
        "KeyError",
        1,
    )


def test_reject_goes_to_the_dlq_without_retry(scenario: Scenario) -> None:
    item, record = final(scenario, "rejected")
    assert record.state is State.FAILURE
    assert record.dead_letter_reason == "rejected"
    assert record.exc_type == "sqsq.errors.Reject"
    assert record.attempts == 1
    assert item.runs == ["run"]  # autoretry_for=(Exception,) does not retry a Reject
    assert State.RETRY not in item.states_seen
    copy = scenario.dead_letters[item.result.id]
    assert copy["reason"] == "rejected"
    assert copy["details"]["message"] == "malformed order"


def test_revoked_while_waiting_to_retry_is_not_run_again(scenario: Scenario) -> None:
    item, record = final(scenario, "revoked")
    assert record.state is State.REVOKED
    assert record.exc_type == "sqsq.errors.TaskRevoked"
    assert State.RETRY in item.states_seen
    # the body ran once per RETRY; the delivery after the revocation did not run it
    assert [a["state"] for a in item.attempts] == ["RETRY"] * len(item.runs)
    assert 1 <= len(item.runs) < 3
    assert record.attempts == len(item.runs) + 1
    assert item.result.id not in scenario.dead_letters


def test_only_failures_are_dead_lettered(scenario: Scenario) -> None:
    failed = {
        item.result.id
        for item in scenario.cases.values()
        if item.record is not None and item.record.state is State.FAILURE
    }
    assert set(scenario.dead_letters) == failed
    assert len(failed) == 3


# --- RetryPolicy -----------------------------------------------------------------------


def test_delay_without_backoff_is_the_default_retry_delay() -> None:
    policy = RetryPolicy(default_retry_delay_s=42.0)
    assert [policy.delay_s(n) for n in (1, 2, 10)] == [42.0, 42.0, 42.0]


def test_exponential_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(retry_backoff_s=1.0, retry_backoff_max_s=20.0, retry_jitter=False)
    assert [policy.delay_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 20, 20]
    base3 = RetryPolicy(retry_backoff_s=3.0, retry_backoff_max_s=600.0, retry_jitter=False)
    assert [base3.delay_s(n) for n in (1, 2, 3)] == [3, 6, 12]


@given(
    attempt=st.integers(min_value=1, max_value=1000),
    base=st.floats(min_value=0.01, max_value=100),
    cap=st.floats(min_value=0.01, max_value=43_200),
)
def test_full_jitter_stays_between_zero_and_the_capped_backoff(
    attempt: int, base: float, cap: float
) -> None:
    policy = RetryPolicy(retry_backoff_s=base, retry_backoff_max_s=cap, retry_jitter=True)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert 0.0 <= policy.delay_s(attempt) <= ceiling


def test_full_jitter_spreads_over_the_whole_range() -> None:
    policy = RetryPolicy(retry_backoff_s=1.0, retry_backoff_max_s=8.0, retry_jitter=True)
    delays = [policy.delay_s(4) for _ in range(400)]  # uniform(0, 8)
    assert min(delays) < 2.0 < 6.0 < max(delays)
    assert len(set(delays)) > 300


def test_backoff_of_a_task_retried_forever_stays_capped() -> None:
    # max_retries=None retries until the redrive policy stops it; on a queue without
    # one, ApproximateReceiveCount keeps growing (messages live up to 14 days).
    policy = RetryPolicy(
        max_retries=None, retry_backoff_s=1.0, retry_backoff_max_s=600.0, retry_jitter=False
    )
    assert policy.delay_s(1100) == 600.0


@pytest.mark.parametrize("jitter", [True, False])
def test_explicit_countdown_wins_over_backoff_and_jitter(jitter: bool) -> None:
    policy = RetryPolicy(retry_backoff_s=5.0, retry_backoff_max_s=10.0, retry_jitter=jitter)
    assert policy.delay_s(3, countdown_s=7.5) == 7.5
    assert policy.delay_s(1, countdown_s=0) == 0.0
    assert policy.delay_s(1, countdown_s=-3) == 0.0
    assert RetryPolicy(default_retry_delay_s=180).delay_s(1, countdown_s=2) == 2


def test_exhausted_counts_attempts_against_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]
    assert not RetryPolicy(max_retries=None).exhausted(10_000)
    assert RetryPolicy(max_retries=0).exhausted(1)


# --- declaration and resources -----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"retries": 3},  # Celery's name is max_retries
        {"autoretry": (ValueError,)},
        {"retry_backoff": True, "acks_late": True},  # acks_late: always on, not an option
    ],
)
def test_unknown_task_option_raises_configuration_error(options: dict[str, Any]) -> None:
    app = sqsq.App("declare")
    with pytest.raises(sqsq.ConfigurationError, match="unknown task option"):

        @app.task(**options)
        def nothing() -> None: ...

    assert app.tasks == {}


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"autoretry_for": ValueError},
        {"autoretry_for": (ValueError, "KeyError")},
        {"retry_backoff_max": 0},
        {"default_retry_delay": -1},
    ],
)
def test_invalid_retry_option_values_raise_configuration_error(options: dict[str, Any]) -> None:
    app = sqsq.App("declare")
    with pytest.raises(sqsq.ConfigurationError):

        @app.task(**options)
        def nothing() -> None: ...


def test_plan_sets_max_receive_count_above_max_retries(local_aws: LocalEndpoint) -> None:
    for logical in rel.app.queues():
        rel.app.directory.forget(rel.app.queue_name(logical))
    plan = sqsq.resources.plan(rel.app)
    changes = {c.name: c for c in plan if c.kind == "queue"}
    many = json.loads(changes["reliab-many"].attributes["RedrivePolicy"])
    assert many["maxReceiveCount"] >= 10 + 2  # every attempt of max_retries=10, plus one
    assert many["deadLetterTargetArn"].endswith(":reliab-many-dlq")
    default = json.loads(changes["reliab-default"].attributes["RedrivePolicy"])
    assert default["maxReceiveCount"] == rel.app.settings.max_receive_count  # 5 covers 3 + 2

    sqsq.resources.apply(rel.app, plan)
    live = rel.sqs().get_queue_attributes(
        QueueUrl=rel.queue_url("reliab-many"), AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    assert json.loads(live["RedrivePolicy"])["maxReceiveCount"] == many["maxReceiveCount"]
