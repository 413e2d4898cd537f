"""Large payloads through S3 (issue 24): the claim check on the test endpoint.

Every test sends through real SQS and S3 calls (moto over HTTP), runs the body in a
real worker process or the Lambda handler, and looks at the queue and the bucket
afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import sqsq
from sqsq.dynamodb import result_key
from sqsq.payloads.claim_check import HEADROOM_BYTES
from sqsq.pointer import LEGACY_POINTER_CLASS, POINTER_CLASS
from sqsq.testing import LambdaContext, sqs_event
from tests.apps.payloads import blob, digest, keyed_blob, lengths, metered, unrecorded
from tests.test_lambda import receive as receive_all

APP = "tests.apps.payloads:app"
BUCKET = "sqsq-test-payloads"
TEN_MB = 10 * 1024 * 1024


def digest_of(data: str) -> dict[str, Any]:
    return {"length": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()}


@pytest.fixture
def payload_app(local_aws: Any) -> Any:
    """The test app (``payload_bucket`` set) with its queues, table and bucket."""
    from sqsq.resources import apply
    from tests.apps.payloads import app

    apply(app)  # the queues, the table and the bucket
    s3 = boto3.client("s3")  # empty: an external endpoint (conformance) keeps buckets
    for key in objects():
        s3.delete_object(Bucket=BUCKET, Key=key)
    return app


def objects() -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET)
    return [o["Key"] for o in listed.get("Contents", [])]


def url(name: str) -> str:
    return str(boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def release(name: str, messages: list[dict[str, Any]]) -> None:
    sqs = boto3.client("sqs")
    for m in messages:
        sqs.change_message_visibility(
            QueueUrl=url(name), ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )


def run_worker(worker: Any, **env: str) -> str:
    done = worker.run(APP, "--concurrency", "4", **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


# --- producer → worker -------------------------------------------------------------


def test_ten_mb_argument_goes_through_s3_and_the_object_goes_after_the_message(
    payload_app: Any, worker: Any
) -> None:
    data = "x" * TEN_MB
    result = digest.delay(data)

    (message,) = receive_all("payloads-default", 1)
    pointer = json.loads(message["Body"])
    assert pointer[0] == POINTER_CLASS
    assert pointer[1]["s3BucketName"] == BUCKET
    key = pointer[1]["s3Key"]
    assert key.startswith("sqsq/payloads/default/")
    assert f"/{result.id}/" in key
    size = int(message["MessageAttributes"]["ExtendedPayloadSize"]["StringValue"])
    assert size > TEN_MB
    assert objects() == [key]
    release("payloads-default", [message])

    run_worker(worker)
    assert result.get(timeout=10) == digest_of(data)
    assert objects() == []  # deleted once the outcome was stored and the message deleted


def test_publish_signals_see_an_offloaded_send(payload_app: Any) -> None:
    """A body sent through S3 is a pointer (a JSON list): the publish signals still
    fire, with the task's id and name — for a send and for a long countdown held by
    EventBridge Scheduler, whose Input is the pointer (the signals raised on it)."""
    from sqsq import signals
    from sqsq.schedules import scheduler

    scheduler.apply(payload_app)  # the role and the schedule groups

    heard: list[tuple[str, str]] = []

    def receiver(sender: str, headers: dict[str, Any], **named: Any) -> None:
        heard.append((sender, headers["id"]))

    signals.before_task_publish.connect(receiver)
    signals.after_task_publish.connect(receiver)
    try:
        result = digest.delay("z" * (2 * 1024 * 1024))
        later = digest.apply_async(("s" * 400_000,), countdown=2 * 3600)
    finally:
        signals.before_task_publish.disconnect(receiver)
        signals.after_task_publish.disconnect(receiver)
    assert heard == [(digest.name, result.id)] * 2 + [(digest.name, later.id)] * 2
    (message,) = receive_all("payloads-default", 1)
    assert json.loads(message["Body"])[0] == POINTER_CLASS


def test_async_producer_and_a_worker_without_a_bucket(payload_app: Any, worker: Any) -> None:
    data = "é" * (TEN_MB // 2)  # 2 bytes each in UTF-8, escaped in the envelope's JSON

    async def send() -> Any:
        try:
            return await digest.adelay(data)
        finally:
            await payload_app.aclose()

    result = asyncio.run(send())
    assert len(objects()) == 1
    run_worker(worker, TEST_PAYLOAD_BUCKET="")  # no payload_bucket: it still reads the pointer
    assert result.get(timeout=10) == digest_of(data)
    assert objects() == []


def test_lambda_handler_reads_the_pointer_and_deletes_the_object_after_the_message(
    payload_app: Any,
) -> None:
    data = "y" * TEN_MB
    result = digest.delay(data)
    messages = receive_all("payloads-default", 1)
    arn = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url("payloads-default"), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]

    response = payload_app.lambda_handler(sqs_event(messages, arn), LambdaContext())

    assert response == {"batchItemFailures": []}
    assert result.get(timeout=5) == digest_of(data)
    # the handler deletes a final outcome's message itself (DeleteMessageBatch), then
    # the object; the queue is empty
    assert objects() == []
    assert (
        boto3.client("sqs").receive_message(QueueUrl=url("payloads-default")).get("Messages", [])
        == []
    )


def _built(app: Any, size: int) -> Any:
    """A message of ``digest`` whose SendMessage bytes are exactly ``size``."""
    from sqsq.producer import build
    from sqsq.sqs import entry_size

    length = size
    for _ in range(5):
        message = build(
            digest.name,
            ["a" * length],
            None,
            queue="default",
            queue_name=app.queue_name("default"),
            claim_check=app.payloads,
        )
        off = entry_size(message.entry("0")) - size
        if off == 0:
            return message
        length -= off
    raise AssertionError(f"no message of exactly {size} bytes")


def test_the_boundary_is_the_queues_maximum_message_size(payload_app: Any, worker: Any) -> None:
    sqs = boto3.client("sqs")
    limit = int(
        sqs.get_queue_attributes(
            QueueUrl=url("payloads-default"), AttributeNames=["MaximumMessageSize"]
        )["Attributes"]["MaximumMessageSize"]
    )
    assert limit == 1_048_576  # SQS's 1 MiB, not the Extended Client's 256 KiB
    threshold = limit - HEADROOM_BYTES
    inline, over = _built(payload_app, threshold), _built(payload_app, threshold + 1)
    payload_app.sender.send(inline)
    payload_app.sender.send(over)

    bodies = {m["MessageId"]: m for m in receive_all("payloads-default", 2)}
    sent = sorted(bodies.values(), key=lambda m: len(m["Body"]))
    assert "ExtendedPayloadSize" in sent[0]["MessageAttributes"]  # the pointer: short
    assert len(sent[1]["Body"]) == threshold  # inline, at the threshold exactly
    assert "MessageAttributes" not in sent[1]
    release("payloads-default", sent)

    run_worker(worker)
    for message in (inline, over):
        args = json.loads(message.body)["args"]
        assert payload_app.AsyncResult(message.task_id).get(timeout=5) == digest_of(args[0])
    assert objects() == []


def test_a_batch_of_mixed_sizes_stays_within_sqs_batch_limit(payload_app: Any, worker: Any) -> None:
    sizes = [10, 600_000, 3_000_000, 10, 1_100_000, 700_000, 10]
    data = [chr(ord("a") + i) * n for i, n in enumerate(sizes)]
    counter = payload_app.clients.counter
    before = counter.snapshot()

    results = digest.delay_many([(d,) for d in data])

    after = counter.snapshot()
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert calls.get("s3.PutObject") == 2  # the 3 MB and the 1.1 MB bodies
    assert len(objects()) == 2
    # packed after offloading, in order, each ≤ 1 MiB: [10 B, 600 KB, pointer, 10 B,
    # pointer] and [700 KB, 10 B] (600 KB + 700 KB would be over SQS's batch total)
    assert calls.get("sqs.SendMessageBatch") == 2
    run_worker(worker)
    assert [r.get(timeout=5) for r in results] == [digest_of(d) for d in data]
    assert objects() == []


# --- what can go wrong: a missing object, a swapped pointer -------------------------


def _arn(name: str) -> str:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url(name), AttributeNames=["QueueArn"]
    )["Attributes"]
    return str(attributes["QueueArn"])


def _dead_letters() -> list[Any]:
    from sqsq.dlq import describe, peek

    return [describe(m) for m in peek(boto3.client("sqs"), url("payloads-default-dlq"))]


def test_a_missing_object_is_a_dead_letter_and_redrive_keeps_the_pointer(
    payload_app: Any,
) -> None:
    from sqsq.dlq import peek, redrive

    data = "m" * 2_000_000
    result = digest.delay(data)
    (message,) = receive_all("payloads-default", 1)
    pointer = json.loads(message["Body"])[1]
    s3 = boto3.client("s3")
    kept = s3.get_object(Bucket=BUCKET, Key=pointer["s3Key"])["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key=pointer["s3Key"])

    response = payload_app.lambda_handler(sqs_event([message], _arn("payloads-default")), None)

    assert response == {"batchItemFailures": []}  # dead-lettered, not retried
    # the body is unknown: the dead letter is under the MessageId (as for any body
    # that cannot be read), the task's own id stays PENDING
    record = payload_app.AsyncResult(message["MessageId"]).record
    assert record is not None and record.dead_letter_reason == "payload_missing"
    assert result.state == "PENDING"
    (copy,) = peek(boto3.client("sqs"), url("payloads-default-dlq"))
    assert copy["Body"] == message["Body"]  # the pointer, never the payload
    assert copy["MessageAttributes"]["ExtendedPayloadSize"]["StringValue"] == str(len(kept))
    (row,) = _dead_letters()
    assert row.reason == "payload_missing"
    assert row.payload == {"url": f"s3://{BUCKET}/{pointer['s3Key']}", "bytes": len(kept)}
    from click.testing import CliRunner

    import sqsq.cli.commands  # noqa: F401  (registers the commands)
    from sqsq.cli import cli

    listed = CliRunner().invoke(cli, ["dlq", "ls", APP, "default", "--json"])
    (line,) = [json.loads(x) for x in listed.stdout.splitlines()]
    assert line["reason"] == "payload_missing"
    assert line["payload"] == {
        "url": f"s3://{BUCKET}/{pointer['s3Key']}",
        "bytes": len(kept),
    }

    s3.put_object(Bucket=BUCKET, Key=pointer["s3Key"], Body=kept)  # restored: redrive
    sqs = boto3.client("sqs")
    report = redrive(sqs, url("payloads-default-dlq"), url("payloads-default"))
    assert report.moved == 1
    (again,) = receive_all("payloads-default", 1)
    assert again["Body"] == message["Body"]
    assert "ExtendedPayloadSize" in again["MessageAttributes"]
    payload_app.lambda_handler(sqs_event([again], _arn("payloads-default")), None)
    assert result.get(timeout=5) == digest_of(data)
    assert objects() == []


def test_a_swapped_pointer_is_a_bad_signature(payload_app: Any, worker: Any) -> None:
    key = "payloads-test-signing-key"
    signed = sqsq.App("payloads", payload_bucket=BUCKET, signing_key=key)
    try:
        first = signed.send_task(digest.name, args=["1" * 2_000_000])
        second = signed.send_task(digest.name, args=["2" * 2_000_000])
    finally:
        signed.close()
    messages = receive_all("payloads-default", 2)
    (a,) = [m for m in messages if f"/{first.id}/" in m["Body"]]
    (b,) = [m for m in messages if f"/{second.id}/" in m["Body"]]
    sqs = boto3.client("sqs")
    # a forger with SQS access but no key: B's signed attributes on A's pointer
    sqs.send_message(
        QueueUrl=url("payloads-default"),
        MessageBody=a["Body"],
        MessageAttributes=b["MessageAttributes"],
    )
    sqs.delete_message(QueueUrl=url("payloads-default"), ReceiptHandle=b["ReceiptHandle"])
    release("payloads-default", [a])

    run_worker(worker, SQSQ_SIGNING_KEY=key)

    assert first.get(timeout=5) == digest_of("1" * 2_000_000)  # A itself ran
    assert second.state == "PENDING"  # B's body never ran, A's never ran as B
    assert [row.reason for row in _dead_letters()] == ["bad_signature"]


# --- compatibility: the Extended Client's messages, Java-shaped and Python's ----------


@pytest.mark.parametrize(
    ("attribute", "pointer_class"),
    [("ExtendedPayloadSize", POINTER_CLASS), ("SQSLargePayloadSize", LEGACY_POINTER_CLASS)],
)
def test_a_java_extended_client_message_runs(
    payload_app: Any, attribute: str, pointer_class: str
) -> None:
    """The Java library's body: Jackson's compact ``[class, {bucket, key}]``, a UUID key."""
    data = "j" * 400_000
    body = json.dumps({"task": digest.name, "args": [data]}).encode()
    key = "0d9c5f6e-6a8c-4e0e-9a4b-2f3b7f0c9d11"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    sqs = boto3.client("sqs")
    sent = sqs.send_message(
        QueueUrl=url("payloads-default"),
        MessageBody=f'["{pointer_class}",{{"s3BucketName":"{BUCKET}","s3Key":"{key}"}}]',
        MessageAttributes={attribute: {"DataType": "Number", "StringValue": str(len(body))}},
    )
    (message,) = receive_all("payloads-default", 1)

    response = payload_app.lambda_handler(sqs_event([message], _arn("payloads-default")), None)

    assert response == {"batchItemFailures": []}
    assert payload_app.AsyncResult(sent["MessageId"]).get(timeout=5) == digest_of(data)
    assert objects() == []  # the receiver deletes, as the Extended Client's does


@pytest.fixture
def extended_sqs(payload_app: Any) -> Iterator[Any]:
    """An SQS client of AWS's Python Extended Client (``amazon-sqs-extended-client``)
    on the same endpoint, offloading to the same bucket."""
    extended = pytest.importorskip(
        "sqs_extended_client", reason="amazon-sqs-extended-client (the test extra) is missing"
    )
    client = extended.SQSExtendedClientSession().client("sqs")
    client.large_payload_support = BUCKET
    client.delete_payload_from_s3 = True  # off by default in the library
    yield client
    # importing the library makes every boto3 session one of its own (boto3.Session,
    # boto3.session.Session, the default session): later tests' boto3.client("sqs")
    # would fetch pointers' bodies on receive and offload on send. Undo it.
    plain = extended.SQSExtendedClientSession.__bases__[0]
    boto3.Session = boto3.session.Session = plain  # type: ignore[misc]
    if isinstance(boto3.DEFAULT_SESSION, extended.SQSExtendedClientSession):
        boto3.DEFAULT_SESSION = None  # the next boto3.client() makes a plain one


def test_the_python_extended_clients_messages_run_on_sqsq(
    payload_app: Any, extended_sqs: Any, worker: Any
) -> None:
    data = "p" * 3_000_000
    sent = extended_sqs.send_message(
        QueueUrl=url("payloads-default"),
        MessageBody=json.dumps({"task": digest.name, "args": [data]}),
    )
    assert len(objects()) == 1  # the library put it in S3
    run_worker(worker, TEST_PAYLOAD_BUCKET="")
    assert payload_app.AsyncResult(sent["MessageId"]).get(timeout=5) == digest_of(data)
    assert objects() == []


def test_sqsqs_offloaded_messages_are_read_by_the_python_extended_client(
    payload_app: Any, extended_sqs: Any
) -> None:
    data = "q" * 3_000_000
    result = digest.delay(data)
    (message,) = extended_sqs.receive_message(
        QueueUrl=url("payloads-default"), MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    envelope = json.loads(message["Body"])  # the library fetched the body from S3
    assert envelope["id"] == result.id
    assert envelope["task"] == digest.name
    assert envelope["args"] == [data]
    extended_sqs.delete_message(
        QueueUrl=url("payloads-default"), ReceiptHandle=message["ReceiptHandle"]
    )
    assert objects() == []  # and deleted it with the message (before it, its own way)


# --- results ------------------------------------------------------------------------


def test_a_ten_mb_result_goes_to_s3_and_get_reads_it(payload_app: Any, worker: Any) -> None:
    result = blob.delay(TEN_MB)
    run_worker(worker)

    (key,) = objects()
    assert key.startswith("sqsq-results/payloads/") and f"/{result.id}/" in key
    item = boto3.client("dynamodb").get_item(
        TableName=payload_app.table_name, Key=result_key(result.id)
    )["Item"]
    where = json.loads(item["extra"]["S"])["value_s3"]
    assert where["bytes"] == TEN_MB + 2  # the JSON string's quotes
    assert json.loads(item["value"]["S"]) is None  # not in the item: DynamoDB's 400 KB
    assert result.get(timeout=5) == "r" * TEN_MB

    async def aget() -> Any:
        try:
            return await payload_app.AsyncResult(result.id).aget(timeout=5)
        finally:
            await payload_app.aclose()

    assert asyncio.run(aget()) == "r" * TEN_MB


def test_a_chord_reads_its_members_offloaded_results(payload_app: Any, worker: Any) -> None:
    from sqsq.workflows import chord

    # two members over the result threshold; the body's message (their values as its
    # argument, ~1.2 MB) goes through S3 too
    result = chord([blob.s(600_000), blob.s(600_000), blob.s(10)])(lengths.s())
    for _ in range(3):  # members, then the body
        run_worker(worker)
        if result.ready():
            break
    assert result.get(timeout=5) == [600_000, 600_000, 10]


# --- the bucket -----------------------------------------------------------------------


def test_resources_create_the_bucket_locked_down_with_lifecycle_rules(payload_app: Any) -> None:
    from sqsq.payloads.bucket import tls_only_policy
    from sqsq.resources import plan

    s3 = boto3.client("s3")
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert {r["ID"]: (r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules} == {
        "sqsq-payloads": ("sqsq/", 15),  # longer than a DLQ keeps a message (14 days)
        "sqsq-results": ("sqsq-results/", 2),  # result_ttl (1 day) + 1
    }
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    sse = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]
    assert sse["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # the TLS-only policy (tested as a document: on this plain-HTTP endpoint it
    # would refuse every call, so apply() leaves it out here)
    (statement,) = tls_only_policy(BUCKET)["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert [c.action for c in plan(payload_app) if c.kind == "bucket"] == ["ok"]  # idempotent


def test_a_deferred_offloaded_message_is_sent_on_through_s3_and_still_verifies(
    payload_app: Any, worker: Any
) -> None:
    """A message sent on as a new one (a deferral: here a concurrency limit of 1)
    carries a new body: it goes through S3 as well, signed over its pointer."""
    key = "payloads-test-signing-key"
    signed = sqsq.App(
        "payloads", payload_bucket=BUCKET, signing_key=key, payload_always_through_s3=True
    )
    try:  # small bodies (through S3 all the same): a deferral re-encodes them
        results = [signed.send_task(metered.name, args=[c * 2_000]) for c in "stu"]
    finally:
        signed.close()
    for _ in range(6):
        run_worker(worker, SQSQ_SIGNING_KEY=key)
        if all(r.ready() for r in results):
            break
        time.sleep(1)  # a deferred copy is due a second later
    assert [r.get(timeout=5) for r in results] == [2_000] * 3
    assert _dead_letters() == []
    assert objects() == []  # the three, and each deferred copy's once it was sent on


def test_gc_deletes_only_objects_older_than_the_cut_off(payload_app: Any) -> None:
    from click.testing import CliRunner

    import sqsq.cli.commands  # noqa: F401  (registers the commands)
    from sqsq.cli import cli

    digest.delay("g" * 2_000_000)
    (key,) = objects()

    fresh = CliRunner().invoke(cli, ["gc", APP])  # 14 days: a message may still point to it
    assert fresh.exit_code == 0, fresh.output
    assert "deleted 0 of 1 payload objects" in fresh.output
    dry = CliRunner().invoke(cli, ["gc", APP, "--older-than", "0", "--dry-run"])
    assert f"would delete  {key}" in dry.output and objects() == [key]
    done = CliRunner().invoke(cli, ["gc", APP, "--older-than", "0"])
    assert "deleted 1 of 1 payload objects" in done.output
    assert objects() == []


def test_infra_declares_the_bucket_and_grants_the_workers_its_objects(tmp_path: Any) -> None:
    """``sqsq infra`` for every target: the bucket as ``resources create`` makes it, the
    workers' object actions on it, and a document cfn-lint passes."""
    from sqsq.deploy import TARGETS, Options, dump, render
    from tests.apps.payloads import app
    from tests.helpers import cfn_lint

    files = []
    for target in TARGETS:
        document = render(app, target, Options(APP))  # type: ignore[arg-type]
        resources = document["Resources"]
        bucket = resources["PayloadBucket"]["Properties"]
        assert bucket["BucketName"] == BUCKET
        assert all(bucket["PublicAccessBlockConfiguration"].values())
        assert [r["ExpirationInDays"] for r in bucket["LifecycleConfiguration"]["Rules"]] == [15, 2]
        policy = resources["PayloadBucketPolicy"]["Properties"]["PolicyDocument"]
        assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        granted = json.dumps(document)
        assert '"Sid": "PayloadObjects"' in granted and '"s3:ListBucket"' in granted
        files.append(tmp_path / f"{target}.yaml")
        files[-1].write_text(dump(document))
    result = cfn_lint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_worker_that_only_reads_pointers_still_refuses_a_body_over_1_mib(
    payload_app: Any,
) -> None:
    """An app without a bucket whose claim check was installed to read pointers (its
    worker or Lambda handler received one) sends nothing through S3: MessageTooLarge."""
    reader = sqsq.App("payloads")
    reader.task(name=digest.name)(lambda data: data)
    reader.claim_check()  # as a worker's first receive does
    with pytest.raises(sqsq.MessageTooLarge, match="SQS_MAX_MESSAGE_BYTES"):
        reader.send_task(digest.name, args=["x" * 1_100_000])
    reader.close()


