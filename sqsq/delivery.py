"""One receive of a message: the envelope's body plus what SQS says about this delivery.

A :class:`Delivery` is kept apart from the :class:`~sqsq.envelope.Envelope` it
carries: the same envelope may be delivered many times (at-least-once), each
time with a new receipt handle and a higher ApproximateReceiveCount.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import ResultRecord

#: Attributes only sqsq sets, and only on its DLQ copies: on an incoming message
#: they are forged by its producer and dropped (never carried into a copy).
RESERVED_ATTRIBUTE_PREFIX = "sqsq-dead-letter"
#: Prefix of the id given to a Lambda record without a usable ``messageId`` (SQS's
#: MessageIds are UUIDs: no real one starts with it). Such a record cannot be named
#: in ``batchItemFailures``; see :meth:`Delivery.from_lambda_record`.
UNIDENTIFIED_PREFIX = "sqsq-unidentified-"
#: The data types of message attributes ("Amazon SQS message attributes"): a type
#: is one of these, optionally followed by ``.`` and a custom label (``Number.int``).
ATTRIBUTE_DATA_TYPES = ("String", "Number", "Binary")


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


def _lenient_ms(value: Any) -> datetime | None:
    """``SentTimestamp`` (epoch milliseconds, a string in Lambda records) as a UTC
    datetime; None when missing or not such a number (it is only reported)."""
    try:
        return _ms_to_datetime(value) if isinstance(value, str | int) else None
    except (ValueError, OverflowError, OSError):
        return None


def _lenient_count(value: Any) -> int:
    """``ApproximateReceiveCount`` (a string in Lambda records); 1 when missing or
    not a positive integer (it counts attempts, it does not decide whether to run)."""
    try:
        count = int(value) if isinstance(value, str | int) and not isinstance(value, bool) else 1
    except ValueError:
        return 1
    return count if count >= 1 else 1


def _lambda_attribute(attr: Any) -> dict[str, Any]:
    """One Lambda ``messageAttributes`` entry (``{"dataType", "stringValue" |
    "binaryValue" (base64)}``) in SendMessage's shape. The value is the one its data
    type names (a Number's stray ``binaryValue`` is ignored, as are the list values
    SQS reserves for future use).

    Raises:
        ValueError: not of that shape (the message names what is wrong).
    """
    if not isinstance(attr, dict):
        raise ValueError(f"is JSON {type(attr).__name__}, not an object")
    data_type = attr.get("dataType")
    if not isinstance(data_type, str) or data_type.split(".", 1)[0] not in ATTRIBUTE_DATA_TYPES:
        raise ValueError(f"dataType {data_type!r} is not String, Number or Binary[.label]")
    if data_type.startswith("Binary"):
        value = attr.get("binaryValue")
        if not isinstance(value, str):
            raise ValueError(f"{data_type} attribute without a base64 binaryValue")
        try:
            return {"DataType": data_type, "BinaryValue": base64.b64decode(value, validate=True)}
        except (binascii.Error, ValueError):
            raise ValueError(f"binaryValue {value[:40]!r} is not base64") from None
    value = attr.get("stringValue")
    if not isinstance(value, str):
        raise ValueError(f"{data_type} attribute without a string stringValue")
    return {"DataType": data_type, "StringValue": value}


def _json_text(value: Any) -> str:
    """``value`` as JSON text (what a malformed record's non-string body is kept as)."""
    return json.dumps(value, sort_keys=True, default=repr)


def _fifo_group(queue: str, group: str | None) -> str | None:
    """The MessageGroupId of a FIFO queue's message; None on a standard queue."""
    return group if queue.endswith(".fifo") else None


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
        message_group_id: FIFO MessageGroupId, if any (on a standard queue the
            group of SQS fair queues is left out: it orders nothing there, and the
            worker and the Lambda handler run a FIFO group's messages in order).
        received_monotonic: ``time.monotonic()`` at receipt (leases count from it).
        malformed: why this delivery cannot be run as it came (a Lambda record with
            a malformed field, see :meth:`from_lambda_record`), else None: the
            execution core dead-letters it (``undecodable_message``) with this text.
        trace_header: the message's ``AWSTraceHeader`` system attribute (X-Ray's
            ``Root=…;Parent=…;Sampled=…``), if any: where ``sqsq.tracing`` continues
            the trace of a body without a ``traceparent`` header (a foreign event).
        wire_body: the body as SQS carried it, when :attr:`body` was fetched from
            elsewhere (an S3 claim check, ``sqsq.payloads``: the pointer), else None.
            A copy of the message (to the DLQ, sent on) sends this, never the payload.
        refusal: why the payload could not be fetched, decided before the core sees
            the delivery (``sqsq.payloads``): a ``DeadLetter`` (``payload_missing``) is
            dead-lettered, any other exception (S3 unreachable) releases the message
            to come back. None: nothing refused.
        finished: the stored final result (SUCCESS, FAILURE, REVOKED) of the task
            whose S3 payload this delivery found deleted (``sqsq.payloads``, with
            ``payload_delete=True``): a duplicate delivery of a message whose first
            run ended and deleted the object. The core lets it go without running
            it (no dead letter, nothing stored). None: not such a duplicate.
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
    malformed: str | None = None
    trace_header: str | None = None
    wire_body: str | None = None
    refusal: Exception | None = None
    finished: ResultRecord | None = None

    @property
    def sent_body(self) -> str:
        """The body as SQS carried it (:attr:`wire_body`, else :attr:`body`)."""
        return self.body if self.wire_body is None else self.wire_body

    @property
    def identified(self) -> bool:
        """Whether ``message_id`` is SQS's (False: a Lambda record without a usable
        ``messageId``, which ``batchItemFailures`` cannot name)."""
        return not self.message_id.startswith(UNIDENTIFIED_PREFIX)

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
            message_group_id=_fifo_group(queue, attributes.get("MessageGroupId")),
            trace_header=attributes.get("AWSTraceHeader"),
        )

    @classmethod
    def from_lambda_record(cls, record: Any, queue: str) -> Delivery:
        """From one record of an SQS event delivered to Lambda ("Using Lambda with
        Amazon SQS": camelCase keys, attribute values as strings, binary message
        attribute values base64-encoded).

        Never raises: a record is untrusted input, and one bad record must not fail
        its batch. Each field is either needed to run the message or only reported:

        - needed — ``messageId`` (a non-empty string), ``body`` (a string),
          ``eventSource`` (``"aws:sqs"``), ``messageAttributes`` (an object of
          well-formed attributes: a ``dataType`` of String / Number / Binary, the
          value it names, binary values base64), ``attributes.MessageGroupId``
          (a string, when present): when one is malformed the delivery is returned
          with :attr:`malformed` set, and the core dead-letters it. A malformed
          attribute is left out of the delivery (its dead-letter copy cannot carry
          it); a body that is not a string is kept as its JSON text.
        - reported only — ``attributes`` other than MessageGroupId
          (``ApproximateReceiveCount``: 1 when missing or not a positive integer;
          ``SentTimestamp``: None when not epoch milliseconds), ``receiptHandle``
          ("" when not a string), ``md5OfBody`` (not checked: Lambda's poller
          received the message; an MD5 is no proof against a forged event),
          ``eventSourceARN`` and ``awsRegion`` (the queue is resolved by the caller).

        A record without a usable ``messageId`` gets the id
        :data:`UNIDENTIFIED_PREFIX` + a hash of the record (:attr:`identified` is
        False) and is always malformed: it is dead-lettered, never run, as it cannot
        be named in ``batchItemFailures``.

        Args:
            record: one element of the event's ``Records`` (any JSON value).
            queue: the logical queue it came from.
        """
        problems: list[str] = []
        if not isinstance(record, dict):
            problems.append(f"the record is JSON {type(record).__name__}, not an object")
            fields: dict[str, Any] = {}
        else:
            fields = record
        message_id = fields.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            problems.append(f"messageId {message_id!r} is not a non-empty string")
            digest = hashlib.sha256(_json_text(record).encode("utf-8", "replace")).hexdigest()
            message_id = UNIDENTIFIED_PREFIX + digest[:32]
        if fields and fields.get("eventSource") != "aws:sqs":
            problems.append(f"eventSource {fields.get('eventSource')!r} is not 'aws:sqs'")
        body = fields.get("body", "")
        if fields and "body" not in fields:
            problems.append("body missing")
        elif not isinstance(body, str):
            problems.append(f"body is JSON {type(body).__name__}, not a string")
            body = _json_text(body)
        attributes = fields.get("attributes")
        if not isinstance(attributes, dict):
            attributes = {}
        group = attributes.get("MessageGroupId")
        if group is not None and not isinstance(group, str):
            problems.append(f"attributes.MessageGroupId {group!r} is not a string")
            group = None
        message_attributes: dict[str, dict[str, Any]] = {}
        raw_attributes = fields.get("messageAttributes", {})
        if not isinstance(raw_attributes, dict):
            problems.append(
                f"messageAttributes is JSON {type(raw_attributes).__name__}, not an object"
            )
            raw_attributes = {}
        for name, attr in raw_attributes.items():
            try:
                message_attributes[name] = _lambda_attribute(attr)
            except ValueError as exc:
                problems.append(f"messageAttributes[{name!r}]: {exc}")
        receipt_handle = fields.get("receiptHandle")
        return cls(
            message_id=message_id,
            receipt_handle=receipt_handle if isinstance(receipt_handle, str) else "",
            body=body,
            queue=queue,
            receive_count=_lenient_count(attributes.get("ApproximateReceiveCount", 1)),
            sent_at=_lenient_ms(attributes.get("SentTimestamp")),
            message_attributes=_own(message_attributes),
            message_group_id=_fifo_group(queue, group),
            malformed=f"malformed Lambda record: {'; '.join(problems)}" if problems else None,
            trace_header=_trace_header(attributes.get("AWSTraceHeader")),
        )


def _trace_header(value: Any) -> str | None:
    """A Lambda record's ``attributes.AWSTraceHeader``, when it is a string."""
    return value if isinstance(value, str) and value else None
