"""The app's own resources as CloudFormation: queues, dead-letter queues, the table,
the schedule group, schedules and their role.

Every attribute comes from :func:`sqsq.resources.describe` (what ``sqsq resources
create`` makes) and from the builders of :mod:`sqsq.schedules.scheduler` (what
``sqsq schedule sync`` makes); this module only changes their spelling::

    QueueSpec.attributes()  "VisibilityTimeout": "30"      ->  VisibilityTimeout: 30
                            "RedrivePolicy": "{...arn...}"  ->  RedrivePolicy: {deadLetterTargetArn:
                                                                  !GetAtt <Dlq>.Arn, ...}
    scheduler.definition()  Target.Arn = the queue ARN      ->  !GetAtt <Queue>.Arn
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import listing
from ..errors import ConfigurationError
from ..resources import AppResources, QueueSpec, describe
from ..schedules import scheduler

if TYPE_CHECKING:
    from ..app import App

Doc = dict[str, Any]

#: Stateful resources keep their data when the stack is deleted or the resource
#: replaced (cfn-lint I3011).
RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}

#: Days a log group keeps its events: the choices of ``RetentionInDays`` offered as
#: the ``LogRetentionDays`` parameter ("PutRetentionPolicy", CloudWatch Logs API).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 180, 365, 400, 545, 731, 1096, 1827, 3653)
LOG_RETENTION_PARAMETER = "LogRetentionDays"

_MARK = re.compile(r"^\{\{(queue|role):(.+)\}\}$")


def camel(name: str) -> str:
    """A CloudFormation logical id part from a queue name: ``"emails.fifo"`` -> ``"EmailsFifo"``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


def get_att(logical_id: str, attribute: str = "Arn") -> Doc:
    return {"Fn::GetAtt": [logical_id, attribute]}


def ref(logical_id: str) -> Doc:
    return {"Ref": logical_id}


def sub(text: str) -> Doc:
    return {"Fn::Sub": text}


def queue_arn_sub(name: str) -> Doc:
    """A queue's ARN built from its name (no dependency on the queue resource)."""
    return sub(f"arn:${{AWS::Partition}}:sqs:${{AWS::Region}}:${{AWS::AccountId}}:{name}")


@dataclass(frozen=True)
class Declared:
    """The app's resources and their logical ids in the template."""

    app: App
    resources: AppResources

    def queue_id(self, queue: QueueSpec) -> str:
        suffix = "DeadLetterQueue" if queue.dead_letter else "Queue"
        return camel(queue.logical) + suffix

    def id_of(self, physical: str) -> str:
        for queue in self.resources.queues:
            if queue.name == physical:
                return self.queue_id(queue)
        raise KeyError(physical)

    @property
    def table_id(self) -> str:
        return "ResultTable"

    def source_arns(self) -> list[Doc]:
        return [get_att(self.queue_id(q)) for q in self.resources.source_queues()]

    def dead_letter_arns(self) -> list[Doc]:
        return [get_att(self.queue_id(q)) for q in self.resources.dead_letter_queues()]


def declared(app: App) -> Declared:
    """The app's resources with their logical ids.

    Raises:
        ConfigurationError: two logical queues map to one logical id (``a-b``, ``a_b``).
    """
    ids = Declared(app, describe(app))
    seen: dict[str, str] = {}
    for queue in ids.resources.queues:
        other = seen.setdefault(ids.queue_id(queue), queue.name)
        if other != queue.name:
            raise ConfigurationError(
                f"queues {other} and {queue.name} share the CloudFormation id "
                f"{ids.queue_id(queue)}: rename one"
            )
    return ids


def queue_properties(queue: QueueSpec, ids: Declared) -> Doc:
    """``AWS::SQS::Queue`` properties: the SQS attributes of :meth:`QueueSpec.attributes`,
    with numbers and booleans typed and the policies as objects whose ARNs are
    intrinsics (RedrivePolicy: ``GetAtt`` of the DLQ, which orders its creation
    first; RedriveAllowPolicy: the source ARN built by ``Sub``, which avoids a cycle)."""
    properties: Doc = {"QueueName": queue.name}
    for key, value in queue.attributes(lambda name: name).items():
        if key == "RedrivePolicy":
            policy = json.loads(value)
            policy["deadLetterTargetArn"] = get_att(ids.id_of(policy["deadLetterTargetArn"]))
            properties[key] = policy
        elif key == "RedriveAllowPolicy":
            policy = json.loads(value)
            policy["sourceQueueArns"] = [queue_arn_sub(n) for n in policy["sourceQueueArns"]]
            properties[key] = policy
        elif value in ("true", "false"):
            properties[key] = value == "true"
        else:
            properties[key] = int(value)
    return properties


