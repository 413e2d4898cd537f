"""The public surface of ``sqsq``: what ``__all__`` exports, and that ``import sqsq``
stays light (no pydantic, asyncio, aiobotocore, moto, click, rich, or boto3 until
they are used)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import sqsq

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_ALL = [
    # application and tasks
    "App",
    "Task",
    "load_app",
    # results
    "AsyncResult",
    "ResultRecord",
    "State",
    # wire format
    "Envelope",
    # running
    "Worker",
    # workflows (Celery's canvas; sqsq.workflows)
    "signature",
    "chain",
    "group",
    "chord",
    # schedules (EventBridge expressions)
    "crontab",
    "every",
    # errors (the tree drawn in sqsq/errors.py, in its order)
    "SqsqError",
    "ConfigurationError",
    "InvalidScheduleExpression",
    "MissingExtra",
    "EnqueueError",
    "ArgumentError",
    "NotSerializable",
    "MessageTooLarge",
    "DeadLetter",
    "UndecodableMessage",
    "UnknownTask",
    "InvalidArguments",
    "InvalidKey",
    "InternalError",
    "IdempotencyConflict",
    "DoesNotFitFunction",
    "NoRoute",
    "FollowUpFailed",
    "TaskTokenReportFailed",
    "DeferralsExhausted",
    "ChordBodyTooLarge",
    "CelerySerializerRefused",
    "PayloadMissing",
    "ResultError",
    "ResultTimeout",
    "TaskFailed",
    "TaskRevoked",
    "TaskExpired",
    "ChainError",
    "ChordError",
    "ResultNotSerializable",
    "TimeLimitExceeded",
    "SoftTimeLimitExceeded",
    "AWSError",
    "AWSConnectionError",
    "AWSThrottled",
    "AWSAccessDenied",
    "AWSResourceNotFound",
    "UnstoredOutcome",
    "Retry",
    "Reject",
    "__version__",
]

ERRORS = EXPECTED_ALL[EXPECTED_ALL.index("SqsqError") : EXPECTED_ALL.index("__version__")]


def _modules_after(code: str, env: dict[str, str] | None = None) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which heavy modules did it import?"""
    probe = (
        f"{code}\n"
        "import json, sys\n"
        "names = ['aiobotocore', 'aiohttp', 'moto', 'click', 'rich', 'boto3', 'botocore',\n"
        "         'pydantic', 'pydantic_core', 'pydantic_settings', 'asyncio', 'sqsq.worker',\n"
        "         'sqsq.envelope_model', 'sqsq.workflows', 'sqsq.events', 'aws_lambda_powertools']\n"
        "print(json.dumps({n: n in sys.modules for n in names}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_all_is_pinned() -> None:
    assert sqsq.__all__ == EXPECTED_ALL


def test_every_exported_name_resolves() -> None:
    for name in sqsq.__all__:
        assert getattr(sqsq, name) is not None, name
    assert sqsq.__version__ == "0.1.0"


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = sqsq.no_such_thing  # type: ignore[attr-defined]


def test_error_hierarchy() -> None:
    for name in ERRORS:
        assert issubclass(getattr(sqsq, name), sqsq.SqsqError), name
    for name in ("ArgumentError", "NotSerializable", "MessageTooLarge"):
        assert issubclass(getattr(sqsq, name), sqsq.EnqueueError)
    for name in ("UndecodableMessage", "UnknownTask", "InvalidArguments"):
        assert issubclass(getattr(sqsq, name), sqsq.DeadLetter)
    for name in ("ResultTimeout", "TaskFailed", "TaskRevoked", "ResultNotSerializable"):
        assert issubclass(getattr(sqsq, name), sqsq.ResultError)
    assert issubclass(sqsq.TaskRevoked, sqsq.TaskFailed)
    assert issubclass(sqsq.ResultTimeout, TimeoutError)
    assert issubclass(sqsq.ArgumentError, TypeError)
    assert sqsq.UndecodableMessage.reason == "undecodable_message"
    assert sqsq.UnknownTask.reason == "unknown_task"
    assert sqsq.InvalidArguments.reason == "invalid_arguments"


def test_states_are_celerys() -> None:
    assert [s.value for s in sqsq.State] == [
        "PENDING",
        "RECEIVED",
        "STARTED",
        "RETRY",
        "SUCCESS",
        "FAILURE",
        "REVOKED",
    ]
    assert str(sqsq.State.SUCCESS) == "SUCCESS"


def test_import_sqsq_loads_nothing_heavy() -> None:
    loaded = _modules_after("import sqsq")
    assert {name for name, is_loaded in loaded.items() if is_loaded} == set()
    # (Worker and Envelope are imported on first access)


def test_envelope_is_loaded_on_first_access() -> None:
    loaded = _modules_after("import sqsq\nsqsq.Envelope")
    assert loaded["pydantic"]
    assert not loaded["asyncio"]
    assert not loaded["boto3"]


def test_a_cold_producer_loads_no_envelope_model_boto3_or_aiobotocore(
    local_aws: Any, tmp_path: Path
) -> None:
    """A fresh process: build an App (settings checked), declare a task, ``delay()``."""
    from sqsq.resources import apply

    apply(sqsq.App("cold", region_name="us-east-1"))  # endpoints: the test kit's variables
    loaded = _modules_after(
        "import sqsq\n"
        "app = sqsq.App('cold', region_name='us-east-1')\n"
        "@app.task\n"
        "def f(a: int) -> int:\n"
        "    return a\n"
        "assert f.delay(1).id\n",
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    assert loaded["botocore"]
    assert not loaded["boto3"]  # a botocore session: boto3 would import s3transfer too
    assert not loaded["sqsq.envelope_model"]  # encoded without the pydantic model
    # pydantic and pydantic-settings load with the first App (settings) and producer-side
    # argument validation (arguments.py); `import sqsq` alone loads neither (above)
    assert not loaded["aiobotocore"]
    assert not loaded["sqsq.worker"]
    assert not loaded["sqsq.workflows"]  # the canvas too


def test_import_sqsq_does_not_load_boto3_before_the_first_aws_call() -> None:
    loaded = _modules_after(
        "import sqsq\n"
        "app = sqsq.App('light', region_name='us-east-1')\n"
        "@app.task\n"
        "def f(a: int) -> int:\n"
        "    return a\n"
        "assert f.apply(1).get() == 1\n"
    )
    assert not loaded["boto3"]
    assert not loaded["botocore"]
    assert not loaded["aiobotocore"]
    assert not loaded["click"]


def test_worker_is_loaded_on_first_access() -> None:
    loaded = _modules_after("import sqsq\nsqsq.Worker")
    assert loaded["sqsq.worker"]
    assert not loaded["moto"]
    assert not loaded["click"]


def test_declaring_a_route_loads_sqsq_events_but_not_powertools_or_aws_clients() -> None:
    loaded = _modules_after(
        "import sqsq\n"
        "app = sqsq.App('light', region_name='us-east-1')\n"
        "@app.on_event(source='orders')\n"
        "def f(event: dict) -> None: ...\n"
    )
    assert loaded["sqsq.events"]
    assert not loaded["aws_lambda_powertools"]  # only the user's annotations import models
    assert not loaded["boto3"]
    assert not loaded["sqsq.worker"]


def test_canvas_is_loaded_on_first_access_without_aws_clients() -> None:
    loaded = _modules_after(
        "import sqsq\n"
        "app = sqsq.App('light', region_name='us-east-1')\n"
        "@app.task\n"
        "def f(a: int) -> int:\n"
        "    return a\n"
        "assert isinstance(sqsq.chain(f.s(1), f.s()), sqsq.chain)\n"
    )
    assert loaded["sqsq.workflows"]
    assert not loaded["boto3"]
    assert not loaded["aiobotocore"]
    assert not loaded["sqsq.worker"]


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from sqsq import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(EXPECTED_ALL)
    assert namespace["Worker"] is sqsq.Worker


def test_every_public_name_is_the_object_it_names() -> None:
    """A submodule must not shadow a lazy public name (``sqsq.signature`` was the
    argument-binding module, not the canvas function, once ``task.py`` imported it)."""
    import sqsq.task  # the imports an app makes first
    from sqsq.workflows import signature

    assert sqsq.signature is signature
    for name in sqsq.__all__:
        value = getattr(sqsq, name)
        assert not isinstance(value, types.ModuleType), name
