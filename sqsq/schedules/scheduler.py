"""EventBridge Scheduler: make the app's schedules on AWS match its periodic tasks.

Each :class:`~sqsq.schedules.declare.PeriodicTask` is one schedule in the app's
schedule group (:func:`group_name`)::

    schedule <name>  ── ScheduleExpression (+ Timezone, StartDate, EndDate, State,
                        FlexibleTimeWindow)
        Target  Arn            the task's SQS queue
                RoleArn        a role allowed only sqs:SendMessage to the app's queues
                Input          the envelope, with Scheduler's context attributes
                               (<aws.scheduler.scheduled-time>, …) in it
                RetryPolicy    MaximumRetryAttempts / MaximumEventAgeInSeconds
                DeadLetterConfig  the queue's own dead-letter queue (standard queues;
                               Scheduler takes no FIFO dead-letter queue)
                SqsParameters  MessageGroupId (FIFO queues, which need content-based
                               deduplication: ``resources create`` enables it there)

Each fire carries ``scheduled_at`` and the idempotency key
``schedule:<name>@<scheduled time>``, so Scheduler's retried invocations and
duplicate deliveries run the body once; its task id is the execution id (one per
invocation attempt). :func:`plan` reads what exists and returns the diff;
:func:`apply` carries it out, creating, updating and deleting schedules; a second
run finds nothing to do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..aws_errors import aws_boundary
from ..envelope import Envelope, dumps
from ..resources import Change
from ..sqs import dead_letter_name, is_fifo

if TYPE_CHECKING:
    from ..app import App
    from .declare import PeriodicTask

logger = logging.getLogger(__name__)

#: Scheduler's context attributes, substituted into a templated target's Input
#: ("Adding context attributes", EventBridge Scheduler User Guide).
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
EXECUTION_ID = "<aws.scheduler.execution-id>"
SCHEDULE_ARN = "<aws.scheduler.schedule-arn>"
ATTEMPT_NUMBER = "<aws.scheduler.attempt-number>"

#: The IAM role's trust principal and its one inline policy's name.
SCHEDULER_PRINCIPAL = "scheduler.amazonaws.com"
ROLE_POLICY = "sqsq-send-to-queues"
#: Message group of fires sent to a FIFO queue.
FIFO_GROUP = "sqsq-schedules"


def group_name(app: App) -> str:
    """The schedule group of the app's periodic tasks: ``<app>-sqsq``."""
    return f"{app.name}-sqsq"


def role_name(app: App) -> str:
    """The IAM role Scheduler assumes to send to the app's queues: ``<app>-sqsq-scheduler``."""
    return f"{app.name}-sqsq-scheduler"


def idempotency_key(name: str, scheduled_time: str) -> str:
    """The automatic idempotency key of one fire of schedule ``name``."""
    return f"schedule:{name}@{scheduled_time}"


def input_template(periodic: PeriodicTask, signing_key: bytes | None = None) -> str:
    """The envelope a fire sends, with Scheduler's context attributes in place of
    the id, the fire time and the idempotency key (see :func:`render`); with
    ``signing_key``, signed as a template (``signing.signed_body``: the HMAC covers
    the placeholders, which the verifier puts back)."""
    envelope = Envelope(
        task=periodic.task, args=periodic.args, kwargs=periodic.kwargs, queue=periodic.queue
    )
    fields = envelope.model_dump(mode="json", exclude_defaults=True, exclude={"version"})
    template = dumps(
        {
            "version": envelope.version,
            "id": EXECUTION_ID,
            **fields,
            "idempotency_key": idempotency_key(periodic.name, SCHEDULED_TIME),
            "scheduled_at": SCHEDULED_TIME,
            "headers": {
                "sqsq-schedule": periodic.name,
                "sqsq-schedule-arn": SCHEDULE_ARN,
                "sqsq-attempt": ATTEMPT_NUMBER,
            },
        }
    )
    if signing_key is None:
        return template
    from ..signing import signed_body

    return signed_body(template, signing_key, template=True)


