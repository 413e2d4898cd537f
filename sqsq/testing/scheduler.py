"""EventBridge Scheduler, simulated on a clock the test controls.

moto and LocalStack store schedules (CreateSchedule, GetSchedule, …) but never
fire them. :class:`SimulatedScheduler` fires them as Scheduler would, over any
endpoint (moto, LocalStack, an AWS account), on a **virtual clock**: nothing waits,
``sim.advance(timedelta(days=365))`` fires a year of occurrences in one call::

    sim = SimulatedScheduler.for_app(app)           # the app's two schedule groups
    run = sim.advance(timedelta(hours=1))           # every occurrence in (now, now + 1 h]
    run.count("tick", outcome="sent")               # what fired, as Fire records
    sim = SimulatedScheduler(groups=["prod-sqsq"])  # any groups on the endpoint
    sim = SimulatedScheduler(schedules=schedules_from_template("template.yaml"))

Where the schedules come from:

- **the endpoint** (default): ListSchedules in ``groups`` (every group when None)
  and GetSchedule of each, read again at the start of every ``advance`` /
  ``run_until``, so a schedule created meanwhile (``apply_async(countdown=3600)``
  makes one) is seen. A schedule first seen at virtual time *T* fires only after *T*.
- **a CloudFormation template** (:func:`schedules_from_template`): the
  ``AWS::Scheduler::Schedule`` resources of a generated template (``sqsq infra``),
  with ``Ref`` / ``Fn::GetAtt`` / ``Fn::Sub`` resolved from the template itself
  (queue names, role names, group names, ``AWS::Region`` / ``AWS::AccountId``: by
  default the session's region and the caller's account, as CloudFormation would).

What each occurrence does — AWS's rules, with the page each comes from:

- **Fire times** (``sqsq.schedules.expressions``, the same code as ``schedule ls``):
  ``rate()`` from StartDate, else the schedule's CreationDate (to the second),
  else the epoch; ``cron()`` on the wall clock of ``ScheduleExpressionTimezone``
  (a time skipped by daylight saving does not fire, a repeated one fires once);
  ``at()`` once. ``StartDate`` / ``EndDate`` bound them; ``State: DISABLED`` fires
  nothing (occurrences while disabled are not caught up later). The state is read
  at the start of each ``advance``. ("Schedule types in EventBridge Scheduler")
- **Context attributes** in ``Target.Input`` ("Adding context attributes"):
  ``<aws.scheduler.scheduled-time>`` as ``2026-01-01T00:00:00Z`` (the occurrence's
  time, not the delivery time), ``<aws.scheduler.execution-id>`` a new 16-hex id
  per *attempt*, ``<aws.scheduler.schedule-arn>``, ``<aws.scheduler.attempt-number>``
  (1, 2, … across retries).
- **SQS target**: one SendMessage per attempt with the Input as body; a FIFO
  queue gets ``SqsParameters.MessageGroupId`` and no deduplication id (the queue
  must deduplicate by content, or the send fails — as on AWS).
- **FlexibleTimeWindow**: ``OFF`` delivers at the scheduled time. ``FLEXIBLE``
  delivers somewhere in ``[scheduled, scheduled + MaximumWindowInMinutes]`` on AWS
  (at random); the simulator picks a deterministic point, the window's start
  (``flexible="start"``, default) or end (``flexible="end"``).
- **RetryPolicy** ("RetryPolicy", API reference): a failed send is retried with
  exponential backoff until ``MaximumRetryAttempts`` retries were made or the
  next retry would come later than ``MaximumEventAgeInSeconds`` after the first
  attempt (defaults 185 and 86,400 s). AWS does not publish its backoff; the
  simulator's is deterministic: ``backoff(n)`` seconds before retry *n*
  (default ``min(2 ** (n - 1), 300)``), on the virtual clock — a retry due after
  the end of an ``advance`` happens in a later one (so a test can recreate the
  queue in between and watch attempt 2 succeed). Every error is retried.
- **DeadLetterConfig** ("Configuring a dead-letter queue for EventBridge
  Scheduler"): once the policy is exhausted, the Input of the last attempt goes
  to the dead-letter queue with the String message attributes ``ERROR_CODE``,
  ``ERROR_MESSAGE``, ``EXECUTION_ID``, ``EXHAUSTED_RETRY_CONDITION``
  (``MaximumRetryAttempts`` / ``MaximumEventAgeInSeconds``),
  ``IS_PAYLOAD_TRUNCATED``, ``RETRY_ATTEMPTS``, ``SCHEDULED_TIME``,
  ``SCHEDULE_ARN``, ``TARGET_ARN`` (:data:`DLQ_ATTRIBUTES`). ``ERROR_CODE`` and
  ``ERROR_MESSAGE`` carry the SQS error as the endpoint reported it. Without a
  dead-letter queue (or when sending there fails) the event is dropped.
- **ActionAfterCompletion: DELETE** ("Deleting a schedule in EventBridge
  Scheduler"): a one-time schedule is deleted (DeleteSchedule) after its one
  invocation is final (sent, or dead-lettered / dropped); a recurring one after
  its last invocation before EndDate; one without EndDate never.

How a failing send is injected: the honest way — the target queue does not exist
(delete it, or point a schedule at a name never created), the endpoint refuses
(a FIFO queue without content-based deduplication, an AWS account without the
permission). Nothing is mocked.

**Many occurrences.** ``delivery`` chooses what an occurrence costs:
``"message"`` (default) is Scheduler's one SendMessage per attempt;
``"batch"`` sends first attempts with SendMessageBatch of 10 per queue — a
*deviation* (Scheduler never batches; messages, bodies and attributes are the
same, a failed entry is retried like a failed send) for runs of thousands of
occurrences; ``"none"`` sends nothing and records each occurrence with outcome
``"computed"``: a year of ``rate(1 minute)`` (525,600 occurrences) counts in a
couple of seconds; a test then sends a few of them with ``"message"``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import limits
from ..schedules.expressions import Expression, parse
from ..schedules.scheduler import render, scheduled_time_text

if TYPE_CHECKING:
    from ..app import App
    from ..result import AsyncResult

logger = logging.getLogger(__name__)

Delivery = Literal["message", "batch", "none"]
Flexible = Literal["start", "end"]

#: Outcomes of a :class:`Fire`: the message was sent; the attempt failed and a
#: retry is due later; it failed for good and went to the dead-letter queue; it
#: failed for good and was dropped (no dead-letter queue, or sending there failed);
#: nothing was sent (``delivery="none"``).
OUTCOMES = ("sent", "retrying", "dead-lettered", "dropped", "computed")

#: Message attributes of a dead-letter event ("Configuring a dead-letter queue for
#: EventBridge Scheduler", section "Retrieve the dead-letter event"). That section's
#: example could not be re-read when this was written; the names are the ones two
#: independent Scheduler emulators use (some emulators use ``X-Amz-Scheduler-*``
#: names instead): check them against the page, or a real DLQ, before relying on them.
DLQ_ATTRIBUTES = (
    "ERROR_CODE",
    "ERROR_MESSAGE",
    "EXECUTION_ID",
    "EXHAUSTED_RETRY_CONDITION",
    "IS_PAYLOAD_TRUNCATED",
    "RETRY_ATTEMPTS",
    "SCHEDULED_TIME",
    "SCHEDULE_ARN",
    "TARGET_ARN",
)
#: RetryPolicy when a schedule has none (Scheduler's defaults).
DEFAULT_RETRY_ATTEMPTS = limits.SCHEDULER_MAX_RETRY_ATTEMPTS
DEFAULT_MAX_EVENT_AGE_S = limits.SCHEDULER_MAX_EVENT_AGE_S
#: Longest wait between two retries of the default backoff, seconds.
MAX_BACKOFF_S = 300.0
#: Entries of one SendMessageBatch (``delivery="batch"``).
SQS_BATCH = limits.SQS_MAX_BATCH_ENTRIES

_SQS_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_.-]+)$")


def default_backoff(retry: int) -> float:
    """Seconds before retry ``retry`` (1, 2, …): ``min(2 ** (retry - 1), 300)``."""
    return min(2.0 ** (retry - 1), MAX_BACKOFF_S)


def _aware(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"not a date: {value!r}")
    moment: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class SimulatedSchedule:
    """One schedule as the simulator fires it (from GetSchedule, or a template).

    Attributes:
        name / group / arn: the schedule's name, group and ARN.
        expression: its validated ``rate()`` / ``cron()`` / ``at()`` expression.
        timezone: ``ScheduleExpressionTimezone``.
        state: ``ENABLED`` or ``DISABLED``.
        start / end: StartDate / EndDate (aware UTC) or None.
        flexible_window_min: ``MaximumWindowInMinutes`` of a FLEXIBLE window, None when OFF.
        action_after_completion: ``NONE`` or ``DELETE``.
        target: the ``Target`` structure (Arn, Input, RetryPolicy, DeadLetterConfig,
            SqsParameters, …) as the API returns it.
        created: CreationDate (the anchor of a ``rate()`` without StartDate), if known.
        on_endpoint: whether it exists on the endpoint (DeleteSchedule is called
            after completion only then).
    """

    name: str
    group: str
    arn: str
    expression: Expression
    target: dict[str, Any]
    timezone: str = "UTC"
    state: str = "ENABLED"
    start: datetime | None = None
    end: datetime | None = None
    flexible_window_min: int | None = None
    action_after_completion: str = "NONE"
    created: datetime | None = None
    on_endpoint: bool = False

    @classmethod
    def from_description(
        cls, description: Mapping[str, Any], *, on_endpoint: bool = True
    ) -> SimulatedSchedule:
        """From a GetSchedule response (or CreateSchedule arguments plus ``Arn``)."""
        window = description.get("FlexibleTimeWindow") or {"Mode": "OFF"}
        group = description.get("GroupName") or "default"
        arn = (
            description.get("Arn") or f"arn:aws:scheduler:::schedule/{group}/{description['Name']}"
        )
        return cls(
            name=str(description["Name"]),
            group=str(group),
            arn=str(arn),
            expression=parse(str(description["ScheduleExpression"])),
            target=dict(description.get("Target") or {}),
            timezone=str(description.get("ScheduleExpressionTimezone") or "UTC"),
            state=str(description.get("State") or "ENABLED"),
            start=_aware(description.get("StartDate")),
            end=_aware(description.get("EndDate")),
            flexible_window_min=(
                int(window["MaximumWindowInMinutes"]) if window.get("Mode") == "FLEXIBLE" else None
            ),
            action_after_completion=str(description.get("ActionAfterCompletion") or "NONE"),
            created=_aware(description.get("CreationDate")),
            on_endpoint=on_endpoint,
        )

    @property
    def key(self) -> tuple[str, str]:
        """The schedule's identity: (group name, schedule name)."""
        return (self.group, self.name)

    @property
    def queue_arn(self) -> str:
        """The ARN of the SQS queue the schedule targets."""
        return str(self.target.get("Arn", ""))

    @property
    def is_sqs(self) -> bool:
        """Whether the target is an SQS queue (the only kind the simulator sends to)."""
        return bool(_SQS_ARN.match(self.queue_arn))

    @property
    def retry_attempts(self) -> int:
        """The target's RetryPolicy ``MaximumRetryAttempts`` (Scheduler's default 185)."""
        policy = self.target.get("RetryPolicy") or {}
        return int(policy.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS))

    @property
    def max_event_age_s(self) -> int:
        """The target's RetryPolicy ``MaximumEventAgeInSeconds`` (Scheduler's default 86400)."""
        policy = self.target.get("RetryPolicy") or {}
        return int(policy.get("MaximumEventAgeInSeconds", DEFAULT_MAX_EVENT_AGE_S))

    @property
    def dead_letter_arn(self) -> str | None:
        """The ARN of the target's dead-letter queue, if it has one."""
        config = self.target.get("DeadLetterConfig") or {}
        return config.get("Arn") or None

    @property
    def message_group_id(self) -> str | None:
        """The ``MessageGroupId`` of a FIFO target, if any."""
        return (self.target.get("SqsParameters") or {}).get("MessageGroupId")

    def fire_times(self, after: datetime) -> Iterator[datetime]:
        """Occurrences strictly after ``after``, ascending (aware UTC)."""
        start = self.start
        if start is None and self.expression.kind == "rate" and self.created is not None:
            start = self.created.replace(microsecond=0)
        return self.expression.fire_times(after, self.timezone, start=start, end=self.end)