def table_resource(ids: Declared) -> Doc:
    table = ids.resources.table
    resource: Doc = {
        "Type": "AWS::DynamoDB::Table",
        **RETAIN,
        "Properties": {
            "TableName": table.name,
            "BillingMode": table.billing_mode,
            "AttributeDefinitions": [
                {"AttributeName": table.hash_key, "AttributeType": "S"},
                {"AttributeName": table.range_key, "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": table.hash_key, "KeyType": "HASH"},
                {"AttributeName": table.range_key, "KeyType": "RANGE"},
            ],
            "TimeToLiveSpecification": {"AttributeName": table.ttl_attribute, "Enabled": True},
            "PointInTimeRecoverySpecification": {
                "PointInTimeRecoveryEnabled": table.point_in_time_recovery
            },
            **(_listing_index() if table.listing_index else {}),
        },
    }
    if table.listing_index:
        resource["Properties"]["AttributeDefinitions"] += listing.attribute_definitions()
    return resource


def _listing_index() -> Doc:
    """The sparse ``listing`` GSI (``sqsq/listing.py``), as CloudFormation."""
    return {"GlobalSecondaryIndexes": [listing.global_secondary_index()]}


class _MarkedArns(scheduler.Arns):
    """ARNs as markers that :func:`_intrinsics` turns into ``GetAtt``."""

    def queue(self, physical: str) -> str:
        return "{{queue:" + physical + "}}"


