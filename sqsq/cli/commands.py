"""The commands of ``sqsq``: worker, dev, resources, gc, send, result, schema."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Literal, cast

import click

from .. import limits
from ..aws_errors import aws_boundary
from ..errors import ConfigurationError
from . import EXIT_FAILURE, _UsageError, cli


def _load(path: str) -> Any:
    from ..app import load_app

    return load_app(path)


def _logging(level: str, fmt: str) -> None:
    from ..logs import configure

    configure(level, fmt)  # type: ignore[arg-type]


_log_options = [
    click.option(
        "--log-level",
        default="INFO",
        show_default=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    ),
    click.option(
        "--log-format",
        default="text",
        show_default=True,
        type=click.Choice(["text", "json"]),
        help="json: one object per line",
    ),
]


def log_options(fn: Any) -> Any:
    for option in reversed(_log_options):
        fn = option(fn)
    return fn


# --- worker ---------------------------------------------------------------------------


@cli.command()
@click.argument("app")
@click.option(
    "-Q",
    "--queues",
    help="Comma-separated logical queues, each with an optional weight: 'high:5,default:1' "
    "(default: all the app uses, weights from the app's queue_weights).",
)
@click.option(
    "--priority",
    type=click.Choice(["weighted", "strict"]),
    default=None,
    help="weighted: under saturation each queue gets its weight's share, none starves; "
    "strict: a queue is taken only while every higher one is empty (can starve lower ones) "
    "(default: the app's queue_priority, weighted).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks run at once (default: the app's concurrency setting, 10).",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=None,
    help="Messages held ready beyond the running ones (default: the app's prefetch, 10; "
    "0 for long tasks shared among workers).",
)
@click.option("--burst", is_flag=True, help="Exit 0 when every queue is empty and nothing runs.")
@click.option(
    "--wait-time",
    type=click.IntRange(0, 20),
    default=None,
    help="Long-polling wait in seconds (default: the app's wait_time_s, 20).",
)
@click.option(
    "--pool",
    type=click.Choice(["threads", "processes"]),
    default="threads",
    show_default=True,
    help="Where sync task functions run.",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=0),
    default=0,
    help="With --pool processes: replace a child after N tasks (0: never).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0, max=115),
    default=None,
    help="Seconds from SIGTERM/SIGINT until everything still held is released; the worker "
    "exits within this + 2 s (default: the app's shutdown_grace_s, 25). A supervisor's stop "
    "timeout must be at least this + 5 s.",
)
@click.option(
    "--metrics",
    type=click.Choice(["off", "emf", "prometheus"]),
    default=None,
    help="Per-task metrics: EMF lines on stdout for CloudWatch, or a Prometheus endpoint "
    "(sqsq[prometheus]) (default: the app's worker_metrics, off).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="With --metrics prometheus: the endpoint's port (default: the app's "
    "worker_metrics_port, 9810; 0: any free port, logged).",
)
@click.option(
    "--metrics-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --metrics emf: seconds between writes (default: the app's "
    "worker_metrics_interval_s, 60).",
)
@log_options
def worker(
    app: str,
    queues: str | None,
    concurrency: int | None,
    prefetch: int | None,
    burst: bool,
    wait_time: int | None,
    pool: str,
    max_tasks_per_child: int,
    grace: float | None,
    metrics: str | None,
    metrics_port: int | None,
    metrics_interval: float | None,
    priority: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run APP's tasks from SQS with long polling.

    APP is 'module:attribute' of a sqsq.App, e.g. examples.quickstart.app:app.
    """
    from ..worker.priorities import parse_queues

    try:
        listed, weights = parse_queues(queues) if queues else ([], {})
    except ValueError as exc:
        raise _UsageError(f"-Q {queues}: {exc}") from None
    _logging(log_level, log_format)
    from ..worker import Worker

    if max_tasks_per_child and pool != "processes":
        click.echo("Warning: --max-tasks-per-child does nothing without --pool processes", err=True)
    the_app = _load(app)
    code = Worker(
        the_app,
        queues=listed or None,
        concurrency=concurrency,
        prefetch=prefetch,
        burst=burst,
        wait_time_s=wait_time,
        pool="processes" if pool == "processes" else "threads",
        app_path=app,
        max_tasks_per_child=max_tasks_per_child,
        grace_s=grace,
        metrics=cast(Literal["off", "emf", "prometheus"] | None, metrics),
        metrics_port=metrics_port,
        metrics_interval_s=metrics_interval,
        weights=weights or None,
        priority="strict" if priority == "strict" else "weighted" if priority else None,
    ).run()
    sys.exit(code)


