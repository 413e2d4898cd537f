"""``sqsq limits set|clear|ls``: change an app's rate limits at run time, no deploy.

An override is one item in the app's DynamoDB table (``sqsq.flow.overrides``);
every worker and warm Lambda container applies it within ``revocation_interval_s``
(it comes with the revocation Query they already make).
"""

from __future__ import annotations

from typing import Any

import click

from . import _UsageError, cli
from .commands import _load, _unknown_task


@cli.group()
def limits() -> None:
    """Rate limits of tasks and queues, changed at run time (no deploy)."""


def _target(the_app: Any, names: tuple[str, ...], queue: str | None, want: int) -> tuple[str, str]:
    """``("task" | "queue", name)`` from the arguments after APP."""
    if queue is not None:
        if len(names) != want - 1:
            raise _UsageError("with --queue, give no TASK")
        if queue not in the_app.queues():
            raise _UsageError(
                f"queue {queue!r} is not used by {the_app.name} "
                f"(its queues: {', '.join(the_app.queues())})"
            )
        return "queue", queue
    if len(names) != want:
        raise _UsageError("give a TASK, or --queue QUEUE")
    if names[0] not in the_app.tasks:
        raise _UsageError(_unknown_task(the_app, names[0]))
    return "task", names[0]


@limits.command("set")
@click.argument("app")
@click.argument("args", nargs=-1, metavar="[TASK] RATE")
@click.option("-Q", "--queue", help="Limit this logical queue instead of a task.")
def limits_set(app: str, args: tuple[str, ...], queue: str | None) -> None:
    """Limit TASK (or --queue QUEUE) of APP to RATE: Celery's syntax, "50/s",
    "10/m", "1000/h" or a number per second. It replaces the declared limit until
    `sqsq limits clear`."""
    from ..calls import run
    from ..flow.overrides import setting
    from ..flow.rates import parse_rate

    the_app = _load(app)
    if not args:
        raise _UsageError("give a RATE, e.g. 50/s")
    kind, name = _target(the_app, args[:-1], queue, 1)
    try:
        rate = parse_rate(args[-1])
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    run(setting(the_app.table_name, the_app.name, kind, name, rate), the_app.clients)
    click.echo(
        f"{kind} {name}: {rate} (workers apply it within "
        f"{the_app.settings.revocation_interval_s:g}s)"
    )


@limits.command("clear")
@click.argument("app")
@click.argument("task", required=False)
@click.option("-Q", "--queue", help="Clear the override of this logical queue.")
def limits_clear(app: str, task: str | None, queue: str | None) -> None:
    """Remove the override of TASK (or --queue QUEUE): the declared limit applies again."""
    from ..calls import run
    from ..flow.overrides import clearing

    the_app = _load(app)
    kind, name = _target(the_app, (task,) if task else (), queue, 1)
    if run(clearing(the_app.table_name, the_app.name, kind, name), the_app.clients):
        click.echo(f"{kind} {name}: override cleared")
    else:
        click.echo(f"{kind} {name}: had no override")


@limits.command("ls")
@click.argument("app")
def limits_ls(app: str) -> None:
    """List APP's rate limits: each task's and queue's declared limit and its override."""
    from ..calls import run
    from ..flow.overrides import listing

    the_app = _load(app)
    overrides = {
        (kind, name): rate
        for kind, name, rate in run(listing(the_app.table_name, the_app.name), the_app.clients)
    }
    rows = [
        ("task", name, str(task.rate_limit or "-")) for name, task in sorted(the_app.tasks.items())
    ]
    rows += [
        ("queue", queue, str(the_app.settings.queue_rate_limits.get(queue, "-")))
        for queue in the_app.queues()
    ]
    known = {(kind, name) for kind, name, _ in rows}
    rows += [(kind, name, "-") for kind, name in sorted(overrides) if (kind, name) not in known]
    click.echo(f"{'KIND':<6} {'NAME':<40} {'DECLARED':<10} OVERRIDE")
    for kind, name, declared in rows:
        click.echo(f"{kind:<6} {name:<40} {declared:<10} {overrides.get((kind, name), '-')}")
