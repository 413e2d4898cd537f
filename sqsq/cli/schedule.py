"""``sqsq schedule sync|ls|run|serve``: the app's periodic tasks on EventBridge Scheduler.

Registered from :func:`sqsq.cli.main`; the work is done by :mod:`sqsq.schedules`.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Any

import click

from . import cli
from .commands import _load, _logging, log_options


@cli.group()
def schedule() -> None:
    """Periodic tasks on EventBridge Scheduler (no beat process)."""


@schedule.command("sync")
@click.argument("app")
@click.option("--dry-run", is_flag=True, help="Print the diff; change nothing.")
@click.option(
    "--role-arn",
    help="An existing IAM role for Scheduler (default: manage <app>-sqsq-scheduler, "
    "allowed only sqs:SendMessage to the app's queues).",
)
def schedule_sync(app: str, dry_run: bool, role_arn: str | None) -> None:
    """Make APP's schedules on AWS match its periodic tasks: create, update, and
    delete those it no longer declares. A second run changes nothing."""
    from ..schedules import scheduler

    the_app = _load(app)
    plan = scheduler.plan(the_app, role_arn=role_arn)
    for change in plan.changes:
        verb = change.action if not dry_run or change.action == "ok" else f"would {change.action}"
        detail = f"  ({change.detail})" if change.detail else ""
        click.echo(f"{verb:>14}  {change.kind:<15} {change.name}{detail}")
    pending = plan.pending
    if not pending:
        click.echo("nothing to change: every schedule is up to date")
    elif dry_run:
        click.echo(f"dry run: {len(pending)} change(s) not made")
    else:
        scheduler.apply(the_app, plan)
        click.echo(f"done: {len(pending)} change(s) made")


@schedule.command("ls")
@click.argument("app")
def schedule_ls(app: str) -> None:
    """List APP's schedules: state, expression, and the next three fire times in
    each schedule's time zone (computed locally from the expression)."""
    from zoneinfo import ZoneInfo

    from ..schedules import scheduler

    the_app = _load(app)
    rows = scheduler.listing(the_app)
    if not rows:
        click.echo("no periodic tasks declared and no schedules on AWS")
        return
    for row in rows:
        zone = ZoneInfo(row.timezone)
        fires = ", ".join(f.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") for f in row.next_fires)
        note = "" if row.declared else "  (not declared: sync deletes it)"
        click.echo(
            f"{row.name:<24} {row.state:<10} {row.expression:<28} {row.timezone:<16} "
            f"{fires or '-'}{note}"
        )


@schedule.command("run")
@click.argument("app")
@click.argument("name")
def schedule_run(app: str, name: str) -> None:
    """Fire APP's periodic task NAME once, now (as Scheduler would); prints the task id."""
    from ..errors import ConfigurationError
    from ..schedules.local import send_fire

    the_app = _load(app)
    periodic = the_app.periodic_tasks.get(name)
    if periodic is None:
        known = ", ".join(sorted(the_app.periodic_tasks)) or "none"
        raise ConfigurationError(f"no periodic task named {name!r} in {app} (declared: {known})")
    fire = send_fire(the_app, periodic, datetime.now(UTC).replace(microsecond=0))
    click.echo(fire.task_id)


@schedule.command("serve")
@click.argument("app")
@click.option(
    "--lease",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds before a stopped leader's lease lets another scheduler take over.",
)
@click.option(
    "--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.05), help="Seconds."
)
@log_options
def schedule_serve(
    app: str, lease: float, interval: float, log_level: str, log_format: str
) -> None:
    """Fire APP's schedules here, where EventBridge Scheduler is not available (a
    local endpoint). Several may run: a leader lease in DynamoDB makes one fire."""
    _logging(log_level, log_format)
    from ..schedules.local import LocalScheduler

    the_app = _load(app)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler = LocalScheduler(the_app, lease_s=lease)
    click.echo(
        f"sqsq schedule serve: {len(the_app.periodic_tasks)} schedule(s), owner {scheduler.owner}",
        err=True,
    )
    scheduler.serve(stop, interval_s=interval)
