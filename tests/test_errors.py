"""The error tree: what ``sqsq.errors`` draws is what exists and what ``sqsq`` exports;
every AWS failure that reaches a caller — of ``delay``, ``get``, their async twins,
the canvas, or any command of the CLI that calls AWS — is a ``sqsq.AWSError`` naming
the action, the resource and AWS's code, with botocore's exception as ``__cause__``.

Unreachable AWS is a closed port (bound, then closed: connections are refused at
once); AWS's own error codes come from the moto endpoint."""

from __future__ import annotations

import asyncio
import importlib
import os
import pkgutil
import re
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

import sqsq
from sqsq import errors
from sqsq.aws_errors import from_botocore
from sqsq.cli import EXIT_AWS, EXIT_USAGE, cli
from sqsq.cli import commands as _commands  # noqa: F401  (registers the commands)
from sqsq.cli import deploy as _deploy  # noqa: F401
from sqsq.cli import schedule as _schedule  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
APP = "examples.quickstart.app:app"

# --- the drawing ------------------------------------------------------------------------

_LINE = re.compile(r"^(?P<indent>(?:[│ ]   )*)[├└]── (?P<name>\w+)(?P<text>.*)$")


def _drawn() -> dict[str, tuple[str, str]]:
    """``{name: (parent, description)}`` of the tree in ``sqsq.errors``'s docstring."""
    assert errors.__doc__ is not None
    lines = errors.__doc__.split("::", 1)[1].splitlines()
    root = next(line.strip() for line in lines if line.strip())
    assert root == "SqsqError"
    drawn: dict[str, tuple[str, str]] = {}
    parents = [root]
    for line in lines:
        match = _LINE.match(line.removeprefix("    "))
        if match is None:
            if drawn and not line.strip():
                break  # the drawing ends at its first blank line
            continue
        depth = len(match["indent"]) // 4
        del parents[depth + 1 :]
        assert match["name"] not in drawn, f"{match['name']} drawn twice"
        drawn[match["name"]] = (parents[depth], match["text"])
        parents.append(match["name"])
    return drawn


def _every_sqsq_module() -> None:
    """Import every module of the package, so that every subclass of SqsqError,
    wherever it is defined, exists (only the optional extras may be absent)."""
    for module in pkgutil.walk_packages(sqsq.__path__, "sqsq."):
        if module.name == "sqsq.__main__":  # runs the CLI
            continue
        try:
            importlib.import_module(module.name)
        except ImportError as exc:  # an extra that is not installed (none in the test env)
            pytest.fail(f"{module.name}: {exc}")


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_the_drawing_is_the_tree() -> None:
    _every_sqsq_module()
    drawn = _drawn()
    existing = {cls.__name__: cls for cls in _subclasses(sqsq.SqsqError)}
    assert sorted(drawn) == sorted(existing)
    for name, (parent, text) in drawn.items():
        cls = existing[name]
        ours = [base for base in cls.__bases__ if issubclass(base, sqsq.SqsqError)]
        assert ours[0].__name__ == parent, f"{name} is drawn under {parent}, not {ours[0]}"
        for also in ours[1:]:  # a second parent in the tree is named on the line
            assert f"also a {also.__name__}" in text, name


def test_every_class_drawn_is_exported_from_sqsq() -> None:
    for name in ["SqsqError", *_drawn()]:
        assert name in sqsq.__all__, name
        assert getattr(sqsq, name) is getattr(errors, name)


