"""``sqsq status`` (queues, workers, failures; a health check), ``sqsq revoke``,
``sqsq purge``. The reading is ``sqsq/status.py``'s; this module prints it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from .. import limits
from ..aws_errors import aws_boundary
from ..errors import AWSError, ConfigurationError, SqsqError
from . import EXIT_FAILURE, _AWSFailure, _UsageError

if TYPE_CHECKING:
    from ..status import Status, Thresholds

#: Seconds between redraws of ``--watch`` by default.
WATCH_INTERVAL_S = 5.0


def _load(path: str) -> Any:
    from ..app import load_app

    return load_app(path)


def _age(seconds: float | None) -> str:
    from .commands import _age as age

    return age(seconds)


def _since(epoch: float, now: float) -> str:
    return _age(max(0.0, now - epoch)) + " ago"


# --- status ---------------------------------------------------------------------------


@click.command()
@click.argument("app")
@click.option("-Q", "--queues", help="Comma-separated logical queues (default: all the app uses).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for machines).")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=WATCH_INTERVAL_S,
    show_default=True,
    help="Seconds between redraws of --watch.",
)
@click.option(
    "--max-age",
    type=click.FloatRange(min=0),
    help="Exit 1 if a queue's oldest message is older than this, seconds (CloudWatch's age).",
)
@click.option("--max-dlq", type=click.IntRange(min=0), help="Exit 1 if a DLQ holds more than N.")
@click.option(
    "--min-workers", type=click.IntRange(min=0), help="Exit 1 if fewer than N workers are alive."
)
@click.option(
    "--host",
    help="Count only the workers on this host (with --min-workers: a container's own "
    'health check, e.g. --host "$(hostname)").',
)
@click.option(
    "--window",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="List the failures of this many seconds back.",
)
@click.option(
    "--failure-sample",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Read at most N dead-lettered messages per DLQ (0: list no failures).",
)
def status(
    app: str,
    queues: str | None,
    as_json: bool,
    watch: bool,
    interval: float,
    max_age: float | None,
    max_dlq: int | None,
    min_workers: int | None,
    host: str | None,
    window: float,
    failure_sample: int,
) -> None:
    """Show APP's queues, live workers and the last hour's failures.

    Per queue: messages visible, in flight, delayed; the age of the oldest
    (CloudWatch's ApproximateAgeOfOldestMessage, "?" where CloudWatch has none);
    the depth of its DLQ. The workers alive, from their heartbeats. The failures
    of the last --window seconds by task and error, read from the DLQs (messages
    are released again at once: nothing is consumed).

    As a health check: with --max-age, --max-dlq or --min-workers it exits 1 when
    a threshold is broken and prints which one (an unknown age is not a breach);
    2 for a bad APP or missing resources, 3 when AWS cannot be reached.
    """
    from ..status import Thresholds, breaches, collect

    the_app = _load(app)
    selected = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    thresholds = Thresholds(max_age_s=max_age, max_dlq=max_dlq, min_workers=min_workers)

    def take() -> Status:
        return collect(
            the_app,
            queues=selected,
            window_s=window,
            failure_sample=failure_sample,
            host=host,
        )

    if watch:
        _watch(take, thresholds, interval)
        return
    found = take()
    broken, unchecked = breaches(found, thresholds)
    if as_json:
        click.echo(json.dumps({**found.as_dict(), "breaches": broken, "unchecked": unchecked}))
    else:
        from rich.console import Console

        Console(width=160).print(_render(found, broken, unchecked))
    for line in unchecked:
        click.echo(f"Warning: {line}", err=True)
    for line in broken:
        click.echo(f"Unhealthy: {line}", err=True)
    if broken:
        sys.exit(EXIT_FAILURE)


def _watch(take: Any, thresholds: Thresholds, interval: float) -> None:
    """Redraw until Ctrl-C; an AWS error is shown, and the next round tries again.

    Ctrl-C (SIGINT) stops after the reading under way (exit 0; its calls end within
    their timeouts), so no ``KeyboardInterrupt`` lands inside the reading's thread pool,
    where one can leave a lock held and hang the exit. A second Ctrl-C quits at once
    (exit 130), without waiting for the calls under way (a stalled endpoint holds them
    up to botocore's 60 s read timeout)."""
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from ..status import breaches

    stop = threading.Event()
    with Live(Text("reading…"), auto_refresh=False) as live:

        def stopping(signum: int, frame: Any) -> None:
            if not stop.is_set():
                stop.set()
                return
            # the second Ctrl-C: the reading's threads may be in a call, never joined
            live.console.show_cursor(True)
            sys.stdout.flush()
            os._exit(128 + signal.SIGINT)

        previous = signal.signal(signal.SIGINT, stopping)
        try:
            while not stop.is_set():
                try:
                    found = take()
                except (AWSError, SqsqError) as exc:
                    shown: Any = Text(f"Error: {exc} (again in {interval:g} s)", style="red")
                else:
                    shown = _render(found, *breaches(found, thresholds))
                stamp = Text(f"every {interval:g} s, Ctrl-C to stop", style="dim")
                live.update(Group(shown, stamp), refresh=True)
                stop.wait(interval)
        finally:
            signal.signal(signal.SIGINT, previous)


def _render(found: Status, broken: list[str], unchecked: list[str]) -> Any:
    """The rich tables of a :class:`~sqsq.status.Status`."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from ..logs import escape_controls

    now = found.taken_at
    queues = Table(title=f"{found.app}: queues", title_justify="left")
    for column in ("queue", "visible", "in flight", "delayed", "oldest", "DLQ", "in DLQ"):
        queues.add_column(column, justify="left" if column in ("queue", "DLQ") else "right")
    notes: dict[str, None] = {}
    for q in found.queues:
        age = _age(q.age_s) if q.age_s is not None else ("-" if not q.visible else "?")
        if q.age_s is None and q.visible and q.age_note:
            notes[f"? {q.age_note}"] = None
        queues.add_row(
            q.name,
            str(q.visible),
            str(q.in_flight),
            str(q.delayed),
            age,
            q.dlq,
            Text(str(q.dlq_depth), style="red" if q.dlq_depth else ""),
        )
    workers = Table(title=f"workers alive: {len(found.workers)}", title_justify="left")
    for column in ("worker", "queues", "pool", "busy", "processed", "failed", "up", "last seen"):
        workers.add_column(column, justify="left" if column in ("worker", "queues") else "right")
    for w in found.workers:
        workers.add_row(
            Text(escape_controls(w.worker_id)),
            ", ".join(w.queues),
            w.pool,
            f"{w.busy}/{w.concurrency}",
            str(w.processed),
            str(w.failed),
            _age(max(0.0, now - w.started_at)),
            _since(w.last_seen, now),
        )
    title = f"failures, last {_age(found.window_s)} (DLQs)"
    failures = Table(title=title, title_justify="left")
    for column in ("task", "error", "count", "latest"):
        failures.add_column(column, justify="right" if column in ("count", "latest") else "left")
    for f in found.failures:
        failures.add_row(
            Text(escape_controls(f.task)),
            Text(escape_controls(f.error)),
            str(f.count),
            _age(f.latest_s) + " ago",
        )
    if found.failures_note:
        notes[found.failures_note] = None
    requests = sum(found.requests.values())
    lines = [Text(note, style="dim") for note in notes]
    lines.append(Text(f"{requests} AWS requests, {found.elapsed_s:.2f} s", style="dim"))
    lines += [Text(f"not checked: {line}", style="yellow") for line in unchecked]
    lines += [Text(f"UNHEALTHY: {line}", style="bold red") for line in broken]
    return Group(queues, workers, failures, *lines)


# --- revoke ---------------------------------------------------------------------------


@click.command()
@click.argument("app")
@click.argument("task_ids", nargs=-1, required=True)
@click.option(
    "--ttl",
    type=click.FloatRange(min=1, max=limits.SQS_MAX_RETENTION_S),
    default=limits.SQS_MAX_RETENTION_S,
    help="Seconds the revocations are kept (default 14 days: the longest a message can "
    "wait in SQS).",
)
def revoke(app: str, task_ids: tuple[str, ...], ttl: float) -> None:
    """Revoke TASK_IDS: a worker that receives one of them later records REVOKED,
    deletes its message and does not run it.

    One BatchWriteItem per 25 ids. Workers learn of a revocation within their
    revocation_interval_s (2 s); a task already running is not stopped.
    """
    from ..dynamodb import put
    from ..revocations import revocation_item

    the_app = _load(app)
    ids = list(dict.fromkeys(task_ids))
    writes = [put(task_id, revocation_item(the_app.name, task_id, ttl)) for task_id in ids]
    with aws_boundary(the_app.table_name):
        failed = the_app.results.write(writes)
    for task_id in ids:
        if task_id not in failed:
            click.echo(f"revoked {task_id}")
    if failed:
        raise _AWSFailure(
            f"{len(failed)} revocation(s) not written (DynamoDB left them unprocessed): "
            + ", ".join(sorted(failed))
        )


# --- purge ----------------------------------------------------------------------------


@aws_boundary(lambda the_app, queue, dlq: queue)
def _queue_url(the_app: Any, queue: str, dlq: bool) -> tuple[str, str]:
    """``(name, url)`` of a logical queue of the app, or a physical queue name
    (``--dlq``: of its dead-letter queue)."""
    from ..sqs import dead_letter_name

    candidates = []
    with contextlib.suppress(ConfigurationError):  # not a valid logical name
        candidates.append(the_app.queue_name(queue))
    candidates.append(queue)
    tried = []
    for name in dict.fromkeys(candidates):
        name = dead_letter_name(name) if dlq else name
        tried.append(name)
        try:
            return name, the_app.directory.url(name)
        except ConfigurationError:
            continue
    raise _UsageError(
        f"no queue {queue!r} (tried {', '.join(map(repr, tried))}); "
        "create the app's queues with `sqsq resources create APP`"
    )


@click.command()
@click.argument("app")
@click.argument("queue")
@click.option("--dlq", is_flag=True, help="Purge QUEUE's dead-letter queue instead.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(app: str, queue: str, dlq: bool, yes: bool) -> None:
    """Delete every message in QUEUE (PurgeQueue; asks first).

    QUEUE is a logical queue of APP (default) or a physical queue name. SQS takes
    up to 60 s to delete the messages, and messages sent in that time may be
    deleted too; a queue can be purged once per 60 s (a second PurgeQueue within
    it fails with PurgeQueueInProgress). Running tasks go on; their results are
    stored.
    """
    from ..dlq import queue_counts

    the_app = _load(app)
    client = the_app.clients.sync("sqs")
    name, url = _queue_url(the_app, queue, dlq)
    visible, in_flight = queue_counts(client, url)
    if not yes:
        click.confirm(
            f"Delete all {visible + in_flight} message(s) in {name} ({visible} visible, "
            f"{in_flight} in flight)? This cannot be undone",
            abort=True,
        )
    try:
        with aws_boundary(name):
            client.purge_queue(QueueUrl=url)
    except AWSError as exc:
        if exc.code and exc.code.endswith("PurgeQueueInProgress"):
            raise _AWSFailure(
                f"{name} was purged less than 60 s ago (PurgeQueueInProgress: SQS allows "
                "one PurgeQueue per queue per 60 s); try again in a minute"
            ) from None
        raise
    click.echo(
        f"purged {name}: SQS deletes the messages within 60 s (messages sent meanwhile "
        "may be deleted too)"
    )
