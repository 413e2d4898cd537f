"""AWS's published sample events, each record's fate, through the Lambda handler and a
real worker (issue 17).

The events are kept under tests/data/events/ exactly as published (sources in its
README): the Lambda SQS events of the Lambda Developer Guide, Powertools for AWS Lambda,
aws-lambda-go and ``sam local generate-event``, and the bodies that SNS, S3,
EventBridge, EventBridge Pipes and EventBridge Scheduler send to a queue. A fate is what
became of one record: the task that ran and its value, the dead-letter reason, or
acknowledged and dropped (``s3:TestEvent``). The same table holds for both runners.

What a test changes in a published event, it says: a Lambda event's
``eventSourceARN`` becomes the test queue's (the published account's queue does not
exist here); a Lambda event's record is sent to the worker's queue as SQS would
deliver it (its body, its message attributes, its FIFO group); Scheduler's
``<aws.scheduler.scheduled-time>`` is replaced by the value the Scheduler guide gives.

Then: malformed records (any field of one record of a batch of three) and URL-encoded
S3 keys.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

import sqsq
import sqsq.resources
from sqsq import State
from sqsq.delivery import UNIDENTIFIED_PREFIX
from sqsq.testing import LambdaContext, sqs_event
from tests.apps.samples import app

FIXTURES = Path(__file__).resolve().parent / "data" / "events"
APP = "tests.apps.samples:app"
FIFO = "orders.fifo"

#: A record's fate: ("ran", task, value) | ("dead", reason) | ("dropped",).
Fate = tuple[Any, ...]
UNDECODABLE: Fate = ("dead", "undecodable_message")
NO_ROUTE: Fate = ("dead", "no_route")
DROPPED: Fate = ("dropped",)


def ran(task: str, value: Any) -> Fate:
    return ("ran", f"tests.apps.samples.{task}", value)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


#: Lambda SQS events as published -> the fate of each of their records. Their bodies are
#: not sqsq envelopes: AWS's own test messages ("Test message.", "hello world") are not
#: JSON, Powertools' {"message": "foo1"} is JSON without a "task" (undecodable_message);
#: the SNS and S3 notifications inside are routed.
LAMBDA_EVENTS: dict[str, list[Fate]] = {
    "sqs-standard.docs.json": [UNDECODABLE, UNDECODABLE],
    "sqs-fifo.docs.json": [UNDECODABLE],
    # its Number attribute carries a stray binaryValue "base64Str" (not base64): the
    # value of a Number is its stringValue, so the record is well-formed
    "sqs-event.powertools.json": [UNDECODABLE, UNDECODABLE],
    "sqs-sns-event.powertools.json": [ran("user", "lessa")],
    "sqs-sns-fifo-event.powertools.json": [ran("user", "lessa")],
    "sqs-s3-event.powertools.json": [ran("pdf", "test.pdf")],
    "sqs-dlq-trigger-event.powertools.json": [UNDECODABLE],
    # String, Number and Binary message attributes (and SQS's reserved list values)
    "sqs-event.lambda-go.json": [UNDECODABLE],
    "sqs-receive-message.sam.json": [UNDECODABLE],
}


def _scheduler_body() -> str:
    """The body EventBridge Scheduler's universal SQS target sends for the guide's
    example Input: its MessageBody, the keyword replaced by the guide's example time."""
    body = load("scheduler-sqs-universal-target.docs.json")["MessageBody"]
    return str(body).replace("<aws.scheduler.scheduled-time>", "2022-03-22T18:59:43Z")


def _records(name: str) -> list[dict[str, Any]]:
    """The records of a stream sample, one message each (Pipes sends an SQS target one
    message per record)."""
    published = load(name)
    return list(published["Records"] if isinstance(published, dict) else published)