# --- dev --------------------------------------------------------------------------------


@cli.command()
@click.argument("app")
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Endpoint port (0: free).")
@click.option("-c", "--concurrency", default=None, type=click.IntRange(min=1))
@log_options
def dev(app: str, port: int, concurrency: int | None, log_level: str, log_format: str) -> None:
    """Embedded local AWS endpoint + resources + a worker, no AWS account needed.

    Prints the endpoint so that a second shell can `sqsq send` to it.
    """
    _logging(log_level, log_format)
    from ..local import LocalEndpoint
    from ..resources import apply
    from ..worker import Worker

    endpoint = LocalEndpoint(port=port).start()
    os.environ.update(endpoint.environ())
    the_app = _load(app)
    if the_app.settings.endpoint_url != endpoint.url:
        raise click.ClickException(
            f"{app} sets endpoint_url={the_app.settings.endpoint_url!r} explicitly; "
            "sqsq dev needs it to come from SQSQ_ENDPOINT_URL"
        )
    apply(the_app)
    click.echo(f"sqsq dev: local AWS endpoint at {endpoint.url}", err=True)
    click.echo("  in another shell (sqsq, boto3 and the AWS CLI alike):", err=True)
    environment = {**endpoint.environ(), "AWS_ENDPOINT_URL": endpoint.url}
    for name, value in environment.items():
        click.echo(f"    export {name}={value}", err=True)
    click.echo(f"    {_example_send(app, the_app)}", err=True)
    # Schedules: the local endpoint stores them but never fires them (sqsq.schedules.local).
    stop_schedules = _serve_schedules(the_app)
    # Short long polls: requests cost nothing locally, and Ctrl-C returns in ≤ 2 s.
    code = Worker(the_app, concurrency=concurrency, wait_time_s=2).run()
    stop_schedules()
    endpoint.stop()
    sys.exit(code)


def _serve_schedules(the_app: Any) -> Any:
    """Fire the app's periodic tasks and long countdowns in a thread; returns a stop function."""
    import threading

    from ..schedules import scheduler
    from ..schedules.local import LocalScheduler

    scheduler.apply(the_app)  # the local endpoint stores them, LocalScheduler fires them
    stop = threading.Event()
    thread = threading.Thread(
        target=LocalScheduler(the_app).serve, args=(stop,), name="sqsq-schedules", daemon=True
    )
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=10)

    return stopper


#: Example values for parameters of these annotations in the printed `send` command.
_EXAMPLES: dict[Any, Any] = {str: "x", int: 1, float: 1.0, bool: True}