def scheduled_time_text(scheduled_at: datetime) -> str:
    """``<aws.scheduler.scheduled-time>`` as Scheduler writes it: ISO-8601 UTC to the
    second, e.g. ``2022-03-22T18:59:43Z``."""
    return scheduled_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(
    template: str,
    *,
    scheduled_at: datetime,
    execution_id: str,
    schedule_arn: str,
    attempt: int = 1,
) -> str:
    """Substitute the context attributes as Scheduler does (used where sqsq fires
    a schedule itself: ``schedule serve``, ``schedule run``, ``sqsq dev``, and the
    test kit's :class:`sqsq.testing.scheduler.SimulatedScheduler`)."""
    return (
        template.replace(SCHEDULED_TIME, scheduled_time_text(scheduled_at))
        .replace(EXECUTION_ID, execution_id)
        .replace(SCHEDULE_ARN, schedule_arn)
        .replace(ATTEMPT_NUMBER, str(attempt))
    )


@dataclass
class Arns:
    """ARNs of the app's queues and role (the account comes from STS once)."""

    app: App
    _account: str | None = field(default=None, repr=False)

    @property
    def account(self) -> str:
        if self._account is None:
            identity = self.app.clients.sync("sts").get_caller_identity()
            self._account = str(identity["Account"])
        return self._account

    def queue(self, physical: str) -> str:
        return f"arn:aws:sqs:{self.app.clients.region()}:{self.account}:{physical}"

    def role(self, name: str) -> str:
        return f"arn:aws:iam::{self.account}:role/{name}"

    def schedule(self, group: str, name: str) -> str:
        return (
            f"arn:aws:scheduler:{self.app.clients.region()}:{self.account}:schedule/{group}/{name}"
        )


def definition(
    app: App, periodic: PeriodicTask, role_arn: str, arns: Arns, now: datetime | None = None
) -> dict[str, Any]:
    """The CreateSchedule / UpdateSchedule arguments of one periodic task (without
    Name and GroupName). A StartDate already past is left out: Scheduler refuses
    StartDates more than 5 minutes ago, and the schedule has started anyway."""
    now = now or datetime.now(UTC)
    physical = app.queue_name(periodic.queue)
    target: dict[str, Any] = {
        "Arn": arns.queue(physical),
        "RoleArn": role_arn,
        "Input": input_template(periodic, app.signing_key),
        "RetryPolicy": {
            "MaximumEventAgeInSeconds": periodic.max_event_age_s,
            "MaximumRetryAttempts": periodic.retry_attempts,
        },
    }
    if is_fifo(physical):
        # FIFO targets need content-based deduplication on the queue (resources create
        # enables it where a periodic task sends), and Scheduler takes no FIFO queue
        # as a dead-letter queue ("Configuring a schedule's dead-letter queue").
        target["SqsParameters"] = {"MessageGroupId": FIFO_GROUP}
    else:
        target["DeadLetterConfig"] = {"Arn": arns.queue(dead_letter_name(physical))}
    window: dict[str, Any] = {"Mode": "OFF"}
    if periodic.flexible_window_min:
        window = {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": periodic.flexible_window_min}
    result: dict[str, Any] = {
        "ScheduleExpression": periodic.expression.text,
        "ScheduleExpressionTimezone": periodic.timezone,
        "FlexibleTimeWindow": window,
        "State": "ENABLED" if periodic.enabled else "DISABLED",
        "Description": periodic.description or f"sqsq periodic task {periodic.task}",
        "Target": target,
    }
    if periodic.start is not None and periodic.start > now:
        result["StartDate"] = periodic.start
    if periodic.end is not None:
        result["EndDate"] = periodic.end
    return result


def _input(text: Any) -> Any:
    """A target's Input, parsed; one that is not JSON (made by hand, by another tool)
    stays its text, which never equals a parsed envelope: it differs, and is repaired."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return ("not JSON", str(text))


def _comparable(value: dict[str, Any]) -> dict[str, Any]:
    """The fields sqsq sets, normalised (dates to epoch seconds, Input parsed)."""
    target = value.get("Target") or {}
    out: dict[str, Any] = {
        "ScheduleExpression": value.get("ScheduleExpression"),
        "ScheduleExpressionTimezone": value.get("ScheduleExpressionTimezone") or "UTC",
        "FlexibleTimeWindow": value.get("FlexibleTimeWindow"),
        "State": value.get("State") or "ENABLED",
        "Description": value.get("Description") or "",
        "Target.Arn": target.get("Arn"),
        "Target.RoleArn": target.get("RoleArn"),
        "Target.Input": _input(target.get("Input")),
        "Target.RetryPolicy": target.get("RetryPolicy"),
        "Target.DeadLetterConfig": target.get("DeadLetterConfig"),
        "Target.SqsParameters": target.get("SqsParameters"),
    }
    for key in ("StartDate", "EndDate"):
        date = value.get(key)
        out[key] = int(date.timestamp()) if isinstance(date, datetime) else date
    return out


def diff(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    """Names of the fields that differ (``[]``: the schedule is up to date).
    A StartDate sqsq left out (already past) is not compared."""
    a, b = _comparable(want), _comparable(have)
    if "StartDate" not in want:
        a.pop("StartDate"), b.pop("StartDate")
    return [key for key in a if a[key] != b[key]]


@dataclass
class SchedulePlan:
    """The changes :func:`apply` would make, and what it needs to make them."""

    changes: list[Change]
    role_arn: str
    create_role: bool
    queue_arns: list[str]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action != "ok"]


def _role_change(app: App, role_arn: str | None, arns: Arns) -> tuple[str, Change | None]:
    role_arn = role_arn or app.settings.scheduler_role_arn
    if role_arn:
        return role_arn, None
    name = role_name(app)
    iam = app.clients.sync("iam")
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return arns.role(name), Change("role", name, "create", f"trusts {SCHEDULER_PRINCIPAL}")
    return arns.role(name), Change("role", name, "ok")


def role_queue_arns(app: App, arns: Arns) -> list[str]:
    """Queues the role may send to: every queue of the app and its DLQ."""
    names = [app.queue_name(q) for q in app.queues()]
    names += [app.queue_name(p.queue) for p in app.periodic_tasks.values()]
    return sorted({arns.queue(n) for name in names for n in (name, dead_letter_name(name))})


def role_policy(queue_arns: list[str]) -> dict[str, Any]:
    """The role's only permission: sqs:SendMessage to these queues."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arns}],
    }


