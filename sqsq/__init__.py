"""sqsq: background tasks for Python on Amazon SQS, DynamoDB and Lambda.

The public API. ``import sqsq`` stays light for Lambda cold starts and short-lived
producers (tests/test_public_api.py pins it): botocore loads on the first AWS call;
pydantic on the first decode or argument validation (``Envelope`` is loaded on
first access); asyncio and aiobotocore with the first ``adelay``/worker; click
(the CLI) and moto (``sqsq.testing``) only where they are used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .app import App, load_app
from .errors import (
    ArgumentError,
    AWSError,
    ConfigurationError,
    DeadLetter,
    EnqueueError,
    InvalidArguments,
    MessageTooLarge,
    NotSerializable,
    ResultError,
    ResultNotSerializable,
    ResultTimeout,
    SqsqError,
    TaskFailed,
    TaskRevoked,
    UndecodableMessage,
    UnknownTask,
)
from .result import AsyncResult, ResultRecord, State
from .task import Task

if TYPE_CHECKING:
    from .envelope_model import Envelope
    from .schedules.expressions import crontab, every
    from .worker import Worker

__version__ = "0.1.0"

__all__ = [
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
    # schedules (EventBridge expressions)
    "crontab",
    "every",
    # errors
    "SqsqError",
    "ConfigurationError",
    "EnqueueError",
    "ArgumentError",
    "NotSerializable",
    "MessageTooLarge",
    "DeadLetter",
    "UndecodableMessage",
    "UnknownTask",
    "InvalidArguments",
    "ResultError",
    "ResultTimeout",
    "TaskFailed",
    "TaskRevoked",
    "ResultNotSerializable",
    "AWSError",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from .worker import Worker

        return Worker
    if name in ("crontab", "every"):
        from .schedules import expressions

        return getattr(expressions, name)
    if name == "Envelope":  # a pydantic model: built on first use
        from .envelope_model import Envelope

        return Envelope
    raise AttributeError(f"module 'sqsq' has no attribute {name!r}")