def _example_send(path: str, the_app: Any) -> str:
    """A `sqsq send` command that works: the first task whose required parameters
    all take a str, int, float or bool, with example values."""
    import inspect
    import typing

    for name, task in the_app.tasks.items():
        try:
            hints = typing.get_type_hints(task.fn)
        except Exception:
            continue
        required = [
            p
            for p in task.signature.signature.parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if all(hints.get(p.name) in _EXAMPLES for p in required):
            kwargs = json.dumps({p.name: _EXAMPLES[hints[p.name]] for p in required})
            return f"sqsq send {path} {name} --kwargs '{kwargs}' --wait 10"
    return f"sqsq send {path} TASK --kwargs '{{...}}' --wait 10"


# --- resources --------------------------------------------------------------------------


@cli.group()
def resources() -> None:
    """Create the app's queues, dead-letter queues and table."""


@resources.command("create")
@click.argument("app")
@click.option("--dry-run", is_flag=True, help="List what would change; change nothing.")
def resources_create(app: str, dry_run: bool) -> None:
    """Create or update, idempotently, the queues, DLQs and table APP needs."""
    from ..resources import apply, plan

    the_app = _load(app)
    changes = plan(the_app)
    pending = [c for c in changes if c.action != "ok"]
    for change in changes:
        verb = change.action if not dry_run or change.action == "ok" else f"would {change.action}"
        detail = f"  ({change.detail})" if change.detail else ""
        click.echo(f"{verb:>14}  {change.kind:<18} {change.name}{detail}")
    if not pending:
        click.echo("nothing to change: every resource is up to date")
    elif dry_run:
        click.echo(f"dry run: {len(pending)} change(s) not made")
    else:
        apply(the_app, changes)
        click.echo(f"done: {len(pending)} change(s) made")


@cli.command()
@click.argument("app")
@click.option(
    "--older-than",
    "older_than_s",
    default=float(limits.SQS_MAX_RETENTION_S),
    type=click.FloatRange(min=0),
    show_default=True,
    help="Seconds since an object was written (default: SQS's longest retention, 14 days).",
)
@click.option("--dry-run", is_flag=True, help="List the orphans; delete nothing.")
def gc(app: str, older_than_s: float, dry_run: bool) -> None:
    """Delete APP's payload objects in S3 that no message can point to any more."""
    from ..payloads.gc import collect

    report = collect(_load(app), older_than_s=older_than_s, dry_run=dry_run)
    for key in report.orphans if dry_run else ():
        click.echo(f"would delete  {key}")
    verb = "would delete" if dry_run else "deleted"
    done = len(report.orphans) if dry_run else report.deleted
    click.echo(f"{verb} {done} of {report.scanned} payload objects")
    for key, code in report.errors:
        click.echo(f"not deleted  {key}  ({code})", err=True)
    if report.errors:
        raise SystemExit(EXIT_FAILURE)


# --- send / result --------------------------------------------------------------------


def _json_arg(value: str | None, kind: type, name: str) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=name) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=name)
    return parsed


@cli.command()
@click.argument("app")
@click.argument("task")
@click.option(
    "--args", "args_json", help="Positional arguments as a JSON array, e.g. '[\"o-1\", 5]'."
)
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("-Q", "--queue", help="Logical queue (default: the task's).")
@click.option("--countdown", type=click.FloatRange(0, 900), help="Delay in seconds (<= 900).")
@click.option("--wait", type=click.FloatRange(min=0), help="Wait this many seconds for the result.")
def send(
    app: str,
    task: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    countdown: float | None,
    wait: float | None,
) -> None:
    """Enqueue TASK by its registered name and print the task id.

    TASK and the arguments are checked against the loaded APP first (the same
    validation the worker applies), so a typo or a wrong argument exits 2 and
    sends nothing.
    """
    from ..errors import ArgumentError

    the_app = _load(app)
    args = _json_arg(args_json, list, "--args")
    kwargs = _json_arg(kwargs_json, dict, "--kwargs")
    registered = the_app.tasks.get(task)
    if registered is None:
        raise _UsageError(_unknown_task(the_app, task))
    try:
        result = registered.apply_async(args, kwargs, queue=queue, countdown=countdown)
    except ArgumentError as exc:
        raise _UsageError(str(exc)) from None
    click.echo(result.id)
    if wait is not None:
        from ..errors import ResultTimeout

        try:
            value = result.get(timeout=wait, propagate=False)
        except ResultTimeout:
            click.echo(f"PENDING after {wait:g} s", err=True)
            sys.exit(EXIT_FAILURE)
        _print_record(result.record)
        if not result.successful():
            sys.exit(EXIT_FAILURE)
        del value


def _unknown_task(the_app: Any, name: str) -> str:
    """``task 'x' is not registered in APP`` with a "did you mean" (difflib)."""
    import difflib

    names = sorted(the_app.tasks)
    by_short = {n.rsplit(".", 1)[-1]: n for n in names}
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6) or [
        by_short[m] for m in difflib.get_close_matches(name, list(by_short), n=1, cutoff=0.6)
    ]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(names) or "none"
    return f"task {name!r} is not registered in {the_app.name!r}{hint} (tasks: {known})"


