"""The test kit's switch to another endpoint: the variables it reads, and that it
deletes only what the run created (checked with moto standing in as the "external"
endpoint)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import boto3

from sqsq.testing import ExternalEndpoint, external_endpoints


def test_no_variable_means_moto() -> None:
    assert external_endpoints({}) is None
    assert external_endpoints({"SQSQ_TEST_ENDPOINT_URL": " "}) is None


def test_one_url_for_every_service_or_one_per_service() -> None:
    one = external_endpoints({"SQSQ_TEST_ENDPOINT_URL": "http://127.0.0.1:4566"})
    assert one == dict.fromkeys(
        (
            "SQS",
            "DYNAMODB",
            "STS",
            "SCHEDULER",
            "IAM",
            "SFN",
            "EVENTBRIDGE",
            "SNS",
            "S3",
            "CLOUDWATCH",
        ),
        "http://127.0.0.1:4566",
    )
    split = external_endpoints(
        {
            "SQSQ_TEST_ENDPOINT_URL_SQS": "http://127.0.0.1:1",
            "SQSQ_TEST_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:2",
        }
    )
    assert split == {
        "SQS": "http://127.0.0.1:1",
        "DYNAMODB": "http://127.0.0.1:2",
        "STS": "http://127.0.0.1:1",  # STS follows SQS
        "SCHEDULER": "aws",  # unset: AWS itself
        "IAM": "http://127.0.0.1:1",  # IAM (the role of `schedule sync`) follows SQS
        # and the services a recipe or a state machine sends from, and CloudWatch
        # (sqsq status' queue ages)
        **dict.fromkeys(("SFN", "EVENTBRIDGE", "SNS", "S3", "CLOUDWATCH"), "http://127.0.0.1:1"),
    }
    endpoint = ExternalEndpoint(split)
    assert endpoint.url_for("scheduler") is None
    assert endpoint.environ() == {
        "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:1",
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:2",
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:1",
        "AWS_ENDPOINT_URL_IAM": "http://127.0.0.1:1",
        **{
            f"AWS_ENDPOINT_URL_{s}": "http://127.0.0.1:1"
            for s in ("SFN", "EVENTBRIDGE", "SNS", "S3", "CLOUDWATCH")
        },
    }
    sandbox = external_endpoints({"SQSQ_TEST_ENDPOINT_URL": "aws"})
    assert sandbox is not None and ExternalEndpoint(sandbox).environ() == {}


def _table(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})


def test_reset_deletes_only_what_the_run_created(local_aws: Any) -> None:
    kw = {"endpoint_url": local_aws.url_for("sqs"), "region_name": "us-east-1"}
    sqs = boto3.client("sqs", **kw)
    ddb = boto3.client(
        "dynamodb", endpoint_url=local_aws.url_for("dynamodb"), region_name="us-east-1"
    )
    kept = sqs.create_queue(QueueName="kit-existing")["QueueUrl"]
    _table(ddb, "kit-existing-table")
    urls = {s: local_aws.url_for(s.lower()) for s in ("SQS", "DYNAMODB", "STS", "SCHEDULER")}
    endpoint = ExternalEndpoint(urls).start()  # what exists now is never touched

    made = sqs.create_queue(QueueName="kit-made")["QueueUrl"]
    _table(ddb, "kit-made-table")
    endpoint.reset()

    queues = sqs.list_queues().get("QueueUrls", [])
    assert kept in queues and made not in queues
    assert ddb.list_tables()["TableNames"] == ["kit-existing-table"]
    assert endpoint.has_ttl is local_aws.has_ttl  # probed with a table of its own


def test_conditional_writes_are_atomic_under_concurrency(local_aws: Any) -> None:
    """DynamoDB checks a condition and writes as one step: of many concurrent
    conditional UpdateItems taking one free slot, exactly one succeeds — on every
    endpoint the suite runs on. moto's threaded server reads, checks and writes in
    separate steps (without ``sqsq.local._atomic_dynamodb`` this test sees two or
    three winners in its first round); the embedded endpoint serializes its DynamoDB
    requests so that the rule holds."""
    ddb = boto3.client("dynamodb")
    table = "atomic-slots"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=table)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads of this process (moto's too) switch often
    try:
        for round_ in range(20):
            assert _winners(table, f"slot#{round_}", takers=8) == 1, round_
    finally:
        sys.setswitchinterval(switch)


def _winners(table: str, key: str, takers: int) -> int:
    """How many of ``takers`` threads, started together, take ``key`` with a
    conditional write."""
    winners: list[str] = []
    start = threading.Barrier(takers)

    def take(me: str) -> None:
        client = boto3.client("dynamodb")
        start.wait()
        try:
            client.update_item(
                TableName=table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET holder = :me",
                ConditionExpression="attribute_not_exists(holder)",
                ExpressionAttributeValues={":me": {"S": me}},
            )
        except client.exceptions.ConditionalCheckFailedException:
            return
        winners.append(me)

    threads = [threading.Thread(target=take, args=(f"t{n}",)) for n in range(takers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(winners)


def test_each_xdist_worker_runs_on_its_own_endpoint_shard(monkeypatch: Any) -> None:
    """SQSQ_TEST_ENDPOINT_SHARDS (.ci/conformance's pairs): worker gwN takes shard N,
    a serial run shard 0, -n auto one worker per shard; more workers than shards is
    refused (two workers on one endpoint reset each other's resources)."""
    from types import SimpleNamespace

    import pytest

    from tests.conftest import pytest_xdist_auto_num_workers, use_endpoint_shard

    config: Any = SimpleNamespace(option=SimpleNamespace(numprocesses=0))
    shards = "http://127.0.0.1:1,http://127.0.0.1:2 http://127.0.0.1:3"
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setenv("SQSQ_TEST_ENDPOINT_SHARDS", shards)
    monkeypatch.setenv("SQSQ_TEST_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SQSQ_TEST_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    assert pytest_xdist_auto_num_workers(config) == 2

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    use_endpoint_shard(config)  # serial, or the controller
    urls = external_endpoints()
    assert urls is not None and (urls["SQS"], urls["DYNAMODB"]) == (
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
    )

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    use_endpoint_shard(config)  # a shard of one URL: every service there
    urls = external_endpoints()
    assert urls is not None and set(urls.values()) == {"http://127.0.0.1:3"}

    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    with pytest.raises(pytest.UsageError, match="3 xdist workers but 2 endpoint shards"):
        use_endpoint_shard(config)

    monkeypatch.setenv("SQSQ_TEST_ENDPOINT_SHARDS", "http://127.0.0.1:1")
    assert pytest_xdist_auto_num_workers(config) == 0  # one endpoint: serial