def test_with_signing_on_an_unsigned_minimal_call_through_s3_still_runs(
    payload_app: Any, extended_sqs: Any, worker: Any
) -> None:
    """Signing admits the minimal foreign form unsigned (``signing.py``); through S3
    too — the pointer, which no key signed, does not make it a refusal."""
    data = "u" * 300_000
    sent = extended_sqs.send_message(
        QueueUrl=url("payloads-default"),
        MessageBody=json.dumps({"task": digest.name, "args": [data], "kwargs": {}}),
    )
    run_worker(worker, SQSQ_SIGNING_KEY="payloads-test-signing-key")
    assert payload_app.AsyncResult(sent["MessageId"]).get(timeout=5) == digest_of(data)


def test_a_duplicate_resolves_to_the_first_runs_offloaded_result(
    payload_app: Any, worker: Any
) -> None:
    first = keyed_blob.delay(1_000_000)
    run_worker(worker)
    duplicate = keyed_blob.delay(1_000_000)  # same key, new task id: does not run
    run_worker(worker)
    assert first.get(timeout=5) == "k" * 1_000_000
    assert duplicate.get(timeout=5) == "k" * 1_000_000


def test_a_duplicate_delivery_whose_object_its_first_run_deleted_is_let_go(
    payload_app: Any, worker: Any
) -> None:
    """payload_delete=True: a second delivery of a message whose first run stored its
    outcome and deleted the object is a duplicate of a finished task — deleted
    without running, never a false payload_missing (Lambda handler and worker)."""
    data = "d" * 2_000_000
    result = digest.delay(data)
    (first,) = receive_all("payloads-default", 1)
    release("payloads-default", [first])
    (second,) = receive_all("payloads-default", 1)  # the same message, delivered again
    assert second["MessageId"] == first["MessageId"]
    arn = _arn("payloads-default")

    assert payload_app.lambda_handler(sqs_event([first], arn), None) == {"batchItemFailures": []}
    assert result.get(timeout=5) == digest_of(data)
    stored = payload_app.AsyncResult(result.id).record
    assert objects() == []  # the first run deleted it

    assert payload_app.lambda_handler(sqs_event([second], arn), None) == {"batchItemFailures": []}
    assert _dead_letters() == []  # not a payload_missing dead letter
    assert payload_app.AsyncResult(second["MessageId"]).state == "PENDING"  # nothing stored
    assert payload_app.AsyncResult(result.id).record == stored  # the first run's, untouched

    # the worker: SQS delivers a copy of the pointer once more
    boto3.client("sqs").send_message(
        QueueUrl=url("payloads-default"),
        MessageBody=first["Body"],
        MessageAttributes=first["MessageAttributes"],
    )
    stderr = run_worker(worker)
    assert "not run: a duplicate of task " + result.id in stderr
    assert _dead_letters() == []
    assert receive_all_or_none("payloads-default") == []  # deleted, not returned
    assert payload_app.AsyncResult(result.id).record == stored


