"""``sqsq infra APP --target lambda|ecs|ec2``: the app's infrastructure as CloudFormation.

Registered from :func:`sqsq.cli.main`; the work is done by :mod:`sqsq.deploy`.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..deploy import ARCHITECTURES, RUNTIME, RUNTIMES
from ..errors import ConfigurationError
from . import cli
from .commands import _load

#: The function's runtime and architecture, the same in `infra` and `package`.
runtime_option = click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default=RUNTIME,
    show_default=True,
    help="Lambda runtime of the function.",
)
architecture_option = click.option(
    "--architecture",
    type=click.Choice(ARCHITECTURES),
    default="arm64",
    show_default=True,
    help="Instruction set of the function.",
)


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
    help="Lambda timeout in seconds (default: derived from the served tasks' time_limit: the "
    "longest + 3 s to start + a safety margin of 10 %, at least 2 s).",
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
    default=None,
    help="ScalingConfig.MaximumConcurrency of each queue's event source (default: the app's "
    "lambda_maximum_concurrency setting, else 10).",
)
@click.option("--memory", type=click.IntRange(128, 10_240), default=512, show_default=True)
@click.option(
    "--code-uri",
    default=None,
    help="SAM CodeUri, relative to the template's directory: the directory holding the app's "
    "top-level package and the function's requirements.txt (default: where APP is imported "
    "from, written relative to --out), or the .zip `sqsq package` wrote.",
)
@click.option(
    "--layer-uri",
    default=None,
    help="ContentUri of a layer holding sqsq and the handler's requirements (the layer "
    ".zip of `sqsq package --layer`): the template declares it and the function uses it.",
)
@runtime_option
@architecture_option
@click.option(
    "--worker-queue",
    "worker_queues",
    multiple=True,
    metavar="QUEUE",
    help="A logical queue the function does not consume, left to `sqsq worker` (e.g. for "
    "tasks whose time_limit is over Lambda's 900 s); repeatable.",
)
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
    maximum_concurrency: int | None,
    memory: int,
    code_uri: str | None,
    layer_uri: str | None,
    runtime: str,
    architecture: str,
    worker_queues: tuple[str, ...],
    long_countdowns: bool,
    step_functions: bool,
    omit: tuple[str, ...],
) -> None:
    """Render APP's infrastructure for TARGET: its queues, dead-letter queues,
    table and schedules — the attributes `sqsq resources create` and `sqsq
    schedule sync` give them — and what runs its tasks, with least-privilege IAM;
    for operators, alarms (oldest message's age, failure rate, DLQ depth), a
    CloudWatch dashboard, log retention and, on ECS, a health check."""
    from ..deploy import Options, bundle, dump, render

    the_app = _load(app)
    if code_uri is None:
        code_uri = bundle.code_uri(app, out) if target == "lambda" else "."
    options = Options(
        app_path=app,
        handler=handler,
        function_timeout_s=function_timeout,
        batch_size=batch_size,
        batching_window_s=batching_window,
        maximum_concurrency=maximum_concurrency,
        memory_mb=memory,
        code_uri=code_uri,
        layer_uri=layer_uri,
        runtime=runtime,
        architecture=architecture,
        worker_queues=frozenset(worker_queues),
        long_countdowns=long_countdowns,
        step_functions=step_functions,
        omit=frozenset(omit),
    )
    text = dump(render(the_app, target, options))  # type: ignore[arg-type]
    if target == "lambda" and not code_uri.endswith(".zip"):  # a .zip: `sqsq package` built it
        base = out.resolve().parent if out is not None else Path.cwd()
        missing = bundle.check((base / code_uri).resolve(), app.partition(":")[0])
        if missing:
            raise ConfigurationError(
                f"{(base / code_uri).resolve() / bundle.REQUIREMENTS_FILE} lacks "
                f"{', '.join(missing)}, which the handler imports on Lambda: add them"
            )
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


@cli.command()
@click.argument("app")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("function.zip"),
    show_default=True,
    help="The function's .zip (its template's CodeUri).",
)
@click.option(
    "--layer",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a layer .zip holding sqsq and the requirements under python/; --out "
    "then holds the app's code only.",
)
@runtime_option
@architecture_option
@click.option(
    "--sdk",
    type=click.Choice(["bundle", "runtime"]),
    default="bundle",
    show_default=True,
    help="bundle: pack boto3 and botocore pinned to the versions installed here; runtime: "
    "use the Lambda runtime's (smaller; the runtime's version may change under you).",
)
@click.option(
    "--requirements",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The app's own requirements file (third-party packages its tasks import).",
)
def package(
    app: str,
    out: Path,
    layer: Path | None,
    runtime: str,
    architecture: str,
    sdk: str,
    requirements: Path | None,
) -> None:
    """Build APP's Lambda deployment package without Docker: the app's code, sqsq,
    and the handler's requirements as binary wheels for RUNTIME on ARCHITECTURE
    (pip --platform manylinux2014_* --only-binary=:all:); prints each .zip's sizes."""
    from ..deploy.package import package as build

    built = build(
        app,
        out,
        layer=layer,
        runtime=runtime,
        architecture=architecture,
        sdk="runtime" if sdk == "runtime" else "bundle",
        requirements=requirements,
    )
    for artifact in built:
        click.echo(str(artifact))