def test_what_users_raise_and_catch_is_exported() -> None:
    """Issue 19's list: each resolves from ``sqsq`` to the class sqsq raises."""
    from sqsq.schedules.expressions import InvalidScheduleExpression
    from sqsq.workflows import ChainError, ChordError

    assert sqsq.InvalidScheduleExpression is InvalidScheduleExpression
    assert (sqsq.ChainError, sqsq.ChordError) == (ChainError, ChordError)
    for name in (
        "Retry",
        "Reject",
        "IdempotencyConflict",
        "TaskExpired",
        "TaskRevoked",
        "TimeLimitExceeded",
        "NoRoute",
        "InvalidScheduleExpression",
        "ResultTimeout",
        "TaskFailed",
        "ConfigurationError",
        "EnqueueError",
        "AWSError",
        "AWSConnectionError",
        "AWSThrottled",
        "AWSAccessDenied",
        "AWSResourceNotFound",
        "ChordError",
        "ChainError",
    ):
        assert issubclass(getattr(sqsq, name), sqsq.SqsqError), name


# --- chains and chords ---------------------------------------------------------------------


def test_the_canvas_failures_are_named_as_they_are_stored() -> None:
    from sqsq.workflows.continuation import CHAIN_ERROR, CHORD_ERROR

    for cls, stored in ((sqsq.ChainError, CHAIN_ERROR), (sqsq.ChordError, CHORD_ERROR)):
        assert f"{cls.__module__}.{cls.__qualname__}" == stored
        assert issubclass(cls, sqsq.TaskFailed)


@pytest.mark.parametrize("stored", ["sqsq.workflows.ChordError", "sqsq.workflows.ChainError"])
def test_get_of_a_failed_canvas_step_raises_its_class(
    local_aws: Any, sqsq_prefix: str, stored: str
) -> None:
    from sqsq.dynamodb import result_item
    from sqsq.resources import apply
    from sqsq.result import ResultRecord, State

    app = sqsq.App(sqsq_prefix + "errcanvas", region_name="us-east-1")
    apply(app)
    record = ResultRecord(
        task_id="body",
        state=State.FAILURE,
        task="t",
        exc_type=stored,
        exc_message="member m-1 failed: builtins.ValueError: no",
    )
    app.results.put_results([("body", result_item(record))])
    with pytest.raises(sqsq.TaskFailed) as failed:
        app.AsyncResult("body").get(timeout=5)
    assert type(failed.value).__name__ == stored.rsplit(".", 1)[1]
    assert failed.value.remote_type == stored
    assert "m-1" in failed.value.remote_message


# --- botocore's errors, mapped once ---------------------------------------------------------


def _client_error(code: str, status: int, operation: str = "SendMessage") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"the {code} message"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("AWS.SimpleQueueService.NonExistentQueue", 400, sqsq.AWSResourceNotFound),
        ("ResourceNotFoundException", 400, sqsq.AWSResourceNotFound),
        ("AccessDenied", 403, sqsq.AWSAccessDenied),
        ("AccessDeniedException", 400, sqsq.AWSAccessDenied),
        ("ThrottlingException", 400, sqsq.AWSThrottled),
        ("ProvisionedThroughputExceededException", 400, sqsq.AWSThrottled),
        ("SomethingNew", 429, sqsq.AWSThrottled),
        ("InternalError", 500, sqsq.AWSError),
        ("InvalidParameterValue", 400, sqsq.AWSError),
    ],
)
def test_an_aws_answer_maps_by_its_code(code: str, status: int, kind: type) -> None:
    error = from_botocore(_client_error(code, status), resource="orders-default")
    assert type(error) is kind
    assert (error.action, error.resource, error.code) == ("SendMessage", "orders-default", code)
    assert "SendMessage" in str(error) and "orders-default" in str(error) and code in str(error)
    fix_the_setup = kind in (sqsq.AWSResourceNotFound, sqsq.AWSAccessDenied)
    assert isinstance(error, sqsq.ConfigurationError) is fix_the_setup


def test_no_credentials_is_access_denied() -> None:
    from botocore.exceptions import NoCredentialsError

    error = from_botocore(NoCredentialsError())
    assert type(error) is sqsq.AWSAccessDenied
    assert error.code == "NoCredentialsError"
    assert "credentials" in str(error)