def test_a_missing_object_of_an_unfinished_task_is_still_payload_missing(
    payload_app: Any, worker: Any
) -> None:
    """The duplicate check reads the task's result: a RETRY (not final) keeps the
    dead letter."""
    from sqsq.dynamodb import result_item
    from sqsq.result import ResultRecord, State

    result = digest.delay("r" * 2_000_000)
    (message,) = receive_all("payloads-default", 1)
    release("payloads-default", [message])
    record = ResultRecord(task_id=result.id, state=State.RETRY, expires_at=int(time.time()) + 600)
    boto3.client("dynamodb").put_item(TableName=payload_app.table_name, Item=result_item(record))
    for key in objects():
        boto3.client("s3").delete_object(Bucket=BUCKET, Key=key)

    run_worker(worker)
    assert [row.reason for row in _dead_letters()] == ["payload_missing"]


def test_without_a_stored_result_the_object_stays_for_a_duplicate(
    payload_app: Any, worker: Any
) -> None:
    """store_result=False: nothing tells a duplicate its task ended, so the object is
    kept (the lifecycle rule's) and a duplicate runs again instead of a dead letter."""
    unrecorded.delay("u" * 2_000_000)
    (message,) = receive_all("payloads-default", 1)
    release("payloads-default", [message])
    run_worker(worker)
    (key,) = objects()  # kept after the SUCCESS

    boto3.client("sqs").send_message(
        QueueUrl=url("payloads-default"),
        MessageBody=message["Body"],
        MessageAttributes=message["MessageAttributes"],
    )
    run_worker(worker)
    assert _dead_letters() == []
    assert receive_all_or_none("payloads-default") == []
    assert objects() == [key]