def trust_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": SCHEDULER_PRINCIPAL},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def existing_schedules(app: App, group: str) -> list[str]:
    """Names of the schedules in ``group`` ([] when the group does not exist)."""
    client = app.clients.sync("scheduler")
    names: list[str] = []
    for page in client.get_paginator("list_schedules").paginate(GroupName=group):
        names += [s["Name"] for s in page.get("Schedules", [])]
    return names


def _group_exists(app: App, group: str) -> bool:
    client = app.clients.sync("scheduler")
    try:
        client.get_schedule_group(Name=group)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True


@aws_boundary(lambda app, *_, **__: group_name(app))
def plan(app: App, *, role_arn: str | None = None) -> SchedulePlan:
    """What :func:`apply` would do, reading the current state (no writes).

    Only the app's own schedule group (:func:`group_name`) is read and changed. A
    schedule there that sqsq cannot read — an Input that is not JSON, an expression
    sqsq refuses — is updated when the app declares it, and deleted when it does not.

    Args:
        role_arn: an existing role for Scheduler to assume; None manages the
            role ``<app>-sqsq-scheduler`` (allowed only sqs:SendMessage).
    """
    arns = Arns(app)
    group = group_name(app)
    changes: list[Change] = []
    role, role_change = _role_change(app, role_arn, arns)
    queue_arns = role_queue_arns(app, arns)
    if role_change is not None:
        if role_change.action == "ok":
            have = app.clients.sync("iam").get_role_policy(
                RoleName=role_name(app), PolicyName=ROLE_POLICY
            )["PolicyDocument"]
            have = json.loads(have) if isinstance(have, str) else have
            if have != role_policy(queue_arns):
                role_change = Change("role", role_name(app), "update", "sqs:SendMessage queues")
        changes.append(role_change)
    client = app.clients.sync("scheduler")
    from .eta import group_name as eta_group

    exists = _group_exists(app, group)
    changes.append(Change("schedule group", group, "ok" if exists else "create"))
    if not _group_exists(app, eta_group(app)):
        changes.append(Change("schedule group", eta_group(app), "create", "long countdowns"))
    existing = set(existing_schedules(app, group)) if exists else set()
    for name, periodic in sorted(app.periodic_tasks.items()):
        want = definition(app, periodic, role, arns)
        if name not in existing:
            changes.append(Change("schedule", name, "create", periodic.expression.text))
            continue
        have = client.get_schedule(GroupName=group, Name=name)
        fields = diff(want, have)
        changes.append(Change("schedule", name, "update" if fields else "ok", ", ".join(fields)))
    for name in sorted(existing - set(app.periodic_tasks)):
        changes.append(Change("schedule", name, "delete", "no longer declared"))
    return SchedulePlan(
        changes, role, role_change is not None and role_change.action != "ok", queue_arns
    )


