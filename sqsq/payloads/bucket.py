"""The claim check's S3 bucket, as ``sqsq resources create`` makes it.

One bucket (``payload_bucket``) holds message payloads under ``sqsq/`` and results
under ``sqsq-results/``. It is created with:

* default encryption: SSE-S3 (AES256), or SSE-KMS with ``payload_kms_key_id``;
* every public access blocked (``PutPublicAccessBlock``, all four settings);
* a bucket policy that denies any request not made over TLS
  (``aws:SecureTransport = false``) — not on a local endpoint reached over plain
  HTTP (``sqsq dev``, the test endpoint), which it would lock out;
* a lifecycle rule per prefix: payloads expire after ``payload_retention_s`` (days,
  rounded up; by default 15 days, longer than SQS's longest retention of a message
  in its queue and its DLQ, 14 days — no pointer outlives its object), results one
  day after the longest ``result_ttl`` of the app's tasks (DynamoDB's TTL has
  removed the item by then); unfinished multipart uploads are aborted after a day.

:func:`plan` reads what exists (HeadBucket, GetBucketLifecycleConfiguration) and
:func:`apply` puts every setting again (each call is idempotent).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from ..pointer import PAYLOAD_PREFIX
from ..resources import Change
from .claim_check import RESULT_PREFIX

if TYPE_CHECKING:
    from ..app import App

#: Seconds per day: S3 lifecycle expirations are whole days.
DAY_S = 86_400


def _days(seconds: float) -> int:
    return max(1, math.ceil(seconds / DAY_S))


def lifecycle_rules(app: App) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules (``PutBucketLifecycleConfiguration`` shape)."""
    result_ttl_s = max([app.settings.result_ttl_s, *(t.result_ttl_s for t in app.tasks.values())])
    return [
        {
            "ID": "sqsq-payloads",
            "Filter": {"Prefix": f"{PAYLOAD_PREFIX}/"},
            "Status": "Enabled",
            "Expiration": {"Days": _days(app.settings.payload_retention_s)},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
        {
            "ID": "sqsq-results",
            "Filter": {"Prefix": f"{RESULT_PREFIX}/"},
            "Status": "Enabled",
            "Expiration": {"Days": _days(result_ttl_s) + 1},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
    ]


def encryption(app: App) -> dict[str, Any]:
    """The default-encryption rule (``PutBucketEncryption`` shape)."""
    if app.settings.payload_kms_key_id:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": app.settings.payload_kms_key_id}
        return {
            "Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}]
        }
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def tls_only_policy(bucket: str, partition: str = "aws") -> dict[str, Any]:
    """A bucket policy denying every request not made over TLS."""
    arn = f"arn:{partition}:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


#: ``PutPublicAccessBlock``: all four settings on.
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def plan(app: App) -> list[Change]:
    """The bucket's row of ``sqsq resources`` (none without ``payload_bucket``):
    ``create`` when it does not exist, ``update`` when its lifecycle rules differ."""
    bucket = app.settings.payload_bucket
    if not bucket:
        return []
    s3 = app.clients.sync("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise
        return [Change("bucket", bucket, "create", "encrypted, public access blocked, lifecycle")]
    try:
        have = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except Exception:  # NoSuchLifecycleConfiguration
        have = []
    want = lifecycle_rules(app)
    days = {r["ID"]: r.get("Expiration", {}).get("Days") for r in have}
    if all(days.get(r["ID"]) == r["Expiration"]["Days"] for r in want):
        return [Change("bucket", bucket, "ok")]
    detail = ", ".join(f"{r['ID']} {r['Expiration']['Days']} days" for r in want)
    return [Change("bucket", bucket, "update", detail)]


def apply(app: App, change: Change) -> None:
    """Create the bucket (``create``) and put its settings (``create``/``update``)."""
    s3 = app.clients.sync("s3")
    bucket = change.name
    if change.action == "create":
        region = app.clients.region()
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":  # S3's one region without a LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=encryption(app))
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(app)}
    )
    if not s3.meta.endpoint_url.startswith(
        "http://"
    ):  # a local endpoint over plain HTTP: it would refuse all
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket)))
