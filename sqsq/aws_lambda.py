"""The Lambda transport: SQS event → deliveries → execution core → batchItemFailures.

For an SQS event source mapping with ``FunctionResponseTypes:
[ReportBatchItemFailures]`` ("Handling errors for an SQS event source in
Lambda"). Lambda deletes every record *not* listed in ``batchItemFailures``, so
a record is listed exactly when SQS must deliver it again:

- its outcome could not be stored (DynamoDB or the DLQ copy failed), or a step after
  storing failed (its follow-ups, its Step Functions report): its redelivery finds
  the stored outcome and makes only the missing steps (``Executor.resume``), and
  on its last receive (the queue's maxReceiveCount) a step that fails again is given
  up on: the message goes to the DLQ with the step's reason (``followup_failed``,
  ``task_token_report_failed``), never run again;
- a retry policy sends it back (its visibility is set to the backoff first), or
  its idempotency key is in progress elsewhere;
- it was not started because the invocation's remaining time
  (``context.get_remaining_time_in_millis()``) was under its task's ``time_limit``
  plus the app's ``lambda_safety_margin_s`` (what runs finishes, and the margin is
  left to store outcomes and delete messages; ``sqsq infra`` derives the function's
  timeout and the margin together, see ``sqsq.deploy.lambda_timing``);
- on a FIFO queue, it comes after a listed record of the same message group.

On a FIFO queue a deferral (idempotency key held elsewhere, DynamoDB unreachable)
uses a receive — there is no per-message delay, and Lambda cannot stop its event
source receiving as a worker pauses — so a record deferred on the last receive its
queue's maxReceiveCount allows is a dead letter ``deferrals_exhausted`` instead
(``DeferralsExhausted``): SQS would move it next without a reason.

A record whose outcome is final — SUCCESS, a FAILURE recorded and copied to the
DLQ, a dead letter, REVOKED — is not listed, so Lambda deletes it. A record whose
task's ``time_limit`` plus the margin is longer than the function's whole timeout
(the remaining time the invocation began with) would never start: it is a dead letter (``does_not_fit_function``), not
returned until SQS moves it to the DLQ without a reason. A function whose timeout
leaves no room at all past the margin refuses the invocation: it logs why once
per execution environment and raises :class:`~sqsq.errors.ConfigurationError`
(Lambda counts an error; every record comes back).

Outcomes are stored as they finish (see ``_Batch``): in batches of 25 writes, by
a thread once the oldest has waited ``STORE_EVERY_S`` (while the next task runs),
and before a task starts when the remaining time is low; final outcomes are deleted
then too (on FIFO queues as well: always the head of their group), so an invocation
killed at its timeout does not run finished work again. On a
FIFO queue a dead letter is stored and copied before its group goes on; if that
fails, it and the rest of its group are listed.

While the batch runs, a heartbeat thread extends the visibility of every record
the invocation holds — waiting, running, or finished but not yet settled
(ChangeMessageVisibilityBatch, see ``lease.py``) — so none reappears meanwhile;
a record whose body carries a Step Functions task token also gets a
SendTaskHeartbeat then (``task_tokens.py``), and its final outcome is reported
with SendTaskSuccess / SendTaskFailure as it is stored.
At the end it writes the batch's metrics in CloudWatch's Embedded Metric Format
on stdout (``metrics.py``). ``time_limit`` is enforced for ``async def`` tasks; for sync tasks the
function's own Lambda timeout is the hard limit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from . import limits, logs, metrics
from .calls import run
from .delivery import Delivery
from .errors import (
    ConfigurationError,
    DeferralsExhausted,
    DoesNotFitFunction,
    InvalidKey,
    SqsqError,
)
from .execution import Executor
from .idempotency import Claim
from .lease import LeaseTable
from .metrics import emit as emit_metrics
from .outcome import RETURNED_KINDS, Outcome, OutcomeKind, Prepared, give_up
from .retry import error_code, is_permanent
from .settle import completed_claim, missing_step, plan_writes, release, store
from .sqs import chunks, queue_name_from_arn, redriven
from .task_tokens import Heartbeats

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)


def _remaining_ms(context: Any) -> float | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return float(getter()) if callable(getter) else None


class _Environment:
    """What one execution environment (one cold start) has logged already."""

    cold_start = True
    refused_logged = False
    unfit_logged: set[str] = set()  # noqa: RUF012 - one set per process, on purpose


def _check_room(app: App, remaining_ms: float | None, margin_ms: float, records: int) -> None:
    """Refuse an invocation that began with no time past the safety margin (the
    function's timeout is too short for its margin): log it once per environment."""
    if remaining_ms is None or remaining_ms > margin_ms:
        return
    message = (
        f"app {app.name}: this invocation began with {remaining_ms:.0f} ms left and the "
        f"handler keeps a safety margin of {margin_ms:.0f} ms (lambda_safety_margin_s), so "
        f"no record can start: raise the function's Timeout (or lower SQSQ_LAMBDA_SAFETY_"
        f"MARGIN_S); `sqsq infra --target lambda` derives both from the tasks' time_limit"
    )
    if not _Environment.refused_logged:
        _Environment.refused_logged = True
        logger.error("%s; %d records returned to the queue", message, records)
    raise ConfigurationError(message)


def _never_fits(
    item: Prepared, margin_ms: float, function_ms: float | None
) -> DoesNotFitFunction | None:
    """A dead letter for a record whose task cannot run in this function at all:
    its ``time_limit`` plus the margin is over ``function_ms``, the time this
    invocation began with (every invocation begins with about the function's
    timeout: "Configure Lambda function timeout")."""
    limit_s = item.task.time_limit_s
    if not limit_s or function_ms is None:
        return None
    need_ms = limit_s * 1000 + margin_ms
    if need_ms <= function_ms:
        return None
    if item.task.name not in _Environment.unfit_logged:
        _Environment.unfit_logged.add(item.task.name)
        logger.error(
            "task %s (time_limit %g s) cannot run in this function: invocations begin with "
            "%.0f ms and the safety margin is %.0f ms; its messages are dead letters",
            item.task.name,
            limit_s,
            function_ms,
            margin_ms,
        )
    return DoesNotFitFunction(
        f"{item.task.name}: time_limit {limit_s:g} s + safety margin {margin_ms / 1000:g} s "
        f"is longer than this Lambda function's timeout (~{function_ms / 1000:.1f} s): serve "
        "its queue with `sqsq worker`, or raise the function's Timeout"
    )


class _Heartbeat(threading.Thread):
    """Extends the leases of the invocation's unfinished records (a thread: the
    handler's own thread is busy running tasks)."""

    def __init__(self, app: App, leases: LeaseTable) -> None:
        super().__init__(name="sqsq-lambda-heartbeat", daemon=True)
        self.app = app
        self.leases = leases
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.context: Any = None

    def run(self) -> None:
        client = self.app.clients.sync("sqs")
        heartbeats = Heartbeats()
        while not self.stopped.wait(self.leases.tick_s()):
            now = time.monotonic()
            with self.lock:
                due = self.leases.due(now)
                by_url = self.leases.visibility_entries(due, now)
            ends = [lease.ends_monotonic for lease in due]
            for url, entries in by_url.items():
                for chunk in chunks(entries):
                    try:
                        response = client.change_message_visibility_batch(
                            QueueUrl=url, Entries=list(chunk)
                        )
                    except Exception as exc:
                        logger.warning("extending %d leases failed: %s", len(chunk), exc)
                        continue
                    LeaseTable.extended(due, list(chunk), response, now)
            # Step Functions: SendTaskHeartbeat for extended messages with a task token
            extended = [
                lease.delivery
                for lease, end in zip(due, ends, strict=True)
                if lease.ends_monotonic != end
            ]
            heartbeats.start(self.app, extended)
            for lease in due:  # the idempotency claim lives as long as the message's lease
                if lease.idempotency_pk and lease.owner:
                    try:
                        self.app.idempotency.extend(
                            lease.idempotency_pk, lease.owner, lease.lease_s
                        )
                    except Exception as exc:
                        logger.warning(
                            "extending the idempotency lease of %s failed: %s", lease.owner, exc
                        )

    def finish(self, delivery: Delivery) -> None:
        with self.lock:
            self.leases.drop([delivery])


def _deliveries(app: App, records: list[Any]) -> list[Delivery]:
    """One delivery per record, never raising (see ``Delivery.from_lambda_record``).
    A record whose ``eventSourceARN`` is not an SQS queue ARN is taken as from the
    app's default queue."""
    deliveries = []
    for record in records:
        arn = record.get("eventSourceARN") if isinstance(record, dict) else None
        try:
            owner, physical = queue_name_from_arn(arn if isinstance(arn, str) else "")
        except ValueError:
            owner, physical = "", app.queue_name(app.settings.default_queue)
        delivery = Delivery.from_lambda_record(record, app.logical_queue(physical))
        try:
            delivery.queue_url = app.directory.url(physical, owner or None)
        except Exception as exc:  # the record can still run; leases/retries need the URL
            logger.warning("cannot resolve the URL of %s: %s", physical, exc)
        deliveries.append(delivery)
    return deliveries


def _sqs_records(event: Any) -> list[Any]:
    """The records of an SQS event; a clear error for anything else (a miswired
    trigger must fail loudly, not report an empty ``batchItemFailures``).

    An SQS event is an object whose ``Records`` is a list holding at least one
    record with ``eventSource: "aws:sqs"`` (or no record). Its other elements —
    not objects, without ``eventSource``, or from another source — are malformed
    records of an SQS event: each is dead-lettered on its own, never the batch."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or (
        records
        and not any(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    ):
        keys = sorted(event)[:5] if isinstance(event, dict) else type(event).__name__
        raise ConfigurationError(
            "app.lambda_handler needs an SQS event ({'Records': [{'eventSource': "
            f"'aws:sqs', ...}}]}}), got {keys}: is the function's trigger an SQS event "
            "source mapping?"
        )
    return records


def _prepare(
    app: App, executor: Executor, deliveries: list[Delivery], traces: dict[str, str]
) -> list[Prepared | Outcome]:
    """Each delivery prepared; if signing is on and its key cannot be read (once per
    invocation until it is, then cached), none is: each is sent on unchanged
    (``Executor.key_unavailable``), not dead-lettered and not listed as a failure."""
    unreadable: bool | None = None  # the key cannot be read: is that permanent?
    if app.settings.signing_key:
        try:
            app.signing_key  # noqa: B018 - resolved (and cached) here, once
        except Exception as exc:
            permanent = unreadable = is_permanent(exc)
            logger.error(
                "cannot read the signing key (%s: %s): %d messages sent on unchecked%s",
                type(exc).__name__,
                exc,
                len(deliveries),
                "; fix Settings.signing_key or the function's IAM" if permanent else "",
            )
    prepared: list[Prepared | Outcome] = []
    for delivery in deliveries:
        _record_fields(delivery, traces)
        if unreadable is not None and not delivery.malformed:
            prepared.append(executor.key_unavailable(delivery, unreadable))
        else:
            prepared.append(executor.prepare_isolated(delivery))
    logs.record_fields()
    return prepared


def invoke(app: App, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """:func:`handle` with the invocation's logging fields (``sqsq.logs``) and
    ``ColdStart`` metric: what ``App.lambda_handler`` calls."""
    cold_start, _Environment.cold_start = _Environment.cold_start, False
    if cold_start:
        try:
            metrics.write([metrics.cold_start(app.name)])
        except Exception as exc:
            logger.warning("writing the ColdStart metric failed: %s", exc)
    logs.attach()
    try:
        with logs.invocation_fields(**_log_fields(context, cold_start)), metrics.invocation():
            return handle(app, event, context)
    finally:
        logs.record_fields()  # no record's fields outlive the invocation


def _log_fields(context: Any, cold_start: bool) -> dict[str, Any]:
    """The invocation's log fields, in Powertools Logger's key names."""
    return {
        "function_request_id": getattr(context, "aws_request_id", None),
        "function_name": getattr(context, "function_name", None),
        "function_arn": getattr(context, "invoked_function_arn", None),
        "function_memory_size": getattr(context, "memory_limit_in_mb", None),
        "cold_start": cold_start,
        "xray_trace_id": logs.xray_trace_id(os.environ.get("_X_AMZN_TRACE_ID")),
    }


def _record_fields(
    delivery: Delivery, traces: dict[str, str], item: Prepared | Outcome | None = None
) -> None:
    """The log fields of the record being handled: its message id, its X-Ray trace
    (its ``AWSTraceHeader``, else the invocation's) and its task once known."""
    task_id = task = None
    metrics.running(delivery.queue, item.task.name if isinstance(item, Prepared) else None)
    if isinstance(item, Prepared):
        task_id, task = item.envelope.task_id, item.envelope.task
    elif isinstance(item, Outcome):
        task_id, task = item.task_id, item.record.task if item.record else None
    logs.record_fields(
        message_id=delivery.message_id,
        xray_trace_id=logs.xray_trace_id(traces.get(delivery.message_id)),
        task_id=task_id,
        task=task,
    )


def _metric_key(item: Prepared | Outcome) -> tuple[str, str]:
    """The (queue, task) of a record's metrics (``metrics.task_of`` checks the name)."""
    if isinstance(item, Prepared):
        return item.delivery.queue, item.task.name
    return item.delivery.queue, item.record.task if item.record and item.record.task else ""


def _trace_headers(records: list[Any]) -> dict[str, str]:
    """Each record's ``attributes.AWSTraceHeader`` by messageId, where it has one."""
    traces = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("attributes"), dict):
            header = record["attributes"].get("AWSTraceHeader")
            if isinstance(header, str) and isinstance(record.get("messageId"), str):
                traces[record["messageId"]] = header
    return traces


def handle(app: App, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run one SQS event's records; see the module docstring.

    Args:
        app: the App.
        event: the SQS event (``{"Records": [...]}``).
        context: the Lambda context (``get_remaining_time_in_millis``,
            ``aws_request_id``); None when called outside Lambda.

    Returns:
        ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}``.

    A malformed record (a field it needs is missing or of the wrong type, see
    ``Delivery.from_lambda_record``) is dead-lettered on its own, reason
    ``undecodable_message``; its neighbours run as usual. A record without a usable
    ``messageId`` is dead-lettered and not listed (Lambda deletes it by its own id);
    only if that dead letter cannot be stored (or is not started for lack of time)
    does the whole batch fail, since
    Lambda treats a ``batchItemFailures`` entry it cannot match as a failure of the
    whole batch ("Reporting batch item failures", AWS Lambda Developer Guide).

    Raises:
        ConfigurationError: ``event`` is not an SQS event (see ``_sqs_records``).
        SqsqError: a record without a ``messageId`` was not dead-lettered.
    """
    started_s = time.time()
    records = _sqs_records(event)
    request_id = getattr(context, "aws_request_id", None) or str(os.getpid())
    executor = Executor(app, worker_id=f"lambda:{request_id}")
    margin_ms = app.settings.lambda_safety_margin_s * 1000
    function_ms = _remaining_ms(context)  # about the function's timeout
    _check_room(app, function_ms, margin_ms, len(records))
    # bodies in S3 (a claim check's pointer, sqsq.payloads) fetched; none: no request
    deliveries = run(app.claim_check().resolving(_deliveries(app, records)), app.clients)

    leases = LeaseTable()
    for delivery in deliveries:
        if delivery.queue_url:
            try:
                visibility = app.directory.settings(
                    app.queue_name(delivery.queue)
                ).visibility_timeout_s
            except Exception:
                visibility = app.settings.visibility_timeout_s
            leases.add(delivery, visibility, visibility)
    heartbeat = _Heartbeat(app, leases)
    heartbeat.context = context  # the remaining time bounds a concurrency slot's lease
    heartbeat.start()

    traces = _trace_headers(records)
    prepared = _prepare(app, executor, deliveries, traces)

    batch = _Batch(app, heartbeat, margin_ms)
    batch.start()
    not_started: set[str] = set()
    blocked_groups: set[tuple[str, str]] = set()
    try:
        for item in prepared:
            delivery = item.delivery
            _record_fields(delivery, traces, item)
            group = (
                (delivery.queue, delivery.message_group_id) if delivery.message_group_id else None
            )
            if isinstance(item, Prepared) and (unfit := _never_fits(item, margin_ms, function_ms)):
                item = executor.dead_letter(delivery, unfit, item.envelope)
            remaining_ms = _remaining_ms(context)
            need_ms = margin_ms + _time_limit_ms(item)
            if group in blocked_groups or (remaining_ms is not None and remaining_ms < need_ms):
                if remaining_ms is not None and remaining_ms < need_ms:
                    _log_not_started(item, remaining_ms, need_ms)
                not_started.add(delivery.message_id)
                if group:
                    blocked_groups.add(group)
                heartbeat.finish(delivery)
                continue
            batch.flush_if_due(remaining_ms)  # before a task that might outlive the invocation
            try:
                outcome = _run(app, executor, item, heartbeat, batch)
            except Exception as exc:  # sqsq failed on this one record: its own dead letter
                outcome = executor.internal(
                    delivery, exc, "running", item if isinstance(item, Prepared) else None
                )
            if group and outcome.kind == OutcomeKind.DEFER and batch.last_receive(outcome):
                outcome = _deferrals_exhausted(executor, item, outcome)
            batch.add(outcome)
            if group and outcome.kind in RETURNED_KINDS:
                blocked_groups.add(group)
            elif group and outcome.kind in (OutcomeKind.FAILURE, OutcomeKind.DEAD_LETTER):
                # FIFO: the group goes on only once its dead letter is stored and copied;
                # if that fails, the record and the rest of its group are listed
                batch.flush()
                if outcome in batch.kept:
                    blocked_groups.add(group)
    finally:
        batch.stopped.set()
        batch.join(timeout=30)
        batch.flush()
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)

    listed = {o.delivery.message_id for o in batch.kept}
    listed |= {o.delivery.message_id for o in batch.done if o.kind in RETURNED_KINDS}
    listed |= not_started
    try:  # EMF lines on stdout (see metrics.py); never fails the batch
        left = [_metric_key(i) for i in prepared if i.delivery.message_id in not_started]
        emit_metrics(
            app.name, [*batch.done, *batch.kept], started_s, tasks=app.tasks, not_started=left
        )
    except Exception as exc:
        logger.warning("writing the EMF metrics failed: %s", exc)
    unnamed = [d.message_id for d in deliveries if d.message_id in listed and not d.identified]
    if unnamed:  # Lambda fails the whole batch for an unknown itemIdentifier anyway
        raise SqsqError(
            f"{len(unnamed)} records without a messageId were not dead-lettered (their DLQ "
            "copy or result failed, or no time was left to start them); batchItemFailures "
            "cannot name them, so the whole batch fails and SQS delivers it again"
        )
    return {
        "batchItemFailures": [
            {"itemIdentifier": d.message_id} for d in deliveries if d.message_id in listed
        ]
    }


#: An outcome waits at most about this long to be stored, seconds (also while the
#: next task runs): a Lambda killed at its timeout re-runs at most this much
#: finished work.
STORE_EVERY_S = 1.0


class _Batch(threading.Thread):
    """Outcomes of one invocation, stored as they finish: in batches (25 writes),
    by this thread once the oldest has waited :data:`STORE_EVERY_S` (while the
    handler's thread runs the next task), or once the remaining time is under
    twice the safety margin. Final outcomes are then deleted at once (an SQS event
    source's execution role has sqs:DeleteMessage), so a timed-out invocation does
    not run them again. On a FIFO queue too: records run in their group's order,
    and a group stops at its first record that is not final (returned, or its dead
    letter not copied), so what is deleted early is a prefix of its group and what
    is left comes back in order."""

    def __init__(self, app: App, heartbeat: _Heartbeat, margin_ms: float) -> None:
        super().__init__(name="sqsq-lambda-store", daemon=True)
        self.app = app
        self.heartbeat = heartbeat
        self.margin_ms = margin_ms
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.pending: list[Outcome] = []
        self.writes = 0
        self.first = 0.0
        self.done: list[Outcome] = []
        self.kept: list[Outcome] = []
        self.held: dict[str, Outcome] = {}  # idempotency key → the outcome of its run here

    def run(self) -> None:
        while not self.stopped.wait(STORE_EVERY_S / 4):
            if self.pending and time.monotonic() - self.first >= STORE_EVERY_S:
                try:
                    self.flush()
                except Exception:  # a bug: the handler's own final flush tries again
                    logger.exception("storing outcomes in the background failed")

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            if not self.pending:
                self.first = time.monotonic()
            self.pending.append(outcome)
            self.writes += len(plan_writes([outcome]))
            if outcome.idempotency_pk is not None:
                self.held[outcome.idempotency_pk] = outcome

    def held_by(self, pk: str, retake: bool = False) -> Claim | None:
        """The claim a record with key ``pk`` would find once the run of this batch
        that claimed it is stored — a duplicate in the same batch resolves to it now
        (records run one after another, so that run has ended), instead of finding the
        key IN_PROGRESS and being sent on for the lease's length. None: no run of this
        batch holds ``pk``, or its run freed the key (a retry; or a failure, for a
        redriven copy that retakes it): its outcome is stored first, so the
        caller's claim sees the key as it now is."""
        outcome = self.held.get(pk)
        if outcome is None:
            return None
        claim = completed_claim(outcome)
        if claim is None or (retake and claim.failed is not None):
            del self.held[pk]
            self.flush()
            return None
        return claim

    def flush_if_due(self, remaining_ms: float | None) -> None:
        low = remaining_ms is not None and remaining_ms < 2 * self.margin_ms
        if self.pending and (low or self.writes >= limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS):
            self.flush()

    def flush(self) -> None:
        with self.lock:
            outcomes, self.pending, self.writes = self.pending, [], 0
            if not outcomes:
                return
            kept = store(self.app, outcomes)
            last = [o for o in kept if missing_step(o) and self.last_receive(o)]
            if last:  # the step's budget is spent: the outcome stands, the message to the DLQ
                for outcome in last:
                    step = missing_step(outcome)
                    assert step is not None
                    give_up(
                        outcome,
                        step,
                        self.app.queue_name(outcome.delivery.queue),
                        f"receive {outcome.delivery.receive_count}, the last its queue allows",
                    )
                kept = [o for o in kept if o not in last] + store(self.app, last)
            stored = [o for o in outcomes if o not in kept]
            early = [o for o in stored if o.kind in RETURNED_KINDS or o.delivery.queue_url]
            if early:  # a failed delete is left to Lambda; a failed visibility change is listed
                release(self.app, early, delete=True)
            for outcome in stored:
                self.heartbeat.finish(outcome.delivery)
            self.kept += kept
            self.done += stored

    def last_receive(self, outcome: Outcome) -> bool:
        """Whether SQS will not deliver this message again: its receive count has
        reached the queue's maxReceiveCount (the next receive moves it to the DLQ
        without a reason)."""
        try:
            name = self.app.queue_name(outcome.delivery.queue)
            limit = self.app.directory.settings(name).max_receive_count
        except Exception:  # not known: the app's own setting (what resources create)
            limit = self.app.settings.max_receive_count
        return limit is not None and outcome.delivery.receive_count >= limit


def _log_not_started(item: Prepared | Outcome, remaining_ms: float, need_ms: float) -> None:
    """Say what was not done to a record left for lack of time: it comes back whole
    (listed), so a dead letter decided for it is not stored or copied yet."""
    message_id = item.delivery.message_id
    if isinstance(item, Prepared):
        logger.warning(
            "not starting task %s[%s] (message %s): %.0f ms left, its time_limit and the "
            "safety margin need %.0f ms; the message comes back",
            item.envelope.task,
            item.envelope.task_id,
            message_id,
            remaining_ms,
            need_ms,
        )
        return
    doing = "dead-lettering" if item.kind is OutcomeKind.DEAD_LETTER else "settling"
    reason = f" ({item.note.reason})" if item.note is not None else ""
    logger.warning(
        "not %s message %s%s: %.0f ms left, under the safety margin of %.0f ms; the "
        "message comes back",
        doing,
        message_id,
        reason,
        remaining_ms,
        need_ms,
    )


def _deferrals_exhausted(
    executor: Executor, item: Prepared | Outcome, deferred: Outcome
) -> Outcome:
    """A FIFO record deferred on its last receive: a dead letter with the reason
    (``DeferralsExhausted``) instead of SQS's move without one."""
    envelope = item.envelope if isinstance(item, Prepared) else None
    error = DeferralsExhausted(
        f"message {deferred.delivery.message_id} was deferred on receive "
        f"{deferred.delivery.receive_count}, the last its FIFO queue allows (its idempotency "
        "key held elsewhere, or DynamoDB unreachable): not run; redrive it"
    )
    return executor.dead_letter(deferred.delivery, error, envelope)


def _time_limit_ms(item: Prepared | Outcome) -> float:
    """The time a record's task may take, milliseconds (0: none declared, or no task)."""
    if isinstance(item, Prepared) and item.task.time_limit_s:
        return item.task.time_limit_s * 1000
    return 0.0


def _run(
    app: App, executor: Executor, item: Prepared | Outcome, heartbeat: _Heartbeat, batch: _Batch
) -> Outcome:
    if isinstance(item, Outcome):
        return item
    if item.delivery.receive_count > 1:  # run before? (Executor.resume; the worker's too)
        try:
            record = app.results.get_result(item.envelope.task_id)
        except Exception as exc:
            logger.warning("reading the result of %s failed (%s)", item.envelope.task_id, exc)
            return executor.defer(item, 30.0, "its stored outcome cannot be read")
        resumed = executor.resume(item, record)
        if resumed is not None:
            return resumed
    if app.settings.check_revocations and app.revocations.check(item.envelope.task_id):
        return executor.revoked(item)
    flow = app.flow_control()  # limits: not now ─► put back (FIFO: returned, a receive)
    slot = None
    if flow is not None:
        remaining_s = max(1.0, (_remaining_ms(heartbeat.context) or 900_000) / 1000)
        try:
            entry = run(flow.entering(item, remaining_s), app.clients)
        except Exception as exc:
            logger.warning("limits of %s cannot be checked (%s)", item.envelope.task_id, exc)
            return executor.defer(item, 30.0, "its limits cannot be checked")
        if entry.hold is not None:
            return executor.defer(item, entry.hold.delay_s, entry.hold.why, routine=True)
        slot = entry.slot  # lives as long as the invocation can: no renewal
    try:
        return _claim_and_call(app, executor, item, heartbeat, batch)
    finally:
        if slot is not None:
            slot.release()


def _claim_and_call(
    app: App, executor: Executor, item: Prepared, heartbeat: _Heartbeat, batch: _Batch
) -> Outcome:
    if item.idempotency_pk is not None:
        retake = redriven(item.delivery.message_attributes)
        held = batch.held_by(item.idempotency_pk, retake)
        if held is not None:  # its key's run is in this batch and ended: resolve to it
            return executor.duplicate(item, held)
        lease = heartbeat.leases.get(item.delivery)
        lease_s = lease.lease_s if lease else app.settings.visibility_timeout_s
        try:
            claim = app.idempotency.claim(
                item.idempotency_pk,
                item.envelope.task_id,
                lease_s,
                item.task.idempotency_ttl_s,
                retake=retake,
                payload=item.payload_hash,
            )
        except Exception as exc:
            if error_code(exc) == "ValidationException":  # no retry can fix it
                error = InvalidKey(f"{item.task.name}: DynamoDB refused the idempotency key: {exc}")
                return executor.dead_letter(item.delivery, error, item.envelope)
            logger.warning("idempotency claim for %s failed (%s)", item.envelope.task_id, exc)
            return executor.defer(item, 30.0, "its idempotency key cannot be claimed")
        if claim.status == "COMPLETED":
            return executor.duplicate(item, claim)
        if claim.status == "IN_PROGRESS":
            return executor.defer(item, claim.lease_remaining_s)
        item.claimed = True
        if lease is not None:
            with heartbeat.lock:
                lease.idempotency_pk, lease.owner = item.idempotency_pk, item.envelope.task_id
    _track_started(app, executor, item)
    return executor.call(item, contain_interrupt=True)


def _track_started(app: App, executor: Executor, item: Prepared) -> None:
    """Write STARTED (``track_started``) before the body runs: one conditional PutItem
    (the records of an invocation run one after another, so it waits for no other)."""
    record = executor.started(item)
    if record is None:
        return
    try:
        app.results.start(record)
    except Exception as exc:  # informative only: the task still runs
        logger.warning("task %s: STARTED not written (%s)", record.task_id, exc)
