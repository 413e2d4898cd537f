"""``sqsq celery check CELERY_APP SQSQ_APP``: what a move off Celery still lacks
(``sqsq.interop.celery_check``). Exits 0 when every Celery task has an sqsq
counterpart and every beat entry an EventBridge expression, else 1."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from . import EXIT_FAILURE, _UsageError, cli
from .commands import _load


@cli.group("celery")
def celery_group() -> None:
    """Moving from Celery: compare a Celery app with its sqsq port."""


def _load_celery(path: str) -> Any:
    """The Celery app at ``path`` (``module`` or ``module:attribute``, as ``celery -A``).

    Raises:
        _UsageError: Celery is not installed, or the app cannot be loaded.
    """
    try:
        from celery import Celery
        from celery.app.utils import find_app
    except ImportError:
        raise _UsageError("sqsq celery check needs Celery installed (pip install celery)") from None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found = find_app(path)
    except Exception as exc:  # the user's module: any error is a bad CELERY_APP
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _UsageError(
            f"cannot load Celery app {path!r}: {type(exc).__name__}: {first}"
        ) from None
    if not isinstance(found, Celery):
        raise _UsageError(f"{path!r} is a {type(found).__name__}, not a Celery app")
    return found


@celery_group.command("check")
@click.argument("celery_app")
@click.argument("app")
def check(celery_app: str, app: str) -> None:
    """List the tasks of CELERY_APP that APP (the sqsq port) lacks, the options that
    differ, and the beat entries with the EventBridge expression each becomes."""
    from ..interop.celery_check import compare

    celery = _load_celery(celery_app)
    report = compare(celery, _load(app))
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(EXIT_FAILURE)
