"""The worker's metrics per task: EMF lines on stdout, or a Prometheus endpoint.

The worker hands every outcome it has settled (stored, then its message deleted or
made visible again) to :meth:`WorkerMetrics.observe`, in the event loop of the
parent process — with ``--pool processes`` too, since the children only run bodies
and the parent settles their outcomes, so one process holds every count and
Prometheus' multiprocess mode is not needed. Neither sink makes an AWS request.

``--metrics emf`` (:class:`EmfMetrics`): the metrics of ``sqsq.metrics`` (the
Lambda handler's set), tallied per (queue, task) and written every
``worker_metrics_interval_s`` (60 s) and at shutdown — one line per (queue, task)
that had outcomes in the interval, whatever the throughput: RunTime and
QueueLatency carry a uniform sample of at most 100 values (EMF's array limit); the
Tasks* counts are exact. Each line also carries the ``Worker`` id as a plain member
(not a dimension: worker ids change at every restart, and each dimension value is a
custom metric).

``--metrics prometheus`` (:class:`PrometheusMetrics`): an HTTP endpoint
(``prometheus-client``, the ``sqsq[prometheus]`` extra) in celery-exporter's shapes
with the ``sqsq_`` prefix and the labels ``task``, ``queue``, ``worker``::

    sqsq_task_succeeded_total      counter    SUCCESS
    sqsq_task_failed_total         counter    FAILURE (raised for good)
    sqsq_task_retried_total        counter    RETRY
    sqsq_task_dead_lettered_total  counter    DEAD_LETTER (could not be run)
    sqsq_task_revoked_total        counter    REVOKED (revoked or expired)
    sqsq_task_runtime              histogram  seconds, per run
    sqsq_task_queue_latency        histogram  seconds, SentTimestamp to receive
    sqsq_worker_tasks_active       gauge      tasks running now (labels: worker)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Container, Iterable
from typing import IO, Any, Protocol

from ..errors import ConfigurationError, MissingExtra
from ..metrics import MAX_VALUES, Aggregate, task_of, write
from ..outcome import Outcome, OutcomeKind

logger = logging.getLogger(__name__)

#: The histogram buckets of run time and queue latency, seconds.
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class WorkerMetrics(Protocol):
    """Where the worker's settled outcomes are counted."""

    def start(self) -> None:
        """Begin (from the worker's event loop)."""

    def observe(self, outcomes: Iterable[Outcome]) -> None:
        """Count outcomes the worker has settled."""

    def flush(self) -> None:
        """Write what is pending now (a cold shutdown)."""

    async def close(self) -> None:
        """Write what is pending and stop."""


def reached_s(outcome: Outcome, now_s: float, now_monotonic: float) -> float:
    """Epoch seconds when the outcome's message was received (its queue latency ends there)."""
    return now_s - (now_monotonic - outcome.delivery.received_monotonic)


