"""The settings model (pydantic-settings), loaded when the first ``App`` is built.

See ``settings.py`` for the precedence rule; every field is also ``SQSQ_<FIELD>``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import limits
from .settings import (
    ENV_PREFIX,
    check_maximum_concurrency,
    check_queue_name,
    check_weight,
    seconds,
)


def _key_list(value: Any) -> Any:
    """``signing_previous_keys`` from the environment: a JSON list, or one key."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        if text.startswith("["):
            return json.loads(text)
        return (value,)
    return value


#: A non-negative duration in seconds; ``timedelta`` is accepted and converted.
Seconds = Annotated[float, BeforeValidator(seconds), Field(ge=0)]


class Settings(BaseSettings):
    """Configuration of one :class:`sqsq.App`.

    Every field can be set as a keyword of ``App(...)`` or as ``SQSQ_<FIELD>``.

    Raises:
        pydantic.ValidationError: an unknown keyword or a bad value (every problem
            in one message); ``App`` raises it as ConfigurationError.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

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
    #: The Lambda handler starts a record only while its task's time_limit plus this fits
    #: in the remaining time, seconds (`sqsq infra` sets it from the function's timeout).
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
    # Defaults measured with the peer benchmark (../shared/bench, moto behind a counting
    # proxy, 2,000 trivial tasks from a backlog, 2026-12-01, one 2-core machine).
    #: Tasks a worker runs at once (``--concurrency``). 10 ran 617 tasks/s against 355
    #: at 4, with the same requests per task.
    concurrency: int = Field(default=10, ge=1)
    #: Messages a worker holds ready beyond those running (``--prefetch``); their
    #: leases are kept, and they are released at once on shutdown. 10 (one receive
    #: batch) made receives full at 4 slots: 0.10 ReceiveMessage per task against
    #: 0.25 with 0, and 1.5x the tasks/s; 20 gained nothing more. 0 receives only for
    #: free slots (fair to other workers when tasks are long).
    prefetch: int = Field(default=10, ge=0)
    #: The longest a worker's partial settle batch waits for more outcomes while more
    #: are on their way (a message held, a backlog, or a trickle within its
    #: ``receive_batching_window_s``), seconds; a full batch, or one with nothing
    #: else about to finish, goes at once, and an idempotency key's completion never
    #: waits (a kill between a body's effect and its stored completion would run it
    #: again). Costs result latency, never throughput. With results at 4 slots from
    #: a backlog: 0.005 s → 7 items per BatchWriteItem (0.14 DynamoDB requests per
    #: task), 0.05 s → 18 (0.059), 0.2 s → 22 (0.046); 0.1 s keeps the added
    #: latency of a busy worker's results under a tenth of a second. At most
    #: ``limits.LAMBDA_MAX_BATCHING_WINDOW_S`` (300).
    settle_linger_s: Seconds = Field(default=0.1, le=limits.LAMBDA_MAX_BATCHING_WINDOW_S)
    #: After a receive that brought some messages but not a full batch (a trickle),
    #: the worker waits this long before its next ReceiveMessage on that queue,
    #: seconds, so the messages that arrive meanwhile come in one receive — what
    #: Lambda's ``MaximumBatchingWindowInSeconds`` does for an SQS event source. What
    #: a receive brought runs at once; a message waits at most this long before it is
    #: received. While the trickle lasts, settles linger too (``settle_linger_s``). 0
    #: receives again at once (one ReceiveMessage, DeleteMessageBatch and
    #: BatchWriteItem per message of a slow trickle). Measured at ~55 tasks/s with
    #: 12 ms SQS and 6 ms DynamoDB round trips (the peer benchmark's stream mode):
    #: 0.1 s → the worker's 0.31 SQS and 0.16 DynamoDB requests per task; 0 → 1.99
    #: and 0.96. At most ``limits.LAMBDA_MAX_BATCHING_WINDOW_S`` (300).
    receive_batching_window_s: Seconds = Field(default=0.1, le=limits.LAMBDA_MAX_BATCHING_WINDOW_S)
    #: A busy runner Queries for new revocations at most this often, seconds
    #: (see ``revocations.py``); a revocation reaches it within this time. 2 s: one
    #: Query per 2 s of a busy worker (≈ 1.3 M reads a month), whatever its throughput.
    revocation_interval_s: Seconds = Field(default=2.0, gt=0)
    #: Seconds from the first SIGTERM/SIGINT until the worker has released what it
    #: still holds (``--grace``); it exits within this plus 2 s. A supervisor's stop
    #: timeout (ECS ``stopTimeout``, systemd ``TimeoutStopSec``) must be at least
    #: this plus ``worker.SHUTDOWN_MARGIN_S`` (5 s): 25 fits ECS's default 30.
    shutdown_grace_s: Seconds = Field(default=25.0, le=115.0)
    #: Sign messages with an HMAC and verify them in workers (see ``signing.py``):
    #: the key as text, ``secretsmanager:<secret id>`` or ``ssm:<parameter name>``.
    #: None (default): no signing.
    signing_key: str | None = Field(default=None, repr=False)
    #: Keys that still verify but no longer sign (rotation): messages an earlier key
    #: signed, in flight or in a dead-letter queue, keep running; ``sqsq dlq redrive``
    #: re-signs them with ``signing_key``. Each as ``signing_key``; from the
    #: environment a JSON list, or one key. Empty (default): only ``signing_key``.
    signing_previous_keys: Annotated[
        tuple[str, ...], NoDecode, BeforeValidator(_key_list), Field(repr=False)
    ] = ()

    #: Concurrent ``delay()`` / ``adelay()`` calls of one process to one queue share
    #: SendMessageBatch calls; each caller still returns only once SQS acknowledged
    #: its own message. False sends one SendMessage per call (see ``producer.py``).
    coalesce_sends: bool = True
    #: Once concurrent sends were seen (in the last second), a send that starts
    #: alone waits up to this long for others to join its batch, seconds. A lone
    #: sequential producer never waits.
    send_linger_s: Seconds = Field(default=0.002, le=1.0)
    #: A ``sqsq worker`` writes its heartbeat item (``worker/heartbeat.py``: host,
    #: pid, queues, busy slots, counts) every this many seconds, for ``sqsq status``;
    #: a worker not heard from for 3 intervals is presumed gone. One DynamoDB write
    #: per interval (2 a minute at 30 s); 0 writes none. The Lambda handler writes none.
    heartbeat_interval_s: Seconds = 30.0
    #: Weighted polling of ``sqsq worker``: logical queue → weight (a whole number
    #: ≥ 1; a queue left out weighs 1), as ``-Q high:5,default:1``; from the
    #: environment a JSON object. Empty (default): no priorities. See the Flow
    #: control guide, "Priorities".
    queue_weights: dict[str, int] = Field(default_factory=dict)
    #: ``"weighted"`` (default: shares by ``queue_weights``) or ``"strict"`` (a queue
    #: is received from only while every higher one is empty; a lower one can starve).
    queue_priority: Literal["weighted", "strict"] = "weighted"
    #: ``sqsq infra --target lambda``: ``ScalingConfig.MaximumConcurrency`` of the
    #: SQS event sources — one number for every queue, or logical queue → number
    #: (a queue left out gets 10); 2-1000 ("Configuring maximum concurrency for
    #: Amazon SQS event sources"). From the environment a number or a JSON object.
    #: None (default): 10, or ``--maximum-concurrency``.
    lambda_maximum_concurrency: int | dict[str, int] | None = None
    #: ``sqsq infra --target lambda``: the function's reserved concurrency
    #: (``ReservedConcurrentExecutions``, the default of the template's
    #: ``ReservedConcurrency`` parameter); no event source's maximum concurrency
    #: may exceed it. None (default): none reserved.
    lambda_reserved_concurrency: int | None = Field(default=None, ge=1)

    # --- eager mode (Celery's names; see ``sqsq.eager``) ----------------------------
    #: ``delay()`` / ``apply_async()`` / ``delay_many()`` / ``send_task()`` of a
    #: registered task run the task here, as ``apply()`` (retries in place, no AWS
    #: request), and return the eager result. For tests; never in production.
    task_always_eager: bool = False
    #: An eager run that fails raises :class:`~sqsq.TaskFailed` at once (from
    #: ``apply()`` and, with ``task_always_eager``, from ``delay()``) instead of
    #: returning a FAILURE result.
    task_eager_propagates: bool = False
    #: Rate limits of logical queues, shared by every worker of the app: the poller
    #: receives only what the queue's token bucket admits (``{"default": "100/s"}``;
    #: Celery's syntax, see ``Task``'s ``rate_limit``). From the environment:
    #: ``SQSQ_QUEUE_RATE_LIMITS`` as JSON. Empty (default): none.
    queue_rate_limits: dict[str, str | float] = Field(default_factory=dict)

    # --- worker metrics (``sqsq.worker.metrics``; the Lambda handler always writes EMF) --
    #: What ``sqsq worker`` reports per task (``--metrics``): ``"emf"`` — CloudWatch
    #: Embedded Metric Format lines on stdout, one per queue and task every
    #: ``worker_metrics_interval_s`` (no AWS request; CloudWatch bills their log
    #: ingestion and 6 custom metrics per queue and per (queue, task));
    #: ``"prometheus"`` — an HTTP endpoint on ``worker_metrics_port`` (the
    #: ``sqsq[prometheus]`` extra); ``"off"`` (default) — none.
    worker_metrics: Literal["off", "emf", "prometheus"] = "off"
    #: EMF: the worker writes what it settled every this many seconds (60: CloudWatch's
    #: standard resolution), and at shutdown.
    worker_metrics_interval_s: Seconds = Field(default=60.0, gt=0)
    #: Prometheus: the TCP port of the ``/metrics`` endpoint (0: any free port, logged).
    worker_metrics_port: int = Field(default=9810, ge=0, le=65535)
    #: Prometheus: the address the endpoint listens on.
    worker_metrics_address: str = "0.0.0.0"
    # --- task states (see ``sqsq.result``) --------------------------------------------
    #: Record STARTED (worker ``host:pid``, start time) in the result item when a
    #: task's body starts (Celery's ``task_track_started``): one conditional PutItem
    #: per attempt (``ResultStore.start``); off by default (no extra request). A task's
    #: own ``track_started=`` option wins.
    track_started: bool = False

    # --- what ``sqsq infra`` writes for operators (``sqsq/deploy/alarms.py``) -------
    #: Alarm when a queue's oldest message (CloudWatch's ``ApproximateAgeOfOldestMessage``)
    #: is older than this, seconds. None (default): derived per queue, SQS's 900 s
    #: delay cap + 300 s of waiting + the longest ``time_limit`` of the queue's tasks
    #: (a message counts while its task runs).
    alarm_max_age_s: Seconds | None = None
    #: Alarm when more than this fraction of a queue's finished tasks failed in 5
    #: minutes (``TasksFailed / (TasksSucceeded + TasksFailed)`` of sqsq's metrics,
    #: once at least 10 finished), 0 < rate < 1.
    alarm_failure_rate: float = Field(default=0.1, gt=0, lt=1)

    # --- OpenTelemetry (``sqsq/tracing/``) ----------------------------------------------
    #: Trace sends and runs with OpenTelemetry when its API (``sqsq[otel]``) is
    #: installed: None (default) traces when ``opentelemetry`` can be imported (looked
    #: up once per process, at the first App); False never (no import, no cost);
    #: True requires it (ConfigurationError naming the extra otherwise).
    tracing: bool | None = None
    # --- the dashboard's listing (``sqsq/listing.py``, ``sqsq dashboard``) ------------
    #: Create the sparse, write-sharded ``listing`` index on the results table
    #: (``sqsq resources create``, ``sqsq infra``): results listed by state, task, queue
    #: and time without a scan. Only FAILURE (dead letters too), RETRY and STARTED
    #: items enter it: about 1 write request unit per such outcome, nothing for a task
    #: that succeeds at once. Off by default.
    listing_index: bool = False
    #: ``sqsq dashboard --allow-actions``: users allowed to act (HTTP basic), user name
    #: -> password; from the environment ``SQSQ_DASHBOARD_USERS`` as JSON. Empty
    #: (default): none (an identity header may still be trusted, below).
    dashboard_users: dict[str, str] = Field(default_factory=dict, repr=False)
    #: ``sqsq dashboard --allow-actions`` behind a proxy that authenticates (an ALB with
    #: OIDC sets ``x-amzn-oidc-identity``): the request header naming the user. Trust
    #: it only when every request passes through that proxy. None (default): none.
    dashboard_identity_header: str | None = None
    #: Which outcomes keep the call's arguments in their result item, for the
    #: dashboard's task page (``sqsq/detail.py``; JSON cut at 4 KB): ``"listed"``
    #: (default) FAILURE (dead letters too), RETRY and STARTED; ``"always"`` every
    #: outcome, successes too; ``"never"`` none — for arguments dashboard users must
    #: not see (they are shown to whoever may open the dashboard).
    result_arguments: Literal["listed", "always", "never"] = "listed"
    # --- large payloads through S3 (``sqsq.payloads``) -------------------------------
    #: The S3 bucket of the claim check: a message body over the queue's
    #: ``MaximumMessageSize`` (SQS allows up to 1 MiB) is put there and the message
    #: carries a pointer in the SQS Extended Client's format; a result over
    #: ``payload_result_threshold_bytes`` is put there and its item points to it.
    #: ``sqsq resources create`` creates it. None (default): no claim check — a body
    #: over the limit is ``MessageTooLarge`` in the producer. Workers read pointers
    #: (also the Extended Client's) whether or not this is set.
    payload_bucket: str | None = None
    #: Put a body in S3 when its bytes (body + message attributes) are over this.
    #: None (default): the queue's ``MaximumMessageSize`` (GetQueueAttributes, once per
    #: queue and process) less ``sqsq.payloads.HEADROOM_BYTES`` for the attributes a
    #: dead-letter copy gains.
    payload_threshold_bytes: int | None = Field(default=None, ge=0, le=limits.SQS_MAX_MESSAGE_BYTES)
    #: Put every body in S3 (the Extended Client's ``alwaysThroughS3``).
    payload_always_through_s3: bool = False
    #: Delete a payload's object once its message's outcome is stored and the message
    #: deleted (one DeleteObjects per settled batch; the Lambda handler deletes final
    #: outcomes' messages itself first) — SUCCESS and REVOKED outcomes with a stored
    #: result; a FAILURE's DLQ copy keeps its object. A duplicate delivery that then
    #: finds no object is let go when its task's result is final (one BatchGetItem),
    #: never a false ``payload_missing``. False: the bucket's lifecycle rule
    #: (``payload_retention_s``) alone removes objects, and the worker makes no
    #: DeleteObjects calls; the rule is the backstop either way.
    payload_delete: bool = True
    #: SSE-KMS key (id, ARN or alias) for payload and result objects. None: SSE-S3 (AES256).
    payload_kms_key_id: str | None = None
    #: Put a result in S3 when its value's JSON is over this many bytes (DynamoDB's
    #: item limit is 400 KB; the rest of the item needs room).
    payload_result_threshold_bytes: int = Field(
        default=350_000, ge=0, le=limits.DYNAMODB_MAX_ITEM_BYTES
    )
    #: The bucket's lifecycle rule expires payload objects after this many seconds
    #: (days, rounded up): longer than a message can live in its queue and its DLQ
    #: (``limits.SQS_MAX_RETENTION_S``, 14 days) so that no pointer outlives its object.
    payload_retention_s: Seconds = Field(default=15 * 86_400.0, gt=0)

    @field_validator("default_queue")
    @classmethod
    def _logical_queue(cls, value: str) -> str:
        return check_queue_name(value)

    @field_validator("lambda_maximum_concurrency")
    @classmethod
    def _maximum_concurrency(cls, value: int | dict[str, int] | None) -> Any:
        if isinstance(value, dict):
            return {check_queue_name(q): check_maximum_concurrency(n) for q, n in value.items()}
        return None if value is None else check_maximum_concurrency(value)

    @field_validator("queue_weights")
    @classmethod
    def _queue_weights(cls, value: dict[str, int]) -> dict[str, int]:
        return {check_queue_name(q): check_weight(q, w) for q, w in value.items()}
