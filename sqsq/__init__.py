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
    AWSAccessDenied,
    AWSConnectionError,
    AWSError,
    AWSResourceNotFound,
    AWSThrottled,
    CelerySerializerRefused,
    ChainError,
    ChordBodyTooLarge,
    ChordError,
    ConfigurationError,
    DeadLetter,
    DeferralsExhausted,
    DoesNotFitFunction,
    EnqueueError,
    FollowUpFailed,
    IdempotencyConflict,
    InternalError,
    InvalidArguments,
    InvalidKey,
    InvalidScheduleExpression,
    MessageTooLarge,
    MissingExtra,
    NoRoute,
    NotSerializable,
    PayloadMissing,
    Reject,
    ResultError,
    ResultNotSerializable,
    ResultTimeout,
    Retry,
    SoftTimeLimitExceeded,
    SqsqError,
    TaskExpired,
    TaskFailed,
    TaskRevoked,
    TaskTokenReportFailed,
    TimeLimitExceeded,
    UndecodableMessage,
    UnknownTask,
    UnstoredOutcome,
)
from .result import AsyncResult, ResultRecord, State
from .task import Task

if TYPE_CHECKING:
    from .envelope_model import Envelope
    from .schedules.crontab import crontab
    from .schedules.expressions import every
    from .worker import Worker
    from .workflows import chain, chord, group, signature

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

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from .worker import Worker

        return Worker
    if name == "crontab":
        from .schedules.crontab import crontab

        return crontab
    if name == "every":
        from .schedules.expressions import every

        return every
    if name == "Envelope":  # a pydantic model: built on first use
        from .envelope_model import Envelope

        return Envelope
    if name in ("signature", "chain", "group", "chord"):
        from . import workflows

        return getattr(workflows, name)
    raise AttributeError(f"module 'sqsq' has no attribute {name!r}")
