"""What runs, what waits and what failed: the reading side of ``sqsq status``.

One :func:`collect` makes these calls, all at once (a thread each; SQS has no batch
form of GetQueueAttributes, so its calls run side by side)::

    per queue  ─► GetQueueUrl (once per process) + GetQueueAttributes
                  visible, in flight, delayed
    per DLQ    ─► GetQueueUrl (once per process) + GetQueueAttributes; when it holds
                  messages, up to ``failure_sample`` of them are received (each
                  released again at once: nothing is consumed) and the last
                  ``window_s``'s failures are grouped by (task, error)
    once       ─► DynamoDB Query ``pk = worker#<app>``: the live workers' heartbeats
                  (``worker/heartbeat.py``); items past ``expires_at`` are ignored
    once       ─► CloudWatch GetMetricData: ``ApproximateAgeOfOldestMessage`` of every
                  queue (up to 500 in one call), the newest datapoint of the last
                  :data:`AGE_LOOKBACK_S`

Failures come from the dead-letter queues, never from a scan of the table: sqsq
copies every FAILURE and DEAD_LETTER outcome's message to its queue's DLQ with the
task, the error type and ``dead_lettered_at`` in its attributes (``sqs.py``
``dead_letter_entry``), so the DLQs hold the failures no one has redriven or
purged yet. A DLQ with more than ``failure_sample`` messages is sampled (SQS
returns them in no order), and the result says so.

The age of the oldest message is CloudWatch's; where CloudWatch cannot be reached
(no ``cloudwatch:GetMetricData`` permission, a local endpoint without it) or has no
datapoint (moto's CloudWatch has no SQS metrics; AWS publishes none for a queue
inactive for 6 hours), the age is None and ``age_note`` says why.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import limits
from .aws_errors import aws_boundary, from_botocore, is_botocore
from .dlq import describe, peek
from .sqs import dead_letter_name
from .worker.heartbeat import WorkerInfo, query_request, worker_from_item

if TYPE_CHECKING:
    from .app import App

#: CloudWatch's metric of the age of a queue's oldest message, seconds.
AGE_METRIC = "ApproximateAgeOfOldestMessage"
#: CloudWatch's metric of the messages deleted from a queue (a count per period).
DELETED_METRIC = "NumberOfMessagesDeleted"
#: How far back :func:`collect` looks for the newest age datapoint, seconds.
AGE_LOOKBACK_S = 600
#: Failures of this many seconds back are listed by default (the last hour).
FAILURE_WINDOW_S = 3600.0
#: Most dead-lettered messages read per DLQ by default.
FAILURE_SAMPLE = 100
#: Threads of one :func:`collect` (two per queue, plus the Query and CloudWatch).
MAX_THREADS = 32

_COUNT_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


@dataclass(frozen=True)
class QueueStatus:
    """One queue and its dead-letter queue.

    Attributes:
        queue: the logical queue (``default``).
        name: the physical SQS queue name.
        visible: messages ready to be received (ApproximateNumberOfMessages).
        in_flight: received and neither deleted nor released yet
            (ApproximateNumberOfMessagesNotVisible).
        delayed: sent with a delay not yet over (ApproximateNumberOfMessagesDelayed).
        dlq: the DLQ's name.
        dlq_depth: messages in the DLQ, visible and in flight.
        age_s: the age of the oldest message, seconds (CloudWatch's newest
            datapoint, up to a few minutes old); None when unknown.
        age_note: why ``age_s`` is None (else None).
        done_last_hour: messages deleted from the queue in the last hour (CloudWatch's
            ``NumberOfMessagesDeleted``, summed: tasks that ended, duplicates and
            put-backs included), read only when :func:`collect` is asked for it
            (``throughput=True``, the dashboard's overview); None when not read or
            unknown (``age_note``'s reasons apply).
    """

    queue: str
    name: str
    visible: int
    in_flight: int
    delayed: int
    dlq: str
    dlq_depth: int
    age_s: float | None = None
    age_note: str | None = None
    done_last_hour: int | None = None


@dataclass(frozen=True)
class FailureGroup:
    """Failures of one task with one error in the window.

    Attributes:
        task: the task's name ("?" when the message did not decode).
        error: the error type (e.g. ``builtins.ValueError``), else the dead-letter reason.
        count: messages in the group.
        latest_s: seconds since the newest of them was dead-lettered.
    """

    task: str
    error: str
    count: int
    latest_s: float


@dataclass
class Status:
    """What :func:`collect` found.

    Attributes:
        app: the app's name.
        taken_at: when, epoch seconds.
        elapsed_s: how long collecting took, seconds.
        queues: one per logical queue, sorted.
        workers: the live workers, by id.
        failures: the window's failures, most frequent first.
        window_s: the failures' window, seconds.
        failures_note: what the failures leave out (a sampled DLQ), else None.
        requests: the AWS requests collecting made, by ``service.Action``.
    """

    app: str
    taken_at: float
    elapsed_s: float
    queues: list[QueueStatus]
    workers: list[WorkerInfo]
    failures: list[FailureGroup]
    window_s: float
    failures_note: str | None = None
    requests: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (``sqsq status --json``)."""
        data = asdict(self)
        for worker in data["workers"]:
            worker["queues"] = list(worker["queues"])
        return data


@dataclass(frozen=True)
class Thresholds:
    """Health-check thresholds; None checks nothing.

    Attributes:
        max_age_s: the oldest message of any queue may be at most this old, seconds.
        max_dlq: any DLQ may hold at most this many messages.
        min_workers: at least this many workers must be alive.
    """

    max_age_s: float | None = None
    max_dlq: int | None = None
    min_workers: int | None = None


def breaches(status: Status, thresholds: Thresholds) -> tuple[list[str], list[str]]:
    """``(breached, unchecked)``: one line per threshold a queue or the app breaks,
    and one per check that could not be made (an unknown age of a non-empty queue:
    not a breach)."""
    broken: list[str] = []
    unchecked: list[str] = []
    for queue in status.queues:
        if thresholds.max_age_s is not None:
            if queue.age_s is not None and queue.age_s > thresholds.max_age_s:
                broken.append(
                    f"{queue.name}: oldest message {queue.age_s:.0f} s old "
                    f"> --max-age {thresholds.max_age_s:g}"
                )
            elif queue.age_s is None and queue.visible + queue.delayed > 0:
                unchecked.append(f"{queue.name}: --max-age not checked ({queue.age_note})")
        if thresholds.max_dlq is not None and queue.dlq_depth > thresholds.max_dlq:
            broken.append(
                f"{queue.dlq}: {queue.dlq_depth} message(s) > --max-dlq {thresholds.max_dlq}"
            )
    if thresholds.min_workers is not None and len(status.workers) < thresholds.min_workers:
        broken.append(
            f"{len(status.workers)} worker(s) alive < --min-workers {thresholds.min_workers}"
        )
    return broken, unchecked


def collect(
    app: App,
    *,
    queues: list[str] | None = None,
    window_s: float = FAILURE_WINDOW_S,
    failure_sample: int = FAILURE_SAMPLE,
    host: str | None = None,
    throughput: bool = False,
) -> Status:
    """Read the app's queues, DLQs, workers and recent failures, concurrently.

    Args:
        app: the App.
        queues: logical queues (default: every queue the app uses).
        window_s: failures dead-lettered this many seconds back are listed.
        failure_sample: most messages read per DLQ (0: no failures are read).
        host: list only the workers on this host (a container's own health check).
        throughput: also read each queue's messages deleted in the last hour
            (``QueueStatus.done_last_hour``; one more GetMetricData per 500 queues).

    Returns:
        A :class:`Status`; ``requests`` counts the calls made (from the app's
        ``clients.counter``, so other calls through the same App meanwhile count too).

    Raises:
        AWSError: an SQS or DynamoDB call failed (a missing queue or table is an
            ``AWSResourceNotFound``, also a ConfigurationError). CloudWatch errors
            are not raised: the ages are then unknown, and ``age_note`` says why.
    """
    started = time.monotonic()
    before = app.clients.counter.snapshot()
    logical = queues or app.queues()
    names = [app.queue_name(q) for q in logical]
    threads = min(MAX_THREADS, 2 * len(names) + 2)
    with ThreadPoolExecutor(threads, thread_name_prefix="sqsq-status") as pool:
        counts = [pool.submit(_counts, app, name) for name in names]
        dead = [
            pool.submit(_dead_letters, app, dead_letter_name(name), failure_sample)
            for name in names
        ]
        workers = pool.submit(live_workers, app)
        ages = pool.submit(_ages, app, names)
        done = pool.submit(_done_last_hour, app, names) if throughput else None
        now = time.time()
        rows: list[QueueStatus] = []
        failures: Counter[tuple[str, str]] = Counter()
        latest: dict[tuple[str, str], float] = {}
        sampled: list[str] = []
        age_of, age_note = ages.result()
        done_of = done.result()[0] if done is not None else {}
        for queue, name, count, letters in zip(logical, names, counts, dead, strict=True):
            visible, in_flight, delayed = count.result()
            dlq_depth, messages, read = letters.result()
            for row in map(describe, messages):
                if row.age_s is None or row.age_s > window_s:
                    continue
                key = (row.task or "?", row.error_type or row.reason)
                failures[key] += 1
                latest[key] = min(latest.get(key, row.age_s), row.age_s)
            if read < dlq_depth and read >= failure_sample:
                sampled.append(f"{read} of {dlq_depth} in {dead_letter_name(name)}")
            age = age_of.get(name)
            rows.append(
                QueueStatus(
                    queue=queue,
                    name=name,
                    visible=visible,
                    in_flight=in_flight,
                    delayed=delayed,
                    dlq=dead_letter_name(name),
                    dlq_depth=dlq_depth,
                    age_s=age,
                    age_note=None if age is not None else age_note,
                    done_last_hour=done_of.get(name),
                )
            )
        alive = sorted(
            (w for w in workers.result() if host is None or w.host == host),
            key=lambda w: w.worker_id,
        )
    after = app.clients.counter.snapshot()
    groups = [
        FailureGroup(task, error, n, round(latest[(task, error)], 1))
        for (task, error), n in failures.most_common()
    ]
    return Status(
        app=app.name,
        taken_at=now,
        elapsed_s=round(time.monotonic() - started, 3),
        queues=rows,
        workers=alive,
        failures=groups,
        window_s=window_s,
        failures_note=("sampled " + ", ".join(sampled)) if sampled else None,
        requests={k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)},
    )


def _queue_arg(app: Any, name: str, *_: Any) -> str:
    return name


@aws_boundary(_queue_arg)
def _counts(app: App, name: str) -> tuple[int, int, int]:
    """``(visible, in flight, delayed)`` of a queue."""
    attributes = app.clients.sync("sqs").get_queue_attributes(
        QueueUrl=app.directory.url(name), AttributeNames=_COUNT_ATTRIBUTES
    )["Attributes"]
    visible, in_flight, delayed = (int(attributes.get(a, 0)) for a in _COUNT_ATTRIBUTES)
    return visible, in_flight, delayed


@aws_boundary(_queue_arg)
def _dead_letters(app: App, name: str, sample: int) -> tuple[int, list[dict[str, Any]], int]:
    """``(depth, messages read, how many)`` of a DLQ: up to ``sample`` of its visible
    messages are received and released again (``dlq.peek``)."""
    url = app.directory.url(name)
    visible, in_flight, _ = _counts(app, name)
    if not visible or not sample:
        return visible + in_flight, [], 0
    messages = peek(app.clients.sync("sqs"), url, min(sample, visible))
    return visible + in_flight, messages, len(messages)


@aws_boundary(lambda app: app.table_name)
def live_workers(app: App) -> list[WorkerInfo]:
    """The live workers' heartbeats (one Query; pages of 1 MB); also the dashboard's."""
    client = app.clients.sync("dynamodb")
    request = query_request(app.table_name, app.name)
    now = time.time()
    found: list[WorkerInfo] = []
    while True:
        response = client.query(**request)
        found += [w for w in map(lambda i: worker_from_item(i, now), response["Items"]) if w]
        if not response.get("LastEvaluatedKey"):
            return found
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


#: Pages of one GetMetricData chunk read at most (each page holds every queue's latest
#: datapoints: one is the rule; the bound keeps a misbehaving endpoint from looping).
MAX_METRIC_PAGES = 10


def _ages(app: App, names: list[str]) -> tuple[dict[str, float], str | None]:
    """``({queue name: age_s}, why some are missing)`` from CloudWatch (the newest
    ``ApproximateAgeOfOldestMessage`` Maximum of the last :data:`AGE_LOOKBACK_S`);
    never raises."""
    found, note = _metric(app, names, AGE_METRIC, "Maximum", AGE_LOOKBACK_S)
    return {name: float(max(values)[1]) for name, values in found.items()}, note


def _done_last_hour(app: App, names: list[str]) -> tuple[dict[str, int], str | None]:
    """``({queue name: messages deleted}, why some are missing)``: the Sum of
    ``NumberOfMessagesDeleted`` over the last hour; never raises."""
    found, note = _metric(app, names, DELETED_METRIC, "Sum", 3600)
    return {name: int(sum(v for _, v in values)) for name, values in found.items()}, note


def _metric(
    app: App, names: list[str], metric: str, stat: str, lookback_s: int
) -> tuple[dict[str, list[tuple[datetime, float]]], str | None]:
    """``({queue name: [(timestamp, value)]}, why some are missing)``: the ``stat`` of
    the AWS/SQS ``metric`` per queue over the last ``lookback_s`` seconds, one
    GetMetricData per :data:`~sqsq.limits.CLOUDWATCH_MAX_METRIC_DATA_QUERIES` queues;
    never raises (an unreachable CloudWatch: nothing, and the note says why)."""
    try:
        client = app.clients.sync("cloudwatch")
        end = datetime.now(UTC)
        start = end - timedelta(seconds=lookback_s)
        found: dict[str, list[tuple[datetime, float]]] = {}
        step = limits.CLOUDWATCH_MAX_METRIC_DATA_QUERIES
        for first in range(0, len(names), step):
            chunk = names[first : first + step]
            request: dict[str, Any] = {
                "MetricDataQueries": [
                    _metric_query(i, name, metric, stat) for i, name in enumerate(chunk)
                ],
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampDescending",
            }
            for _page in range(MAX_METRIC_PAGES):  # an endpoint repeating its token ends
                response = client.get_metric_data(**request)
                for result in response.get("MetricDataResults", []):
                    values = list(
                        zip(result.get("Timestamps", []), result.get("Values", []), strict=True)
                    )
                    if values:
                        found.setdefault(chunk[int(result["Id"][1:])], []).extend(values)
                token = response.get("NextToken")
                if not token or token == request.get("NextToken"):
                    break
                request["NextToken"] = token
    except Exception as exc:
        said = str(from_botocore(exc)) if is_botocore(exc) else f"{type(exc).__name__}: {exc}"
        return {}, f"CloudWatch not reachable: {said}"
    missing = f"no {metric} datapoint from CloudWatch in the last {lookback_s // 60} min"
    return found, None if len(found) == len(names) else missing


def _metric_query(index: int, name: str, metric: str, stat: str) -> dict[str, Any]:
    return {
        "Id": f"q{index}",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/SQS",
                "MetricName": metric,
                "Dimensions": [{"Name": "QueueName", "Value": name}],
            },
            "Period": limits.SQS_METRICS_PERIOD_S,
            "Stat": stat,
        },
        "ReturnData": True,
    }


__all__ = [
    "FailureGroup",
    "QueueStatus",
    "Status",
    "Thresholds",
    "breaches",
    "collect",
]
