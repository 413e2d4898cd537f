"""CloudWatch metrics of task outcomes in the Embedded Metric Format (EMF).

EMF lines are JSON log events on stdout; where they reach CloudWatch Logs as EMF
(Lambda does it by itself; on ECS/EC2 FireLens or the CloudWatch agent), CloudWatch
extracts the metrics from them — no PutMetricData call, no AWS request from the
process ("Specification: Embedded metric format", CloudWatch User Guide). The
Lambda handler writes one per invocation (:func:`emit`); ``sqsq worker --metrics
emf`` one per interval (``sqsq.worker.metrics``). Namespace :data:`NAMESPACE`;
every document has the dimension sets ``[App, Queue]`` and ``[App, Queue, Task]``
(:data:`DIMENSION_SETS`), so each queue's aggregate and each task's figures are
separate metrics:

- ``TasksSucceeded``, ``TasksFailed`` (FAILURE: the task raised for good),
  ``TasksRetried`` (RETRY), ``TasksDeadLettered`` (DEAD_LETTER: the message could
  not be run) — Count;
- ``RunTime`` — Milliseconds, one value per task run;
- ``QueueLatency`` — Milliseconds, from each message's ``SentTimestamp`` until it
  reached the process (the invocation's start; the worker's receive);
- Lambda only: ``TasksNotStarted`` — Count, records left for lack of time (the
  remaining time under the task's ``time_limit`` plus the safety margin: listed in
  ``batchItemFailures``, they come back whole), in the documents where it is not 0;
  a task's own metrics (:func:`add_metric`) in its document; and, on the first
  invocation of an execution environment, a document of its own with
  ``ColdStart`` = 1 (Count) and the dimension set ``[App]`` (Powertools Metrics
  writes its ``ColdStart`` apart the same way).

``Task`` is the registered task's name; a message naming no registered task counts
as :data:`UNREGISTERED_TASK`, so a body cannot create metrics (each distinct
dimension value is a custom metric on the bill). The specification's limits: at most
:data:`MAX_DIMENSIONS` dimensions per set, :data:`MAX_METRICS` metrics per directive,
:data:`MAX_VALUES` values per array — a larger tally is written as several
documents (the counts on the first) or, in the worker, sampled (:class:`Aggregate`).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Container, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import IO, Any

from .outcome import Outcome, OutcomeKind

#: The CloudWatch namespace of sqsq's metrics.
NAMESPACE = "sqsq"
#: Members of a numeric array target, at most ("Specification: Embedded metric format").
MAX_VALUES = 100
#: Dimensions in one DimensionSet, at most (same page).
MAX_DIMENSIONS = 30
#: Metric definitions in one MetricDirective, at most (same page).
MAX_METRICS = 100
#: The dimension sets of every document: the per-queue aggregate and the per-task figures.
DIMENSION_SETS: list[list[str]] = [["App", "Queue"], ["App", "Queue", "Task"]]
#: The ``Task`` of a message that names no registered task (undecodable, unknown task).
UNREGISTERED_TASK = "(unregistered)"

#: The count metric of each outcome kind that has one.
COUNTS = {
    OutcomeKind.SUCCESS: "TasksSucceeded",
    OutcomeKind.FAILURE: "TasksFailed",
    OutcomeKind.RETRY: "TasksRetried",
    OutcomeKind.DEAD_LETTER: "TasksDeadLettered",
}
_SERIES = ("RunTime", "QueueLatency")
#: The count of records the Lambda handler left for lack of time.
NOT_STARTED = "TasksNotStarted"
#: The units a metric may have ("MetricDatum", CloudWatch API Reference).
UNITS = frozenset(
    [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ]
)
_OWN = frozenset([*COUNTS.values(), *_SERIES, NOT_STARTED, "ColdStart"])
#: A task's own metrics in one document, at most (the rest of MAX_METRICS is sqsq's).
MAX_TASK_METRICS = MAX_METRICS - len(_OWN)


@dataclass
class _Run:
    """Where :func:`add_metric` adds: the aggregate of the invocation, and the
    (queue, task) of the record running now."""

    aggregate: Aggregate
    key: tuple[str, str] | None = None


_current: ContextVar[_Run | None] = ContextVar("sqsq_metrics_run", default=None)


def add_metric(name: str, unit: str, value: float) -> bool:
    """Add a value of the running task's own metric to the invocation's EMF document.

    In the Lambda handler, the value goes into the document of the task's queue and
    task (namespace :data:`NAMESPACE`, dimension sets ``[App, Queue]`` and ``[App,
    Queue, Task]``), written when the invocation ends; values of one name are one
    array (a statistic set in CloudWatch). Anywhere else — ``sqsq worker``,
    ``task.apply()``, outside a task — it adds nothing and returns False (for the
    worker's own interval documents, see ``sqsq worker --metrics``).

    Args:
        name: the metric's name, 1–255 characters, none of sqsq's own (``RunTime``, …).
        unit: a CloudWatch unit (:data:`UNITS`: ``"Count"``, ``"Milliseconds"``, …).
        value: a finite number.

    Returns:
        Whether the value was added (False: not inside a task of a Lambda invocation,
        or the document already has :data:`MAX_TASK_METRICS` names of the task's own).

    Raises:
        ValueError: a name sqsq uses or out of bounds, an unknown unit, a value that
            is not finite.

    Example:
        ``sqsq.metrics.add_metric("ItemsCharged", "Count", len(items))``
    """
    if not 1 <= len(name) <= 255 or name in _OWN:
        raise ValueError(f"metric name {name!r}: 1-255 characters, none of {sorted(_OWN)}")
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r} is not a CloudWatch unit (one of {sorted(UNITS)})")
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"metric {name}: {value!r} is not a finite number")
    run = _current.get()
    if run is None or run.key is None:
        return False
    return run.aggregate.add_own(run.key, name, unit, float(value))


def task_of(outcome: Outcome, tasks: Container[str]) -> str:
    """The ``Task`` dimension of ``outcome``: its task's name if registered in
    ``tasks``, else :data:`UNREGISTERED_TASK`."""
    name = outcome.record.task if outcome.record is not None else None
    return name if name is not None and name in tasks else UNREGISTERED_TASK


@dataclass
class Series:
    """Values of one metric; with ``keep``, a uniform sample of at most ``keep`` of
    them (reservoir sampling, Algorithm R), however many were added."""

    keep: int | None = None
    values: list[float] = field(default_factory=list)
    seen: int = 0

    def add(self, value: float, rng: random.Random) -> None:
        self.seen += 1
        if self.keep is None or len(self.values) < self.keep:
            self.values.append(value)
            return
        slot = rng.randrange(self.seen)
        if slot < self.keep:
            self.values[slot] = value


@dataclass
class Tally:
    """What one (queue, task) came to: counts, run times and queue latencies (ms)."""

    counts: dict[str, int]
    run_ms: Series
    latency_ms: Series
    #: The task's own metrics (:func:`add_metric`): name -> (unit, values).
    own: dict[str, tuple[str, list[float]]] = field(default_factory=dict)


class Aggregate:
    """Outcomes tallied per (queue, task), turned into EMF documents.

    Args:
        keep: keep at most this many values per series and (queue, task) — a
            uniform sample, so one document per (queue, task) carries them
            (``RunTime``'s SampleCount is then the sample's size; the Tasks* counts
            stay exact). None keeps every value (several documents if needed).
        rng: the sample's random source (tests pass a seeded one).
    """

    def __init__(self, keep: int | None = None, rng: random.Random | None = None) -> None:
        if keep is not None and not 1 <= keep <= MAX_VALUES:
            raise ValueError(f"keep must be 1..{MAX_VALUES}, got {keep}")
        self.keep = keep
        self.tallies: dict[tuple[str, str], Tally] = {}
        self._rng = rng or random.Random()

    def __len__(self) -> int:
        return len(self.tallies)

    def _tally(self, key: tuple[str, str]) -> Tally:
        tally = self.tallies.get(key)
        if tally is None:
            counts = dict.fromkeys(COUNTS.values(), 0)
            tally = self.tallies[key] = Tally(counts, Series(self.keep), Series(self.keep))
        return tally

    def not_started(self, queue: str, task: str) -> None:
        """Count a record of ``task`` on ``queue`` left for lack of time (``TasksNotStarted``)."""
        counts = self._tally((queue, task)).counts
        counts[NOT_STARTED] = counts.get(NOT_STARTED, 0) + 1

    def add_own(self, key: tuple[str, str], name: str, unit: str, value: float) -> bool:
        """Add a value of a task's own metric (see :func:`add_metric`)."""
        own = self._tally(key).own
        if name not in own:
            if len(own) >= MAX_TASK_METRICS:
                return False
            own[name] = (unit, [])
        own[name][1].append(value)
        return True

    def add(self, outcome: Outcome, task: str, reached_s: float) -> None:
        """Count ``outcome`` of ``task``; ``reached_s`` (epoch seconds) is when its
        message reached the process (its queue latency ends there)."""
        key = (outcome.delivery.queue, task)
        tally = self._tally(key)
        if outcome.kind in COUNTS:
            tally.counts[COUNTS[outcome.kind]] += 1
        if outcome.duration_s:
            tally.run_ms.add(round(outcome.duration_s * 1000, 3), self._rng)
        sent_at = outcome.delivery.sent_at
        if sent_at is not None:
            tally.latency_ms.add(
                max(0.0, round((reached_s - sent_at.timestamp()) * 1000, 3)), self._rng
            )

    def documents(
        self, app_name: str, now_s: float | None = None, members: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The EMF documents of the tally, sorted by (queue, task).

        Args:
            app_name: the ``App`` dimension.
            now_s: the documents' Timestamp, epoch seconds (default: now).
            members: more root members, not metrics (e.g. the worker's id).
        """
        now_ms = int((time.time() if now_s is None else now_s) * 1000)
        out: list[dict[str, Any]] = []
        for (queue, task), tally in sorted(self.tallies.items()):
            series = {
                "RunTime": ("Milliseconds", tally.run_ms.values),
                "QueueLatency": ("Milliseconds", tally.latency_ms.values),
                **tally.own,
            }
            chunks = max(1, -(-max(len(v) for _, v in series.values()) // MAX_VALUES))
            for i in range(chunks):
                values: dict[str, Any] = dict(tally.counts) if i == 0 else {}
                units = dict.fromkeys(values, "Count")
                for name, (unit, all_values) in series.items():
                    part = all_values[i * MAX_VALUES : (i + 1) * MAX_VALUES]
                    if part:
                        values[name], units[name] = part, unit
                definitions = [{"Name": name, "Unit": units[name]} for name in values]
                directive = {
                    "Namespace": NAMESPACE,
                    "Dimensions": DIMENSION_SETS,
                    "Metrics": definitions,
                }
                out.append(
                    {
                        "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [directive]},
                        "App": app_name,
                        "Queue": queue,
                        "Task": task,
                        **(members or {}),
                        **values,
                    }
                )
        return out


@contextmanager
def invocation() -> Iterator[Aggregate]:
    """The aggregate of one Lambda invocation, where :func:`add_metric` adds while the
    block runs (in this thread) and :func:`emit` writes from."""
    token = _current.set(_Run(Aggregate()))
    try:
        run = _current.get()
        assert run is not None
        yield run.aggregate
    finally:
        _current.reset(token)


def running(queue: str | None, task: str | None) -> None:
    """Name the (queue, task) whose body runs now (None: none), for :func:`add_metric`."""
    run = _current.get()
    if run is not None:
        run.key = (queue, task) if queue is not None and task is not None else None


def cold_start(app_name: str, now_s: float | None = None) -> dict[str, Any]:
    """The ``ColdStart`` document of an execution environment's first invocation."""
    directive = {
        "Namespace": NAMESPACE,
        "Dimensions": [["App"]],
        "Metrics": [{"Name": "ColdStart", "Unit": "Count"}],
    }
    now_ms = int((time.time() if now_s is None else now_s) * 1000)
    return {
        "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [directive]},
        "App": app_name,
        "ColdStart": 1,
    }


def documents(
    app_name: str,
    outcomes: Iterable[Outcome],
    started_s: float,
    now_s: float | None = None,
    *,
    tasks: Container[str],
    not_started: Iterable[tuple[str, str]] = (),
) -> list[dict[str, Any]]:
    """The EMF documents of one Lambda invocation's outcomes, one per (queue, task)
    (more where a series has over :data:`MAX_VALUES` values).

    Args:
        app_name: the ``App`` dimension.
        outcomes: what the batch's records came to.
        started_s: the invocation's start, epoch seconds (queue latency is measured to it).
        now_s: the documents' Timestamp, epoch seconds (default: now).
        tasks: the registered task names (others count as :data:`UNREGISTERED_TASK`).
        not_started: the (queue, task) of each record left for lack of time.

    Inside :func:`invocation`, its aggregate (with the tasks' own metrics) is used.
    """
    run = _current.get()
    aggregate = run.aggregate if run is not None else Aggregate()
    for queue, task in not_started:
        aggregate.not_started(queue, task if task in tasks else UNREGISTERED_TASK)
    for outcome in outcomes:
        aggregate.add(outcome, task_of(outcome, tasks), started_s)
    return aggregate.documents(app_name, now_s)


def write(documents: Iterable[dict[str, Any]], stream: IO[str] | None = None) -> None:
    """Write EMF documents to ``stream`` (default: stdout), one compact JSON line each."""
    stream = stream or sys.stdout
    for document in documents:
        stream.write(json.dumps(document, separators=(",", ":")) + "\n")
    stream.flush()


def emit(
    app_name: str,
    outcomes: Iterable[Outcome],
    started_s: float,
    stream: IO[str] | None = None,
    *,
    tasks: Container[str],
    not_started: Iterable[tuple[str, str]] = (),
) -> None:
    """Write :func:`documents` to ``stream`` (default: stdout), one line each."""
    write(documents(app_name, outcomes, started_s, tasks=tasks, not_started=not_started), stream)