# --- unreachable AWS: the public API --------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> Iterator[sqsq.App]:
    """An App whose endpoint is a closed port; one attempt per call (no retries)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    app = sqsq.App(
        "unreachable",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        max_attempts=1,
    )

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    yield app
    app.close()


def _assert_unreachable(error: BaseException, action: str, resource: str) -> None:
    assert isinstance(error, sqsq.AWSConnectionError), repr(error)
    assert (error.action, error.resource, error.code) == (
        action,
        resource,
        "EndpointConnectionError",
    )
    assert isinstance(error.__cause__, EndpointConnectionError)
    assert "cannot reach AWS" in str(error) and resource in str(error)


def test_delay_against_a_closed_port(unreachable: sqsq.App) -> None:
    add = unreachable.tasks[next(iter(unreachable.tasks))]
    with pytest.raises(sqsq.SqsqError) as raised:  # issue 19: this caught nothing
        add.delay(1, 2)
    _assert_unreachable(raised.value, "GetQueueUrl", "unreachable-default")
    with pytest.raises(sqsq.AWSConnectionError) as many:
        add.delay_many([(1, 2), (3, 4)])
    _assert_unreachable(many.value, "GetQueueUrl", "unreachable-default")
    with pytest.raises(sqsq.AWSConnectionError) as by_name:
        unreachable.send_task(add.name, [1, 2], queue="other")
    _assert_unreachable(by_name.value, "GetQueueUrl", "unreachable-other")


def _run(app: sqsq.App, call: Callable[[], Awaitable[Any]]) -> None:
    """``await call()`` in a new event loop, closing the app's aiobotocore clients."""

    async def run() -> None:
        try:
            await call()
        finally:
            await app.aclose()

    asyncio.run(run())


def test_adelay_against_a_closed_port(unreachable: sqsq.App) -> None:
    add = unreachable.tasks[next(iter(unreachable.tasks))]
    with pytest.raises(sqsq.AWSConnectionError) as raised:
        _run(unreachable, lambda: add.adelay(1, 2))
    _assert_unreachable(raised.value, "GetQueueUrl", "unreachable-default")


def test_get_against_a_closed_port(unreachable: sqsq.App) -> None:
    result = unreachable.AsyncResult("some-id")
    with pytest.raises(sqsq.AWSConnectionError) as raised:
        result.get(timeout=5)
    _assert_unreachable(raised.value, "GetItem", "unreachable-sqsq")
    with pytest.raises(sqsq.AWSConnectionError):
        _ = result.state
    with pytest.raises(sqsq.AWSConnectionError) as revoked:
        result.revoke()
    _assert_unreachable(revoked.value, "PutItem", "unreachable-sqsq")


def test_aget_against_a_closed_port(unreachable: sqsq.App) -> None:
    with pytest.raises(sqsq.AWSConnectionError) as raised:
        _run(unreachable, lambda: unreachable.AsyncResult("some-id").aget(timeout=5))
    _assert_unreachable(raised.value, "GetItem", "unreachable-sqsq")


def test_a_chain_against_a_closed_port(unreachable: sqsq.App) -> None:
    add = unreachable.tasks[next(iter(unreachable.tasks))]
    with pytest.raises(sqsq.AWSConnectionError) as raised:
        sqsq.chain(add.s(1, 2), add.s(3)).delay()
    assert raised.value.code == "EndpointConnectionError"
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


# --- AWS's own codes (moto) -------------------------------------------------------------------


def test_a_missing_queue_is_resource_not_found(local_aws: Any, sqsq_prefix: str) -> None:
    app = sqsq.App(sqsq_prefix + "errnoqueue", region_name="us-east-1")

    @app.task
    def noop() -> None: ...

    queue = app.queue_name("default")
    with pytest.raises(sqsq.AWSResourceNotFound) as raised:
        noop.delay()
    error = raised.value
    assert isinstance(error, sqsq.ConfigurationError)  # as before issue 19
    assert (error.action, error.resource) == ("GetQueueUrl", queue)
    assert error.code == "AWS.SimpleQueueService.NonExistentQueue"
    assert isinstance(error.__cause__, ClientError)
    assert error.__cause__.response["Error"]["Code"] == error.code
    assert "sqsq resources create" in str(error)

    with pytest.raises(sqsq.AWSResourceNotFound) as araised:
        _run(app, noop.adelay)
    assert (araised.value.resource, araised.value.code) == (queue, error.code)
    assert isinstance(araised.value.__cause__, ClientError)