#: Bodies AWS services send to a queue -> (body, fate).
BODIES: dict[str, tuple[str, Fate]] = {
    # SNS (raw message delivery off): its Message "Hello world!" is no event, and no
    # on_sns route takes the topic
    "sns-notification.docs.json": (text("sns-notification.docs.json"), NO_ROUTE),
    # S3 -> SQS: keys URL-encoded, routed decoded
    "s3-put.docs.json": (text("s3-put.docs.json"), NO_ROUTE),  # bucket "mybucket": no route
    "s3-put.sam.json": (text("s3-put.sam.json"), ran("uploaded", "in/report.csv")),
    "s3-put-encoded-key.sam.json": (
        text("s3-put-encoded-key.sam.json"),  # "in/my%20report%2Bcaf%C3%A9.csv"
        ran("uploaded", "in/my report+café.csv"),
    ),
    "s3-event.lambda-go.json": (
        text("s3-event.lambda-go.json"),  # "Happy%20Face.jpg"
        ran("happy", "Happy Face.jpg"),
    ),
    "s3-test-event.docs.json": (text("s3-test-event.docs.json"), DROPPED),
    # EventBridge -> SQS (the two EC2 samples share an id: one run, one duplicate)
    "eventbridge-ec2-state-change.docs.json": (
        text("eventbridge-ec2-state-change.docs.json"),
        ran("ec2", "terminated"),
    ),
    "eventbridge-event.powertools.json": (
        text("eventbridge-event.powertools.json"),
        ran("ec2", "terminated"),
    ),
    "eventbridge-s3-object-created.powertools.json": (
        text("eventbridge-s3-object-created.powertools.json"),
        ran("s3_via_eventbridge", "IMG_m7fzo3.jpg"),  # EventBridge's S3 keys: not encoded
    ),
    "eventbridge-scheduled-event.sam.json": (
        text("eventbridge-scheduled-event.sam.json"),
        NO_ROUTE,
    ),
    # DynamoDB streams through EventBridge Pipes: one message per record. Routes: INSERT
    # on table EventSourceTable, MODIFY on any table. The MODIFY records of the guide and
    # of Powertools share eventID "2": one run, one duplicate (same value).
    "dynamodb-pipes.docs.json[0]": (
        json.dumps(_records("dynamodb-pipes.docs.json")[0]),
        ran("inserted", "New item!"),
    ),
    "dynamodb-pipes.docs.json[1]": (
        json.dumps(_records("dynamodb-pipes.docs.json")[1]),
        ran("modified", "This item has changed"),
    ),
    "dynamodb-stream-event.powertools.json[0]": (
        json.dumps(_records("dynamodb-stream-event.powertools.json")[0]),
        NO_ROUTE,  # eventSourceARN "eventsource_arn": not table EventSourceTable
    ),
    "dynamodb-stream-event.powertools.json[1]": (
        json.dumps(_records("dynamodb-stream-event.powertools.json")[1]),
        ran("modified", "This item has changed"),
    ),
    "dynamodb-update.sam.json[0]": (
        json.dumps(_records("dynamodb-update.sam.json")[0]),
        NO_ROUTE,  # INSERT on ExampleTableWithStream
    ),
    "dynamodb-update.sam.json[1]": (
        json.dumps(_records("dynamodb-update.sam.json")[1]),
        ran("modified", "This item has changed"),
    ),
    "dynamodb-update.sam.json[2]": (json.dumps(_records("dynamodb-update.sam.json")[2]), NO_ROUTE),
    # EventBridge Scheduler's universal target: the Input's MessageBody, not JSON
    "scheduler-sqs-universal-target.docs.json": (_scheduler_body(), UNDECODABLE),
}


# --- the endpoint's side -------------------------------------------------------------


def url(queue: str) -> str:
    return app.directory.url(app.queue_name(queue))


def arn(queue: str) -> str:
    attributes = app.clients.sync("sqs").get_queue_attributes(
        QueueUrl=url(queue), AttributeNames=["QueueArn"]
    )["Attributes"]
    return str(attributes["QueueArn"])


