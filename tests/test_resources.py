"""``sqsq resources create``: queues with dead-letter queues, the result table, and
idempotent plan/apply against the local endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

import sqsq
import sqsq.cli.commands  # registers the commands
from sqsq import limits
from sqsq.cli import cli
from sqsq.resources import apply, plan

ROOT = Path(__file__).resolve().parents[1]
APP = "examples.quickstart.app:app"
QUEUES = ["quickstart-default", "quickstart-emails"]


@pytest.fixture
def aws(local_aws: Any) -> Iterator[tuple[Any, Any]]:
    """Plain boto3 SQS and DynamoDB clients on an empty local endpoint."""
    sqs = boto3.client("sqs", endpoint_url=local_aws.url_for("sqs"), region_name="us-east-1")
    ddb = boto3.client(
        "dynamodb", endpoint_url=local_aws.url_for("dynamodb"), region_name="us-east-1"
    )
    yield sqs, ddb
    sqs.close()
    ddb.close()


@pytest.fixture
def quickstart_app(local_aws: Any) -> sqsq.App:
    """The quick-start App object the CLI loads (module-level), on an empty endpoint."""
    from examples.quickstart.app import app

    return app


class CreateQueueCalls:
    """Records the parameters of every CreateQueue an App's boto3 client sends."""

    def __init__(self, app: sqsq.App) -> None:
        self.client = app.clients.sync("sqs")
        self.calls: dict[str, dict[str, str]] = {}
        self.client.meta.events.register("provide-client-params.sqs.CreateQueue", self)

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        self.calls[params["QueueName"]] = dict(params.get("Attributes", {}))

    def close(self) -> None:
        self.client.meta.events.unregister("provide-client-params.sqs.CreateQueue", self)


def _create(*extra: str) -> Result:
    result = CliRunner().invoke(cli, ["resources", "create", APP, *extra])
    assert result.exit_code == 0, result.output
    return result


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def _writes(requests: dict[str, int]) -> set[str]:
    actions = {k.split(".", 1)[1] for k in requests}
    return {a for a in actions if a.startswith(("Create", "Set", "Update", "Delete", "Tag"))}


def _attributes(sqs: Any, name: str) -> dict[str, str]:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


# --- first run ---------------------------------------------------------------------------


