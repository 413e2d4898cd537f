"""``sqsq celery check``: what still differs between a Celery app and its sqsq port.

Three lists, each line one finding::

    missing   a Celery task no sqsq task runs (by name, or an alias: use_celery)
    option    a task option whose effect differs (rate_limit, acks_late, time_limit, ...)
    beat      a beat_schedule entry, with the EventBridge expression it becomes
              (crontab → cron(), timedelta/seconds → rate()), or why it has none

Only the apps' declarations are read: no AWS call, no message. Celery's own tasks
(``celery.*``) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import App
    from ..task import Task


@dataclass
class Report:
    """The findings of :func:`compare`, each a one-line string.

    Attributes:
        missing: Celery tasks without an sqsq counterpart.
        options: option differences of the tasks both apps have.
        beat: beat entries and their EventBridge translation.
        untranslatable: beat entries with no EventBridge expression (a subset of
            ``beat``'s subjects).
    """

    missing: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    beat: list[str] = field(default_factory=list)
    untranslatable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every Celery task has a counterpart and every beat entry a translation."""
        return not self.missing and not self.untranslatable

    def lines(self) -> list[str]:
        """The report as printed by ``sqsq celery check``."""
        out = [f"missing  {m}" for m in self.missing]
        out += [f"option   {o}" for o in self.options]
        out += [f"beat     {b}" for b in self.beat]
        verdict = "ok" if self.ok else "NOT ready"
        out.append(
            f"{verdict}: {len(self.missing)} task(s) missing, {len(self.options)} option "
            f"difference(s), {len(self.beat)} beat entr{'y' if len(self.beat) == 1 else 'ies'}"
            f" ({len(self.untranslatable)} without an EventBridge expression)"
        )
        return out


def compare(celery_app: Any, app: App) -> Report:
    """Compare a Celery app's tasks and beat schedule with an sqsq App's.

    Args:
        celery_app: a ``celery.Celery`` instance (finalized here: its tasks load).
        app: the sqsq App that replaces it.
    """
    from . import install

    protocol = install(app)
    report = Report()
    celery_tasks = {
        name: task for name, task in celery_app.tasks.items() if not name.startswith("celery.")
    }
    for name in sorted(celery_tasks):
        target = protocol.task_name(name)
        task = app.tasks.get(target)
        if task is None:
            report.missing.append(f"{name}: no sqsq task {target!r} in app {app.name!r}")
            continue
        label = name if target == name else f"{name} (sqsq {target})"
        report.options += [
            f"{label}: {d}" for d in _option_differences(celery_tasks[name], task, celery_app)
        ]
    for entry, spec in sorted((celery_app.conf.beat_schedule or {}).items()):
        line, translated = _beat(entry, spec, celery_app.conf.timezone)
        report.beat.append(line)
        if not translated:
            report.untranslatable.append(entry)
    return report


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _option_differences(ctask: Any, task: Task[Any, Any], celery_app: Any) -> list[str]:
    """The options of Celery task ``ctask`` whose sqsq counterpart differs."""
    from ..flow.rates import parse_rate

    out: list[str] = []
    celery_rate = ctask.rate_limit or celery_app.conf.task_default_rate_limit
    sqsq_rate = task.rate_limit
    celery_per_s = parse_rate(str(celery_rate)).per_s if celery_rate else None
    if celery_per_s != (sqsq_rate.per_s if sqsq_rate else None):
        out.append(
            f"rate_limit Celery {celery_rate!r} (per worker) vs sqsq "
            f"{str(sqsq_rate) if sqsq_rate else None!r} (for the whole app)"
        )
    if not ctask.acks_late:
        out.append(
            "acks_late Celery False (deleted before it runs: at most once) vs sqsq "
            "deletes after the outcome is stored (at least once; make it idempotent)"
        )
    pairs = (
        ("time_limit", _seconds(ctask.time_limit), task.time_limit_s),
        ("soft_time_limit", _seconds(ctask.soft_time_limit), task.soft_time_limit_s),
        ("max_retries", ctask.max_retries, task.retry_policy.max_retries),
        (
            "default_retry_delay",
            _seconds(ctask.default_retry_delay),
            task.retry_policy.default_retry_delay_s,
        ),
    )
    out += [f"{n} Celery {c!r} vs sqsq {s!r}" for n, c, s in pairs if c != s]
    celery_autoretry = tuple(getattr(ctask, "autoretry_for", ()) or ())
    if set(celery_autoretry) != set(task.retry_policy.autoretry_for):
        out.append(
            f"autoretry_for Celery {_names(celery_autoretry)} vs sqsq "
            f"{_names(task.retry_policy.autoretry_for)}"
        )
    backoff = getattr(ctask, "retry_backoff", False)
    celery_backoff = float(backoff) if backoff else 0.0
    if celery_autoretry and celery_backoff != task.retry_policy.retry_backoff_s:
        out.append(
            f"retry_backoff Celery {backoff!r} vs sqsq {task.retry_policy.retry_backoff_s!r}"
        )
    if bool(ctask.ignore_result) == task.store_result:
        out.append(
            f"ignore_result Celery {bool(ctask.ignore_result)!r} vs sqsq "
            f"store_result={task.store_result!r}"
        )
    if ctask.track_started != task.track_started:
        out.append(f"track_started Celery {ctask.track_started!r} vs sqsq {task.track_started!r}")
    return out


def _names(types: tuple[type[BaseException], ...]) -> str:
    return "(" + ", ".join(sorted(t.__name__ for t in types)) + ")"


def _beat(entry: str, spec: dict[str, Any], timezone: Any) -> tuple[str, bool]:
    """One beat entry as a report line, and whether it has an EventBridge expression."""
    from ..errors import InvalidScheduleExpression
    from ..schedules.crontab import crontab
    from ..schedules.expressions import every

    task = spec.get("task", "?")
    schedule: Any = spec.get("schedule")
    zone = f" (time zone {timezone})" if timezone else " (UTC)"
    try:
        if isinstance(schedule, int | float | timedelta):
            seconds = _seconds(schedule) or 0.0
            expression = every(period=timedelta(seconds=seconds))
            zone = ""
        elif hasattr(schedule, "_orig_minute"):  # celery.schedules.crontab
            expression = crontab(
                minute=schedule._orig_minute,
                hour=schedule._orig_hour,
                day_of_week=schedule._orig_day_of_week,
                day_of_month=schedule._orig_day_of_month,
                month_of_year=schedule._orig_month_of_year,
            )
        elif hasattr(schedule, "run_every"):  # celery.schedules.schedule
            expression = every(period=schedule.run_every)
            zone = ""
        else:
            what = type(schedule).__name__
            return f"{entry}: {task} on a {what} schedule has no EventBridge expression", False
    except InvalidScheduleExpression as exc:
        return f"{entry}: {task}: no EventBridge expression: {exc}", False
    return f"{entry}: {task} → {expression}{zone}", True