def drain(queue: str) -> list[dict[str, Any]]:
    sqs = app.clients.sync("sqs")
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url(queue),
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages += batch
        for message in batch:
            sqs.delete_message(QueueUrl=url(queue), ReceiptHandle=message["ReceiptHandle"])
    return messages


def dead_letters() -> dict[str, dict[str, Any]]:
    """The DLQ copies (both DLQs), drained, by the task id in their details."""
    copies = {}
    for queue in ("default-dlq", f"{FIFO.removesuffix('.fifo')}-dlq.fifo"):
        for message in drain(queue):
            details = json.loads(message["MessageAttributes"]["sqsq-dead-letter"]["StringValue"])
            copies[details["task_id"]] = message
    return copies


def fate(task_id: str, dead: dict[str, dict[str, Any]], body: str | None = None) -> Fate:
    """What became of the message whose task id is ``task_id`` (its MessageId); a dead
    letter must have its DLQ copy, with the reason, and ``body`` as it came."""
    record = app.results.get_result(task_id)
    if record is None:
        assert task_id not in dead
        return DROPPED
    if record.state is State.SUCCESS:
        return ("ran", record.task, record.value)
    assert record.state is State.FAILURE, record
    copy_ = dead.get(task_id)
    assert copy_ is not None, f"{task_id}: dead-lettered ({record.dead_letter_reason}), no DLQ copy"
    reason = copy_["MessageAttributes"]["sqsq-dead-letter-reason"]["StringValue"]
    assert reason == record.dead_letter_reason
    if body is not None:
        assert copy_["Body"] == body
    return ("dead", reason)


def send_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """A Lambda record's message attributes as SendMessage takes them (the value its data
    type names; SQS's reserved list values are not sent)."""
    attributes = {}
    for name, attr in record["messageAttributes"].items():
        if attr["dataType"].startswith("Binary"):
            attributes[name] = {
                "DataType": attr["dataType"],
                "BinaryValue": base64.b64decode(attr["binaryValue"]),
            }
        else:
            attributes[name] = {"DataType": attr["dataType"], "StringValue": attr["stringValue"]}
    return attributes


def send_record(record: dict[str, Any]) -> str:
    """Send a published Lambda record's message to the test queue, as SQS had it: its
    body, its message attributes, on a FIFO queue its group and deduplication id."""
    fifo = record["eventSourceARN"].endswith(".fifo")
    extra: dict[str, Any] = {}
    if fifo:
        extra = {
            "MessageGroupId": record["attributes"]["MessageGroupId"],
            "MessageDeduplicationId": record["attributes"]["MessageDeduplicationId"],
        }
    if record["messageAttributes"]:
        extra["MessageAttributes"] = send_attributes(record)
    response = app.clients.sync("sqs").send_message(
        QueueUrl=url(FIFO if fifo else "default"), MessageBody=record["body"], **extra
    )
    return str(response["MessageId"])


@pytest.fixture
def samples(local_aws: Any) -> Any:
    sqsq.resources.apply(app)
    return app


# --- every sample, both runners ------------------------------------------------------


#: Samples that share an event's identity with other content: the EC2 events of the
#: EventBridge guide and of Powertools (id 6a7e8feb-…), the MODIFY stream records of
#: the Pipes guide and of Powertools (eventID "2"). Routed runs are idempotent on the
#: identity, and the payloads differ: whichever comes first runs, the other is
#: dead-lettered ``idempotency_conflict`` (compared as a pair: SQS does not order them).
SAME_IDENTITY = [
    ("eventbridge-ec2-state-change.docs.json", "eventbridge-event.powertools.json"),
    ("dynamodb-pipes.docs.json[1]", "dynamodb-stream-event.powertools.json[1]"),
]
CONFLICT: Fate = ("dead", "idempotency_conflict")


