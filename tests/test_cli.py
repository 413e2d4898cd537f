"""The ``sqsq`` command line: user errors are one ``Error: …`` line with a non-zero exit
(never a traceback); ``send --wait`` and ``result`` print what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import sqsq
import sqsq.cli.commands  # registers the commands
from sqsq.cli import EXIT_USAGE, cli
from sqsq.dlq import (
    AGE_SINCE_DEAD_LETTERED,
    AGE_SINCE_ENQUEUED,
    REDRIVE_POLICY_REASON,
    describe,
)

ROOT = Path(__file__).resolve().parents[1]
APP = "examples.quickstart.app:app"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _assert_user_error(result: Result, *fragments: str) -> None:
    """A clean ``Error: …``: non-zero exit through SystemExit, no escaped exception."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "Error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def _sqsq(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m sqsq ARGS`` as a user runs it."""
    environment = {**os.environ, **env}
    environment["PYTHONPATH"] = str(ROOT) + os.pathsep + environment.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "sqsq", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- help ------------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    done = _sqsq("--help")
    assert done.returncode == 0, done.stderr
    for command in ("worker", "dev", "resources", "send", "result", "schema"):
        assert command in done.stdout
    assert done.stderr == ""


def test_worker_help_describes_app_and_options() -> None:
    done = _sqsq("worker", "--help")
    assert done.returncode == 0, done.stderr
    assert "module:attribute" in done.stdout
    for option in ("--queues", "--concurrency", "--burst", "--wait-time"):
        assert option in done.stdout


@pytest.mark.parametrize(
    "command",
    [["send", "--help"], ["result", "--help"], ["resources", "create", "--help"], ["-h"]],
)
def test_subcommand_help(command: list[str]) -> None:
    result = _invoke(*command)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version() -> None:
    result = _invoke("--version")
    assert result.exit_code == 0
    assert sqsq.__version__ in result.output


# --- app path errors ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["worker", "result", "send", "resources"])
def test_unknown_module_is_a_user_error(command: str) -> None:
    args = {
        "worker": ["worker", "no_such_module_xyz:app"],
        "result": ["result", "no_such_module_xyz:app", "some-id"],
        "send": ["send", "no_such_module_xyz:app", "t", "--args", "[]"],
        "resources": ["resources", "create", "no_such_module_xyz:app"],
    }[command]
    result = _invoke(*args)
    _assert_user_error(result, "no_such_module_xyz", "module:attribute")
    assert result.exit_code == EXIT_USAGE


def test_unknown_module_in_a_real_process_prints_one_error_line() -> None:
    done = _sqsq("worker", "no_such_module_xyz:app")
    assert done.returncode == EXIT_USAGE
    assert done.stderr.startswith("Error: ")
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_missing_attribute_is_a_user_error() -> None:
    result = _invoke("worker", "examples.quickstart.app:missing")
    _assert_user_error(result, "missing", "not a sqsq.App")
    assert result.exit_code == EXIT_USAGE


def test_attribute_that_is_not_an_app_is_a_user_error() -> None:
    result = _invoke("worker", "examples.quickstart.app:charge")
    _assert_user_error(result, "Task", "not a sqsq.App")
    result = _invoke("result", "examples.quickstart.app:Order", "x")
    _assert_user_error(result, "not a sqsq.App")


def test_module_without_an_app_attribute() -> None:
    result = _invoke("worker", "examples.quickstart")  # no ':' means ':app'
    _assert_user_error(result, "not a sqsq.App")


def test_empty_module_name_is_a_user_error() -> None:
    _assert_user_error(_invoke("worker", ":app"))


# --- send / result --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--args", "not json", "not JSON"),
        ("--args", "[1, 2", "not JSON"),
        ("--args", '{"a": 1}', "JSON list"),
        ("--args", '"o-1"', "JSON list"),
        ("--kwargs", "{oops}", "not JSON"),
        ("--kwargs", "[1]", "JSON dict"),
    ],
)
def test_send_with_bad_json_is_a_user_error(option: str, value: str, fragment: str) -> None:
    result = _invoke("send", APP, "examples.quickstart.app.charge", option, value)
    _assert_user_error(result, option, fragment)


def test_send_with_a_countdown_over_900_is_a_user_error() -> None:
    result = _invoke("send", APP, "examples.quickstart.app.charge", "--countdown", "901")
    _assert_user_error(result, "--countdown")


def test_send_to_a_queue_that_does_not_exist(local_aws: Any) -> None:
    done = _sqsq("send", APP, "examples.quickstart.app.render_email", "--args", '["a", "b"]')
    assert done.returncode == EXIT_USAGE
    assert done.stderr.startswith("Error: ")
    assert "does not exist" in done.stderr
    assert "sqsq resources create" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_send_with_an_unencodable_message_is_an_error(quickstart: sqsq.App) -> None:
    big = '["' + "x" * 1_100_000 + '", "hi"]'
    result = _invoke("send", APP, "examples.quickstart.app.render_email", "--args", big)
    _assert_user_error(result, "SQS_MAX_MESSAGE_BYTES")


def test_send_to_an_invalid_queue_name_is_a_user_error(quickstart: sqsq.App) -> None:
    _assert_user_error(
        _invoke(
            "send",
            APP,
            "examples.quickstart.app.render_email",
            "--args",
            '["a", "b"]',
            "-Q",
            "bad queue!",
        )
    )


def test_send_prints_the_task_id(quickstart: sqsq.App) -> None:
    result = _invoke(
        "send", APP, "examples.quickstart.app.render_email", "--args", '["a@b.c", "hi"]'
    )
    assert result.exit_code == 0, result.output
    task_id = result.stdout.strip()
    assert len(task_id) == 36  # a UUID4, nothing else on stdout
    assert quickstart.AsyncResult(task_id).state is sqsq.State.PENDING


def test_result_of_an_unknown_id_prints_pending(quickstart: sqsq.App) -> None:
    result = _invoke("result", APP, "no-such-task-id")
    assert result.exit_code == 0, result.output
    assert "PENDING" in result.stdout


def test_result_of_a_stored_failure_prints_the_error(quickstart: sqsq.App) -> None:
    from sqsq.dynamodb import result_item
    from sqsq.result import ResultRecord, State

    record = ResultRecord(
        task_id="cli-bad",
        state=State.FAILURE,
        task="examples.quickstart.app.refund",
        exc_type="RuntimeError",
        exc_message="refunds are handled elsewhere",
        traceback="Traceback (most recent call last):\nRuntimeError: refunds\n",
        attempts=1,
    )
    quickstart.results.put_results([("cli-bad", result_item(record))])
    result = _invoke("result", APP, "cli-bad")
    assert result.exit_code == 1, result.output  # as `send --wait`: the task failed
    for fragment in ("FAILURE", "RuntimeError", "refunds are handled elsewhere", "traceback:"):
        assert fragment in result.stdout


def test_send_wait_prints_the_result_of_a_running_worker(quickstart: sqsq.App, worker: Any) -> None:
    process = worker.start(APP, "--wait-time", "1")
    try:
        ok = _invoke(
            "send",
            APP,
            "examples.quickstart.app.charge",
            "--args",
            '[{"order_id": "o-cli", "cents": 700}]',
            "--wait",
            "10",
        )
        assert ok.exit_code == 0, ok.output
        lines = ok.stdout.splitlines()
        task_id = lines[0].strip()
        assert quickstart.AsyncResult(task_id).state is sqsq.State.SUCCESS
        assert any(line.split() == ["state:", "SUCCESS"] for line in lines)
        [value] = [line for line in lines if line.startswith("result:")]
        assert '"charged": 700' in value and '"order_id": "o-cli"' in value

        bad = _invoke(
            "send", APP, "examples.quickstart.app.refund", "--args", '["o-cli"]', "--wait", "10"
        )
        assert bad.exit_code == 1, bad.output
        assert isinstance(bad.exception, SystemExit)
        assert "FAILURE" in bad.stdout
        assert "RuntimeError" in bad.stdout
        assert "refunds for o-cli are handled by the payments team" in bad.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_send_wait_without_a_worker_reports_pending(quickstart: sqsq.App) -> None:
    result = _invoke(
        "send", APP, "examples.quickstart.app.refund", "--args", '["o"]', "--wait", "0.3"
    )
    assert result.exit_code == 1
    assert "PENDING after 0.3 s" in result.stderr
    assert "Traceback" not in result.output


def test_worker_without_credentials_exits_with_a_clear_error(tmp_path: Path) -> None:
    """No retry can fix missing credentials: exit 2 at startup, one clear line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SQSQ_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
        SQSQ_ENDPOINT_URL="http://127.0.0.1:9",
    )
    done = subprocess.run(
        [sys.executable, "-m", "sqsq", "worker", "examples.quickstart.app:app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Unable to locate credentials" in done.stderr
    assert "Traceback" not in done.stderr


# --- operator fixes: send checks, exit codes, warnings ------------------------------------


def test_send_of_an_unknown_task_suggests_the_registered_name(quickstart: sqsq.App) -> None:
    from tests.helpers import queue_counts

    done = _sqsq("send", APP, "examples.quickstart.app.chrage", "--args", "[]")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith("Error: ")
    assert "did you mean 'examples.quickstart.app.charge'?" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    short = _invoke("send", APP, "charge", "--args", "[]")  # the short name: suggested in full
    _assert_user_error(short, "did you mean 'examples.quickstart.app.charge'?")
    sqs = quickstart.clients.sync("sqs")
    assert queue_counts(sqs, quickstart.directory.url("quickstart-default")) == (0, 0)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ("[]", "missing a required argument"),
        ('[{"order_id": "o-1", "cents": "lots"}]', "cents"),  # pydantic: not an int
        ('[{"order_id": "o-1", "cents": 5}, null, 3]', "too many positional arguments"),
    ],
)
def test_send_with_wrong_arguments_sends_nothing(
    quickstart: sqsq.App, args: str, fragment: str
) -> None:
    from tests.helpers import queue_counts

    result = _invoke("send", APP, "examples.quickstart.app.charge", "--args", args)
    _assert_user_error(result, fragment)
    assert result.exit_code == EXIT_USAGE
    sqs = quickstart.clients.sync("sqs")
    assert queue_counts(sqs, quickstart.directory.url("quickstart-default")) == (0, 0)