def test_dlq_describe_shows_an_offloaded_message_sqs_moved_with_its_task_id(
    payload_app: Any,
) -> None:
    """A pointer SQS's redrive policy moved carries none of sqsq's dead-letter
    attributes: describe still shows its object, size and (from sqsq's key) task id;
    a message sent whole shows no payload."""
    result = digest.delay("v" * 2_000_000)
    (message,) = receive_all("payloads-default", 1)
    sqs = boto3.client("sqs")
    sqs.send_message(
        QueueUrl=url("payloads-default-dlq"),
        MessageBody=message["Body"],
        MessageAttributes=message["MessageAttributes"],
    )
    sqs.send_message(QueueUrl=url("payloads-default-dlq"), MessageBody='{"task": "x"}')
    rows = sorted(_dead_letters(), key=lambda row: row.payload is None)
    (key,) = objects()
    assert rows[0].payload == {
        "url": f"s3://{BUCKET}/{key}",
        "bytes": int(message["MessageAttributes"]["ExtendedPayloadSize"]["StringValue"]),
    }
    assert rows[0].task_id == result.id
    assert rows[1].payload is None


# --- long countdowns in scheduler mode: the schedule's Input carries the pointer -----


def test_a_long_countdown_over_schedulers_input_limit_goes_through_s3(
    payload_app: Any,
) -> None:
    """long_eta="scheduler": a body over EventBridge Scheduler's 256 KB Input limit is
    put in S3 and the schedule's Input is the pointer; Scheduler sends it with no
    message attribute, and the worker still reads it (a key of sqsq's)."""
    from sqsq.envelope import decode
    from sqsq.pointer import parse
    from sqsq.schedules import scheduler
    from sqsq.schedules.local import LocalScheduler

    scheduler.apply(payload_app)  # the role and the schedule groups
    data = "s" * 400_000
    result = digest.apply_async((data,), countdown=2 * 3600)
    have = boto3.client("scheduler").get_schedule(
        GroupName="payloads-sqsq-eta", Name=f"eta-{result.id}"
    )
    pointer = parse(have["Target"]["Input"])
    (key,) = objects()
    assert (pointer.bucket, pointer.key) == (BUCKET, key)
    assert f"/{result.id}/" in key
    held = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    envelope = decode(held)
    assert envelope.id == result.id and envelope.args == [data] and envelope.eta is not None

    later = datetime.now(UTC) + timedelta(hours=3)
    (fired,) = LocalScheduler(payload_app, clock=lambda: later).tick()  # as Scheduler sends it
    assert fired.task_id == result.id
    (message,) = receive_all("payloads-default", 1)
    assert message["Body"] == have["Target"]["Input"]
    assert "ExtendedPayloadSize" not in message.get("MessageAttributes", {})

    # received before its eta (the clock above was a fake one): fetched, decoded and
    # sent on as it came (the same pointer, its object kept) — not a dead letter
    response = payload_app.lambda_handler(sqs_event([message], _arn("payloads-default")), None)
    assert response == {"batchItemFailures": []}
    assert _dead_letters() == []
    assert payload_app.AsyncResult(result.id).state == "PENDING"
    assert objects() == [key]


