"""Settings: keyword argument > ``SQSQ_*`` environment variable > default.

One rule everywhere. ``App(name, table_name="t")`` wins over ``SQSQ_TABLE_NAME``,
which wins over the default. Durations are seconds (``float`` or ``timedelta``).

AWS's own conventions are untouched: credentials and region come from the usual
boto3 chain (``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, instance roles, …) and
botocore's ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_SQS`` /
``AWS_ENDPOINT_URL_DYNAMODB`` point clients at a local endpoint; ``endpoint_url``
(or ``SQSQ_ENDPOINT_URL``) overrides them for both services.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import limits


def seconds(value: Any) -> Any:
    """Accept ``timedelta`` wherever a duration in seconds is expected."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


#: A non-negative duration in seconds; ``timedelta`` is accepted and converted.
Seconds = Annotated[float, BeforeValidator(seconds), Field(ge=0)]

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


class Settings(BaseSettings):
    """Configuration of one :class:`sqsq.App`.

    Every field can be set as a keyword of ``App(...)`` or as ``SQSQ_<FIELD>``.
    """

    model_config = SettingsConfigDict(env_prefix="SQSQ_", extra="forbid", frozen=True)

    #: AWS region; None uses boto3's chain (AWS_DEFAULT_REGION, profile, IMDS).
    region_name: str | None = None
    #: One endpoint for SQS and DynamoDB (a local moto server); None uses
    #: botocore's AWS_ENDPOINT_URL_* variables or the real AWS endpoints.
    endpoint_url: str | None = None
    #: Prepended to every logical queue name; None means ``"<app name>-"``.
    queue_prefix: str | None = None
    #: DynamoDB table for results; None means ``"<app name>-sqsq"``.
    table_name: str | None = None
    #: Logical queue of tasks that do not name one.
    default_queue: str = "default"
    #: Receives before SQS moves a message to the DLQ (redrive policy), 1–1000.
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    #: Visibility timeout that ``resources create`` gives new queues, seconds.
    visibility_timeout_s: Seconds = 30.0
    #: How long results stay readable, seconds (DynamoDB TTL on ``expires_at``).
    result_ttl_s: Seconds = 86_400.0
    #: Long-polling wait of the worker's ReceiveMessage, seconds (0–20).
    wait_time_s: Seconds = Field(default=20.0, le=limits.SQS_MAX_WAIT_TIME_S)
    #: The Lambda handler starts no record when less time than this remains, seconds.
    lambda_safety_margin_s: Seconds = 5.0
    #: Honour ``AsyncResult.revoke()`` (one Query per ``revocation_interval_s`` of a
    #: busy runner); False makes no revocation reads at all.
    check_revocations: bool = True
    #: botocore retry mode for every client: "standard" or "adaptive".
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    #: botocore max attempts per AWS call, including the first.
    max_attempts: int = Field(default=5, ge=1)
    #: Countdowns/ETAs over SQS's 900 s: "scheduler" (a one-time EventBridge
    #: schedule) or "hop" (re-sent every 900 s until due); see sqsq.schedules.eta.
    long_eta: Literal["scheduler", "hop"] = "scheduler"
    #: IAM role EventBridge Scheduler assumes; None: the one `sqsq schedule sync`
    #: manages (``<app>-sqsq-scheduler``, allowed only sqs:SendMessage).
    scheduler_role_arn: str | None = None

    # --- the worker engine (``sqsq worker``; CLI options are the same fields) ---------
    #: Tasks a worker runs at once (``--concurrency``).
    concurrency: int = Field(default=10, ge=1)
    #: Messages a worker holds ready beyond those running (``--prefetch``); their
    #: leases are kept, and they are released at once on shutdown. 0 receives only
    #: for free slots (fair to other workers when tasks are long).
    prefetch: int = Field(default=10, ge=0)
    #: The longest a worker's partial settle batch waits for more outcomes while
    #: more are on their way, seconds (a full batch, or one with nothing else about
    #: to finish, goes at once). Costs result latency, never throughput.
    settle_linger_s: Seconds = Field(default=0.05, le=1.0)
    #: A busy runner Queries for new revocations at most this often, seconds
    #: (see ``revocations.py``); a revocation reaches it within this time.
    revocation_interval_s: Seconds = Field(default=2.0, gt=0)
    #: Seconds from the first SIGTERM/SIGINT until the worker has released what it
    #: still holds (``--grace``); it exits within this plus 2 s. A supervisor's stop
    #: timeout (ECS ``stopTimeout``, systemd ``TimeoutStopSec``) must be at least
    #: this plus ``worker.SHUTDOWN_MARGIN_S`` (5 s).
    shutdown_grace_s: Seconds = Field(default=25.0, le=115.0)
    #: Sign messages with an HMAC and verify them in workers (see ``signing.py``):
    #: the key as text, ``secretsmanager:<secret id>`` or ``ssm:<parameter name>``.
    #: None (default): no signing.
    signing_key: str | None = Field(default=None, repr=False)

    @field_validator("default_queue")
    @classmethod
    def _logical_queue(cls, value: str) -> str:
        return check_queue_name(value)
