"""``sqsq infra APP --target lambda|ecs|ec2``: the app's infrastructure as CloudFormation.

Registered from :func:`sqsq.cli.main`; the work is done by :mod:`sqsq.deploy`.
"""

from __future__ import annotations

from pathlib import Path

import click

from . import cli
from .commands import _load


@cli.command()
@click.argument("app")
@click.option(
    "--target",
    type=click.Choice(["lambda", "ecs", "ec2"]),
    required=True,
    help="lambda: a SAM template; ecs: a Fargate service; ec2: launch template + ASG.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@click.option(
    "--handler",
    help="Lambda handler module.function (default: <APP's module>.lambda_handler).",
)
@click.option(
    "--function-timeout",
    type=click.IntRange(1, 900),
    default=None,
    help="Lambda timeout in seconds (default: the longest the app's visibility_timeout_s "
    "allows, (visibility - batching window) // 6).",
)
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option(
    "--batching-window",
    type=click.IntRange(0, 300),
    default=0,
    show_default=True,
    help="MaximumBatchingWindowInSeconds of standard queues' event sources.",
)
@click.option(
    "--maximum-concurrency",
    type=click.IntRange(2, 1000),
    default=10,
    show_default=True,
    help="ScalingConfig.MaximumConcurrency of each queue's event source.",
)
@click.option("--memory", type=click.IntRange(128, 10_240), default=512, show_default=True)
@click.option("--code-uri", default=".", show_default=True, help="SAM CodeUri.")
@click.option(
    "--long-countdowns",
    is_flag=True,
    help="Tasks enqueue tasks with countdowns over 900 s: add the <app>-sqsq-eta schedule "
    "group and let the task runner create schedules there.",
)
@click.option(
    "--step-functions",
    is_flag=True,
    help="State machines send tasks with a task token (sqs:sendMessage.waitForTaskToken): "
    "let the task runner call states:SendTaskSuccess/Failure/Heartbeat.",
)
@click.option(
    "--omit",
    multiple=True,
    metavar="TYPE",
    help="Leave out resources of this CloudFormation type, and what refers to them "
    "(for a local CloudFormation lacking it); repeatable.",
)
def infra(
    app: str,
    target: str,
    out: Path | None,
    handler: str | None,
    function_timeout: int | None,
    batch_size: int,
    batching_window: int,
    maximum_concurrency: int,
    memory: int,
    code_uri: str,
    long_countdowns: bool,
    step_functions: bool,
    omit: tuple[str, ...],
) -> None:
    """Render APP's infrastructure for TARGET: its queues, dead-letter queues
    (with an alarm each), table and schedules — the attributes `sqsq resources
    create` and `sqsq schedule sync` give them — and what runs its tasks, with
    least-privilege IAM."""
    from ..deploy import Options, dump, render

    the_app = _load(app)
    options = Options(
        app_path=app,
        handler=handler,
        function_timeout_s=function_timeout,
        batch_size=batch_size,
        batching_window_s=batching_window,
        maximum_concurrency=maximum_concurrency,
        memory_mb=memory,
        code_uri=code_uri,
        long_countdowns=long_countdowns,
        step_functions=step_functions,
        omit=frozenset(omit),
    )
    text = dump(render(the_app, target, options))  # type: ignore[arg-type]
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)