def _attempt_fields(attempt: Any) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "state": attempt.state.value,
        "worker": attempt.worker,
        "started_at": attempt.started_at.isoformat() if attempt.started_at else None,
        "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
        "exc_type": attempt.exc_type,
        "exc_message": attempt.exc_message,
        "retry_delay_s": attempt.retry_delay_s,
    }


def _attempt_line(attempt: Any) -> str:
    """``#2  RETRY  host:41  12:00:01.250  0.52s  builtins.ValueError: boom  next in 2s``"""
    parts = [f"#{attempt.number}", attempt.state.value, attempt.worker or "?"]
    if attempt.started_at:
        parts.append(attempt.started_at.isoformat(timespec="milliseconds"))
        if attempt.finished_at:
            parts.append(f"{(attempt.finished_at - attempt.started_at).total_seconds():.2f}s")
    if attempt.exc_type:
        parts.append(f"{attempt.exc_type}: {attempt.exc_message or ''}".strip())
    if attempt.retry_delay_s is not None:
        parts.append(f"next in {attempt.retry_delay_s:g}s")
    return "  ".join(parts)


def _print_record(record: Any, as_json: bool = False, attempts: Sequence[Any] = ()) -> None:
    if record is None:
        click.echo("state: PENDING (no result stored, or it expired)")
        return
    fields = {
        "task_id": record.task_id,
        "state": record.state.value,
        "task": record.task,
        "queue": record.queue,
        "result": record.value if record.state.value == "SUCCESS" else None,
        "exc_type": record.exc_type,
        "exc_message": record.exc_message,
        "dead_letter_reason": record.dead_letter_reason,
        "attempts": record.attempts,
        "worker": record.worker,
        "enqueued_at": record.enqueued_at.isoformat() if record.enqueued_at else None,
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
    }
    if as_json:
        timeline = [_attempt_fields(a) for a in attempts]
        whole = {**fields, "traceback": record.traceback, "timeline": timeline}
        click.echo(json.dumps(whole, indent=2))
        return
    for name, value in fields.items():
        if value is not None:
            shown = json.dumps(value) if name == "result" else value
            click.echo(f"{name + ':':<20}{shown}")
    if attempts:
        click.echo("timeline:")
        for attempt in attempts:
            click.echo("  " + _attempt_line(attempt))
    if record.traceback:
        click.echo("traceback:\n" + record.traceback.rstrip())


@cli.command()
@click.argument("app")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def result(app: str, task_id: str, as_json: bool) -> None:
    """Show the stored result of TASK_ID (state, value or error, timings) and its
    attempt timeline: each try, its worker, start and finish, how it ended.

    Exits 1 when the task failed or was revoked (as `send --wait` does), 0 otherwise.
    """
    the_app = _load(app)
    handle = the_app.AsyncResult(task_id)
    record = handle.record
    tries = handle.attempts() if record is not None else []
    _print_record(record, as_json, tries)
    if record is not None and record.state.value in ("FAILURE", "REVOKED"):
        sys.exit(EXIT_FAILURE)  # as `send --wait`: the task did not succeed


@cli.command()
def schema() -> None:
    """Print the envelope's JSON Schema (what any producer must send)."""
    from ..envelope import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


# --- dlq -------------------------------------------------------------------------------