def _intrinsics(value: Any, ids: Declared) -> Any:
    if isinstance(value, dict):
        return {k: _intrinsics(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_intrinsics(v, ids) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and (match := _MARK.match(value)):
        kind, name = match.groups()
        return get_att(ids.id_of(name) if kind == "queue" else name)
    return value


SCHEDULE_GROUP_ID = "ScheduleGroup"
SCHEDULER_ROLE_ID = "SchedulerRole"
ETA_GROUP_ID = "CountdownScheduleGroup"


def schedule_resources(
    ids: Declared, long_countdowns: bool = False, now: datetime | None = None
) -> Doc:
    """The schedule group, the role Scheduler assumes and one schedule per periodic
    task, built by :mod:`sqsq.schedules.scheduler` (as ``sqsq schedule sync`` would);
    with ``long_countdowns`` also the group of one-time schedules of countdowns over
    SQS's 900 s (:mod:`sqsq.schedules.eta`)."""
    from ..schedules import eta

    app = ids.app
    if not app.periodic_tasks and not long_countdowns:
        return {}
    arns = _MarkedArns(app, "0")
    role_marker = "{{role:" + SCHEDULER_ROLE_ID + "}}"
    out: Doc = {}
    if app.periodic_tasks:
        out[SCHEDULE_GROUP_ID] = {
            "Type": "AWS::Scheduler::ScheduleGroup",
            "Properties": {"Name": scheduler.group_name(app)},
        }
    if long_countdowns:
        out[ETA_GROUP_ID] = {
            "Type": "AWS::Scheduler::ScheduleGroup",
            "Properties": {"Name": eta.group_name(app)},
        }
    out.update(
        {
            SCHEDULER_ROLE_ID: {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": scheduler.role_name(app),
                    "Description": f"EventBridge Scheduler sends sqsq app {app.name}'s schedules",
                    "AssumeRolePolicyDocument": scheduler.trust_policy(),
                    "Policies": [
                        {
                            "PolicyName": scheduler.ROLE_POLICY,
                            "PolicyDocument": _intrinsics(
                                scheduler.role_policy(scheduler.role_queue_arns(app, arns)), ids
                            ),
                        }
                    ],
                },
            },
        }
    )
    for name, periodic in sorted(app.periodic_tasks.items()):
        definition = scheduler.definition(app, periodic, role_marker, arns, now)
        out["Schedule" + camel(name)] = {
            "Type": "AWS::Scheduler::Schedule",
            "Properties": {
                "Name": name,
                "GroupName": ref(SCHEDULE_GROUP_ID),
                **_intrinsics(definition, ids),
            },
        }
    return out


def app_resources(ids: Declared, long_countdowns: bool = False) -> Doc:
    """Queues, DLQs, the table, and the schedules (the alarms: :mod:`.alarms`)."""
    out: Doc = {}
    for queue in ids.resources.queues:
        out[ids.queue_id(queue)] = {
            "Type": "AWS::SQS::Queue",
            **RETAIN,
            "Properties": queue_properties(queue, ids),
        }
    out[ids.table_id] = table_resource(ids)
    out.update(payload_bucket_resources(ids.app))
    out.update(schedule_resources(ids, long_countdowns))
    return out


#: The logical id of the claim check's bucket (``payload_bucket``, ``sqsq.payloads``).
PAYLOAD_BUCKET_ID = "PayloadBucket"


def payload_bucket_resources(app: App) -> Doc:
    """The claim check's bucket and its TLS-only policy, as ``sqsq resources create``
    makes them (:mod:`sqsq.payloads.bucket`); nothing without ``payload_bucket``."""
    bucket = app.settings.payload_bucket
    if not bucket:
        return {}
    from ..payloads.bucket import PUBLIC_ACCESS_BLOCK, encryption, lifecycle_rules, tls_only_policy

    sse = [  # CloudFormation's names for PutBucketEncryption's rule
        {
            "ServerSideEncryptionByDefault": rule["ApplyServerSideEncryptionByDefault"],
            **({"BucketKeyEnabled": True} if rule.get("BucketKeyEnabled") else {}),
        }
        for rule in encryption(app)["Rules"]
    ]
    rules = [
        {
            "Id": rule["ID"],
            "Prefix": rule["Filter"]["Prefix"],
            "Status": "Enabled",
            "ExpirationInDays": rule["Expiration"]["Days"],
            "AbortIncompleteMultipartUpload": rule["AbortIncompleteMultipartUpload"],
        }
        for rule in lifecycle_rules(app)
    ]
    policy = tls_only_policy(bucket)
    for statement in policy["Statement"]:
        statement["Resource"] = [
            sub(f"arn:${{AWS::Partition}}:s3:::{bucket}"),
            sub(f"arn:${{AWS::Partition}}:s3:::{bucket}/*"),
        ]
    return {
        PAYLOAD_BUCKET_ID: {
            "Type": "AWS::S3::Bucket",
            **RETAIN,
            "Properties": {
                "BucketName": bucket,
                "BucketEncryption": {"ServerSideEncryptionConfiguration": sse},
                "PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCK,
                "LifecycleConfiguration": {"Rules": rules},
            },
        },
        f"{PAYLOAD_BUCKET_ID}Policy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {"Bucket": ref(PAYLOAD_BUCKET_ID), "PolicyDocument": policy},
        },
    }


def log_group(name: str) -> Doc:
    """A log group kept ``LogRetentionDays`` (a group CloudWatch Logs makes by itself
    keeps its events forever)."""
    return {
        "Type": "AWS::Logs::LogGroup",
        **RETAIN,
        "Properties": {"LogGroupName": name, "RetentionInDays": ref(LOG_RETENTION_PARAMETER)},
    }


def log_retention_parameter() -> Doc:
    return {
        LOG_RETENTION_PARAMETER: {
            "Type": "Number",
            "Default": 14,
            "AllowedValues": list(LOG_RETENTION_DAYS),
            "Description": "Days the logs are kept.",
        }
    }


def app_outputs(ids: Declared) -> Doc:
    """Queue URLs and the table name, for producers elsewhere."""
    out: Doc = {}
    for queue in ids.resources.queues:
        kind = "dead-letter queue" if queue.dead_letter else "queue"
        out[ids.queue_id(queue) + "Url"] = {
            "Description": f"URL of the {kind} {queue.name}",
            "Value": ref(ids.queue_id(queue)),
        }
    out["ResultTableName"] = {
        "Description": "The result table (SQSQ_TABLE_NAME)",
        "Value": ref(ids.table_id),
    }
    return out