def test_a_schedulers_pointer_without_the_size_attribute_runs(
    payload_app: Any, worker: Any
) -> None:
    """What a schedule's target sends at its due time: the pointer as the body, no
    message attribute; the worker fetches and runs it, then deletes the object."""
    from sqsq.calls import run
    from sqsq.producer import build

    data = "t" * 400_000
    message = build(
        digest.name,
        [data],
        None,
        queue="default",
        queue_name=payload_app.queue_name("default"),
        claim_check=payload_app.payloads,
    )
    body = run(payload_app.payloads.offloading_input(message, message.body, 0), payload_app.clients)
    assert len(body) < 1_000 and len(objects()) == 1
    boto3.client("sqs").send_message(QueueUrl=url("payloads-default"), MessageBody=body)
    run_worker(worker)
    assert payload_app.AsyncResult(message.task_id).get(timeout=5) == digest_of(data)
    assert objects() == []


def test_a_long_countdown_too_large_for_scheduler_fails_in_the_producer(
    payload_app: Any,
) -> None:
    """No bucket: a body over 256 KB is MessageTooLarge before any schedule is made;
    with one, a wait the lifecycle rule would outlast is refused too."""
    from sqsq.schedules import scheduler

    scheduler.apply(payload_app)
    bare = sqsq.App("payloads")  # no payload_bucket

    @bare.task(name=digest.name)
    def echo(data: str) -> str:
        return data

    with pytest.raises(sqsq.MessageTooLarge, match="SCHEDULER_MAX_INPUT_BYTES=262144"):
        echo.apply_async(("b" * 300_000,), countdown=2 * 3600)
    with pytest.raises(sqsq.EnqueueError, match="payload_retention_s"):
        digest.apply_async(("c" * 300_000,), countdown=2 * 86_400)  # + 14 days > 15
    assert objects() == []
    schedules = boto3.client("scheduler").list_schedules(GroupName="payloads-sqsq-eta")
    assert schedules["Schedules"] == []


def receive_all_or_none(name: str) -> list[dict[str, Any]]:
    return boto3.client("sqs").receive_message(QueueUrl=url(name)).get("Messages", [])