def test_result_exit_codes(quickstart: sqsq.App) -> None:
    from sqsq.dynamodb import result_item
    from sqsq.result import ResultRecord, State

    for task_id, state in (("ok", State.SUCCESS), ("bad", State.FAILURE), ("gone", State.REVOKED)):
        record = ResultRecord(task_id=task_id, state=state, task="t", attempts=1, value=1)
        quickstart.results.put_results([(task_id, result_item(record))])
    assert _invoke("result", APP, "ok").exit_code == 0
    assert _invoke("result", APP, "bad").exit_code == 1
    assert _invoke("result", APP, "gone", "--json").exit_code == 1
    assert _invoke("result", APP, "unknown").exit_code == 0  # PENDING: nothing failed


def test_max_tasks_per_child_without_processes_warns(quickstart: sqsq.App) -> None:
    done = _sqsq("worker", APP, "--burst", "--wait-time", "0", "--max-tasks-per-child", "5")
    assert done.returncode == 0, done.stderr
    assert "Warning: --max-tasks-per-child does nothing without --pool processes" in done.stderr
    quiet = _sqsq("worker", APP, "--burst", "--wait-time", "0")
    assert "Warning" not in quiet.stderr


def test_dlq_of_an_unknown_queue_is_a_user_error(quickstart: sqsq.App) -> None:
    for command in ("ls", "redrive", "purge"):
        result = _invoke("dlq", command, APP, "nope")
        _assert_user_error(result, "no dead-letter queue for 'nope'", "quickstart-nope-dlq")
        assert result.exit_code == EXIT_USAGE