def test_a_missing_table_is_resource_not_found(local_aws: Any, sqsq_prefix: str) -> None:
    app = sqsq.App(sqsq_prefix + "errnotable", region_name="us-east-1")
    with pytest.raises(sqsq.AWSResourceNotFound) as raised:
        app.AsyncResult("x").get(timeout=5)
    error = raised.value
    assert (error.action, error.resource, error.code) == (
        "GetItem",
        app.table_name,
        "ResourceNotFoundException",
    )
    assert isinstance(error.__cause__, ClientError)


# --- the command line ---------------------------------------------------------------------

#: Every command that calls AWS, with the arguments it needs to get that far.
AWS_COMMANDS: dict[str, list[str]] = {
    "resources create": [APP],
    "send": [APP, "examples.quickstart.app.render_email", "--args", '["a@b.c", "hi"]'],
    "result": [APP, "some-task-id"],
    "dlq ls": [APP, "default"],
    "dlq redrive": [APP, "default"],
    "dlq purge": [APP, "default", "--yes"],
    "schedule sync": [APP],
    "schedule ls": [APP],
    "schedule run": [APP, "daily-sales-report"],
    "status": [APP],
    "revoke": [APP, "some-task-id"],
    "purge": [APP, "default", "--yes"],
    "limits set": [APP, "examples.quickstart.app.render_email", "10/s"],
    "limits clear": [APP, "examples.quickstart.app.render_email"],
    "limits ls": [APP],
    "gc": ["tests.apps.payloads:app"],  # ListObjectsV2 of its payload_bucket
}
#: Commands that do not fail on an unreachable endpoint, and why.
NOT_FAILING = {
    "worker": "rides out an unreachable endpoint at startup, with backoff, until stopped",
    "schedule serve": "a long-running loop that rides out failed ticks",
    "dev": "runs its own local endpoint",
    "infra": "generates documents; calls no AWS",
    "schema": "prints the envelope's JSON Schema; calls no AWS",
    "package": "builds the Lambda deployment package with pip; calls no AWS",
    "dashboard": "a server: a page whose AWS calls fail is a 502 page (tests/test_dashboard.py)",
    "celery check": "compares two apps' declarations; calls no AWS",
}


def _leaves(group: click.Group, prefix: str = "") -> Iterator[str]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaves(command, f"{prefix}{name} ")
        else:
            yield prefix + name


def test_every_command_is_tested_against_a_closed_port_or_says_why_not() -> None:
    assert sorted(_leaves(cli)) == sorted([*AWS_COMMANDS, *NOT_FAILING])


@pytest.mark.parametrize("command", sorted(AWS_COMMANDS))
def test_a_command_against_a_closed_port_prints_one_error_line(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SQSQ_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        SQSQ_ENDPOINT_URL=f"http://127.0.0.1:{_closed_port()}",
        SQSQ_MAX_ATTEMPTS="1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "sqsq", *command.split(), *AWS_COMMANDS[command]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_AWS, (done.returncode, done.stderr)
    assert done.stderr.startswith("Error: "), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "cannot reach AWS" in done.stderr
    assert re.search(r"\b[A-Z][A-Za-z0-9]+ ", done.stderr.split("cannot reach")[0])  # an action


def test_a_command_on_a_missing_table_is_a_usage_error(local_aws: Any) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["result", APP, "some-task-id"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("Error: ")
    assert "quickstart-sqsq" in result.stderr
    assert "ResourceNotFoundException" in result.stderr
    assert "sqsq resources create" in result.stderr