def test_create_makes_each_queue_with_its_dead_letter_queue(
    quickstart_app: sqsq.App, aws: tuple[Any, Any]
) -> None:
    sqs, _ = aws
    recorder = CreateQueueCalls(quickstart_app)
    try:
        result = _create()
    finally:
        recorder.close()
    assert "done: 7 change(s) made" in result.output  # + table, TTL, PITR
    for name in [*QUEUES, *(f"{q}-dlq" for q in QUEUES), "quickstart-sqsq"]:
        assert name in result.output.split()

    urls = sqs.list_queues().get("QueueUrls", [])
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == sorted(
        [*QUEUES, *(f"{q}-dlq" for q in QUEUES)]
    )
    for name in QUEUES:
        queue, dlq = _attributes(sqs, name), _attributes(sqs, f"{name}-dlq")
        redrive = json.loads(queue["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
        assert int(redrive["maxReceiveCount"]) == quickstart_app.settings.max_receive_count
        assert queue["SqsManagedSseEnabled"] == "true"
        assert dlq["SqsManagedSseEnabled"] == "true"
        assert queue["VisibilityTimeout"] == str(int(quickstart_app.settings.visibility_timeout_s))
        assert dlq["MessageRetentionPeriod"] == str(limits.SQS_MAX_RETENTION_S) == "1209600"
        # the DLQ keeps messages longer than its source queue does
        assert int(queue["MessageRetentionPeriod"]) < int(dlq["MessageRetentionPeriod"])
        assert "RedrivePolicy" not in dlq

        # RedriveAllowPolicy as sent (the local endpoint does not report it back)
        allow = json.loads(recorder.calls[f"{name}-dlq"]["RedriveAllowPolicy"])
        assert allow == {"redrivePermission": "byQueue", "sourceQueueArns": [queue["QueueArn"]]}


def needs_ttl(endpoint: Any) -> None:
    if not endpoint.has_ttl:
        pytest.skip(f"{endpoint.name} has no UpdateTimeToLive (dynalite)")


def test_create_makes_the_result_table_with_ttl(
    quickstart_app: sqsq.App, aws: tuple[Any, Any], local_aws: Any
) -> None:
    needs_ttl(local_aws)
    _, ddb = aws
    _create()
    table = ddb.describe_table(TableName="quickstart-sqsq")["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert sorted((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]) == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]
    assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {
        ("pk", "S"),
        ("sk", "S"),
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName="quickstart-sqsq")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    assert ttl["AttributeName"] == "expires_at"
    backups = ddb.describe_continuous_backups(TableName="quickstart-sqsq")
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"


def test_dead_letter_queue_is_created_before_its_source_queue(quickstart_app: sqsq.App) -> None:
    recorder = CreateQueueCalls(quickstart_app)
    try:
        _create()
    finally:
        recorder.close()
    order = list(recorder.calls)
    for name in QUEUES:
        assert order.index(f"{name}-dlq") < order.index(name)


# --- idempotence ------------------------------------------------------------------------------


def test_second_run_creates_nothing(
    quickstart_app: sqsq.App, aws: tuple[Any, Any], local_aws: Any
) -> None:
    needs_ttl(local_aws)
    _create()
    before = quickstart_app.clients.counter.snapshot()
    changes = plan(quickstart_app)
    rows = {(c.kind, c.name): c.action for c in changes}
    for name in QUEUES:
        assert rows[("queue", name)] == "ok"
    assert rows[("table", "quickstart-sqsq")] == "ok"
    assert rows[("table TTL", "quickstart-sqsq")] == "ok"
    _create()
    requests = _diff(quickstart_app.clients.counter.snapshot(), before)
    assert not {a for a in _writes(requests) if a.startswith("Create")}
    sqs, ddb = aws
    assert len(sqs.list_queues()["QueueUrls"]) == 4
    assert ddb.list_tables()["TableNames"] == ["quickstart-sqsq"]


def test_second_run_reports_nothing_to_change_and_writes_nothing(
    quickstart_app: sqsq.App, local_aws: Any
) -> None:
    needs_ttl(local_aws)
    _create()
    before = quickstart_app.clients.counter.snapshot()
    result = _create()
    requests = _diff(quickstart_app.clients.counter.snapshot(), before)
    assert "nothing to change" in result.output
    assert _writes(requests) == set()


# --- dry run ----------------------------------------------------------------------------------


def test_dry_run_on_an_empty_endpoint_lists_and_creates_nothing(
    quickstart_app: sqsq.App, aws: tuple[Any, Any]
) -> None:
    before = quickstart_app.clients.counter.snapshot()
    result = _create("--dry-run")
    requests = _diff(quickstart_app.clients.counter.snapshot(), before)
    lines = [line for line in result.output.splitlines() if "would create" in line]
    assert len(lines) == 7  # 2 DLQs, 2 queues, table, table TTL, table PITR
    for name in [*QUEUES, *(f"{q}-dlq" for q in QUEUES), "quickstart-sqsq"]:
        assert any(name in line.split() for line in lines), name
    assert "dry run: 7 change(s) not made" in result.output
    assert _writes(requests) == set()
    sqs, ddb = aws
    assert sqs.list_queues().get("QueueUrls", []) == []
    assert ddb.list_tables()["TableNames"] == []


# --- changed settings ----------------------------------------------------------------------


@pytest.fixture
def other_apps(local_aws: Any) -> Iterator[tuple[sqsq.App, sqsq.App]]:
    """The same app twice: as deployed (defaults) and with changed settings."""
    deployed = sqsq.App("other")
    changed = sqsq.App("other", max_receive_count=7, visibility_timeout_s=45)
    for app in (deployed, changed):

        @app.task(name="other.work")
        def work(x: int) -> int:
            return x

    yield deployed, changed
    deployed.close()
    changed.close()


def test_changed_settings_are_planned_as_updates_and_applied(
    other_apps: tuple[sqsq.App, sqsq.App], aws: tuple[Any, Any]
) -> None:
    deployed, changed = other_apps
    apply(deployed)
    sqs, _ = aws
    assert json.loads(_attributes(sqs, "other-default")["RedrivePolicy"])["maxReceiveCount"] == 5

    rows = {(c.kind, c.name): c for c in plan(changed)}
    queue = rows[("queue", "other-default")]
    assert queue.action == "update"
    assert "maxReceiveCount" in queue.detail and '"maxReceiveCount":7' in queue.detail
    assert "VisibilityTimeout 30 -> 45" in queue.detail
    assert rows[("table", "other-sqsq")].action == "ok"

    before = changed.clients.counter.snapshot()
    apply(changed)
    requests = _diff(changed.clients.counter.snapshot(), before)
    assert "sqs.SetQueueAttributes" in requests
    assert not {a for a in _writes(requests) if a.startswith("Create")}
    attributes = _attributes(sqs, "other-default")
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 7
    assert redrive["deadLetterTargetArn"].endswith(":other-default-dlq")
    assert attributes["VisibilityTimeout"] == "45"
    assert {(c.kind, c.name): c.action for c in plan(changed)}[("queue", "other-default")] == "ok"
    # the deployed settings now differ from AWS in turn
    assert {(c.kind, c.name): c.action for c in plan(deployed)}[
        ("queue", "other-default")
    ] == "update"


def test_plan_makes_no_writes(other_apps: tuple[sqsq.App, sqsq.App]) -> None:
    deployed, changed = other_apps
    plan(deployed)
    apply(deployed)
    before = changed.clients.counter.snapshot()
    plan(changed)
    assert _writes(_diff(changed.clients.counter.snapshot(), before)) == set()


def test_env_setting_change_shows_as_update_in_the_cli(
    quickstart: sqsq.App, local_aws: Any, aws: tuple[Any, Any]
) -> None:
    env = {**os.environ, "SQSQ_MAX_RECEIVE_COUNT": "7"}  # the endpoint: from the fixture
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "sqsq", "resources", "create", APP, "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    updates = [line for line in done.stdout.splitlines() if "would update" in line]
    for name in QUEUES:
        [line] = [u for u in updates if name in u.split()]
        assert '"maxReceiveCount":7' in line
    assert "dry run:" in done.stdout
    sqs, _ = aws
    assert (
        json.loads(_attributes(sqs, "quickstart-default")["RedrivePolicy"])["maxReceiveCount"] == 5
    )  # dry run: unchanged


def test_sts_follows_the_per_service_sqs_endpoint(local_aws: Any, aws: tuple[Any, Any]) -> None:
    """With only AWS_ENDPOINT_URL_SQS/_DYNAMODB set, the account-id lookup (STS
    GetCallerIdentity, needed before the first queue exists) goes to the same
    endpoint, not to AWS (which this machine cannot reach: the run would fail)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.pop("SQSQ_ENDPOINT_URL", None)
    env |= {
        "AWS_ENDPOINT_URL_SQS": local_aws.url_for("sqs"),
        "AWS_ENDPOINT_URL_DYNAMODB": local_aws.url_for("dynamodb"),
    }
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "sqsq", "resources", "create", APP],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    sqs, _ = aws
    assert _attributes(sqs, "quickstart-default")["QueueArn"].endswith(":quickstart-default")


def test_sts_endpoint_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("SQSQ_ENDPOINT_URL", raising=False)
    clients = sqsq.App("sts-rule").clients
    assert clients.endpoint_url("sts") is None  # botocore's own chain: AWS
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:1")
    assert clients.endpoint_url("sts") == "http://127.0.0.1:1"
    assert clients.endpoint_url("dynamodb") is None  # botocore reads its own variable
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:2")
    assert clients.endpoint_url("sts") is None  # botocore uses AWS_ENDPOINT_URL_STS
    assert (
        sqsq.App("sts-rule", endpoint_url="http://x:3").clients.endpoint_url("sts") == "http://x:3"
    )