def test_dlq_ls_counts_messages_in_flight(quickstart: sqsq.App) -> None:
    sqs = quickstart.clients.sync("sqs")
    url = quickstart.directory.url("quickstart-default-dlq")
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f'{{"task": "t", "id": "dl-{n}"}}')
    held = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    assert len(held["Messages"]) == 1
    result = _invoke("dlq", "ls", APP, "default")  # logical, as `send -Q` takes it
    assert result.exit_code == 0, result.output
    assert "quickstart-default-dlq: 2 visible, 1 in flight" in result.stdout
    physical = _invoke("dlq", "ls", APP, "quickstart-default-dlq", "--json")
    assert physical.exit_code == 0, physical.output
    assert len(physical.stdout.splitlines()) == 2


def test_dlq_ls_age_counts_from_dead_lettering(quickstart: sqsq.App, worker: Any) -> None:
    """A message sqsq dead-letters: its age counts from then — not from the
    envelope's ``sent_at`` (here a producer's send two hours before)."""
    sqs = quickstart.clients.sync("sqs")
    sent_at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    body = {"task": "examples.quickstart.app.nope", "id": "lost-1", "sent_at": sent_at}
    sqs.send_message(
        QueueUrl=quickstart.directory.url("quickstart-default"), MessageBody=json.dumps(body)
    )
    done = worker.run(APP, "-Q", "default", "--wait-time", "0")
    assert done.returncode == 0, done.stderr

    listing = _invoke("dlq", "ls", APP, "default", "--json")
    assert listing.exit_code == 0, listing.output
    (row,) = [json.loads(line) for line in listing.stdout.splitlines()]
    assert (row["task_id"], row["reason"]) == ("lost-1", "unknown_task")
    assert row["age_since"] == AGE_SINCE_DEAD_LETTERED
    assert 0 <= row["age_s"] < 3_600, row  # minutes at most, not the 2 h since sent_at
    table = _invoke("dlq", "ls", APP, "default")
    assert "age (dead-lettered)" in table.stdout and "since enqueued" not in table.stdout


