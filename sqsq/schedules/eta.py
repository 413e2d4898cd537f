"""Countdowns and ETAs longer than SQS's 900 s DelaySeconds.

Two ways, chosen by the ``long_eta`` setting (``SQSQ_LONG_ETA``):

``"scheduler"`` (default)
    One one-time EventBridge schedule per task — ``at(<due time>)`` in UTC,
    ActionAfterCompletion DELETE — in the group ``<app>-sqsq-eta``, whose SQS
    target sends the task's envelope (``eta`` = the due time) to its queue at the
    due time. Nothing is held in a worker's memory. ``revoke()`` of the returned
    result deletes the schedule; ``expires`` is in the envelope and honoured by
    the worker. Where Scheduler does not fire (moto, LocalStack), ``sqsq schedule
    serve`` / ``sqsq dev`` fire these schedules (:func:`fire_due`).

``"hop"``
    The message is sent with the largest delay (``limits.SQS_MAX_DELAY_S``) and
    the due time as its ``eta``; a worker that receives it early sends it on
    with the remaining delay (``OutcomeKind.RESEND``) without running it and
    without counting an attempt.

Neither is open to FIFO queues: SQS has no per-message delay there, and
Scheduler's FIFO targets need content-based deduplication (sqsq's FIFO queues use
explicit deduplication ids).

The producer calls :func:`send_later` only when the delay is over 900 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import limits
from ..calls import run
from ..envelope import encode
from ..errors import ConfigurationError, EnqueueError, MessageTooLarge
from ..result import AsyncResult
from ..signing import signature_attribute, signed_body
from ..sqs import dead_letter_name, is_fifo
from . import scheduler

if TYPE_CHECKING:
    from ..app import App
    from ..producer import OutgoingMessage

logger = logging.getLogger(__name__)

_NAME_OK = re.compile(r"^[0-9a-zA-Z_.-]{1,60}$")


def group_name(app: App) -> str:
    """The schedule group of long countdowns: ``<app>-sqsq-eta`` (apart from the
    periodic tasks' group, so ``schedule sync`` never deletes them)."""
    return f"{app.name}-sqsq-eta"


def schedule_name(task_id: str) -> str:
    """The one-time schedule of task ``task_id``: ``eta-<task id>`` (hashed when the
    id does not fit Scheduler's 64-character name rule)."""
    if _NAME_OK.match(task_id):
        return f"eta-{task_id}"
    return "eta-" + hashlib.sha256(task_id.encode()).hexdigest()[:56]


def due_time(countdown: float | timedelta | None, eta: datetime | None) -> datetime | None:
    """The due time when the delay is over ``limits.SQS_MAX_DELAY_S`` (900 s), else None.

    Raises:
        EnqueueError: both given, a naive eta, or a bad countdown.
    """
    if countdown is not None and eta is not None:
        raise EnqueueError("pass countdown or eta, not both")
    now = datetime.now(UTC)
    if eta is not None:
        if eta.tzinfo is None:
            raise EnqueueError("eta must be a timezone-aware datetime (e.g. tzinfo=UTC)")
        return eta if (eta - now).total_seconds() > limits.SQS_MAX_DELAY_S else None
    if countdown is None:
        return None
    seconds = countdown.total_seconds() if isinstance(countdown, timedelta) else countdown
    if not math.isfinite(seconds):
        raise EnqueueError(f"countdown must be a finite number of seconds >= 0, got {seconds}")
    return now + timedelta(seconds=seconds) if seconds > limits.SQS_MAX_DELAY_S else None


class ScheduledResult(AsyncResult):
    """The result of a task sent by a one-time schedule: ``revoke()`` also deletes
    the schedule (the revocation alone already keeps a worker from running it)."""

    def __init__(self, task_id: str, app: App) -> None:
        super().__init__(task_id, app.results)
        self._app = app

    def revoke(self, ttl: float = limits.SQS_MAX_RETENTION_S) -> None:
        super().revoke(ttl)
        cancel(self._app, self.id)


def cancel(app: App, task_id: str) -> bool:
    """Delete the one-time schedule of ``task_id``; False if there is none (fired,
    or never made)."""
    client = app.clients.sync("scheduler")
    try:
        client.delete_schedule(GroupName=group_name(app), Name=schedule_name(task_id))
    except client.exceptions.ResourceNotFoundException:
        return False
    return True


def role_arn(app: App) -> str:
    """The role Scheduler assumes: the ``scheduler_role_arn`` setting, else the role
    ``sqsq schedule sync`` manages (``<app>-sqsq-scheduler``)."""
    return app.settings.scheduler_role_arn or scheduler.Arns(app).role(scheduler.role_name(app))


def at_schedule(app: App, message: OutgoingMessage, due: datetime) -> dict[str, Any]:
    """The CreateSchedule arguments that send ``message`` at ``due``."""
    arns = scheduler.Arns(app)
    target: dict[str, Any] = {
        "Arn": arns.queue(message.queue_name),
        "RoleArn": role_arn(app),
        "Input": message.body,
        "DeadLetterConfig": {"Arn": arns.queue(dead_letter_name(message.queue_name))},
    }
    due = due.astimezone(UTC)
    return {
        "GroupName": group_name(app),
        "Name": schedule_name(message.task_id),
        "ScheduleExpression": f"at({due:%Y-%m-%dT%H:%M:%S})",
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "ActionAfterCompletion": "DELETE",
        "Description": f"sqsq {message.task_name} [{message.task_id}]",
        "Target": target,
    }


def target_input(app: App, message: OutgoingMessage, body: str, due: datetime) -> str:
    """The schedule's target Input for ``body``: the body itself, or over EventBridge
    Scheduler's Input limit (``limits.SCHEDULER_MAX_INPUT_BYTES``, 256 KB) the pointer
    to it in S3 when the app has a ``payload_bucket`` (``App.payloads``, one
    PutObject; see ``ClaimCheck.offloading_input``).

    Raises:
        MessageTooLarge: over the limit, and no ``payload_bucket``.
        EnqueueError: the wait is too long for the bucket's lifecycle rule, or the
            PutObject failed.
    """
    payloads = app.payloads
    if payloads is not None and payloads.bucket is not None:
        due_in_s = (due - datetime.now(UTC)).total_seconds()
        return run(payloads.offloading_input(message, body, due_in_s), app.clients)
    size = len(body.encode())
    if size > limits.SCHEDULER_MAX_INPUT_BYTES:
        raise MessageTooLarge(
            f"task {message.task_name} ({message.task_id}) was not scheduled: its body is "
            f"{size:,} bytes, over EventBridge Scheduler's target Input limit "
            f"SCHEDULER_MAX_INPUT_BYTES={limits.SCHEDULER_MAX_INPUT_BYTES}; set "
            "payload_bucket to send it through S3, or use long_eta='hop'"
        )
    return body


def send_later(app: App, message: OutgoingMessage, due: datetime) -> AsyncResult:
    """Send ``message`` (built without a delay) so that it arrives at ``due``.

    Raises:
        EnqueueError: a FIFO queue (see the module docstring); a body too large for
            the schedule (:func:`target_input`).
        ConfigurationError: the queue (hop mode) or the schedule group does not
            exist (``sqsq schedule sync`` creates it).
    """
    if is_fifo(message.queue_name):
        raise EnqueueError(
            f"{message.queue_name} is a FIFO queue: SQS has no per-message delay there, and "
            "Scheduler's FIFO targets need content-based deduplication; no countdown over "
            f"SQS_MAX_DELAY_S={limits.SQS_MAX_DELAY_S} on FIFO queues"
        )
    envelope = message.envelope.model_copy(update={"eta": due.astimezone(UTC)})
    body = encode(envelope)
    key = app.signing_key
    from ..producer import published, publishing, send_sync

    if app.settings.long_eta == "hop":
        attributes = signature_attribute(body, key) if key is not None else None
        hop = dataclasses.replace(
            message, body=body, delay_s=limits.SQS_MAX_DELAY_S, attributes=attributes
        )
        send_sync(app.clients, app.directory, [hop])
        return app.AsyncResult(message.task_id)
    if key is not None:  # Scheduler's SQS target sets no message attribute: in the body
        body = signed_body(body, key)
    body = target_input(app, message, body, due)
    held = dataclasses.replace(message, body=body, delay_s=0, attributes=None)
    client = app.clients.sync("scheduler")
    request = at_schedule(app, held, due)
    publishing([held])  # the publish signals: Scheduler's own send later has none
    try:
        client.create_schedule(**request)
    except client.exceptions.ResourceNotFoundException:
        raise ConfigurationError(
            f"schedule group {group_name(app)} does not exist: run `sqsq schedule sync` "
            "(it creates the group and the role of long countdowns)"
        ) from None
    published([held])
    logger.info(
        "task %s[%s] scheduled for %s (%s)",
        envelope.task,
        message.task_id,
        due.isoformat(),
        request["Name"],
        extra={"task_id": message.task_id},
    )
    return ScheduledResult(message.task_id, app)


def fire_due(app: App, now: datetime) -> list[Any]:
    """Fire the one-time schedules due by ``now`` and delete them, as Scheduler
    would (where it does not: ``schedule serve`` / ``sqsq dev`` call this)."""
    from .expressions import parse
    from .local import Fire

    client = app.clients.sync("scheduler")
    group = group_name(app)
    try:
        names = scheduler.existing_schedules(app, group)
    except client.exceptions.ResourceNotFoundException:
        return []
    fires: list[Fire] = []
    sqs = app.clients.sync("sqs")
    for name in names:
        try:
            have = client.get_schedule(GroupName=group, Name=name)
        except client.exceptions.ResourceNotFoundException:
            continue
        expression = parse(have["ScheduleExpression"])
        tz = have.get("ScheduleExpressionTimezone") or "UTC"
        when = expression.at_time.replace(tzinfo=UTC if tz == "UTC" else None)
        if when.tzinfo is None:
            from .expressions import zone_info

            when = when.replace(tzinfo=zone_info(tz))
        if expression.kind != "at" or when > now:
            continue
        target = have["Target"]
        queue = target["Arn"].rsplit(":", 1)[1]
        kwargs: dict[str, Any] = {
            "QueueUrl": app.directory.url(queue),
            "MessageBody": target["Input"],
        }
        if "SqsParameters" in target:
            kwargs["MessageGroupId"] = target["SqsParameters"]["MessageGroupId"]
            kwargs["MessageDeduplicationId"] = name
        sqs.send_message(**kwargs)
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_schedule(GroupName=group, Name=name)
        logger.info("fired one-time schedule %s (due %s)", name, when.isoformat())
        fires.append(Fire(name, when.astimezone(UTC), name.removeprefix("eta-")))
    return fires
