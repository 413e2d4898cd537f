"""Test-only routes for the foreign-event tests (issue 11): one task per AWS service's
event, each returning what it read from its typed model, and marking each run in the
file named by ``SQSQ_TEST_EVENTS_LOG`` (so a redelivered event is seen to run once).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamRecordModel,
    EventBridgeModel,
    S3RecordModel,
    SnsNotificationModel,
)

import sqsq

app = sqsq.App("events", visibility_timeout_s=10)

#: Environment variable naming the file each run appends a line to.
LOG_VARIABLE = "SQSQ_TEST_EVENTS_LOG"


def mark(text: str) -> None:
    path = os.environ.get(LOG_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(text + "\n")


@app.on_event(
    source="aws.ec2",
    detail_type="EC2 Instance State-change Notification",
    detail={"state": ["terminated"]},
)
def ec2_terminated(event: EventBridgeModel) -> dict[str, Any]:
    mark(f"ec2 {event.id}")
    return {"id": event.id, "instance": event.detail["instance-id"], "model": type(event).__name__}


@app.on_event(source="aws.events", detail_type="Scheduled Event")
def scheduled(event: dict[str, Any]) -> str:
    mark(f"scheduled {event['id']}")
    return str(event["resources"][0])


@app.on_event(source="orders", detail_type="Order Placed")
def order_placed(event: dict[str, Any]) -> Any:
    """(A dict: moto's EventBridge leaves out the event's ``account``, which
    Powertools' EventBridgeModel requires.)"""
    mark(f"order {event['id']}")
    return event["detail"]


@app.on_s3(bucket="uploads", prefix="in/", suffix=".csv")
def uploaded(record: S3RecordModel) -> dict[str, Any]:
    mark(f"s3 {record.s3.bucket.name}/{record.s3.object.key}")
    return {
        "bucket": record.s3.bucket.name,
        "key": record.s3.object.key,
        "size": record.s3.object.size,
        "event": record.eventName,
    }


@app.on_s3(bucket="mybucket", events=["s3:ObjectCreated:Put"])
def docs_upload(record: dict[str, Any]) -> str:
    mark(f"s3 mybucket/{record['s3']['object']['key']}")
    return str(record["s3"]["object"]["key"])


@app.on_s3(bucket="recipes", suffix=".csv")
def recipe_upload(record: dict[str, Any]) -> str:
    """(A dict, and a key without "/": moto's S3 notifications leave out fields of
    S3RecordModel and encode "/" in keys, which S3 does not.)"""
    mark(f"s3 recipes/{record['s3']['object']['key']}")
    return str(record["s3"]["object"]["key"])


@app.on_sns(topic_arn="arn:aws:sns:us-west-2:123456789012:MyTopic")
def notified(notification: SnsNotificationModel) -> dict[str, Any]:
    mark(f"sns {notification.MessageId}")
    return {
        "message": notification.Message,
        "subject": notification.Subject,
        "topic": notification.TopicArn,
    }


@app.on_dynamodb_stream(table="EventSourceTable", event_name="INSERT")
def inserted(record: DynamoDBStreamRecordModel) -> Any:
    mark(f"dynamodb {record.eventID}")
    assert record.dynamodb is not None and record.dynamodb.NewImage is not None
    return record.dynamodb.NewImage["Message"]


@app.task
def add(a: int, b: int) -> int:
    mark(f"add {a} {b}")
    return a + b
