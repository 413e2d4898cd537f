"""CloudWatch metrics of a Lambda invocation in the Embedded Metric Format (EMF).

One JSON line per queue of the batch on stdout, which Lambda sends to CloudWatch
Logs; CloudWatch extracts the metrics from it — no PutMetricData call, nothing
added to the invocation's time but the write ("Specification: Embedded metric
format", CloudWatch User Guide). Namespace :data:`NAMESPACE`, dimensions ``App``
and ``Queue``:

- ``TasksSucceeded``, ``TasksFailed`` (FAILURE: the task raised for good),
  ``TasksRetried`` (RETRY), ``TasksDeadLettered`` (DEAD_LETTER: the message could
  not be run) — Count;
- ``RunTime`` — Milliseconds, one value per task run;
- ``QueueLatency`` — Milliseconds, the invocation's start minus each record's
  ``SentTimestamp``.

Value arrays hold at most :data:`MAX_VALUES` members (the specification's limit);
a larger batch writes several lines, the counts on the first.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from .outcome import Outcome, OutcomeKind

#: The CloudWatch namespace of sqsq's metrics.
NAMESPACE = "sqsq"
#: Members of a numeric array target, at most ("Specification: Embedded metric format").
MAX_VALUES = 100

_COUNTS = {
    OutcomeKind.SUCCESS: "TasksSucceeded",
    OutcomeKind.FAILURE: "TasksFailed",
    OutcomeKind.RETRY: "TasksRetried",
    OutcomeKind.DEAD_LETTER: "TasksDeadLettered",
}


def documents(
    app_name: str, outcomes: Iterable[Outcome], started_s: float, now_s: float | None = None
) -> list[dict[str, Any]]:
    """The EMF documents of one invocation's outcomes.

    Args:
        app_name: the ``App`` dimension.
        outcomes: what the batch's records came to.
        started_s: the invocation's start, epoch seconds (queue latency is measured to it).
        now_s: the documents' Timestamp, epoch seconds (default: now).
    """
    now_ms = int((time.time() if now_s is None else now_s) * 1000)
    by_queue: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_queue.setdefault(outcome.delivery.queue, []).append(outcome)
    out: list[dict[str, Any]] = []
    for queue, items in sorted(by_queue.items()):
        counts = dict.fromkeys(_COUNTS.values(), 0)
        for item in items:
            if item.kind in _COUNTS:
                counts[_COUNTS[item.kind]] += 1
        run_ms = [round(o.duration_s * 1000, 3) for o in items if o.duration_s]
        latency_ms = [
            max(0.0, round((started_s - o.delivery.sent_at.timestamp()) * 1000, 3))
            for o in items
            if o.delivery.sent_at is not None
        ]
        chunks = max(1, -(-max(len(run_ms), len(latency_ms)) // MAX_VALUES))
        for i in range(chunks):
            values: dict[str, Any] = dict(counts) if i == 0 else {}
            for name, series in (("RunTime", run_ms), ("QueueLatency", latency_ms)):
                part = series[i * MAX_VALUES : (i + 1) * MAX_VALUES]
                if part:
                    values[name] = part
            if not values:
                continue
            definitions = [
                {"Name": name, "Unit": "Count" if name in counts else "Milliseconds"}
                for name in values
            ]
            out.append(
                {
                    "_aws": {
                        "Timestamp": now_ms,
                        "CloudWatchMetrics": [
                            {
                                "Namespace": NAMESPACE,
                                "Dimensions": [["App", "Queue"]],
                                "Metrics": definitions,
                            }
                        ],
                    },
                    "App": app_name,
                    "Queue": queue,
                    **values,
                }
            )
    return out


def emit(
    app_name: str, outcomes: Iterable[Outcome], started_s: float, stream: IO[str] | None = None
) -> None:
    """Write :func:`documents` to ``stream`` (default: stdout), one line each."""
    stream = stream or sys.stdout
    for document in documents(app_name, outcomes, started_s):
        stream.write(json.dumps(document, separators=(",", ":")) + "\n")
    stream.flush()
