"""Idempotent plan/apply of an app's queues, dead-letter queues and table.

For each logical queue: a DLQ (14-day retention — longer than the source queue's,
per "Using dead-letter queues in Amazon SQS", so a message keeps its original
enqueue time there — SSE on, RedriveAllowPolicy allowing only its source queue)
and the queue itself (RedrivePolicy whose maxReceiveCount covers the largest
``max_retries`` of its tasks, SSE on, the app's visibility timeout). Then the DynamoDB
table (on-demand, ``pk``/``sk`` keys) with TTL on ``expires_at``.

:func:`plan` reads what exists and returns :class:`Change` rows; :func:`apply`
carries them out. Running ``apply`` twice changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import limits
from .sqs import dead_letter_name, is_fifo

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .app import App

#: Retention of source queues, seconds (4 days, the SQS default).
QUEUE_RETENTION_S = 345_600
#: Retention of dead-letter queues, seconds (14 days, the SQS maximum).
DLQ_RETENTION_S = limits.SQS_MAX_RETENTION_S
#: The TTL attribute of the table.
TTL_ATTRIBUTE = "expires_at"


#: Attributes an endpoint may leave out of GetQueueAttributes(All) (moto never
#: reports RedriveAllowPolicy): their absence is not counted as drift. AWS reports
#: it once set, so a DLQ created by sqsq is compared there.
UNREPORTED_OK = frozenset({"RedriveAllowPolicy"})


@dataclass
class Change:
    """One row of a plan.

    Attributes:
        kind: ``"queue"``, ``"dead-letter queue"``, ``"table"`` or ``"table TTL"``.
        name: the resource's name.
        action: ``"create"``, ``"update"`` or ``"ok"`` (nothing to do).
        detail: what would change, e.g. ``"VisibilityTimeout 60 -> 30"``.
    """

    kind: str
    name: str
    action: str
    detail: str = ""
    attributes: dict[str, str] = field(default_factory=dict, repr=False)


def max_receive_count(app: App, logical: str) -> int:
    """The redrive policy's maxReceiveCount for a queue: the app's setting, raised
    to ``max_retries + 2`` of the queue's most-retried task (every attempt, plus
    one spare receive for a crash), capped at SQS's 1000."""
    retries = [
        t.retry_policy.max_retries
        for t in app.tasks.values()
        if t.queue == logical and t.retry_policy.max_retries is not None
    ]
    wanted = max([app.settings.max_receive_count, *(r + 2 for r in retries)])
    return min(wanted, 1000)