@aws_boundary(lambda the_app, queue: queue)
def _dlq_pair(the_app: Any, queue: str) -> tuple[str, str, str, str]:
    """``(source, dlq, source_url, dlq_url)`` for a logical queue of the app (as
    ``send -Q`` and ``worker -Q`` take it) or a physical queue or DLQ name."""
    from ..dlq import queue_pair

    tried = []
    for physical in dict.fromkeys([the_app.queue_name(queue), queue]):
        source, dlq_name = queue_pair(physical)
        tried.append(dlq_name)
        try:
            dlq_url = the_app.directory.url(dlq_name)
        except ConfigurationError:
            continue
        try:
            source_url = the_app.directory.url(source)
        except ConfigurationError:
            raise _UsageError(
                f"the source queue {source!r} of {dlq_name!r} does not exist"
            ) from None
        return source, dlq_name, source_url, dlq_url
    raise _UsageError(
        f"no dead-letter queue for {queue!r} (tried {', '.join(map(repr, tried))}); "
        "create the app's queues with `sqsq resources create APP`"
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@cli.group()
def dlq() -> None:
    """Inspect and redrive dead-letter queues.

    QUEUE is a logical queue of APP, as `send -Q` and `worker -Q` take it (e.g.
    default); a physical queue or DLQ name (quickstart-default-dlq) works too.
    """


@dlq.command("ls")
@click.argument("app")
@click.argument("queue")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N messages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
def dlq_ls(app: str, queue: str, limit: int | None, as_json: bool) -> None:
    """List dead-lettered messages: task, id, reason, attempts, age (none is consumed);
    a body in S3 (a claim check's pointer) with its object and size.

    The age counts from when the message was dead-lettered; for a message SQS's
    redrive policy moved out of a standard queue it counts from its enqueue time
    (SQS keeps that, and records no move time), marked * (JSON: age_since
    "enqueued"). The title counts the DLQ's visible and in-flight messages (in
    flight: received by someone and not yet deleted or released; those cannot be
    listed now).
    """
    from ..dlq import AGE_SINCE_ENQUEUED, describe, peek, queue_counts

    the_app = _load(app)
    client = the_app.clients.sync("sqs")
    _, dlq_name, _, dlq_url = _dlq_pair(the_app, queue)

    visible, in_flight = queue_counts(client, dlq_url)
    rows = [describe(m) for m in peek(client, dlq_url, limit)]
    payloads = [row.payload for row in rows]  # bodies in S3: pointer and size
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.__dict__))
        click.echo(f"{dlq_name}: {visible} visible, {in_flight} in flight", err=True)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..logs import escape_controls

    table = Table(title=f"{dlq_name}: {visible} visible, {in_flight} in flight")
    for column in ("task", "task id", "reason", "error", "attempts", "age (dead-lettered)"):
        table.add_column(column)
    if any(payloads):
        table.add_column("payload (S3)")
    since_enqueued = False
    for row, payload in zip(rows, payloads, strict=True):
        # values come from messages: shown as plain text (no rich markup, no controls)
        cells = (row.task or "?", row.task_id or row.message_id, row.reason, row.error_type or "")
        marked = row.age_since == AGE_SINCE_ENQUEUED
        since_enqueued |= marked
        table.add_row(
            *(Text(escape_controls(cell)) for cell in cells),
            "?" if row.attempts is None else str(row.attempts),
            _age(row.age_s) + (" *" if marked else ""),
            *(
                [Text(escape_controls(f"{payload['url']} ({payload['bytes']:,} B)"))]
                if payload
                else [""] * any(payloads)
            ),
        )
    if since_enqueued:
        table.caption = (
            "* since enqueued: SQS's redrive policy moved it and keeps the enqueue time "
            "(standard queues)"
        )
    Console(width=160).print(table)


