"""One receive of a message: the envelope's body plus what SQS says about this delivery.

A :class:`Delivery` is kept apart from the :class:`~sqsq.envelope.Envelope` it
carries: the same envelope may be delivered many times (at-least-once), each
time with a new receipt handle and a higher ApproximateReceiveCount.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Attributes only sqsq sets, and only on its DLQ copies: on an incoming message
#: they are forged by its producer and dropped (never carried into a copy).
RESERVED_ATTRIBUTE_PREFIX = "sqsq-dead-letter"


def _own(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value
        for name, value in attributes.items()
        if not (isinstance(name, str) and name.lower().startswith(RESERVED_ATTRIBUTE_PREFIX))
    }


def _ms_to_datetime(value: str | int | None) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


@dataclass
class Delivery:
    """A message as received by a worker or delivered to a Lambda function.

    Attributes:
        message_id: SQS MessageId.
        receipt_handle: handle for DeleteMessage/ChangeMessageVisibility of *this* receive.
        body: the raw (untrusted) message body.
        queue: the logical queue name (without the app's prefix).
        queue_url: the queue's URL ("" when unknown, e.g. in Lambda before resolution).
        receive_count: ApproximateReceiveCount (1 on first delivery).
        sent_at: SentTimestamp as a UTC datetime.
        message_attributes: SendMessage-shaped attributes
            (``{name: {"DataType": …, "StringValue"|"BinaryValue": …}}``), kept so
            a dead-lettered copy carries them (``sqsq-dead-letter*`` ones are
            dropped: only sqsq's DLQ copies may carry them).
        message_group_id: FIFO MessageGroupId, if any.
        received_monotonic: ``time.monotonic()`` at receipt (leases count from it).
    """

    message_id: str
    receipt_handle: str
    body: str
    queue: str
    queue_url: str = ""
    receive_count: int = 1
    sent_at: datetime | None = None
    message_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    message_group_id: str | None = None
    received_monotonic: float = field(default_factory=time.monotonic)

    @classmethod
    def from_sqs(cls, message: dict[str, Any], queue: str, queue_url: str) -> Delivery:
        """From one entry of a ReceiveMessage response (attributes requested as "All")."""
        attributes = message.get("Attributes", {})
        return cls(
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message.get("Body", ""),
            queue=queue,
            queue_url=queue_url,
            receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            sent_at=_ms_to_datetime(attributes.get("SentTimestamp")),
            message_attributes=_own(dict(message.get("MessageAttributes", {}))),
            message_group_id=attributes.get("MessageGroupId"),
        )

    @classmethod
    def from_lambda_record(cls, record: dict[str, Any], queue: str) -> Delivery:
        """From one record of an SQS event delivered to Lambda ("Using Lambda with
        Amazon SQS": camelCase keys, binary attribute values base64-encoded)."""
        attributes = record.get("attributes", {})
        message_attributes: dict[str, dict[str, Any]] = {}
        for name, attr in record.get("messageAttributes", {}).items():
            data_type = attr.get("dataType", "String")
            if attr.get("binaryValue") is not None:
                message_attributes[name] = {
                    "DataType": data_type,
                    "BinaryValue": base64.b64decode(attr["binaryValue"]),
                }
            else:
                message_attributes[name] = {
                    "DataType": data_type,
                    "StringValue": attr.get("stringValue", ""),
                }
        return cls(
            message_id=record["messageId"],
            receipt_handle=record.get("receiptHandle", ""),
            body=record.get("body", ""),
            queue=queue,
            receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            sent_at=_ms_to_datetime(attributes.get("SentTimestamp")),
            message_attributes=_own(message_attributes),
            message_group_id=attributes.get("MessageGroupId"),
        )
