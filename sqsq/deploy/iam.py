"""Least-privilege IAM for whatever runs the app's tasks (Lambda, ECS task, EC2
instance): exact ARNs of the app's queues, DLQs and table, no ``*`` resource —
except, with ``--step-functions``, the Step Functions callback actions, which
take no other (see :func:`step_functions_statements`).

IAM names no ``*Batch`` actions: SendMessage, DeleteMessage and
ChangeMessageVisibility also authorize their Batch forms.
"""

from __future__ import annotations

from typing import Any

from .resources import SCHEDULER_ROLE_ID, Declared, get_att, sub

Doc = dict[str, Any]

#: What sqsq does with the table: results (BatchWriteItem), result and revocation
#: reads (GetItem, BatchGetItem, Query), idempotency claims and leases
#: (conditional PutItem, UpdateItem, DeleteItem).
TABLE_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
]


def trust(service: str) -> Doc:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }


def signing_key_reference(app: Any) -> str | None:
    """The app's ``signing_key`` if it names a secret (``secretsmanager:…`` or
    ``ssm:…``), which the template passes on as ``SQSQ_SIGNING_KEY``; None for no
    key, or a literal key (never written into a template: it travels with the app's
    code or the deployer's own environment)."""
    spec = app.settings.signing_key or ""
    return spec if spec.startswith(("secretsmanager:", "ssm:")) else None


def signing_environment(app: Any) -> dict[str, str]:
    """``{"SQSQ_SIGNING_KEY": <reference>}`` when the key is kept in a secret, else ``{}``."""
    spec = signing_key_reference(app)
    return {"SQSQ_SIGNING_KEY": spec} if spec else {}


def signing_statements(app: Any) -> list[Doc]:
    """Read the message signing key (``sqsq/signing.py``) where it is kept: Secrets
    Manager's GetSecretValue on the secret (by name: the ARN ends in ``-`` and six
    random characters, hence ``-??????``), or SSM's GetParameter on the parameter. A
    customer-managed KMS key also needs ``kms:Decrypt``, which is not added."""
    spec = signing_key_reference(app)
    if spec is None:
        return []
    service, _, name = spec.partition(":")
    if service == "secretsmanager":
        action = "secretsmanager:GetSecretValue"
        arn = f"secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:{name}-??????"
    else:
        action = "ssm:GetParameter"
        arn = f"ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter/{name.lstrip('/')}"
    resource = name if name.startswith("arn:") else sub("arn:${AWS::Partition}:" + arn)
    return [{"Sid": "SigningKey", "Effect": "Allow", "Action": action, "Resource": resource}]


def worker_statements(ids: Declared) -> list[Doc]:
    """Consume the app's queues, send to them (tasks that enqueue tasks) and to their
    DLQs (copies with the reason), read and write the table; read the signing key if
    it is kept in Secrets Manager or SSM."""
    return [
        {
            "Sid": "ConsumeQueues",
            "Effect": "Allow",
            "Action": [
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
            ],
            "Resource": ids.source_arns(),
        },
        {
            "Sid": "SendTasks",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": ids.source_arns(),
        },
        {
            "Sid": "DeadLetter",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"],
            "Resource": ids.dead_letter_arns(),
        },
        {
            "Sid": "Results",
            "Effect": "Allow",
            "Action": TABLE_ACTIONS,
            "Resource": get_att(ids.table_id),
        },
        *signing_statements(ids.app),
        *payload_statements(ids.app),
    ]


def payload_statements(app: Any) -> list[Doc]:
    """The claim check's objects (``payload_bucket``, ``sqsq.payloads``): get, put and
    delete them (bodies, large results, re-sent copies), list the bucket (so a missing
    object is a 404, ``payload_missing``, not a 403); the KMS key's data keys when
    ``payload_kms_key_id`` is an ARN."""
    bucket = app.settings.payload_bucket
    if not bucket:
        return []
    arn = f"arn:${{AWS::Partition}}:s3:::{bucket}"
    statements: list[Doc] = [
        {
            "Sid": "PayloadObjects",
            "Effect": "Allow",
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": sub(f"{arn}/*"),
        },
        {
            "Sid": "PayloadBucket",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": sub(arn),
        },
    ]
    key = app.settings.payload_kms_key_id
    if key and key.startswith("arn:"):
        statements.append(
            {
                "Sid": "PayloadKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": key,
            }
        )
    return statements


def long_countdown_statements(ids: Declared) -> list[Doc]:
    """Tasks that send tasks with a countdown over SQS's 900 s create (and revoking
    deletes) one-time schedules in ``<app>-sqsq-eta`` with the scheduler role. The
    schedule names are task ids, so the ARN ends in ``/*`` (the group's schedules only)."""
    from ..schedules import eta

    group = eta.group_name(ids.app)
    return [
        {
            "Sid": "LongCountdowns",
            "Effect": "Allow",
            "Action": ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"],
            "Resource": sub(
                "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/"
                f"{group}/*"
            ),
        },
        {
            "Sid": "PassSchedulerRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": get_att(SCHEDULER_ROLE_ID),
        },
    ]


#: What reporting to Step Functions takes (``sqsq/task_tokens.py``).
STEP_FUNCTIONS_ACTIONS = [
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    "states:SendTaskSuccess",
]


def step_functions_statements() -> list[Doc]:
    """Report outcomes and heartbeats of tasks sent with a Step Functions task token.

    The one statement with ``"Resource": "*"``, hence behind ``--step-functions``:
    the Service Authorization Reference lists no resource type for these three
    actions (they act on the token they are given, not on a state machine ARN), so
    nothing narrower can be named. What the role can do with it is bounded by the
    tokens it holds — those in the messages of its own queues.
    """
    return [
        {
            "Sid": "StepFunctionsCallbacks",
            "Effect": "Allow",
            "Action": STEP_FUNCTIONS_ACTIONS,
            "Resource": "*",
        }
    ]


def worker_policy(
    ids: Declared,
    extra: list[Doc] | None = None,
    long_countdowns: bool = False,
    step_functions: bool = False,
) -> Doc:
    """The inline policy ``sqsq-worker`` of the role that runs the tasks."""
    if long_countdowns:
        extra = [*(extra or []), *long_countdown_statements(ids)]
    if step_functions:
        extra = [*(extra or []), *step_functions_statements()]
    return {
        "PolicyName": "sqsq-worker",
        "PolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [*worker_statements(ids), *(extra or [])],
        },
    }
