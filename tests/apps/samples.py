"""Test-only routes for AWS's published sample events (tests/test_sample_events.py): each
task returns what it read, so a test can tell which task ran with what value.

Queues: ``default`` and ``orders.fifo`` (the FIFO samples arrive there).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamRecordModel,
    EventBridgeModel,
    S3RecordModel,
)

import sqsq

app = sqsq.App("samples", visibility_timeout_s=10)


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task(queue="orders.fifo")
def fifo_add(a: int, b: int) -> int:
    return a + b


# --- S3 (keys arrive URL-encoded; routes and tasks see them decoded) -----------------


@app.on_s3(bucket="uploads", prefix="in/", suffix=".csv")
def uploaded(record: S3RecordModel) -> str:
    return record.s3.object.key


@app.on_s3(bucket="sourcebucket", prefix="Happy Face")
def happy(record: dict[str, Any]) -> str:
    return str(record["s3"]["object"]["key"])


@app.on_s3(bucket="xxx", suffix=".pdf")
def pdf(record: S3RecordModel) -> str:
    return record.s3.object.key


@app.on_s3(bucket="spaces", prefix="my dir/", suffix="é.txt")
def spaced(record: dict[str, Any]) -> str:
    return str(record["s3"]["object"]["key"])


# --- EventBridge ---------------------------------------------------------------------


@app.on_event(source="aws.ec2", detail_type="EC2 Instance State-change Notification")
def ec2(event: EventBridgeModel) -> str:
    return str(event.detail["state"])


@app.on_event(source="aws.s3", detail_type="Object Created")
def s3_via_eventbridge(event: EventBridgeModel) -> str:
    return str(event.detail["object"]["key"])


# --- DynamoDB streams through EventBridge Pipes --------------------------------------


@app.on_dynamodb_stream(table="EventSourceTable", event_name="INSERT")
def inserted(record: DynamoDBStreamRecordModel) -> Any:
    assert record.dynamodb is not None and record.dynamodb.NewImage is not None
    return record.dynamodb.NewImage["Message"]


@app.on_dynamodb_stream(event_name="MODIFY")
def modified(record: DynamoDBStreamRecordModel) -> Any:
    assert record.dynamodb is not None and record.dynamodb.NewImage is not None
    return record.dynamodb.NewImage["Message"]


# --- any other JSON object (here: the message of Powertools' SNS samples) -------------


@app.route({"username": [{"exists": True}]})
def user(body: dict[str, Any]) -> str:
    return str(body["username"])
