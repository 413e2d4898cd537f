"""``sqsq dashboard APP [APP…]``: the web UI (``sqsq.dashboard``, the ``dashboard`` extra)."""

from __future__ import annotations

import click

from ..dashboard import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_RATE  # light: no Starlette
from . import cli
from .commands import _load


@cli.command()
@click.argument("apps", nargs=-1, required=True)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to listen on: this machine only by default; put an authenticating "
    "proxy in front before listening on others.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Serve retry, revoke, replay and redrive by filter; every page then needs a user "
    "(the app's dashboard_users over HTTP basic, or dashboard_identity_header).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_RATE,
    show_default=True,
    help="Messages per second an action moves back at most.",
)
def dashboard(
    apps: tuple[str, ...], host: str, port: int, allow_actions: bool, rate: float
) -> None:
    """Serve a web dashboard of one or more apps (`pip install 'sqsq[dashboard]'`).

    Overview (queues, DLQs, workers, recent failures), tasks by state / task / queue /
    time and errors grouped by (task, exception type) — these two need the app's
    listing index (listing_index=True) —, any task by id with its traceback and
    attempts, dead letters, schedules and workers. Pages read AWS only when opened.
    Read-only unless --allow-actions.
    """
    from ..dashboard import serve

    serve(
        [_load(path) for path in apps], host=host, port=port, allow_actions=allow_actions, rate=rate
    )
