"""Generated infrastructure: ``sqsq infra APP --target lambda|ecs|ec2``.

One CloudFormation document per target, rendered from the app's declarations:

- :mod:`.resources` — the queues, dead-letter queues and table from
  :func:`sqsq.resources.describe` (what ``sqsq resources create`` makes), the
  schedules from :mod:`sqsq.schedules.scheduler` (what ``sqsq schedule sync``
  makes), and log groups with their retention;
- :mod:`.alarms` and :mod:`.dashboard` — for operators: alarms on each queue's
  oldest message and failure rate and on each DLQ's depth, and the app's
  CloudWatch dashboard;
- :mod:`.iam` — least-privilege policies with exact ARNs;
- :mod:`.routes` — the app's foreign-event routes (:mod:`sqsq.events`): EventBridge
  rules, SNS subscriptions, EventBridge Pipes from DynamoDB streams, queue policies,
  and each S3 bucket's notification configuration as an output;
- :mod:`.lambda_sam` (SAM), :mod:`.ecs` (Fargate service), :mod:`.ec2` (launch
  template, Auto Scaling group, systemd unit) — what runs the tasks (on ECS with a
  health check that runs ``sqsq status``).

This package imports the core and is never imported by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..app import App

#: Lambda Python runtimes ``--runtime`` takes ("Lambda runtimes": supported, not
#: deprecated) and the default, a current one.
RUNTIMES = ("python3.11", "python3.12", "python3.13", "python3.14")
RUNTIME = "python3.13"
#: ``Architectures`` of the function ("Lambda instruction set architectures").
ARCHITECTURES = ("arm64", "x86_64")

Target = Literal["lambda", "ecs", "ec2"]
TARGETS: tuple[Target, ...] = ("lambda", "ecs", "ec2")


@dataclass(frozen=True)
class Options:
    """What the app's declarations do not say (CLI options of ``sqsq infra``).

    Attributes:
        app_path: the App as ``module:attribute`` (the worker's argument; the Lambda
            handler's module).
        handler: Lambda handler ``module.function`` (default: ``<module>.lambda_handler``,
            which the app module must define as ``lambda_handler = app.lambda_handler``).
        function_timeout_s: Lambda timeout, seconds (1–900; default: derived from the
            served tasks' ``time_limit``, see :mod:`.lambda_timing`).
        batch_size: records per Lambda invocation (SQS event source, 1-10000).
        batching_window_s: MaximumBatchingWindowInSeconds (0-300; standard queues only).
        maximum_concurrency: ScalingConfig.MaximumConcurrency of every queue's event
            source (2-1000; default: the app's ``lambda_maximum_concurrency``, else
            10; see :func:`.lambda_sam.maximum_concurrency`).
        memory_mb: Lambda memory, MiB.
        code_uri: SAM CodeUri, the directory holding the app's top-level package and the
            function's ``requirements.txt``, relative to the template's directory
            (default: where the app is imported from, see :mod:`.bundle`).
        runtime: Lambda runtime (``python3.11``–``python3.14``).
        architecture: ``arm64`` or ``x86_64``.
        worker_queues: logical queues the function does not consume (left to ``sqsq
            worker``), e.g. for tasks whose ``time_limit`` is over Lambda's 900 s.
        long_countdowns: tasks send tasks with countdowns over SQS's 900 s: adds the
            ``<app>-sqsq-eta`` schedule group, the scheduler role, and lets the task
            runner create/delete schedules there and pass that role.
        step_functions: state machines send the app's tasks with a task token
            (``sqs:sendMessage.waitForTaskToken``): lets the task runner report
            outcomes and heartbeats (``states:SendTask*``; see ``iam.py``).
        omit: CloudFormation resource types left out (e.g. for a local endpoint
            whose CloudFormation does not support them).
    """

    app_path: str
    handler: str | None = None
    function_timeout_s: int | None = None
    batch_size: int = 10
    batching_window_s: int = 0
    maximum_concurrency: int | None = None
    memory_mb: int = 512
    code_uri: str = "."
    #: ContentUri of a layer holding sqsq and the requirements (``sqsq package --layer``).
    layer_uri: str | None = None
    runtime: str = RUNTIME
    architecture: str = "arm64"
    worker_queues: frozenset[str] = field(default_factory=frozenset)
    long_countdowns: bool = False
    step_functions: bool = False
    omit: frozenset[str] = field(default_factory=frozenset)


def render(app: App, target: Target, options: Options) -> dict[str, Any]:
    """The CloudFormation document (a dict) of ``target`` for ``app``.

    Raises:
        ConfigurationError: the app's settings do not fit the target (e.g. a
            visibility timeout too short for the Lambda timeout asked for).
    """
    if target == "lambda":
        from .lambda_sam import template
    elif target == "ecs":
        from .ecs import template
    else:
        from .ec2 import template
    from .resources import declared
    from .routes import add_routes

    doc = template(app, options)
    add_routes(doc, declared(app))
    return prune(doc, options.omit)


def _refers(value: Any, ids: set[str]) -> bool:
    if isinstance(value, dict):
        if value.get("Ref") in ids:
            return True
        att = value.get("Fn::GetAtt")
        if isinstance(att, list) and att and att[0] in ids:
            return True
        return any(_refers(v, ids) for v in value.values())
    if isinstance(value, list):
        return any(_refers(v, ids) for v in value)
    return False


def prune(document: dict[str, Any], omit: frozenset[str]) -> dict[str, Any]:
    """Leave out the resources of the types in ``omit``, and what refers to them."""
    resources = document["Resources"]
    gone = {k for k, v in resources.items() if v["Type"] in omit}
    while True:
        more = {k for k, v in resources.items() if k not in gone and _refers(v, gone)}
        if not more:
            break
        gone |= more
    document["Resources"] = {k: v for k, v in resources.items() if k not in gone}
    if "Outputs" in document:
        document["Outputs"] = {k: v for k, v in document["Outputs"].items() if not _refers(v, gone)}
    return document


def dump(document: dict[str, Any]) -> str:
    """The document as YAML, keys in the order built (deterministic: the drift check
    compares files byte for byte)."""
    import yaml

    # PyYAML ships no types: SafeDumper is Any to mypy.
    class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True  # CloudFormation rejects YAML aliases

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True))


__all__ = ["ARCHITECTURES", "RUNTIME", "RUNTIMES", "TARGETS", "Options", "Target", "dump", "render"]
