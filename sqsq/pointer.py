"""The claim check's wire format: the SQS Extended Client's pointer, read and written.

The core reads it (``sqsq dlq ls`` / :func:`sqsq.dlq.describe` show an offloaded
message's object and size); ``sqsq.payloads`` writes and fetches it.

AWS's Extended Client libraries (Java ``amazon-sqs-java-extended-client-lib``,
Python ``amazon-sqs-extended-client``) put a large body in S3 and send this instead::

    MessageAttributes  ExtendedPayloadSize = {"DataType": "Number", "StringValue": "<bytes>"}
    MessageBody        ["software.amazon.payloadoffloading.PayloadS3Pointer",
                        {"s3BucketName": "<bucket>", "s3Key": "<key>"}]

Older releases used the attribute ``SQSLargePayloadSize`` and the pointer class
``com.amazon.sqs.javamessaging.MessageS3Pointer``; both are read, the current ones
written. The size is the object's bytes (the body as UTF-8). sqsq writes the same
form, so its offloaded messages are readable by those libraries and theirs run on
sqsq's workers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, TypedDict

#: The message attribute that marks a pointer and gives the payload's size in bytes.
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
#: The same, as the Extended Client's first releases named it (read only).
LEGACY_SIZE_ATTRIBUTE = "SQSLargePayloadSize"
#: The pointer's class name, the first member of the body.
POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
#: The same, as the Extended Client's first releases named it (read only).
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
#: The first part of the keys of the payloads sqsq puts in S3:
#: ``sqsq/<app>/<queue>/<date, UTC>/<task id>/<sha256 of the body>``.
PAYLOAD_PREFIX = "sqsq"

_PAYLOAD_KEY = re.compile(rf"^{PAYLOAD_PREFIX}/.+/\d{{4}}-\d{{2}}-\d{{2}}/([^/]+)/[0-9a-f]{{64}}$")


@dataclass(frozen=True)
class Pointer:
    """Where a body (or a result) lives in S3.

    Attributes:
        bucket: the S3 bucket.
        key: the object key.
    """

    bucket: str
    key: str

    @property
    def body(self) -> str:
        """The pointer as a message body, in the Extended Client's current form."""
        return json.dumps(
            [POINTER_CLASS, {"s3BucketName": self.bucket, "s3Key": self.key}],
            separators=(",", ":"),
        )

    @property
    def url(self) -> str:
        """``s3://bucket/key``, for messages and logs."""
        return f"s3://{self.bucket}/{self.key}"


def size_attribute(size: int) -> dict[str, dict[str, str]]:
    """The ``ExtendedPayloadSize`` message attribute for a payload of ``size`` bytes."""
    return {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(size)}}


def offloaded_size(attributes: dict[str, Any]) -> int | None:
    """The payload size a message's attributes announce (``ExtendedPayloadSize`` or
    the legacy ``SQSLargePayloadSize``), or None when the message is not a pointer.
    An announced size that is not a number counts as 0 (the object decides)."""
    for name in (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE):
        attribute = attributes.get(name)
        if attribute is not None:
            try:
                return int(attribute.get("StringValue", "0"))
            except (TypeError, ValueError, AttributeError):
                return 0
    return None


def parse(body: str) -> Pointer:
    """The pointer in a message body (either class name).

    Raises:
        ValueError: the body is not a pointer.
    """
    try:
        raw = json.loads(body)
    except (ValueError, TypeError, RecursionError):  # RecursionError: nested too deep
        raise ValueError("the body of a message marked as offloaded is not JSON") from None
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or raw[0] not in (POINTER_CLASS, LEGACY_POINTER_CLASS)
        or not isinstance(raw[1], dict)
    ):
        raise ValueError(f"not an S3 pointer ([{POINTER_CLASS!r}, {{...}}]): {body[:200]!r}")
    bucket, key = raw[1].get("s3BucketName"), raw[1].get("s3Key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise ValueError(f"an S3 pointer without s3BucketName / s3Key: {body[:200]!r}")
    return Pointer(bucket, key)


def payload_task_id(key: str) -> str | None:
    """The task id in a payload key sqsq wrote (see :data:`PAYLOAD_PREFIX`), else None
    (a key of another writer, such as the Extended Client's random UUIDs)."""
    match = _PAYLOAD_KEY.match(key)
    return match.group(1) if match else None


def unannounced(body: str) -> Pointer | None:
    """The pointer a body *is* although no size attribute announces it — as an
    EventBridge Scheduler target sends a long countdown's pointer (Scheduler's SQS
    target sets no message attributes) — taken only when its key is sqsq's
    (:func:`payload_task_id`: the key names the body's sha256, checked when it is
    fetched); else None."""
    if not body.startswith(f'["{POINTER_CLASS}"'):
        return None
    try:
        pointer = parse(body)
    except ValueError:
        return None
    return pointer if payload_task_id(pointer.key) is not None else None


class Offloaded(TypedDict):
    """Where a received message's body is in S3, as ``sqsq dlq ls`` shows it."""

    #: ``s3://bucket/key``, or ``"(not a pointer)"`` for a body marked as offloaded
    #: (the size attribute) that is not one.
    url: str
    #: The payload's size the message announces (``ExtendedPayloadSize``), bytes.
    bytes: int


def offloaded(message: dict[str, Any]) -> Offloaded | None:
    """Where the body of a received message (ReceiveMessage shape) is in S3, or None
    when it is not a pointer (no ``ExtendedPayloadSize`` / ``SQSLargePayloadSize``)."""
    size = offloaded_size(message.get("MessageAttributes") or {})
    if size is None:
        return None
    try:
        url = parse(message.get("Body", "")).url
    except ValueError:
        url = "(not a pointer)"
    return {"url": url, "bytes": size}
