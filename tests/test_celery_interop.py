"""Celery interop on the test endpoint: a stock Celery producer (kombu's SQS
transport) sends, the Lambda handler and a real ``sqsq worker`` run; sqsq sends in
Celery's protocol, a real Celery worker (``celery worker --pool solo``) runs; and
a mixed fleet of both on one queue.

The Celery app and its sqsq port are ``tests/apps/celery_interop.py``; both write
one line per run to a file, so a test sees who ran what, and how often.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
from sqsq import State
from sqsq.decisions import HOP_TOLERANCE_S
from sqsq.resources import apply
from sqsq.testing import LambdaContext, sqs_event
from tests.apps import celery_interop
from tests.conftest import ROOT, WorkerFactory

APP = "tests.apps.celery_interop:app"


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runs.jsonl"
    monkeypatch.setenv("CELERY_INTEROP_RUNS", str(path))
    return path


@pytest.fixture
def celery(local_aws: Any, runs: Path) -> Iterator[Any]:
    """The Celery app (producer side), its queue the sqsq app's default queue."""
    apply(celery_interop.app)
    celery_interop.celery_app.cache_clear()
    capp = celery_interop.celery_app()
    yield capp
    capp.close()
    celery_interop.celery_app.cache_clear()


def ran(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def queue_url(name: str) -> str:
    """The URL of the app's logical queue ``name`` (``"default"``, ``"default-dlq"``)."""
    sqs = boto3.client("sqs")
    return str(sqs.get_queue_url(QueueName=celery_interop.app.queue_name(name))["QueueUrl"])


def receive(queue: str, expected: int) -> list[dict[str, Any]]:
    sqs, url = boto3.client("sqs"), queue_url(queue)
    messages: list[dict[str, Any]] = []
    while len(messages) < expected:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=2,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        assert batch, f"only {len(messages)} of {expected} messages in {queue}"
        messages += batch
    return messages


def handle(queue: str, expected: int) -> dict[str, Any]:
    """Receive ``expected`` messages and give them to the Lambda handler as one event."""
    arn = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(queue), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    event = sqs_event(receive(queue, expected), arn)
    return celery_interop.app.lambda_handler(event, LambdaContext())


def test_celery_producer_runs_on_the_lambda_handler(celery: Any, runs: Path) -> None:
    add, tag = celery.tasks["interop.add"], celery.tasks["interop.tag"]
    delayed = add.delay(2, 3)
    optioned = add.apply_async((4, 5), expires=600)
    by_name = celery.send_task("interop.tag", args=(7,), kwargs={"label": "x"})
    linked = add.apply_async((1, 1), link=tag.s(label="then"))
    expired = add.apply_async((9, 9), expires=datetime.now(UTC) - timedelta(seconds=1))

    assert handle("default", 5) == {"batchItemFailures": []}

    results = {
        r.id: r
        for r in map(
            celery_interop.app.AsyncResult, (delayed.id, optioned.id, by_name.id, linked.id)
        )
    }
    assert results[delayed.id].get(timeout=10) == 5
    assert results[optioned.id].get(timeout=10) == 9
    assert results[by_name.id].get(timeout=10) == "x:7"
    assert results[linked.id].get(timeout=10) == 2
    assert celery_interop.app.AsyncResult(expired.id).state is State.REVOKED
    # the link was sent on as an sqsq signature: the handler runs it next
    assert handle("default", 1) == {"batchItemFailures": []}
    assert sorted(str(r["value"]) for r in ran(runs)) == ["2", "5", "9", "then:2", "x:7"]
    assert {r["by"] for r in ran(runs)} == {"sqsq"}
    assert {r["id"] for r in ran(runs)} >= {delayed.id, optioned.id, by_name.id, linked.id}


def test_celery_retries_count_as_attempts(celery: Any, runs: Path) -> None:
    sent = celery.tasks["interop.add"].apply_async((1, 2), retries=3)
    assert handle("default", 1) == {"batchItemFailures": []}
    record = celery_interop.app.results.get_result(sent.id)
    assert record is not None and record.state is State.SUCCESS
    assert record.attempts == 4


@pytest.mark.parametrize("serializer", ["pickle", "yaml"])
def test_a_pickled_celery_message_is_refused_with_its_reason(
    celery: Any, runs: Path, serializer: str
) -> None:
    if serializer == "yaml":
        pytest.importorskip("yaml")
    celery.conf.accept_content = ["json", serializer]
    sent = celery.tasks["interop.add"].apply_async((1, 2), serializer=serializer)
    assert handle("default", 1) == {"batchItemFailures": []}

    [copy] = receive("default-dlq", 1)
    assert copy["MessageAttributes"]["sqsq-dead-letter-reason"]["StringValue"] == (
        "celery_serializer_refused"
    )
    record = celery_interop.app.results.get_result(sent.id)
    assert record is not None and record.state is State.FAILURE
    assert record.dead_letter_reason == "celery_serializer_refused"
    assert ran(runs) == []


def test_an_unknown_celery_task_is_a_dead_letter(celery: Any, runs: Path) -> None:
    sent = celery.send_task("interop.nowhere", args=(1,))
    linked = celery.tasks["interop.add"].apply_async((1, 2), link=celery.signature("nope.cb"))
    assert handle("default", 2) == {"batchItemFailures": []}
    for task_id in (sent.id, linked.id):
        record = celery_interop.app.results.get_result(task_id)
        assert record is not None and record.dead_letter_reason == "unknown_task", task_id
    assert len(receive("default-dlq", 2)) == 2
    assert ran(runs) == []


def test_celery_producer_runs_on_a_real_sqsq_worker(
    celery: Any, runs: Path, worker: WorkerFactory
) -> None:
    add, tag = celery.tasks["interop.add"], celery.tasks["interop.tag"]
    before = datetime.now(UTC)
    sent = {
        "delay": (add.delay(2, 3), 5),
        "countdown": (add.apply_async((4, 5), countdown=5, expires=600), 9),
        "send_task": (celery.send_task("interop.tag", args=(7,), kwargs={"label": "x"}), "x:7"),
        "link": (add.apply_async((1, 1), link=tag.s(label="then")), 2),
    }
    process = worker.start(APP)
    for name, (result, value) in sent.items():
        assert celery_interop.app.AsyncResult(result.id).get(timeout=60, interval=0.2) == value, (
            name
        )
    countdown = celery_interop.app.results.get_result(sent["countdown"][0].id)
    assert countdown is not None and countdown.started_at is not None
    # held back until its eta (an eta within HOP_TOLERANCE_S counts as due)
    assert countdown.started_at >= before + timedelta(seconds=5 - HOP_TOLERANCE_S)
    process.terminate()
    process.communicate(timeout=60)
    values = sorted(str(r["value"]) for r in ran(runs))
    assert values == ["2", "5", "9", "then:2", "x:7"]  # each once, the link too


# --- sqsq → Celery workers, and a mixed fleet ----------------------------------------


@pytest.fixture
def celery_worker(celery: Any, tmp_path: Path) -> Iterator[Any]:
    """Starts ``celery -A tests.apps.celery_interop:celery worker --pool solo``.

    kombu 5's SQS transport receives through its curl client: ``pycurl`` is a
    test dependency (``.ci/constraints.txt``)."""
    pytest.importorskip("pycurl", reason="kombu's SQS transport receives through pycurl")
    processes: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.apps.celery_interop:celery",
                "worker",
                "--pool",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                "-Q",
                celery_interop.CELERY_QUEUE,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def wait_for_runs(
    path: Path, count: int, process: Any, timeout_s: float = 90
) -> list[dict[str, Any]]:
    """The runs recorded once there are ``count`` of them (fails on a dead worker)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = ran(path)
        if len(got) >= count:
            return got
        assert process.poll() is None, process.communicate()[0][-3000:]
        time.sleep(0.2)
    pytest.fail(f"{len(ran(path))} of {count} runs after {timeout_s} s")


def test_send_task_in_celerys_protocol_runs_on_a_celery_worker(
    celery: Any, runs: Path, celery_worker: Any
) -> None:
    app = celery_interop.app
    by_name = app.send_task("interop.add", (2, 40), protocol="celery")
    by_option = celery_interop.mul.delay(6, 7)  # the task's protocol="celery"
    later = celery_interop.mul.apply_async((2, 3), countdown=1)
    process = celery_worker()
    got = wait_for_runs(runs, 3, process)
    assert {(r["by"], r["id"], r["value"]) for r in got} == {
        ("celery", by_name.id, 42),
        ("celery", by_option.id, 42),
        ("celery", later.id, 6),
    }


def test_a_mixed_fleet_loses_nothing_and_runs_nothing_twice(
    celery: Any, runs: Path, celery_worker: Any, worker: WorkerFactory
) -> None:
    """One Celery worker and one sqsq worker on one queue; producers of both kinds
    write Celery's protocol, the only one both workers read."""
    n = 40
    add = celery.tasks["interop.add"]
    ids = {add.delay(i, 0).id for i in range(n - 5)}
    # not due yet: an sqsq worker that receives one sends it on as it came (Celery's
    # protocol), never as an envelope a Celery worker would delete unrun
    ids |= {add.apply_async((i, 0), countdown=3).id for i in range(n - 5, n)}
    ids |= {
        celery_interop.app.send_task("interop.add", (i, 0), protocol="celery").id
        for i in range(n, 2 * n - 5)
    }
    ids |= {
        celery_interop.app.send_task("interop.add", (i, 0), countdown=3, protocol="celery").id
        for i in range(2 * n - 5, 2 * n)
    }
    process = celery_worker()
    sqsq_worker = worker.start(APP)
    got = wait_for_runs(runs, 2 * n, process)
    time.sleep(3)  # anything run twice would show up by now (both workers poll every ≤ 2 s)
    sqsq_worker.terminate()
    sqsq_worker.communicate(timeout=60)
    got = ran(runs)
    counts = Counter(r["id"] for r in got)
    assert set(counts) == ids  # nothing lost
    assert max(counts.values()) == 1  # nothing run twice
    assert sorted(r["value"] for r in got) == list(range(2 * n))
    print("runs by worker:", Counter(r["by"] for r in got))


# --- sqsq celery check -------------------------------------------------------------------


def test_celery_check_lists_missing_tasks_option_differences_and_beat() -> None:
    from click.testing import CliRunner

    import sqsq.cli.commands  # noqa: F401  (registers the commands)
    from sqsq.cli import EXIT_FAILURE, cli

    result = CliRunner().invoke(
        cli, ["celery", "check", "tests.apps.celery_check:celery", "tests.apps.celery_check:app"]
    )
    assert result.exit_code == EXIT_FAILURE, result.output
    lines = result.output.splitlines()
    assert "missing  shop.refund: no sqsq task 'shop.refund' in app 'shop'" in lines
    assert "option   shop.charge: time_limit Celery 60.0 vs sqsq 30.0" in lines
    # the same rate_limit is no difference; the renamed task is found by its alias
    assert not [line for line in lines if "rate_limit" in line or "reports.daily" in line]
    assert any(line.startswith("option   shop.ping: acks_late Celery False") for line in lines)
    assert "beat     nightly: shop.report → cron(30 2 * * ? *) (time zone Europe/Paris)" in lines
    assert (
        "beat     weekdays: shop.report → cron(0 * ? * MON-FRI *) (time zone Europe/Paris)" in lines
    )
    assert "beat     often: shop.ping → rate(5 minutes)" in lines
    assert "beat     payday: shop.ping on a Payday schedule has no EventBridge expression" in lines
    assert any(line.startswith("beat     too-often: shop.ping: no EventBridge") for line in lines)
    assert lines[-1].startswith("NOT ready: 1 task(s) missing, 2 option difference(s), 5 beat")


@pytest.mark.parametrize(
    ("celery_app", "fragment"),
    [
        ("nowhere:celery", "cannot load Celery app 'nowhere:celery': ModuleNotFoundError"),
        ("tests.apps.celery_check:app", "is a App, not a Celery app"),
    ],
)
def test_celery_check_errors_are_one_line(celery_app: str, fragment: str) -> None:
    from click.testing import CliRunner

    import sqsq.cli.commands  # noqa: F401  (registers the commands)
    from sqsq.cli import EXIT_USAGE, cli

    result = CliRunner().invoke(cli, ["celery", "check", celery_app, "tests.apps.celery_check:app"])
    assert result.exit_code == EXIT_USAGE
    assert isinstance(result.exception, SystemExit)
    [line] = result.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("Error: ")
    assert fragment in result.stderr


def test_a_celery_message_not_due_yet_is_sent_on_as_it_came(
    celery: Any, runs: Path, celery_worker: Any
) -> None:
    """The Lambda handler receives a countdown message early and sends it on with
    DelaySeconds in Celery's protocol, so that a Celery worker still runs it (an
    sqsq envelope would be "received and deleted" by Celery as an unknown message)."""
    sent = celery.tasks["interop.add"].apply_async((20, 22), countdown=5)
    assert handle("default", 1) == {"batchItemFailures": []}
    assert ran(runs) == []
    process = celery_worker()
    assert wait_for_runs(runs, 1, process) == [{"by": "celery", "id": sent.id, "value": 42}]


def test_publish_signals_see_a_send_in_celerys_protocol(celery: Any) -> None:
    from sqsq import signals

    heard: list[dict[str, Any]] = []

    def receiver(sender: str, **named: Any) -> None:
        heard.append({"sender": sender, **named})

    signals.before_task_publish.connect(receiver)
    signals.after_task_publish.connect(receiver)
    try:
        sent = celery_interop.app.send_task("interop.add", (1, 2), protocol="celery")
    finally:
        signals.before_task_publish.disconnect(receiver)
        signals.after_task_publish.disconnect(receiver)
    assert [(h["sender"], h["headers"]["id"]) for h in heard] == [("interop.add", sent.id)] * 2
    [message] = receive("default", 1)  # and it went out, in Celery's protocol
    assert json.loads(base64.b64decode(message["Body"]))["headers"]["id"] == sent.id


def test_with_signing_on_an_unsigned_celery_message_is_refused(celery: Any, runs: Path) -> None:
    """A Celery message carries no sqsq signature, and holds more than an unsigned
    body may (an id, an eta, callbacks): an app that signs refuses it, runs nothing."""
    signed = sqsq.App("celeryi", signing_key="k" * 64)
    signed.task(name="interop.add")(celery_interop.add.fn)
    celery.tasks["interop.add"].delay(1, 2)
    [message] = receive("default", 1)
    arn = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url("default"), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    event = sqs_event([message], arn)
    assert signed.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    [copy] = receive("default-dlq", 1)
    assert copy["Body"] == message["Body"]  # the message as it came
    reason = copy["MessageAttributes"]["sqsq-dead-letter-reason"]["StringValue"]
    assert reason == "unsigned_message"
    assert ran(runs) == []