class EmfMetrics:
    """EMF lines on ``stream`` (stdout): one per (queue, task) every ``interval_s``.

    Args:
        app_name: the ``App`` dimension.
        worker_id: written as the ``Worker`` member of each line.
        tasks: the registered task names.
        interval_s: seconds between writes.
        stream: where to write (default: stdout at each write).
    """

    def __init__(
        self,
        app_name: str,
        worker_id: str,
        tasks: Container[str],
        interval_s: float,
        stream: IO[str] | None = None,
    ) -> None:
        self.app_name = app_name
        self.worker_id = worker_id
        self.tasks = tasks
        self.interval_s = interval_s
        self.stream = stream
        self._aggregate = Aggregate(keep=MAX_VALUES)
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._run(), name="sqsq-metrics-emf")

    def observe(self, outcomes: Iterable[Outcome]) -> None:
        now_s, now_monotonic = time.time(), time.monotonic()
        for outcome in outcomes:
            at = reached_s(outcome, now_s, now_monotonic)
            self._aggregate.add(outcome, task_of(outcome, self.tasks), at)

    def flush(self) -> None:
        if not self._aggregate:
            return
        aggregate, self._aggregate = self._aggregate, Aggregate(keep=MAX_VALUES)
        try:
            write(
                aggregate.documents(self.app_name, members={"Worker": self.worker_id}), self.stream
            )
        except (OSError, ValueError) as exc:  # a closed or full stdout: never the worker's end
            logger.warning("writing the EMF metrics failed: %s", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.flush()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        self.flush()


class PrometheusMetrics:
    """A Prometheus endpoint (``/metrics``) on ``address:port``.

    Args:
        worker_id: the ``worker`` label.
        tasks: the registered task names.
        port: TCP port (0: any free one; :attr:`port` tells which).
        address: the address to listen on.
        busy: tasks running now (the ``sqsq_worker_tasks_active`` gauge).

    Raises:
        MissingExtra: ``prometheus-client`` is not installed.
        ConfigurationError: the port cannot be bound.
    """

    def __init__(
        self,
        worker_id: str,
        tasks: Container[str],
        port: int,
        address: str,
        busy: Callable[[], int],
    ) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise MissingExtra("prometheus", "worker metrics for Prometheus", exc) from None
        self.worker_id = worker_id
        self.tasks = tasks
        self.port = port
        self.address = address
        self.registry = prom.CollectorRegistry(auto_describe=True)
        labels = ("task", "queue", "worker")

        def counter(name: str, what: str) -> Any:
            return prom.Counter(name, what, labels, registry=self.registry)

        self._counters = {
            OutcomeKind.SUCCESS: counter("sqsq_task_succeeded", "Tasks that succeeded."),
            OutcomeKind.FAILURE: counter("sqsq_task_failed", "Tasks that failed for good."),
            OutcomeKind.RETRY: counter("sqsq_task_retried", "Task runs that will be retried."),
            OutcomeKind.DEAD_LETTER: counter(
                "sqsq_task_dead_lettered", "Messages that could not be run (sent to the DLQ)."
            ),
            OutcomeKind.REVOKED: counter("sqsq_task_revoked", "Tasks revoked or expired."),
        }

        def histogram(name: str, what: str) -> Any:
            return prom.Histogram(name, what, labels, registry=self.registry, buckets=BUCKETS_S)

        self._runtime = histogram("sqsq_task_runtime", "Run time of a task's function, seconds.")
        self._latency = histogram(
            "sqsq_task_queue_latency",
            "From a message's SentTimestamp to its receive by the worker, seconds.",
        )
        active = prom.Gauge(
            "sqsq_worker_tasks_active", "Tasks running now.", ("worker",), registry=self.registry
        )
        active.labels(worker_id).set_function(busy)
        self._prom = prom
        self._server: Any = None

    def start(self) -> None:
        try:
            self._server, _ = self._prom.start_http_server(
                self.port, self.address, registry=self.registry
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {self.address}:{self.port}: {exc}"
            ) from None
        self.port = self._server.server_port
        logger.info(
            "Prometheus metrics on http://%s:%d/metrics",
            self.address,
            self.port,
            extra={"port": self.port},
        )

    def observe(self, outcomes: Iterable[Outcome]) -> None:
        now_s, now_monotonic = time.time(), time.monotonic()
        for outcome in outcomes:
            labels = (task_of(outcome, self.tasks), outcome.delivery.queue, self.worker_id)
            counter = self._counters.get(outcome.kind)
            if counter is not None:
                counter.labels(*labels).inc()
            if outcome.duration_s:
                self._runtime.labels(*labels).observe(outcome.duration_s)
            if outcome.delivery.sent_at is not None:
                at = reached_s(outcome, now_s, now_monotonic)
                self._latency.labels(*labels).observe(
                    max(0.0, at - outcome.delivery.sent_at.timestamp())
                )

    def flush(self) -> None:
        """Nothing is pending: a scrape reads the counters as they are."""

    async def close(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)
            with contextlib.suppress(OSError):
                self._server.server_close()
            self._server = None


def open_metrics(
    kind: str,
    *,
    app_name: str,
    worker_id: str,
    tasks: Container[str],
    interval_s: float,
    port: int,
    address: str,
    busy: Callable[[], int],
) -> WorkerMetrics | None:
    """The sink for ``worker_metrics`` = ``kind`` (None for ``"off"``), not started.

    Raises:
        MissingExtra: ``"prometheus"`` without ``prometheus-client``.
        ConfigurationError: an unknown ``kind``.
    """
    if kind == "off":
        return None
    if kind == "emf":
        return EmfMetrics(app_name, worker_id, tasks, interval_s)
    if kind == "prometheus":
        return PrometheusMetrics(worker_id, tasks, port, address, busy)
    raise ConfigurationError(f"worker metrics must be 'off', 'emf' or 'prometheus', got {kind!r}")