@aws_boundary(lambda app, *_, **__: group_name(app))
def apply(app: App, schedule_plan: SchedulePlan | None = None, **options: Any) -> SchedulePlan:
    """Carry out a :func:`plan` (made now unless given): role, group, schedules.

    Returns:
        The plan carried out (rows with action ``"ok"`` did nothing).
    """
    schedule_plan = schedule_plan or plan(app, **options)
    client = app.clients.sync("scheduler")
    iam = app.clients.sync("iam")
    group = group_name(app)
    arns = Arns(app)
    for change in schedule_plan.pending:
        if change.kind == "role":
            if change.action == "create":
                iam.create_role(
                    RoleName=change.name,
                    AssumeRolePolicyDocument=json.dumps(trust_policy()),
                    Description=f"EventBridge Scheduler sends sqsq app {app.name}'s schedules",
                )
            iam.put_role_policy(
                RoleName=change.name,
                PolicyName=ROLE_POLICY,
                PolicyDocument=json.dumps(role_policy(schedule_plan.queue_arns)),
            )
        elif change.kind == "schedule group":
            client.create_schedule_group(Name=change.name)
        elif change.action == "delete":
            client.delete_schedule(GroupName=group, Name=change.name)
        else:
            periodic = app.periodic_tasks[change.name]
            want = definition(app, periodic, schedule_plan.role_arn, arns)
            call = client.create_schedule if change.action == "create" else client.update_schedule
            extra = {"ActionAfterCompletion": "NONE"} if change.action == "create" else {}
            call(GroupName=group, Name=change.name, **want, **extra)
        logger.info("%s %s %s %s", change.action, change.kind, change.name, change.detail)
    return schedule_plan


@dataclass(frozen=True)
class ScheduleInfo:
    """One row of ``sqsq schedule ls``."""

    name: str
    state: str
    expression: str
    timezone: str
    next_fires: list[datetime]
    declared: bool
    on_aws: bool


@aws_boundary(lambda app, *_, **__: group_name(app))
def listing(app: App, now: datetime | None = None, count: int = 3) -> list[ScheduleInfo]:
    """The app's schedules as on AWS (state, expression) with their next ``count``
    fire times computed locally in their time zone; declared-only ones too."""
    from ..errors import ConfigurationError
    from .expressions import Expression, parse

    now = now or datetime.now(UTC)
    group = group_name(app)
    client = app.clients.sync("scheduler")
    names = set(existing_schedules(app, group)) if _group_exists(app, group) else set()
    rows: list[ScheduleInfo] = []
    for name in sorted(names | set(app.periodic_tasks)):
        periodic = app.periodic_tasks.get(name)
        if name in names:
            have = client.get_schedule(GroupName=group, Name=name)
            state = have.get("State", "ENABLED")
            timezone = have.get("ScheduleExpressionTimezone") or "UTC"
            try:
                expression = parse(have["ScheduleExpression"])
                start = have.get("StartDate") or (periodic.start if periodic else None)
                if start is None and expression.kind == "rate":
                    start = have.get("CreationDate")
                fires = expression.next_fire_times(
                    now, timezone, count, start=start, end=have.get("EndDate")
                )
            except ConfigurationError as exc:  # made elsewhere: listed, not computed
                logger.warning("schedule %s: %s", name, exc)
                expression = Expression(str(have.get("ScheduleExpression")), "unknown")
                fires = []
        else:
            assert periodic is not None
            expression, timezone, state = periodic.expression, periodic.timezone, "NOT SYNCED"
            fires = periodic.next_fire_times(now, count)
        rows.append(
            ScheduleInfo(
                name,
                state,
                expression.text,
                timezone,
                fires,
                declared=periodic is not None,
                on_aws=name in names,
            )
        )
    return rows