def paired(fates: dict[str, Fate]) -> dict[str, Any]:
    """``fates`` with each :data:`SAME_IDENTITY` pair as one entry: its two fates, sorted."""
    out: dict[str, Any] = dict(fates)
    for pair in SAME_IDENTITY:
        out[" & ".join(pair)] = sorted(out.pop(name) for name in pair)
    return out


EXPECTED = {
    **{
        f"{name}[{i}]": expected
        for name, fates in LAMBDA_EVENTS.items()
        for i, expected in enumerate(fates)
    },
    **{name: expected for name, (_, expected) in BODIES.items()},
}
for _first, second in SAME_IDENTITY:  # see SAME_IDENTITY: one of each pair conflicts
    EXPECTED[second] = CONFLICT


def test_every_published_event_through_the_lambda_handler(samples: Any) -> None:
    """Each Lambda SQS event as published (its eventSourceARN the test queue's), one
    invocation each; each service's body as SQS delivers it, one record per invocation
    (BatchSize 1, so that of two records of one event the second finds the first's
    result, as the worker's ``--concurrency 1`` does). No record is listed in
    batchItemFailures."""
    fates: dict[str, Fate] = {}
    for name in LAMBDA_EVENTS:
        event = load(name)
        for record in event["Records"]:
            fifo = record["eventSourceARN"].endswith(".fifo")
            record["eventSourceARN"] = arn(FIFO if fifo else "default")
        response = app.lambda_handler(event, LambdaContext())
        assert response == {"batchItemFailures": []}, name
        dead = dead_letters()
        for i, record in enumerate(event["Records"]):
            fates[f"{name}[{i}]"] = fate(record["messageId"], dead, record["body"])

    sqs = app.clients.sync("sqs")
    ids = {
        name: sqs.send_message(QueueUrl=url("default"), MessageBody=body)["MessageId"]
        for name, (body, _) in BODIES.items()
    }
    while messages := sqs.receive_message(
        QueueUrl=url("default"),
        MaxNumberOfMessages=1,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        response = app.lambda_handler(sqs_event(messages, arn("default")), LambdaContext())
        assert response == {"batchItemFailures": []}
        for message in messages:  # what Lambda does with the records not listed
            sqs.delete_message(QueueUrl=url("default"), ReceiptHandle=message["ReceiptHandle"])
    dead = dead_letters()
    for name, (body, _) in BODIES.items():
        fates[name] = fate(ids[name], dead, body)

    assert paired(fates) == paired(EXPECTED)


@pytest.mark.slow
def test_every_published_event_through_a_worker(samples: Any, worker: Any) -> None:
    """The same messages on real queues, run by ``sqsq worker --burst``: each Lambda
    record's message as SQS had it, each service's body as the service sends it."""
    ids: dict[str, str] = {}
    bodies: dict[str, str] = {}
    for name in LAMBDA_EVENTS:
        for i, record in enumerate(load(name)["Records"]):
            ids[f"{name}[{i}]"] = send_record(record)
            bodies[f"{name}[{i}]"] = record["body"]
    sqs = app.clients.sync("sqs")
    for name, (body, _) in BODIES.items():
        ids[name] = sqs.send_message(QueueUrl=url("default"), MessageBody=body)["MessageId"]
        bodies[name] = body

    done = worker.run(APP, "--concurrency", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "dropped=1" in done.stderr, done.stderr  # s3:TestEvent

    dead = dead_letters()
    fates = {name: fate(task_id, dead, bodies[name]) for name, task_id in ids.items()}
    assert paired(fates) == paired(EXPECTED)
    assert not drain("default") and not drain(FIFO)


def test_a_lambda_records_message_attributes_of_every_type_reach_its_dead_letter(
    samples: Any,
) -> None:
    """aws-lambda-go's record: String, Number and Binary (base64 in the event) attributes
    are carried into the DLQ copy with their types and values."""
    event = load("sqs-event.lambda-go.json")
    event["Records"][0]["eventSourceARN"] = arn("default")
    assert app.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    (copy_,) = dead_letters().values()
    attributes = copy_["MessageAttributes"]
    assert attributes["Attribute1"] == {"StringValue": "AttributeValue1", "DataType": "String"}
    assert attributes["Attribute2"] == {"StringValue": "123", "DataType": "Number"}
    assert attributes["Attribute3"] == {"BinaryValue": b"1100", "DataType": "Binary"}


# --- malformed records ---------------------------------------------------------------


def _delete(path: str) -> Any:
    def mutate(record: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target = record
        for part in parents:
            target = target[part]
        del target[last]
        return record

    return mutate


def _set(path: str, value: Any) -> Any:
    def mutate(record: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target = record
        for part in parents:
            target = target[part]
        target[last] = value
        return record

    return mutate


def _attribute(attr: Any) -> Any:
    return _set("messageAttributes", {"a": attr})


RUNS = "runs"
DEAD = "dead"

#: (case, the middle record -> what replaces it, its fate). "runs": the field only reports
#: (receive count, timestamps, MD5, receipt handle, queue ARN, region) — the record runs,
#: as from the app's default queue when its ARN is no SQS ARN; "dead": a field it needs
#: (id, body, source, group, message attributes) — its own dead letter,
#: undecodable_message. Never an error for the batch.
MALFORMED: list[tuple[str, Any, str]] = [
    ("messageId missing", _delete("messageId"), DEAD),
    ("messageId empty", _set("messageId", ""), DEAD),
    ("messageId a number", _set("messageId", 42), DEAD),
    ("receiptHandle missing", _delete("receiptHandle"), RUNS),
    ("receiptHandle a number", _set("receiptHandle", 7), RUNS),
    ("body missing", _delete("body"), DEAD),
    ("body null", _set("body", None), DEAD),
    ("body an object", _set("body", {"task": "tests.apps.samples.add", "args": [1, 1]}), DEAD),
    ("attributes missing", _delete("attributes"), RUNS),
    ("attributes a string", _set("attributes", "garbage"), RUNS),
    ("ApproximateReceiveCount missing", _delete("attributes.ApproximateReceiveCount"), RUNS),
    ("ApproximateReceiveCount not a number", _set("attributes.ApproximateReceiveCount", "x"), RUNS),
    ("ApproximateReceiveCount negative", _set("attributes.ApproximateReceiveCount", "-3"), RUNS),
    ("ApproximateReceiveCount a float", _set("attributes.ApproximateReceiveCount", 1.5), RUNS),
    ("SentTimestamp not a number", _set("attributes.SentTimestamp", "yesterday"), RUNS),
    ("SentTimestamp out of range", _set("attributes.SentTimestamp", "9" * 30), RUNS),
    ("SentTimestamp a list", _set("attributes.SentTimestamp", [1]), RUNS),
    ("MessageGroupId a number", _set("attributes.MessageGroupId", 7), DEAD),
    ("md5OfBody wrong", _set("md5OfBody", "0" * 32), RUNS),
    ("md5OfBody missing", _delete("md5OfBody"), RUNS),
    ("eventSource missing", _delete("eventSource"), DEAD),
    ("eventSource another service", _set("eventSource", "aws:s3"), DEAD),
    ("eventSourceARN garbage", _set("eventSourceARN", "not an arn"), RUNS),
    ("eventSourceARN a number", _set("eventSourceARN", 42), RUNS),
    ("eventSourceARN missing", _delete("eventSourceARN"), RUNS),
    ("awsRegion a number", _set("awsRegion", 42), RUNS),
    ("an unknown field", _set("somethingNew", {"x": 1}), RUNS),
    ("messageAttributes a list", _set("messageAttributes", []), DEAD),
    ("messageAttributes missing", _delete("messageAttributes"), RUNS),
    ("attribute not an object", _attribute("text"), DEAD),
    ("attribute without dataType", _attribute({"stringValue": "x"}), DEAD),
    (
        "attribute of an unknown dataType",
        _attribute({"dataType": "Float", "stringValue": "1"}),
        DEAD,
    ),
    ("String attribute without stringValue", _attribute({"dataType": "String"}), DEAD),
    ("String attribute of a number", _attribute({"dataType": "String", "stringValue": 5}), DEAD),
    ("Number attribute of a list", _attribute({"dataType": "Number", "stringValue": [1]}), DEAD),
    (
        "Number attribute with a stray binaryValue",  # Powertools' sample
        _attribute({"dataType": "Number", "stringValue": "100", "binaryValue": "base64Str"}),
        RUNS,
    ),
    ("Binary attribute not base64", _attribute({"dataType": "Binary", "binaryValue": "%%%"}), DEAD),
    (
        "Binary attribute badly padded",
        _attribute({"dataType": "Binary", "binaryValue": "abc"}),
        DEAD,
    ),
    ("Binary attribute without binaryValue", _attribute({"dataType": "Binary"}), DEAD),
    ("Binary attribute", _attribute({"dataType": "Binary.gif", "binaryValue": "R0lG"}), RUNS),
    ("Number.int attribute", _attribute({"dataType": "Number.int", "stringValue": "3"}), RUNS),
    ("record a string", lambda record: "not a record", DEAD),
    ("record null", lambda record: None, DEAD),
]


def _batch_of_three(queue: str = "default") -> dict[str, Any]:
    """An SQS event of three really received envelopes of ``add``: (1, 1), (2, 2), (3, 3)."""
    sqs = app.clients.sync("sqs")
    for n in (1, 2, 3):
        body = json.dumps({"task": "tests.apps.samples.add", "args": [n, n]})
        sqs.send_message(QueueUrl=url(queue), MessageBody=body)
    messages: list[dict[str, Any]] = []
    while len(messages) < 3:
        messages += sqs.receive_message(
            QueueUrl=url(queue),
            MaxNumberOfMessages=3,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    messages.sort(key=lambda m: json.loads(m["Body"])["args"][0])
    return sqs_event(messages, arn(queue))


@pytest.mark.parametrize(
    ("mutate", "expected"), [pytest.param(m, e, id=case) for case, m, e in MALFORMED]
)
def test_a_malformed_field_of_one_record_is_that_records_fate_alone(
    samples: Any, mutate: Any, expected: str
) -> None:
    event = _batch_of_three()
    first, middle, last = event["Records"]
    event["Records"][1] = mutate(copy.deepcopy(middle))

    response = app.lambda_handler(event, LambdaContext())

    assert response == {"batchItemFailures": []}
    for record, value in ((first, 2), (last, 6)):  # the neighbours ran
        result = app.results.get_result(record["messageId"])
        assert result is not None and result.state is State.SUCCESS and result.value == value
    dead = dead_letters()
    if expected == RUNS:
        result = app.results.get_result(middle["messageId"])
        assert result is not None and result.state is State.SUCCESS, result
        assert result.value == 4
        assert not dead
        return
    (task_id,) = dead  # its own dead letter, and only its
    placed = event["Records"][1]
    record_id = placed.get("messageId") if isinstance(placed, dict) else None
    if isinstance(record_id, str) and record_id:
        assert task_id == record_id
    else:  # no usable messageId: an id of its own, never listed
        assert task_id.startswith(UNIDENTIFIED_PREFIX)
    result = app.results.get_result(task_id)
    assert result is not None and result.state is State.FAILURE
    assert result.dead_letter_reason == "undecodable_message"
    assert result.exc_message is not None and "malformed Lambda record" in result.exc_message


def test_a_record_without_a_message_id_fails_the_batch_only_if_it_cannot_be_dead_lettered(
    samples: Any,
) -> None:
    """batchItemFailures cannot name it (Lambda fails the whole batch for an identifier
    it does not know): when its DLQ copy fails, the handler raises, so SQS delivers the
    whole batch again rather than Lambda deleting a record that was kept nowhere."""
    event = _batch_of_three()
    del event["Records"][1]["messageId"]
    app.clients.sync("sqs").delete_queue(QueueUrl=url("default-dlq"))

    with pytest.raises(sqsq.SqsqError, match="without a messageId"):
        app.lambda_handler(event, LambdaContext())


def test_an_event_of_only_foreign_records_is_still_a_configuration_error(samples: Any) -> None:
    """One aws:sqs record makes an SQS event; none makes a miswired trigger."""
    with pytest.raises(sqsq.ConfigurationError, match="needs an SQS event"):
        app.lambda_handler({"Records": [{"eventSource": "aws:s3"}, "x"]}, LambdaContext())


# --- URL-encoded S3 keys -------------------------------------------------------------


def _s3_body(bucket: str, encoded_key: str, sequencer: str) -> str:
    """``sam local generate-event s3 put``'s record, bucket and key substituted."""
    notification = load("s3-put.sam.json")
    obj = notification["Records"][0]["s3"]
    obj["bucket"]["name"] = bucket
    obj["object"]["key"] = encoded_key
    obj["object"]["sequencer"] = sequencer
    return json.dumps(notification)


#: (bucket, the key as S3 sends it, the fate: the task and the decoded key it received).
S3_KEYS = [
    ("uploads", "in/my+report.csv", ran("uploaded", "in/my report.csv")),  # "+" is a space
    ("uploads", "in/a%2Bb.csv", ran("uploaded", "in/a+b.csv")),  # "%2B" is a "+"
    ("uploads", "in%2Fnested.csv", ran("uploaded", "in/nested.csv")),  # an encoded "/"
    ("uploads", "in/caf%C3%A9.csv", ran("uploaded", "in/café.csv")),  # UTF-8 bytes
    ("uploads", "in/100%25.csv", ran("uploaded", "in/100%.csv")),  # decoded once only
    ("spaces", "my+dir/r%C3%A9sum%C3%A9.txt", ran("spaced", "my dir/résumé.txt")),
    ("spaces", "my%20dir/caf%C3%A9.txt", ran("spaced", "my dir/café.txt")),  # SAM's %20
    ("spaces", "my+dir/cafe.txt", NO_ROUTE),  # suffix "é.txt" does not match
    ("uploads", "in%252Fx.csv", NO_ROUTE),  # "in%2Fx.csv": no "in/" prefix
]


def test_s3_keys_are_decoded_before_routes_match_and_tasks_receive_them(samples: Any) -> None:
    sqs = app.clients.sync("sqs")
    ids = []
    for i, (bucket, key, _) in enumerate(S3_KEYS):
        body = _s3_body(bucket, key, f"{i:016X}")
        ids.append(sqs.send_message(QueueUrl=url("default"), MessageBody=body)["MessageId"])
    messages: list[dict[str, Any]] = []
    while len(messages) < len(S3_KEYS):
        messages += sqs.receive_message(
            QueueUrl=url("default"),
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    assert app.lambda_handler(sqs_event(messages, arn("default")), LambdaContext()) == {
        "batchItemFailures": []
    }

    dead = dead_letters()
    assert [fate(task_id, dead) for task_id in ids] == [expected for *_, expected in S3_KEYS]

    # the first record again, through SNS (S3 -> SNS -> SQS): decoded once, the same
    # event (its identity is the decoded key): not run again, the first run's result
    notification = load("sns-notification.docs.json")
    notification["Message"] = _s3_body("uploads", "in/my+report.csv", f"{0:016X}")
    sqs.send_message(QueueUrl=url("default"), MessageBody=json.dumps(notification))
    (message,) = sqs.receive_message(
        QueueUrl=url("default"), WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
    )["Messages"]
    app.lambda_handler(sqs_event([message], arn("default")), LambdaContext())
    result = app.results.get_result(message["MessageId"])
    assert result is not None and result.value == "in/my report.csv"
    assert result.extra.get("duplicate_of") == ids[0]
