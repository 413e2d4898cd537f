"""Settings: keyword argument > ``SQSQ_*`` environment variable > default.

One rule everywhere. ``App(name, table_name="t")`` wins over ``SQSQ_TABLE_NAME``,
which wins over the default. Durations are seconds (``float`` or ``timedelta``).

AWS's own conventions are untouched: credentials and region come from the usual
boto3 chain (``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, instance roles, …) and
botocore's ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_SQS`` /
``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL_STS`` / ``AWS_ENDPOINT_URL_SCHEDULER``
point clients at a local endpoint (STS follows SQS's when it has none of its own);
``endpoint_url`` (or ``SQSQ_ENDPOINT_URL``) overrides them for every service.

The fields are a pydantic-settings model (:class:`Settings`, in
``settings_model.py``), built when the first ``App(...)`` is: ``import sqsq``
loads neither pydantic nor pydantic-settings. This module holds what the rest of
the package needs without them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import limits

if TYPE_CHECKING:
    from .settings_model import Settings as Settings

#: Prefix of the environment variables that set fields (``SQSQ_TABLE_NAME``).
ENV_PREFIX = "SQSQ_"


def seconds(value: Any) -> Any:
    """Accept ``timedelta`` wherever a duration in seconds is expected."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def check_queue_name(name: str) -> str:
    """Validate a physical SQS queue name ("Amazon SQS queue quotas": 1–80
    characters of alphanumerics, hyphens and underscores; FIFO names end in
    ``.fifo``). Raises ValueError."""
    base = name[: -len(".fifo")] if name.endswith(".fifo") else name
    if len(name) > limits.SQS_MAX_QUEUE_NAME_CHARS or not _QUEUE_NAME.match(base):
        raise ValueError(
            f"invalid SQS queue name {name!r}: 1-{limits.SQS_MAX_QUEUE_NAME_CHARS} characters "
            "of letters, digits, '-' and '_' (FIFO queues end in '.fifo')"
        )
    return name


def check_weight(queue: str, weight: object) -> int:
    """A queue's weight for the worker's priorities (``queue_weights``, ``-Q
    high:5``): a whole number ≥ 1. Raises ValueError (``0``, ``"x"``, ``1.5``)."""
    value = 0
    if not isinstance(weight, bool | float):
        try:
            value = int(str(weight).strip())
        except ValueError:
            value = 0
    if value < 1:
        raise ValueError(
            f"the weight of queue {queue!r} must be a whole number >= 1, not {weight!r}"
        )
    return value


def check_maximum_concurrency(value: int) -> int:
    """An SQS event source's ``ScalingConfig.MaximumConcurrency``. Raises ValueError
    outside ``limits.LAMBDA_MIN/MAX_SQS_MAXIMUM_CONCURRENCY`` (2-1000)."""
    low, high = limits.LAMBDA_MIN_SQS_MAXIMUM_CONCURRENCY, limits.LAMBDA_MAX_SQS_MAXIMUM_CONCURRENCY
    if not low <= value <= high:
        raise ValueError(
            f"ScalingConfig.MaximumConcurrency {value} is outside {low}-{high} "
            '(LAMBDA_MIN/MAX_SQS_MAXIMUM_CONCURRENCY, "Configuring maximum concurrency for '
            'Amazon SQS event sources")'
        )
    return value


def __getattr__(name: str) -> Any:
    if name == "Settings":  # the pydantic-settings model: built on first use
        from .settings_model import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
