"""Idempotent plan/apply of an app's queues, dead-letter queues and table.

For each logical queue: a DLQ (14-day retention — longer than the source queue's,
per "Using dead-letter queues in Amazon SQS", so a message keeps its original
enqueue time there — SSE on, RedriveAllowPolicy allowing only its source queue)
and the queue itself (RedrivePolicy whose maxReceiveCount covers the largest
``max_retries`` of its tasks, SSE on, the app's visibility timeout — the least it
may have: a longer one, as ``sqsq infra --target lambda`` gives a queue its function
consumes, is kept). Then the DynamoDB
table (on-demand, ``pk``/``sk`` keys) with TTL on ``expires_at`` and point-in-time
recovery, and with ``listing_index`` its sparse ``listing`` GSI (``listing.py``).
With ``payload_bucket`` set, the claim check's S3 bucket
(:mod:`sqsq.payloads.bucket`: encrypted, public access blocked, TLS only, lifecycle).

:func:`describe` is the one description of these resources (no AWS call):
``plan``/``apply`` here and the CloudFormation of ``sqsq infra`` (:mod:`sqsq.deploy`)
both render it, so they cannot disagree.

:func:`plan` reads what exists and returns :class:`Change` rows; :func:`apply`
carries them out. Running ``apply`` twice changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import limits, listing
from .aws_errors import aws_boundary
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
        kind: ``"queue"``, ``"dead-letter queue"``, ``"table"``, ``"table index"``
            (the ``listing`` GSI), ``"table TTL"``, ``"table PITR"`` or ``"bucket"``
            (``payload_bucket``, ``sqsq.payloads``).
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


@dataclass(frozen=True)
class QueueSpec:
    """One queue or dead-letter queue of the app, as ``resources create`` makes it
    and ``sqsq infra`` declares it (the one description both read).

    Attributes:
        logical: the app's logical queue name (``"default"``).
        name: the physical queue name.
        dead_letter: True for a dead-letter queue.
        partner: the DLQ of a source queue, or the source queue of a DLQ.
        retention_s: MessageRetentionPeriod, seconds.
        visibility_timeout_s: VisibilityTimeout of a source queue, seconds (None: DLQs
            keep SQS's default; nothing consumes them).
        max_receive_count: the redrive policy's maxReceiveCount (source queues).
        fifo: a FIFO queue (name ends in ``.fifo``).
        content_based_deduplication: FIFO only; True where periodic tasks send.
    """

    logical: str
    name: str
    dead_letter: bool
    partner: str
    retention_s: int
    visibility_timeout_s: int | None = None
    max_receive_count: int | None = None
    fifo: bool = False
    content_based_deduplication: bool = False

    def attributes(self, arn: Callable[[str], str]) -> dict[str, str]:
        """The SQS attributes (CreateQueue / SetQueueAttributes strings).

        Args:
            arn: the ARN of a queue by physical name (RedrivePolicy names the DLQ,
                RedriveAllowPolicy the source queue).
        """
        attributes = {
            "SqsManagedSseEnabled": "true",
            "MessageRetentionPeriod": str(self.retention_s),
        }
        if not self.dead_letter:
            attributes["VisibilityTimeout"] = str(self.visibility_timeout_s)
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": arn(self.partner),
                    "maxReceiveCount": self.max_receive_count,
                },
                separators=(",", ":"),
            )
        else:
            attributes["RedriveAllowPolicy"] = json.dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [arn(self.partner)]},
                separators=(",", ":"),
            )
        if self.fifo:
            attributes["FifoQueue"] = "true"
            attributes["ContentBasedDeduplication"] = (
                "true" if self.content_based_deduplication else "false"
            )
        return attributes


@dataclass(frozen=True)
class TableSpec:
    """The app's DynamoDB table: on-demand, keys ``pk``/``sk`` (strings), TTL on
    :data:`TTL_ATTRIBUTE`, point-in-time recovery on."""

    name: str
    hash_key: str = "pk"
    range_key: str = "sk"
    ttl_attribute: str = TTL_ATTRIBUTE
    billing_mode: str = "PAY_PER_REQUEST"
    point_in_time_recovery: bool = True
    #: The sparse ``listing`` GSI (``listing.py``; the ``listing_index`` setting).
    listing_index: bool = False


@dataclass(frozen=True)
class AppResources:
    """Everything :func:`apply` creates for an app: per logical queue its DLQ then the
    queue, and the table. ``sqsq infra`` renders the same objects as CloudFormation."""

    queues: list[QueueSpec]
    table: TableSpec

    def source_queues(self) -> list[QueueSpec]:
        return [q for q in self.queues if not q.dead_letter]

    def dead_letter_queues(self) -> list[QueueSpec]:
        return [q for q in self.queues if q.dead_letter]


def describe(app: App) -> AppResources:
    """The app's queues, dead-letter queues and table, from its declarations and
    settings (no AWS call). See the module docstring for the attributes."""
    queues: list[QueueSpec] = []
    for logical in app.queues():
        name = app.queue_name(logical)
        dlq = dead_letter_name(name)
        fifo = is_fifo(name)
        # EventBridge Scheduler sends no deduplication id: a FIFO queue that periodic
        # tasks target needs content-based deduplication (sqsq's own sends always set
        # an explicit id, which takes precedence).
        scheduled = any(p.queue == logical for p in app.periodic_tasks.values())
        queues.append(QueueSpec(logical, dlq, True, name, DLQ_RETENTION_S, fifo=fifo))
        queues.append(
            QueueSpec(
                logical,
                name,
                False,
                dlq,
                QUEUE_RETENTION_S,
                visibility_timeout_s=int(app.settings.visibility_timeout_s),
                max_receive_count=max_receive_count(app, logical),
                fifo=fifo,
                content_based_deduplication=fifo and scheduled,
            )
        )
    return AppResources(queues, TableSpec(app.table_name, listing_index=app.settings.listing_index))


def _same(key: str, want: str, have: str | None) -> bool:
    if have is None:
        return False
    if key == "VisibilityTimeout":  # longer is kept: a Lambda-consumed queue needs >= 6 x
        try:  # its function's timeout (sqsq.deploy.lambda_timing), the app's is the least
            return int(have) >= int(want)
        except ValueError:
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


@aws_boundary()  # several queues and a table: the error's action says which call
def plan(app: App) -> list[Change]:
    """What :func:`apply` would do, reading current state (no writes)."""
    sqs = app.clients.sync("sqs")
    arns = _Arns(app)
    resources = describe(app)
    urls = {q.name: _url(sqs, q.name) for q in resources.queues}
    known = {name: arns.arn(name, url) for name, url in urls.items()}
    changes: list[Change] = []
    for queue in resources.queues:
        kind = "dead-letter queue" if queue.dead_letter else "queue"
        want = queue.attributes(known.__getitem__)
        changes.append(_queue_change(sqs, kind, queue.name, urls[queue.name], want))
    changes += _table_changes(app, resources.table)
    if app.payloads is not None:  # a payload_bucket: the claim check's (sqsq.payloads)
        changes += app.payloads.plan_bucket()
    return changes


def _table_changes(app: App, table: TableSpec) -> list[Change]:
    ddb = app.clients.sync("dynamodb")
    name = table.name
    try:
        described = ddb.describe_table(TableName=name)["Table"]
    except ddb.exceptions.ResourceNotFoundException:
        index = f", {listing.INDEX_NAME} index" if table.listing_index else ""
        return [
            Change(
                "table",
                name,
                "create",
                f"on-demand, keys {table.hash_key}/{table.range_key}{index}",
            ),
            Change("table TTL", name, "create", f"TTL on {table.ttl_attribute}"),
            Change("table PITR", name, "create", "point-in-time recovery"),
        ]
    changes = [Change("table", name, "ok")]
    if table.listing_index:
        indexes = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
        action = "ok" if listing.INDEX_NAME in indexes else "create"
        change = Change("table index", name, action, listing.INDEX_NAME)
        if described.get("BillingModeSummary", {}).get("BillingMode") == "PROVISIONED" or (
            "BillingModeSummary" not in described
            and described.get("ProvisionedThroughput", {}).get("WriteCapacityUnits")
        ):  # a provisioned table (made elsewhere): its index needs capacity too — its own
            throughput = described["ProvisionedThroughput"]
            change.attributes = {
                "ReadCapacityUnits": str(throughput["ReadCapacityUnits"]),
                "WriteCapacityUnits": str(throughput["WriteCapacityUnits"]),
            }
        changes.append(change)
    try:
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    except Exception as exc:
        if not _ttl_unavailable(exc):
            raise
        changes.append(Change("table TTL", name, "ok", _TTL_UNAVAILABLE))
    else:
        enabled = ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        if enabled and ttl.get("AttributeName") == table.ttl_attribute:
            changes.append(Change("table TTL", name, "ok", table.ttl_attribute))
        else:
            changes.append(
                Change("table TTL", name, "update", f"enable TTL on {table.ttl_attribute}")
            )
    try:
        backups = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    except Exception as exc:
        if not _ttl_unavailable(exc):
            raise
        changes.append(Change("table PITR", name, "ok", _PITR_UNAVAILABLE))
        return changes
    pitr = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
    if pitr == "ENABLED" or not table.point_in_time_recovery:
        changes.append(Change("table PITR", name, "ok"))
    else:
        changes.append(Change("table PITR", name, "update", "enable point-in-time recovery"))
    return changes


@aws_boundary()  # several queues and a table: the error's action says which call
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
        elif change.kind == "bucket":
            app.claim_check().apply_bucket(change)
        elif change.kind == "table" and change.action == "create":
            with_index = app.settings.listing_index
            ddb.create_table(
                TableName=change.name,
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                    *(listing.attribute_definitions() if with_index else []),
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
                **(
                    {"GlobalSecondaryIndexes": [listing.global_secondary_index()]}
                    if with_index
                    else {}
                ),
            )
            ddb.get_waiter("table_exists").wait(
                TableName=change.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        elif change.kind == "table index":
            # DynamoDB backfills the new index from the table's items (minutes on a
            # large table; it is listed as CREATING meanwhile).
            # A provisioned table's index is given the table's capacity (UpdateTable
            # requires ProvisionedThroughput there and refuses it on an on-demand one).
            index = listing.global_secondary_index()
            if change.attributes:
                index["ProvisionedThroughput"] = {k: int(v) for k, v in change.attributes.items()}
            ddb.update_table(
                TableName=change.name,
                AttributeDefinitions=listing.attribute_definitions(),
                GlobalSecondaryIndexUpdates=[{"Create": index}],
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
        elif change.kind == "table PITR":
            try:
                ddb.update_continuous_backups(
                    TableName=change.name,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                )
            except Exception as exc:
                if not _ttl_unavailable(exc):
                    raise
                logger.warning("table %s: %s (%s)", change.name, _PITR_UNAVAILABLE, exc)
    return changes


#: Shown when the endpoint has no TTL calls (dynalite) or the caller may not use them.
_PITR_UNAVAILABLE = "point-in-time recovery not available here (a backup setting, not relied on)"
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
