"""Periodic tasks declared in code: ``@app.periodic_task`` and ``app.add_periodic_task``.

A :class:`PeriodicTask` is what one EventBridge Scheduler schedule is made from:
a task, its arguments, a validated schedule expression and the schedule's
options. Declarations are checked when they are made, so a bad expression fails
at import naming the field and the rule. They are kept in ``app.periodic_tasks``
(name → PeriodicTask), which ``sqsq schedule sync`` makes AWS match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import limits
from ..envelope import to_json
from ..errors import ConfigurationError
from ..settings import check_queue_name, seconds
from .expressions import Expression, InvalidScheduleExpression, schedule_expression, zone_info

if TYPE_CHECKING:
    from ..app import App
    from ..task import Task

#: Schedule names ("CreateSchedule" API reference, ``limits.SCHEDULER_MAX_NAME_CHARS``).
SCHEDULE_NAME = re.compile(rf"^[0-9a-zA-Z_.-]{{1,{limits.SCHEDULER_MAX_NAME_CHARS}}}$")
MAX_FLEXIBLE_WINDOW_MIN = limits.SCHEDULER_MAX_FLEXIBLE_WINDOW_MIN
MAX_RETRY_ATTEMPTS = limits.SCHEDULER_MAX_RETRY_ATTEMPTS
MAX_EVENT_AGE_S = limits.SCHEDULER_MAX_EVENT_AGE_S


@dataclass(frozen=True)
class PeriodicTask:
    """One periodic task: a task sent on an EventBridge schedule.

    Attributes:
        name: the schedule's name (1-64 of letters, digits, ``-``, ``_``, ``.``).
        task: the registered task name.
        expression: the validated schedule expression.
        args / kwargs: the arguments of every call (JSON values).
        timezone: IANA zone the expression is evaluated in (``ScheduleExpressionTimezone``).
        flexible_window_min: FlexibleTimeWindow in minutes (None: OFF).
        start / end: StartDate / EndDate (aware UTC), if any.
        queue: logical queue (default: the task's queue).
        enabled: State ENABLED (True) or DISABLED.
        retry_attempts / max_event_age_s: the schedule's RetryPolicy.
        description: the schedule's Description.
    """

    name: str
    task: str
    expression: Expression
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    flexible_window_min: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    enabled: bool = True
    retry_attempts: int = MAX_RETRY_ATTEMPTS
    max_event_age_s: int = MAX_EVENT_AGE_S
    description: str = ""

    def next_fire_times(self, after: datetime, count: int = 3) -> list[datetime]:
        """The next ``count`` fire times after ``after`` (aware UTC), computed locally."""
        return self.expression.next_fire_times(
            after, self.timezone, count, start=self.start, end=self.end
        )


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ConfigurationError(f"{name} must be a timezone-aware datetime (e.g. tzinfo=UTC)")
    return value.astimezone(UTC)


def declare(
    app: App,
    schedule: str | timedelta,
    task: Task[Any, Any],
    *,
    name: str | None = None,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    timezone: str = "UTC",
    flexible_window: float | timedelta | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    queue: str | None = None,
    enabled: bool = True,
    retry_attempts: int = MAX_RETRY_ATTEMPTS,
    max_event_age: float | timedelta = MAX_EVENT_AGE_S,
    description: str = "",
) -> PeriodicTask:
    """Check and register one periodic task in ``app.periodic_tasks``.

    Raises:
        InvalidScheduleExpression: a bad expression or time zone; the message names
            the periodic task, the field and the rule (a ``rate()`` is bounded:
            ``limits.SCHEDULER_MAX_RATE_DAYS``).
        ConfigurationError: a bad name, window, date, or arguments that do not bind
            to the task; a name declared twice.
    """
    name = name or task.name
    expression = named_expression(schedule, name)
    try:
        zone_info(timezone)
    except InvalidScheduleExpression as exc:
        raise InvalidScheduleExpression(f"periodic task {name!r}: {exc}") from None
    if not SCHEDULE_NAME.match(name):
        raise ConfigurationError(
            f"invalid periodic task name {name!r}: EventBridge schedule names are 1-64 "
            "letters, digits, '-', '_' or '.'; pass name=..."
        )
    if name in app.periodic_tasks:
        raise ConfigurationError(f"a periodic task named {name!r} is already declared")
    args_list, kwargs = list(args or ()), dict(kwargs or {})
    task.signature.check(args_list, kwargs)
    window = None
    if flexible_window is not None:
        window = int(seconds(flexible_window) // 60)
        if not 1 <= window <= MAX_FLEXIBLE_WINDOW_MIN:
            raise ConfigurationError(
                f"flexible_window must be 1-{MAX_FLEXIBLE_WINDOW_MIN} minutes "
                "(SCHEDULER_MAX_FLEXIBLE_WINDOW_MIN, FlexibleTimeWindow)"
            )
    if not 0 <= retry_attempts <= MAX_RETRY_ATTEMPTS:
        raise ConfigurationError(
            f"retry_attempts must be 0-{MAX_RETRY_ATTEMPTS} (SCHEDULER_MAX_RETRY_ATTEMPTS, RetryPolicy)"
        )
    age = int(seconds(max_event_age))
    if not limits.SCHEDULER_MIN_EVENT_AGE_S <= age <= MAX_EVENT_AGE_S:
        raise ConfigurationError(
            f"max_event_age must be {limits.SCHEDULER_MIN_EVENT_AGE_S}-{MAX_EVENT_AGE_S} s "
            "(SCHEDULER_MAX_EVENT_AGE_S, RetryPolicy)"
        )
    try:
        logical = check_queue_name(queue) if queue else task.queue
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    periodic = PeriodicTask(
        name=name,
        task=task.name,
        expression=expression,
        queue=logical,
        args=to_json(args_list, "args"),
        kwargs=to_json(kwargs, "kwargs"),
        timezone=timezone,
        flexible_window_min=window,
        start=_aware("start", start),
        end=_aware("end", end),
        enabled=enabled,
        retry_attempts=retry_attempts,
        max_event_age_s=age,
        description=description,
    )
    app.periodic_tasks[name] = periodic
    return periodic


def named_expression(schedule: str | timedelta, name: str | None) -> Expression:
    """:func:`~sqsq.schedules.expressions.schedule_expression`, its error naming the
    periodic task ``name`` (when known).

    Raises:
        InvalidScheduleExpression: as ``schedule_expression``.
    """
    try:
        return schedule_expression(schedule)
    except InvalidScheduleExpression as exc:
        who = f"periodic task {name!r}" if name else "@app.periodic_task"
        raise InvalidScheduleExpression(f"{who}: {exc}") from None


def periodic_task_decorator(
    app: App, schedule: str | timedelta, options: dict[str, Any]
) -> Callable[[Any], Any]:
    """``@app.periodic_task(schedule, ...)``: registers the task (``app.task``) and
    declares its schedule. Task options (``queue``, ``max_retries``, …) go to the task."""
    from ..task import TASK_OPTIONS, Task

    schedule_options = {
        k: options.pop(k)
        for k in list(options)
        if k
        in {
            "args",
            "kwargs",
            "timezone",
            "flexible_window",
            "start",
            "end",
            "enabled",
            "retry_attempts",
            "max_event_age",
            "description",
        }
    }
    unknown = set(options) - TASK_OPTIONS
    if unknown:
        raise ConfigurationError(f"unknown periodic_task option(s) {sorted(unknown)}")
    named_expression(schedule, options.get("name"))  # fail at the decorator line

    def register(fn: Any) -> Any:
        make: Callable[[Any], Task[Any, Any]] = app.task(**options)
        task = fn if isinstance(fn, Task) else make(fn)
        declare(app, schedule, task, queue=options.get("queue"), **schedule_options)
        return task

    return register