@dlq.command("redrive")
@click.argument("app")
@click.argument("queue")
@click.option("--task", "task_name", help="Only messages of this task name.")
@click.option("--error", help="Only messages with this error type or reason (e.g. ValueError).")
@click.option(
    "--rate",
    type=click.IntRange(1, 500),
    help="Messages per second for StartMessageMoveTask (no filters).",
)
def dlq_redrive(
    app: str, queue: str, task_name: str | None, error: str | None, rate: int | None
) -> None:
    """Move dead-lettered messages back to their source queue.

    Without filters: an SQS message move task (StartMessageMoveTask to the source
    queue), followed until it ends; exit 1 if it FAILED or was CANCELLED. With
    --task/--error, where move tasks are not available, or while signing keys
    rotate (signing_previous_keys set: a previous key's signature is replaced with
    the current key's): sqsq moves the messages that are in the DLQ now, each
    once, and ends.
    """
    from ..dlq import MoveTask, redrive, start_move_task, wait_move_task

    the_app = _load(app)
    client = the_app.clients.sync("sqs")
    source, dlq_name, source_url, dlq_url = _dlq_pair(the_app, queue)
    keys = the_app.verification_keys
    # a move task moves messages as they are: while keys rotate, sqsq moves them
    # itself, re-signing with the current key what a previous one signed
    if task_name is None and error is None and len(keys) < 2:

        @aws_boundary(lambda url: url)
        def arn(url: str) -> str:
            attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            return str(attributes["Attributes"]["QueueArn"])

        dlq_arn = arn(dlq_url)
        # one attempt: where the endpoint lacks the action, fall back at once
        from ..clients import Clients

        once = Clients(the_app.settings.model_copy(update={"max_attempts": 1})).sync("sqs")
        handle = start_move_task(once, dlq_arn, arn(source_url), rate)
        if handle is not None:
            click.echo(f"message move task {handle}: {dlq_name} -> {source}")

            def show(task: MoveTask) -> None:
                of = "?" if task.to_move is None else str(task.to_move)
                click.echo(f"  {task.status}: {task.moved} of {of} moved", err=True)

            task = wait_move_task(client, dlq_arn, handle, progress=show)
            status = "COMPLETED" if task.succeeded else task.status
            click.echo(f"{status}: moved {task.moved} message(s) to {source}; {task.failed} failed")
            if task.stopped_at_count:
                click.echo(
                    f"  (stopped once the {task.to_move} message(s) in {dlq_name} at the start "
                    "had moved; later dead letters stay)"
                )
            if not task.succeeded:
                reason = f": {task.failure_reason}" if task.failure_reason else ""
                click.echo(f"Error: the message move task {task.status}{reason}", err=True)
                sys.exit(EXIT_FAILURE)
            return
        click.echo("no message move tasks on this endpoint: sqsq moves the messages itself")
    from rich.progress import Progress

    visible, _ = _queue_counts(client, dlq_url)
    with Progress(transient=False) as progress:
        bar = progress.add_task(f"{dlq_name} -> {source}", total=visible or None)
        report = redrive(
            client,
            dlq_url,
            source_url,
            task=task_name,
            error=error,
            progress=lambda n: progress.advance(bar, n),
            keys=keys,
        )
    again = f"; {report.again} failed again while this ran" if report.again else ""
    click.echo(
        f"moved {report.moved} message(s) to {source}; "
        f"{report.skipped + report.again} left in {dlq_name}{again}"
    )


def _queue_counts(client: Any, url: str) -> tuple[int, int]:
    from ..dlq import queue_counts

    return queue_counts(client, url)


@dlq.command("purge")
@click.argument("app")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_purge(app: str, queue: str, yes: bool) -> None:
    """Delete every message in the DLQ (PurgeQueue; asks first)."""
    the_app = _load(app)
    client = the_app.clients.sync("sqs")
    _, dlq_name, _, url = _dlq_pair(the_app, queue)
    visible, in_flight = _queue_counts(client, url)
    if not yes:
        click.confirm(
            f"Delete all {visible + in_flight} message(s) in {dlq_name}? This cannot be undone",
            abort=True,
        )
    with aws_boundary(dlq_name):
        client.purge_queue(QueueUrl=url)
    click.echo(f"purged {dlq_name}")


# --- status, revoke, purge (cli/status.py) ----------------------------------------------

from .status import purge, revoke, status  # noqa: E402  (after cli's own commands)

cli.add_command(status)
cli.add_command(revoke)
cli.add_command(purge)

# --- commands in their own modules: celery check (cli/celery_check.py), dashboard
# (cli/dashboard.py), limits (cli/limits.py) ---------------------------------------------

from . import celery_check as _celery_check  # noqa: E402, F401  (registers `sqsq celery`)
from . import dashboard as _dashboard  # noqa: E402, F401  (registers `sqsq dashboard`)
from . import limits as _limits  # noqa: E402, F401  (registers `sqsq limits`)
