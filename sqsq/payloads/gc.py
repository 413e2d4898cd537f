"""``sqsq gc APP``: remove payload objects no message can point to any more.

An object is an orphan when a crash came between its message's delete and its own
(the claim check deletes in that order), when a producer's send failed after its
PutObject, or when its message was a FAILURE or dead letter whose DLQ copy has since
expired or been purged. No message outlives SQS's longest retention
(``limits.SQS_MAX_RETENTION_S``, 14 days: a message moved to a DLQ keeps its first
enqueue time), so an object under the app's prefix older than that is an orphan.
The bucket's lifecycle rule (``payload_retention_s``) removes them too; ``gc`` is for
a bucket without one, or to reclaim sooner with ``--older-than``.

Requests: one ListObjectsV2 per 1,000 objects, one DeleteObjects per 1,000 orphans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .. import limits
from ..aws_errors import aws_boundary
from ..errors import ConfigurationError
from ..pointer import PAYLOAD_PREFIX
from .claim_check import S3_MAX_DELETE_KEYS

if TYPE_CHECKING:
    from ..app import App


@dataclass
class GcReport:
    """What :func:`collect` found and did.

    Attributes:
        scanned: objects listed under the app's prefix.
        orphans: keys older than the cut-off.
        deleted: how many of them were deleted (0 with ``dry_run``).
        errors: keys S3 did not delete, with its error code.
    """

    scanned: int = 0
    orphans: list[str] = field(default_factory=list)
    deleted: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


@aws_boundary(lambda app, *_, **__: app.settings.payload_bucket)
def collect(
    app: App, *, older_than_s: float = limits.SQS_MAX_RETENTION_S, dry_run: bool = False
) -> GcReport:
    """Delete the payload objects of ``app`` (``sqsq/<app>/…``) last modified more
    than ``older_than_s`` seconds ago (default 14 days, SQS's longest retention).

    A cut-off under the default may delete the object of a message still in a
    queue or DLQ (it would then be a dead letter ``payload_missing``): the default
    is the safe one.

    Raises:
        ConfigurationError: the app has no ``payload_bucket``.
        AWSError: S3 failed (the bucket named as its resource).
    """
    bucket = app.settings.payload_bucket
    if not bucket:
        raise ConfigurationError(f"app {app.name!r} has no payload_bucket: nothing to collect")
    s3 = app.clients.sync("s3")
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    report = GcReport()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{PAYLOAD_PREFIX}/{app.name}/"
    ):
        for obj in page.get("Contents", []):
            report.scanned += 1
            if obj["LastModified"] < cutoff:
                report.orphans.append(obj["Key"])
    if dry_run:
        return report
    for start in range(0, len(report.orphans), S3_MAX_DELETE_KEYS):
        chunk = report.orphans[start : start + S3_MAX_DELETE_KEYS]
        response = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
        )
        errors = [(e["Key"], e.get("Code", "")) for e in response.get("Errors", [])]
        report.errors += errors
        report.deleted += len(chunk) - len(errors)
    return report