def test_dlq_ls_marks_the_age_of_a_message_the_redrive_policy_moved(
    quickstart: sqsq.App,
) -> None:
    """SQS's redrive policy (maxReceiveCount) moves a message out of a standard queue
    keeping its enqueue time: its age counts from that, and says so."""
    sqs = quickstart.clients.sync("sqs")
    url = quickstart.directory.url("quickstart-default")
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    policy["maxReceiveCount"] = 1
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})
    sqs.send_message(QueueUrl=url, MessageBody='{"task": "t", "id": "moved-1"}')
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    assert len(first) == 1
    # the second receive exceeds maxReceiveCount: SQS moves it to the DLQ instead
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []

    listing = _invoke("dlq", "ls", APP, "default", "--json")
    assert listing.exit_code == 0, listing.output
    (row,) = [json.loads(line) for line in listing.stdout.splitlines()]
    assert (row["task_id"], row["reason"]) == ("moved-1", REDRIVE_POLICY_REASON)
    assert row["age_since"] == AGE_SINCE_ENQUEUED and row["age_s"] is not None
    table = _invoke("dlq", "ls", APP, "default")
    assert "s *" in table.stdout, table.stdout
    assert "* since enqueued: SQS's redrive policy" in " ".join(table.stdout.split())


def test_dlq_age_counts_from_what_each_message_records() -> None:
    """:func:`sqsq.dlq.describe` on received messages, at a fixed ``now``."""
    now = 1_800_000_000.0
    enqueued, dead_lettered, copied = now - 7_200, now - 600, now - 590
    envelope = json.dumps({"task": "t", "id": "i", "sent_at": "2020-01-01T00:00:00+00:00"})
    details = json.dumps(
        {
            "reason": "task_failed",
            "dead_lettered_at": datetime.fromtimestamp(dead_lettered, UTC).isoformat(),
        }
    )

    def message(system: dict[str, str], attributes: dict[str, Any]) -> dict[str, Any]:
        return {
            "MessageId": "m",
            "Body": envelope,
            "Attributes": system,
            "MessageAttributes": attributes,
        }

    ours = {"sqsq-dead-letter": {"DataType": "String", "StringValue": details}}
    sent = {"SentTimestamp": str(int(copied * 1000))}
    # sqsq's copy: the dead_lettered_at it records; without it, the copy's SentTimestamp
    row = describe(message(sent, ours), now=now)
    assert (row.age_since, row.age_s) == (AGE_SINCE_DEAD_LETTERED, 600)
    reason_only = {"sqsq-dead-letter-reason": {"DataType": "String", "StringValue": "x"}}
    row = describe(message(sent, reason_only), now=now)  # the details did not fit
    assert (row.age_since, row.age_s) == (AGE_SINCE_DEAD_LETTERED, 590)
    forged = {"sqsq-dead-letter": {"DataType": "String", "StringValue": '{"dead_lettered_at": 1}'}}
    assert describe(message(sent, forged), now=now).age_s == 590
    # moved by SQS's redrive policy: a standard queue keeps the enqueue time...
    moved = {"SentTimestamp": str(int(enqueued * 1000)), "DeadLetterQueueSourceArn": "arn:q"}
    row = describe(message(moved, ours), now=now)  # forged attributes are not read
    assert (row.age_since, row.age_s) == (AGE_SINCE_ENQUEUED, 7_200)
    # (moto sets no DeadLetterQueueSourceArn: a message without sqsq's attributes)
    row = describe(message({"SentTimestamp": moved["SentTimestamp"]}, {}), now=now)
    assert (row.age_since, row.age_s) == (AGE_SINCE_ENQUEUED, 7_200)
    # a standard (fair) queue's message carries a MessageGroupId, and keeps it too
    row = describe(message({**moved, "MessageGroupId": "tenant-1"}, {}), now=now)
    assert (row.age_since, row.age_s) == (AGE_SINCE_ENQUEUED, 7_200)
    # ... a FIFO queue resets it at the move
    row = describe(message({**moved, "SequenceNumber": "1"}, {}), now=now)
    assert row.age_since == AGE_SINCE_DEAD_LETTERED
    row = describe(message({}, {}), now=now)
    assert (row.age_since, row.age_s) == (None, None)