def _queue_attributes(
    app: App, name: str, dlq_arn: str | None, source_arn: str | None, logical: str = ""
) -> dict[str, str]:
    attributes = {
        "SqsManagedSseEnabled": "true",
        "MessageRetentionPeriod": str(DLQ_RETENTION_S if dlq_arn is None else QUEUE_RETENTION_S),
    }
    if dlq_arn is not None:
        attributes["VisibilityTimeout"] = str(int(app.settings.visibility_timeout_s))
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count(app, logical)},
            separators=(",", ":"),
        )
    if source_arn is not None:
        attributes["RedriveAllowPolicy"] = json.dumps(
            {"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]},
            separators=(",", ":"),
        )
    if is_fifo(name):
        attributes["FifoQueue"] = "true"
        # EventBridge Scheduler sends no deduplication id: a FIFO queue that periodic
        # tasks target needs content-based deduplication (sqsq's own sends always set
        # an explicit id, which takes precedence).
        scheduled = dlq_arn is not None and any(
            p.queue == logical for p in app.periodic_tasks.values()
        )
        attributes["ContentBasedDeduplication"] = "true" if scheduled else "false"
    return attributes


def _same(key: str, want: str, have: str | None) -> bool:
    if have is None:
        return False
    if key in ("RedrivePolicy", "RedriveAllowPolicy"):
        try:
            a, b = json.loads(want), json.loads(have)
        except ValueError:
            return False
        a = {k: str(v) for k, v in a.items()}
        b = {k: str(v) for k, v in b.items()}
        return a == b
    return want.lower() == have.lower()


class _Arns:
    """Queue ARNs, also of queues not created yet (the ARN is deterministic:
    ``arn:aws:sqs:<region>:<account>:<name>``; the account comes from STS once)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.account: str | None = None

    def arn(self, name: str, url: str | None) -> str:
        sqs = self.app.clients.sync("sqs")
        if url is not None:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            arn = str(attrs["Attributes"]["QueueArn"])
            self.account = arn.split(":")[4]
            return arn
        if self.account is None:
            identity = self.app.clients.sync("sts").get_caller_identity()
            self.account = str(identity["Account"])
        return f"arn:aws:sqs:{self.app.clients.region()}:{self.account}:{name}"


def _url(client: Any, name: str) -> str | None:
    try:
        return str(client.get_queue_url(QueueName=name)["QueueUrl"])
    except client.exceptions.QueueDoesNotExist:
        return None


def _queue_change(
    client: Any, kind: str, name: str, url: str | None, want: dict[str, str]
) -> Change:
    if url is None:
        return Change(kind, name, "create", "", want)
    have = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    diffs = {
        k: v
        for k, v in want.items()
        if k not in ("FifoQueue",)
        and not (k in UNREPORTED_OK and k not in have)
        and not _same(k, v, have.get(k))
    }
    if not diffs:
        return Change(kind, name, "ok")
    detail = ", ".join(f"{k} {have.get(k, '-')} -> {v}" for k, v in diffs.items())
    return Change(kind, name, "update", detail, diffs)


def plan(app: App) -> list[Change]:
    """What :func:`apply` would do, reading current state (no writes)."""
    sqs = app.clients.sync("sqs")
    arns = _Arns(app)
    changes: list[Change] = []
    for logical in app.queues():
        name = app.queue_name(logical)
        dlq = dead_letter_name(name)
        url, dlq_url = _url(sqs, name), _url(sqs, dlq)
        source_arn = arns.arn(name, url)
        dlq_arn = arns.arn(dlq, dlq_url)
        changes.append(
            _queue_change(
                sqs,
                "dead-letter queue",
                dlq,
                dlq_url,
                _queue_attributes(app, dlq, None, source_arn),
            )
        )
        changes.append(
            _queue_change(
                sqs, "queue", name, url, _queue_attributes(app, name, dlq_arn, None, logical)
            )
        )
    ddb = app.clients.sync("dynamodb")
    table = app.table_name
    try:
        ddb.describe_table(TableName=table)
        changes.append(Change("table", table, "ok"))
        try:
            ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        except Exception as exc:
            if not _ttl_unavailable(exc):
                raise
            changes.append(Change("table TTL", table, "ok", _TTL_UNAVAILABLE))
            return changes
        enabled = ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        if enabled and ttl.get("AttributeName") == TTL_ATTRIBUTE:
            changes.append(Change("table TTL", table, "ok", TTL_ATTRIBUTE))
        else:
            changes.append(Change("table TTL", table, "update", f"enable TTL on {TTL_ATTRIBUTE}"))
    except ddb.exceptions.ResourceNotFoundException:
        changes.append(Change("table", table, "create", "on-demand, keys pk/sk"))
        changes.append(Change("table TTL", table, "create", f"TTL on {TTL_ATTRIBUTE}"))
    return changes


def apply(app: App, changes: list[Change] | None = None) -> list[Change]:
    """Create or update what :func:`plan` found missing or different.

    Returns:
        The plan that was carried out (rows with action ``"ok"`` did nothing).
    """
    changes = plan(app) if changes is None else changes
    sqs = app.clients.sync("sqs")
    ddb = app.clients.sync("dynamodb")
    for change in changes:
        if change.action == "ok":
            continue
        if change.kind in ("queue", "dead-letter queue"):
            if change.action == "create":
                sqs.create_queue(QueueName=change.name, Attributes=change.attributes)
            else:
                url = sqs.get_queue_url(QueueName=change.name)["QueueUrl"]
                sqs.set_queue_attributes(QueueUrl=url, Attributes=change.attributes)
        elif change.kind == "table" and change.action == "create":
            ddb.create_table(
                TableName=change.name,
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            ddb.get_waiter("table_exists").wait(
                TableName=change.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        elif change.kind == "table TTL":
            try:
                ddb.update_time_to_live(
                    TableName=change.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
                )
            except Exception as exc:
                if not _ttl_unavailable(exc):
                    raise
                logger.warning("table %s: %s (%s)", change.name, _TTL_UNAVAILABLE, exc)
    return changes


#: Shown when the endpoint has no TTL calls (dynalite) or the caller may not use them.
_TTL_UNAVAILABLE = (
    "TTL not available here; expired results and keys are still read as gone, they only stay stored"
)


def _ttl_unavailable(exc: Exception) -> bool:
    """DescribeTimeToLive/UpdateTimeToLive refused: not implemented by the endpoint
    (UnknownOperationException: dynalite) or not allowed to this caller
    (AccessDeniedException: an IAM policy without dynamodb:*TimeToLive). sqsq never
    relies on TTL: every read checks ``expires_at`` itself."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("UnknownOperationException", "AccessDeniedException")
