"""The foreign bodies sqsq recognises on a queue, as AWS services send them.

=========================  =========================================  ==========================
what                       how it is recognised                        its identity (once per event)
=========================  =========================================  ==========================
SNS notification (raw      ``Type: "Notification"``, ``TopicArn``,     ``MessageId``
delivery off)              ``MessageId``, ``Message`` (a string)
S3 event notification      ``Records``, each ``eventSource: aws:s3``   bucket + key + ``sequencer``
S3 test event              ``Service: "Amazon S3"``,                   (acknowledged and dropped)
                           ``Event: "s3:TestEvent"``
EventBridge event (rule    ``source``, ``detail-type``, ``detail``     ``id``
target, Pipes, Scheduler)
DynamoDB stream record     ``eventSource: aws:dynamodb``, ``dynamodb``  ``eventID``
(EventBridge Pipes)
=========================  =========================================  ==========================

A body is looked at only when it is a JSON object without a ``task`` field (so
not a sqsq envelope). API Gateway's SQS integrations and EventBridge Scheduler's
universal target send their caller's body as the message body: an envelope or
one of the events above, nothing of their own. An S3 record's object key, which
S3 sends URL-encoded, is decoded before anything looks at it (:func:`s3_key`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

#: The services a route is declared for (``Route.service``); ``json`` is any other
#: JSON object (``app.route(pattern=...)``).
SERVICES = ("events", "s3", "sns", "dynamodb", "json")

#: Longest identity key kept as is; longer ones (an S3 key of 1,024 bytes) are hashed.
MAX_KEY_CHARS = 512


@dataclass(frozen=True)
class Event:
    """One foreign event, ready to be matched against routes.

    Attributes:
        service: one of :data:`SERVICES`.
        document: what routes' patterns match and the task receives (the EventBridge
            event, one S3 record, the SNS notification, the stream record, the object).
        key: the idempotency key from the event's identity (``"event:<service>:…"``),
            or None when it has none.
        source / type: what names it in a ``no_route`` dead letter.
    """

    service: str
    document: dict[str, Any]
    key: str | None
    source: str
    type: str

    def describe(self) -> dict[str, str]:
        """``{"kind", "source", "type"}`` for ``NoRoute.event``."""
        return {"kind": self.service, "source": self.source, "type": self.type}


def _key(service: str, identity: str | None) -> str | None:
    if not identity:
        return None
    key = f"event:{service}:{identity}"
    if len(key) > MAX_KEY_CHARS:
        key = f"event:{service}:sha256:{hashlib.sha256(identity.encode('utf-8', 'replace')).hexdigest()}"
    return key


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def is_sns_notification(body: dict[str, Any]) -> bool:
    """An SNS notification as SNS delivers it to an SQS queue without raw delivery."""
    return (
        body.get("Type") == "Notification"
        and isinstance(body.get("TopicArn"), str)
        and isinstance(body.get("MessageId"), str)
        and isinstance(body.get("Message"), str)
    )


def sns_event(body: dict[str, Any]) -> Event:
    """The SNS notification itself, as an event (for ``on_sns`` routes)."""
    return Event(
        "sns",
        body,
        _key("sns", body.get("MessageId")),
        _text(body.get("TopicArn")),
        _text(body.get("Subject")) or "Notification",
    )


def is_s3_test_event(body: dict[str, Any]) -> bool:
    """The ``s3:TestEvent`` S3 sends when a notification configuration is saved."""
    return body.get("Event") == "s3:TestEvent" and body.get("Service") == "Amazon S3"


def s3_records(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The records of an S3 event notification, or None when ``body`` is not one."""
    records = body.get("Records")
    if not isinstance(records, list) or not records:
        return None
    if not all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records):
        return None
    return records


def s3_key(encoded: str) -> str:
    """An S3 notification's object key, decoded: S3 URL-encodes it ("Event message
    structure", Amazon S3 User Guide: "The object key name value is URL encoded"),
    a space as ``+``, other bytes as ``%XX`` of their UTF-8
    (``urllib.parse.unquote_plus``). ``"in/my+report%C3%A9.csv"`` →
    ``"in/my reporté.csv"``."""
    return unquote_plus(encoded)


def s3_event(record: dict[str, Any]) -> Event:
    """One S3 record, its ``s3.object.key`` decoded (:func:`s3_key`): routes match,
    and the task receives, the object's real key (the record is copied, never
    changed in place). Its identity is bucket + key + ``sequencer`` (S3's order of
    events on one key: a repeated delivery carries the same sequencer)."""
    s3 = _object(record.get("s3"))
    bucket, obj = _object(s3.get("bucket")), _object(s3.get("object"))
    name, key, sequencer = (
        _text(bucket.get("name")),
        _text(obj.get("key")),
        _text(obj.get("sequencer")),
    )
    if isinstance(obj.get("key"), str):
        key = s3_key(key)
        record = {**record, "s3": {**s3, "object": {**obj, "key": key}}}
    identity = f"{name}/{key}@{sequencer}" if name and sequencer else None
    return Event("s3", record, _key("s3", identity), name, _text(record.get("eventName")))


def is_eventbridge_event(body: dict[str, Any]) -> bool:
    """An EventBridge event, as a rule's SQS target (or a pipe) sends it."""
    return (
        isinstance(body.get("source"), str)
        and isinstance(body.get("detail-type"), str)
        and "detail" in body
    )


def eventbridge_event(body: dict[str, Any]) -> Event:
    return Event(
        "events",
        body,
        _key("events", body.get("id") if isinstance(body.get("id"), str) else None),
        body["source"],
        body["detail-type"],
    )


def is_dynamodb_record(body: dict[str, Any]) -> bool:
    """A DynamoDB stream record, as EventBridge Pipes sends it to an SQS target."""
    return body.get("eventSource") == "aws:dynamodb" and isinstance(body.get("dynamodb"), dict)


def dynamodb_event(body: dict[str, Any]) -> Event:
    event_id = body.get("eventID")
    return Event(
        "dynamodb",
        body,
        _key("dynamodb", event_id if isinstance(event_id, str) else None),
        _text(body.get("eventSourceARN")),
        _text(body.get("eventName")),
    )


def json_event(body: dict[str, Any]) -> Event:
    """Any other JSON object (no identity: the task's own ``idempotency_key`` applies)."""
    return Event("json", body, None, "", "")


def classify(body: dict[str, Any]) -> Event | None:
    """The event ``body`` is (S3 notifications of one record only; see the router),
    or None when it is not a recognised AWS event."""
    if is_eventbridge_event(body):
        return eventbridge_event(body)
    if is_dynamodb_record(body):
        return dynamodb_event(body)
    records = s3_records(body)
    if records is not None and len(records) == 1:
        return s3_event(records[0])
    return None