# --- schedules from a CloudFormation template ---------------------------------------


def _load_template(template: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(template, Mapping):
        return template
    import yaml

    text = Path(template).read_text()
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ValueError(f"{template}: not a CloudFormation template")
    return loaded


class _Resolver:
    """Resolves the intrinsics a generated template uses, from the template itself."""

    def __init__(
        self, document: Mapping[str, Any], region: str, account: str, given: Mapping[str, str]
    ) -> None:
        self.resources: Mapping[str, Any] = document.get("Resources", {})
        self.parameters: Mapping[str, Any] = document.get("Parameters", {})
        self.given = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            **given,
        }

    def _properties(self, logical: str) -> tuple[str, Mapping[str, Any]]:
        resource = self.resources.get(logical)
        if resource is None:
            raise ValueError(f"unresolvable reference to {logical!r}: pass resolve={{...}}")
        return str(resource.get("Type")), resource.get("Properties", {})

    def ref(self, logical: str) -> str:
        if logical in self.given:
            return self.given[logical]
        if logical in self.parameters:
            return str(self.parameters[logical].get("Default", ""))
        kind, props = self._properties(logical)
        names = {
            "AWS::Scheduler::ScheduleGroup": "Name",
            "AWS::IAM::Role": "RoleName",
            "AWS::Scheduler::Schedule": "Name",
        }
        if kind in names and names[kind] in props:
            return str(self.value(props[names[kind]]))
        raise ValueError(f"Ref {logical} ({kind}): pass resolve={{{logical!r}: ...}}")

    def get_att(self, logical: str, attribute: str) -> str:
        key = f"{logical}.{attribute}"
        if key in self.given:
            return self.given[key]
        kind, props = self._properties(logical)
        region, account = self.given["AWS::Region"], self.given["AWS::AccountId"]
        if attribute == "Arn" and kind == "AWS::SQS::Queue" and "QueueName" in props:
            return f"arn:aws:sqs:{region}:{account}:{self.value(props['QueueName'])}"
        if attribute == "QueueName" and kind == "AWS::SQS::Queue" and "QueueName" in props:
            return str(self.value(props["QueueName"]))
        if attribute == "Arn" and kind == "AWS::IAM::Role" and "RoleName" in props:
            return f"arn:aws:iam::{account}:role/{self.value(props['RoleName'])}"
        raise ValueError(f"Fn::GetAtt {key} ({kind}): pass resolve={{{key!r}: ...}}")

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.value(variables[name]))
            if "." in name and name not in self.given:
                logical, _, attribute = name.partition(".")
                return self.get_att(logical, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def value(self, node: Any) -> Any:
        if isinstance(node, Mapping) and len(node) == 1:
            ((kind, argument),) = node.items()
            if kind == "Ref":
                return self.ref(str(argument))
            if kind == "Fn::GetAtt":
                logical, attribute = (
                    argument.split(".", 1) if isinstance(argument, str) else argument
                )
                return self.get_att(str(logical), str(attribute))
            if kind == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                return self.sub(str(text), variables)
            if kind == "Fn::Join":
                delimiter, items = argument
                return str(delimiter).join(str(self.value(i)) for i in items)
        if isinstance(node, Mapping):
            return {k: self.value(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.value(v) for v in node]
        return node


def schedules_from_template(
    template: Mapping[str, Any] | str | Path,
    *,
    region: str | None = None,
    account: str | None = None,
    resolve: Mapping[str, str] | None = None,
    sts_client: Any = None,
) -> list[SimulatedSchedule]:
    """The ``AWS::Scheduler::Schedule`` resources of a CloudFormation template.

    Args:
        template: the template (a dict, or a YAML/JSON file in CloudFormation's long
            form, as ``sqsq infra`` writes it).
        region / account: what ``AWS::Region`` / ``AWS::AccountId`` stand for. As
            CloudFormation would, by default the account the stack would be created
            in — the caller's (STS GetCallerIdentity on the endpoint: moto's account is
            123456789012, LocalStack's 000000000000, AWS's your own) — and the
            region of boto3's default session (us-east-1 when it has none). Pass
            ``account`` to read a template without asking an endpoint.
        resolve: values for what the template cannot tell: ``{"Logical": ref,
            "Logical.Arn": arn, "Param": value}`` (``"AWS::AccountId"`` and
            ``"AWS::Region"`` are read there too).
        sts_client: the boto3 STS client asked for the account (default: a new one,
            which follows ``AWS_ENDPOINT_URL``).

    Raises:
        ValueError: a reference it cannot resolve (the message says what to pass).
    """
    given = resolve or {}
    region = region or given.get("AWS::Region") or _default_region()
    account = account or given.get("AWS::AccountId") or _caller_account(sts_client, region)
    document = _load_template(template)
    resolver = _Resolver(document, region, account, given)
    out: list[SimulatedSchedule] = []
    for logical, resource in document.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Scheduler::Schedule":
            continue
        props = resolver.value(resource.get("Properties", {}))
        name = props.get("Name") or logical
        group = props.get("GroupName") or "default"
        description = {
            **props,
            "Name": name,
            "GroupName": group,
            "Arn": f"arn:aws:scheduler:{region}:{account}:schedule/{group}/{name}",
        }
        out.append(SimulatedSchedule.from_description(description, on_endpoint=False))
    return out


def _default_region() -> str:
    import boto3

    return boto3.session.Session().region_name or "us-east-1"


def _caller_account(client: Any, region: str) -> str:
    if client is None:
        import boto3

        client = boto3.client("sts", region_name=region)
    return str(client.get_caller_identity()["Account"])


# --- what fired -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fire:
    """One attempt at one occurrence.

    Attributes:
        schedule / group: the schedule's name and group.
        scheduled_time: the occurrence (what ``<aws.scheduler.scheduled-time>`` says).
        delivered_at: virtual time of this attempt (later for a FLEXIBLE window or a retry).
        attempt: 1 for the first attempt, 2… for retries.
        outcome: one of :data:`OUTCOMES`.
        execution_id: ``<aws.scheduler.execution-id>`` of this attempt ("" when computed).
        message_id: the SQS MessageId (the dead-letter queue's when dead-lettered).
        error: ``"<code>: <message>"`` of a failed send.
    """

    schedule: str
    group: str
    scheduled_time: datetime
    delivered_at: datetime
    attempt: int
    outcome: str
    execution_id: str = ""
    message_id: str | None = None
    error: str | None = None


@dataclass
class Run:
    """What one :meth:`SimulatedScheduler.advance` / ``run_until`` did.

    Attributes:
        start / end: the virtual interval ``(start, end]`` it covered.
        fires: every attempt, in virtual-time order.
        deleted: ``"group/name"`` of schedules deleted after completion.
    """

    start: datetime
    end: datetime
    fires: list[Fire] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.fires)

    def __iter__(self) -> Iterator[Fire]:
        return iter(self.fires)

    def select(self, schedule: str | None = None, outcome: str | None = None) -> list[Fire]:
        """The fires of ``schedule`` (any when None) with ``outcome`` (any when None)."""
        return [
            f
            for f in self.fires
            if (schedule is None or f.schedule == schedule)
            and (outcome is None or f.outcome == outcome)
        ]

    def count(self, schedule: str | None = None, outcome: str | None = None) -> int:
        """How many fires match (see :meth:`select`)."""
        if schedule is None and outcome is None:
            return len(self.fires)
        return len(self.select(schedule, outcome))

    def times(self, schedule: str | None = None) -> list[datetime]:
        """The occurrences (scheduled times of first attempts), in order."""
        return [f.scheduled_time for f in self.select(schedule) if f.attempt == 1]

    def outcomes(self) -> Counter[str]:
        """Outcome → number of fires."""
        return Counter(f.outcome for f in self.fires)


@dataclass(order=True)
class _Attempt:
    due: datetime
    seq: int
    key: tuple[str, str] = field(compare=False)
    scheduled: datetime = field(compare=False)
    number: int = field(compare=False)
    first: datetime = field(compare=False)
    last: bool = field(compare=False)  # the schedule's final occurrence


class SimulatedScheduler:
    """Fires EventBridge schedules on a virtual clock (see the module docstring).

    Args:
        now: the virtual clock's start (aware; default: the real time now, to the second).
        groups: schedule groups read from the endpoint (None: every group).
        schedules: fire exactly these instead of reading the endpoint
            (:func:`schedules_from_template`, :meth:`SimulatedSchedule.from_description`).
        delivery: ``"message"``, ``"batch"`` or ``"none"`` (default of every advance).
        flexible: where in a FLEXIBLE window an occurrence is delivered.
        backoff: seconds before retry *n* (default :func:`default_backoff`).
        scheduler_client / sqs_client: boto3 clients (default: new ones, which follow
            ``AWS_ENDPOINT_URL`` — the ``sqsq_endpoint`` fixture sets it).
    """

    def __init__(
        self,
        *,
        now: datetime | None = None,
        groups: Iterable[str] | None = None,
        schedules: Iterable[SimulatedSchedule] | None = None,
        delivery: Delivery = "message",
        flexible: Flexible = "start",
        backoff: Callable[[int], float] = default_backoff,
        scheduler_client: Any = None,
        sqs_client: Any = None,
    ) -> None:
        start = now or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime")
        self._now = start.astimezone(UTC)
        self.groups = None if groups is None else list(groups)
        self.delivery: Delivery = delivery
        self.flexible: Flexible = flexible
        self.backoff = backoff
        self._scheduler = scheduler_client
        self._sqs = sqs_client
        self._from_endpoint = schedules is None
        self._schedules: dict[tuple[str, str], SimulatedSchedule] = {
            s.key: s for s in (schedules or ())
        }
        self._pending: list[_Attempt] = []
        self._seq = itertools.count()
        self._urls: dict[str, str] = {}
        #: Schedules whose target is not an SQS queue: read, never fired.
        self.unsupported: list[SimulatedSchedule] = []

    @classmethod
    def for_app(cls, app: App, **options: Any) -> SimulatedScheduler:
        """The app's periodic tasks' group and its long-countdown group, with the
        app's clients."""
        from ..schedules import eta, scheduler

        options.setdefault("groups", [scheduler.group_name(app), eta.group_name(app)])
        options.setdefault("scheduler_client", app.clients.sync("scheduler"))
        options.setdefault("sqs_client", app.clients.sync("sqs"))
        return cls(**options)

    # --- clients and schedules ---------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The virtual clock."""
        return self._now

    @property
    def scheduler_client(self) -> Any:
        """The boto3 EventBridge Scheduler client the schedules are read with."""
        if self._scheduler is None:
            import boto3

            self._scheduler = boto3.client("scheduler")
        return self._scheduler

    @property
    def sqs_client(self) -> Any:
        """The boto3 SQS client the fires are sent with."""
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        return self._sqs

    @property
    def schedules(self) -> dict[tuple[str, str], SimulatedSchedule]:
        """``(group, name)`` → schedule, as last read."""
        return dict(self._schedules)

    def refresh(self) -> None:
        """Read the schedules again from the endpoint (only when reading from it)."""
        if not self._from_endpoint:
            return
        client = self.scheduler_client
        rows: list[dict[str, Any]] = []
        for group in self.groups if self.groups is not None else [None]:
            kwargs = {} if group is None else {"GroupName": group}
            try:
                for page in client.get_paginator("list_schedules").paginate(**kwargs):
                    rows += page.get("Schedules", [])
            except client.exceptions.ResourceNotFoundException:
                continue  # the group does not exist (yet)
        found: dict[tuple[str, str], SimulatedSchedule] = {}
        self.unsupported = []
        for row in rows:
            group, name = row.get("GroupName") or "default", row["Name"]
            try:
                have = client.get_schedule(GroupName=group, Name=name)
            except client.exceptions.ResourceNotFoundException:
                continue  # deleted between the two calls
            schedule = SimulatedSchedule.from_description(have)
            if schedule.is_sqs:
                found[schedule.key] = schedule
            else:
                self.unsupported.append(schedule)
        self._schedules = found

    # --- the clock -------------------------------------------------------------------

    def advance(self, delta: timedelta | float, *, delivery: Delivery | None = None) -> Run:
        """Move the clock forward by ``delta`` (a timedelta or seconds), firing what
        falls due; see :meth:`run_until`."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        return self.run_until(self._now + timedelta(seconds=seconds), delivery=delivery)

    def run_until(self, until: datetime, *, delivery: Delivery | None = None) -> Run:
        """Fire every occurrence in ``(now, until]`` and every retry due by then, in
        virtual-time order, and set the clock to ``until``.

        Args:
            until: aware; not before :attr:`now`.
            delivery: overrides the scheduler's ``delivery`` for this run.

        Returns:
            The :class:`Run`: every attempt, and the schedules deleted after completion.
        """
        if until.tzinfo is None:
            raise ValueError("until must be a timezone-aware datetime")
        until = until.astimezone(UTC)
        if until < self._now:
            raise ValueError(f"the clock only moves forward: {until} < {self._now}")
        mode: Delivery = delivery or self.delivery
        self.refresh()
        run = Run(self._now, until)
        occurrences: list[tuple[datetime, int, tuple[str, str], Iterator[datetime]]] = []
        for key, schedule in self._schedules.items():
            if schedule.state != "ENABLED" or not schedule.is_sqs:
                continue
            times = schedule.fire_times(self._now)
            first = next(times, None)
            if first is not None and first <= until:
                occurrences.append((first, next(self._seq), key, times))
        heapq.heapify(occurrences)
        batch: dict[str, list[tuple[_Attempt, str, str]]] = {}
        while True:
            next_occurrence = occurrences[0][0] if occurrences else None
            next_retry = self._pending[0].due if self._pending else None
            if next_retry is not None and next_retry > until:
                next_retry = None
            if next_occurrence is None and next_retry is None:
                break
            if next_retry is not None and (next_occurrence is None or next_retry < next_occurrence):
                self._flush(batch, run)
                self._attempt(heapq.heappop(self._pending), run, None)
                continue
            when, _, key, times = occurrences[0]
            following = next(times, None)
            if following is not None and following <= until:
                heapq.heapreplace(occurrences, (following, next(self._seq), key, times))
            else:
                heapq.heappop(occurrences)
            schedule = self._schedules[key]
            last = following is None
            if mode == "none":
                run.fires.append(Fire(schedule.name, schedule.group, when, when, 1, "computed"))
                continue
            offset = timedelta(minutes=schedule.flexible_window_min or 0)
            due = when + (offset if self.flexible == "end" else timedelta(0))
            attempt = _Attempt(due, next(self._seq), key, when, 1, due, last)
            if due > when:  # a FLEXIBLE window's end: later than other occurrences
                heapq.heappush(self._pending, attempt)
            else:
                self._attempt(attempt, run, batch if mode == "batch" else None)
        self._flush(batch, run)
        run.fires.sort(key=lambda f: f.delivered_at)
        self._now = until
        return run

    # --- one attempt -----------------------------------------------------------------

    def _queue_url(self, arn: str) -> str:
        url = self._urls.get(arn)
        if url is None:
            match = _SQS_ARN.match(arn)
            if match is None:
                raise ValueError(f"not an SQS queue ARN: {arn}")
            _, account, name = match.groups()
            url = str(
                self.sqs_client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                    "QueueUrl"
                ]
            )
            self._urls[arn] = url
        return url

    def _send(self, arn: str, body: str, group_id: str | None, **extra: Any) -> str:
        try:
            kwargs: dict[str, Any] = {"QueueUrl": self._queue_url(arn), "MessageBody": body}
            if group_id is not None:
                kwargs["MessageGroupId"] = group_id
            return str(self.sqs_client.send_message(**kwargs, **extra)["MessageId"])
        except Exception:
            self._urls.pop(arn, None)
            raise

    def _body(self, schedule: SimulatedSchedule, attempt: _Attempt, execution_id: str) -> str:
        return render(
            str(schedule.target.get("Input", "{}")),
            scheduled_at=attempt.scheduled,
            execution_id=execution_id,
            schedule_arn=schedule.arn,
            attempt=attempt.number,
        )

    def _attempt(
        self,
        attempt: _Attempt,
        run: Run,
        batch: dict[str, list[tuple[_Attempt, str, str]]] | None,
    ) -> None:
        schedule = self._schedules.get(attempt.key)
        if schedule is None:  # deleted meanwhile: Scheduler invokes nothing more
            return
        execution_id = uuid.uuid4().hex[:16]
        body = self._body(schedule, attempt, execution_id)
        if batch is not None:
            entries = batch.setdefault(schedule.queue_arn, [])
            entries.append((attempt, execution_id, body))
            if len(entries) == SQS_BATCH:
                self._flush({schedule.queue_arn: batch.pop(schedule.queue_arn)}, run)
            return
        try:
            message_id = self._send(schedule.queue_arn, body, schedule.message_group_id)
        except Exception as exc:
            self._failed(schedule, attempt, execution_id, body, _error(exc), run)
            return
        self._sent(schedule, attempt, execution_id, message_id, run)

    def _flush(self, batch: dict[str, list[tuple[_Attempt, str, str]]], run: Run) -> None:
        for arn, entries in list(batch.items()):
            batch.pop(arn)
            schedule_of = {a.seq: self._schedules[a.key] for a, _, _ in entries}
            try:
                url = self._queue_url(arn)
                request = []
                for index, (attempt, _, body) in enumerate(entries):
                    entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
                    group_id = schedule_of[attempt.seq].message_group_id
                    if group_id is not None:
                        entry["MessageGroupId"] = group_id
                    request.append(entry)
                response = self.sqs_client.send_message_batch(QueueUrl=url, Entries=request)
            except Exception as exc:
                self._urls.pop(arn, None)
                for attempt, execution_id, body in entries:
                    schedule = schedule_of[attempt.seq]
                    self._failed(schedule, attempt, execution_id, body, _error(exc), run)
                continue
            failed = {f["Id"]: f for f in response.get("Failed", [])}
            ok = {s["Id"]: s["MessageId"] for s in response.get("Successful", [])}
            for index, (attempt, execution_id, body) in enumerate(entries):
                schedule = schedule_of[attempt.seq]
                if str(index) in ok:
                    self._sent(schedule, attempt, execution_id, ok[str(index)], run)
                else:
                    f = failed.get(str(index), {})
                    error = f"{f.get('Code', 'Unknown')}: {f.get('Message', '')}"
                    self._failed(schedule, attempt, execution_id, body, error, run)

    def _sent(
        self,
        schedule: SimulatedSchedule,
        attempt: _Attempt,
        execution_id: str,
        message_id: str,
        run: Run,
    ) -> None:
        self._final(schedule, attempt, "sent", execution_id, message_id, None, run)

    def _failed(
        self,
        schedule: SimulatedSchedule,
        attempt: _Attempt,
        execution_id: str,
        body: str,
        error: str,
        run: Run,
    ) -> None:
        retries_made = attempt.number - 1
        retry_at = attempt.due + timedelta(seconds=self.backoff(attempt.number))
        exhausted = None
        if retries_made >= schedule.retry_attempts:
            exhausted = "MaximumRetryAttempts"
        elif (retry_at - attempt.first).total_seconds() > schedule.max_event_age_s:
            exhausted = "MaximumEventAgeInSeconds"
        fire = Fire(
            schedule.name,
            schedule.group,
            attempt.scheduled,
            attempt.due,
            attempt.number,
            "retrying",
            execution_id,
            None,
            error,
        )
        if exhausted is None:
            run.fires.append(fire)
            heapq.heappush(
                self._pending,
                _Attempt(
                    retry_at,
                    next(self._seq),
                    attempt.key,
                    attempt.scheduled,
                    attempt.number + 1,
                    attempt.first,
                    attempt.last,
                ),
            )
            return
        outcome, message_id = "dropped", None
        if schedule.dead_letter_arn is not None:
            code, _, message = error.partition(": ")
            values = {
                "ERROR_CODE": code,
                "ERROR_MESSAGE": message or code,
                "EXECUTION_ID": execution_id,
                "EXHAUSTED_RETRY_CONDITION": exhausted,
                "IS_PAYLOAD_TRUNCATED": "false",
                "RETRY_ATTEMPTS": str(retries_made),
                "SCHEDULED_TIME": scheduled_time_text(attempt.scheduled),
                "SCHEDULE_ARN": schedule.arn,
                "TARGET_ARN": schedule.queue_arn,
            }
            attributes = {
                name: {"DataType": "String", "StringValue": values[name]} for name in DLQ_ATTRIBUTES
            }
            try:
                message_id = self._send(
                    schedule.dead_letter_arn, body, None, MessageAttributes=attributes
                )
                outcome = "dead-lettered"
            except Exception as exc:
                error = f"{error}; dead-letter queue: {_error(exc)}"
        self._final(schedule, attempt, outcome, execution_id, message_id, error, run)

    def _final(
        self,
        schedule: SimulatedSchedule,
        attempt: _Attempt,
        outcome: str,
        execution_id: str,
        message_id: str | None,
        error: str | None,
        run: Run,
    ) -> None:
        """Record an attempt whose occurrence is final, then complete it."""
        run.fires.append(
            Fire(
                schedule.name,
                schedule.group,
                attempt.scheduled,
                attempt.due,
                attempt.number,
                outcome,
                execution_id,
                message_id,
                error,
            )
        )
        self._completed(schedule, attempt, run)

    def _completed(self, schedule: SimulatedSchedule, attempt: _Attempt, run: Run) -> None:
        """An occurrence is final: delete the schedule if that was its last one and it
        asks for it (a recurring schedule only with an EndDate)."""
        if not attempt.last or schedule.action_after_completion != "DELETE":
            return
        if schedule.expression.kind != "at" and schedule.end is None:
            return
        if any(p.key == schedule.key for p in self._pending):
            return
        if schedule.on_endpoint:
            client = self.scheduler_client
            with contextlib.suppress(client.exceptions.ResourceNotFoundException):
                client.delete_schedule(GroupName=schedule.group, Name=schedule.name)
        self._schedules.pop(schedule.key, None)
        run.deleted.append(f"{schedule.group}/{schedule.name}")


def _error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"


def dead_letter_attributes(message: Mapping[str, Any]) -> dict[str, str]:
    """The String message attributes of a received dead-letter event (name → value)."""
    return {
        name: str(value.get("StringValue"))
        for name, value in message.get("MessageAttributes", {}).items()
    }


def fire_schedule(app: App, name: str, *, at: datetime | None = None) -> AsyncResult:
    """Fire the app's periodic task ``name`` once, now: send to its queue what
    EventBridge Scheduler sends when the schedule fires at ``at``.

    The message is the schedule's ``Target.Input`` as ``sqsq schedule sync`` writes
    it, with Scheduler's context attributes filled in ("Context attributes" of the
    EventBridge Scheduler User Guide): ``<aws.scheduler.scheduled-time>`` is ``at``
    (to the second, UTC), ``<aws.scheduler.execution-id>`` a new UUID — the task id —
    ``<aws.scheduler.schedule-arn>`` the schedule's ARN in the app's schedule group,
    ``<aws.scheduler.attempt-number>`` 1. It is signed when the app signs
    (``signing_key``), as the synced template is, and carries the fire's idempotency
    key (``schedule:<name>@<scheduled time>``), so two fires at one ``at`` run the
    task's body once. On a FIFO queue the message group is Scheduler's target's.
    Nothing needs to be synced: the schedule is read from the code, not from AWS,
    and neither the expression nor the ``start`` / ``end`` / ``enabled`` of the
    schedule is checked against ``at`` (:class:`SimulatedScheduler` fires by those
    rules, on a virtual clock, from what was synced).

    What runs the message is up to the test: a worker (``sqsq.Worker(app,
    burst=True).run()``), the Lambda handler with :func:`~sqsq.testing.sqs_event`,
    or an :class:`~sqsq.testing.EventSourceMapping`.

    Args:
        app: the app declaring the periodic task (``@app.periodic_task`` or
            ``app.add_periodic_task``); its queues must exist
            (``sqsq.resources.apply(app)``).
        name: the periodic task's schedule name (``name=``, default the task's name).
        at: the scheduled time the fire is for (an aware datetime; microseconds are
            dropped, as Scheduler's ``scheduled-time`` has whole seconds); default:
            now. The task sees it as ``self.request.scheduled_at``.

    Returns:
        The :class:`~sqsq.result.AsyncResult` of the task the fire sends.

    Raises:
        ConfigurationError: ``name`` is not a periodic task of ``app`` (the message
            lists those declared), or its queue does not exist.
        ValueError: ``at`` is a naive datetime.

    Example::

        result = fire_schedule(app, "nightly-report", at=datetime(2027, 1, 4, 2, tzinfo=UTC))
        sqsq.Worker(app, burst=True).run()
        assert result.get(timeout=10) == ...
    """
    from ..errors import ConfigurationError
    from ..schedules.local import send_fire

    periodic = app.periodic_tasks.get(name)
    if periodic is None:
        known = ", ".join(sorted(app.periodic_tasks)) or "none"
        raise ConfigurationError(
            f"no periodic task named {name!r} in app {app.name!r} (declared: {known})"
        )
    if at is not None and at.tzinfo is None:
        raise ValueError(f"at={at!r} is naive: give a time zone (e.g. tzinfo=UTC)")
    moment = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return app.AsyncResult(send_fire(app, periodic, moment).task_id)


__all__ = [
    "DLQ_ATTRIBUTES",
    "OUTCOMES",
    "Fire",
    "Run",
    "SimulatedSchedule",
    "SimulatedScheduler",
    "dead_letter_attributes",
    "default_backoff",
    "fire_schedule",
    "schedules_from_template",
]
