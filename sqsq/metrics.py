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
  reached the process (the invocation's start; the worker's receive).

``Task`` is the registered task's name; a message naming no registered task counts
as :data:`UNREGISTERED_TASK`, so a body cannot create metrics (each distinct
dimension value is a custom metric on the bill). The specification's limits: at most
:data:`MAX_DIMENSIONS` dimensions per set, :data:`MAX_METRICS` metrics per directive,
:data:`MAX_VALUES` values per array — a larger tally is written as several
documents (the counts on the first) or, in the worker, sampled (:class:`Aggregate`).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Container, Iterable
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

    def add(self, outcome: Outcome, task: str, reached_s: float) -> None:
        """Count ``outcome`` of ``task``; ``reached_s`` (epoch seconds) is when its
        message reached the process (its queue latency ends there)."""
        key = (outcome.delivery.queue, task)
        tally = self.tallies.get(key)
        if tally is None:
            counts = dict.fromkeys(COUNTS.values(), 0)
            tally = self.tallies[key] = Tally(counts, Series(self.keep), Series(self.keep))
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
            series = {"RunTime": tally.run_ms.values, "QueueLatency": tally.latency_ms.values}
            chunks = max(1, -(-max(len(v) for v in series.values()) // MAX_VALUES))
            for i in range(chunks):
                values: dict[str, Any] = dict(tally.counts) if i == 0 else {}
                for name in _SERIES:
                    part = series[name][i * MAX_VALUES : (i + 1) * MAX_VALUES]
                    if part:
                        values[name] = part
                definitions = [
                    {"Name": name, "Unit": "Milliseconds" if name in _SERIES else "Count"}
                    for name in values
                ]
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


def documents(
    app_name: str,
    outcomes: Iterable[Outcome],
    started_s: float,
    now_s: float | None = None,
    *,
    tasks: Container[str],
) -> list[dict[str, Any]]:
    """The EMF documents of one Lambda invocation's outcomes, one per (queue, task)
    (more where a series has over :data:`MAX_VALUES` values).

    Args:
        app_name: the ``App`` dimension.
        outcomes: what the batch's records came to.
        started_s: the invocation's start, epoch seconds (queue latency is measured to it).
        now_s: the documents' Timestamp, epoch seconds (default: now).
        tasks: the registered task names (others count as :data:`UNREGISTERED_TASK`).
    """
    aggregate = Aggregate()
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
) -> None:
    """Write :func:`documents` to ``stream`` (default: stdout), one line each."""
    write(documents(app_name, outcomes, started_s, tasks=tasks), stream)
