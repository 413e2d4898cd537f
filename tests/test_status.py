"""``sqsq status`` against real workers and queues on moto, its health-check exit
codes, and ``sqsq revoke`` / ``sqsq purge``."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner, Result

import sqsq
import sqsq.cli.commands  # registers the commands
from sqsq.cli import EXIT_AWS, EXIT_FAILURE, EXIT_USAGE, cli
from sqsq.dlq import queue_counts
from sqsq.sqs import dead_letter_name
from sqsq.status import collect
from tests.conftest import QUICKSTART, ROOT

#: Longest a test waits for what it expects to become true, seconds.
WAIT_S = 60.0


def _invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def _status_json(*args: str) -> tuple[dict[str, Any], Result]:
    result = _invoke("status", QUICKSTART, "--json", *args)
    return json.loads(result.stdout), result


def _queue(report: dict[str, Any], logical: str) -> dict[str, Any]:
    return next(q for q in report["queues"] if q["queue"] == logical)


def _depth(app: sqsq.App, name: str) -> tuple[int, int]:
    return queue_counts(app.clients.sync("sqs"), app.directory.url(name))


def test_status_lists_two_running_workers(quickstart: sqsq.App, worker: Any) -> None:
    first = worker.start(QUICKSTART, "-c", "2", SQSQ_HEARTBEAT_INTERVAL_S="1")
    second = worker.start(QUICKSTART, "-c", "3", SQSQ_HEARTBEAT_INTERVAL_S="1")
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        report, result = _status_json()
        if len(report["workers"]) == 2:
            break
        time.sleep(0.2)
    assert result.exit_code == 0, result.output
    by_pid = {w["pid"]: w for w in report["workers"]}
    assert set(by_pid) == {first.pid, second.pid}
    assert (by_pid[first.pid]["concurrency"], by_pid[second.pid]["concurrency"]) == (2, 3)
    assert by_pid[first.pid]["queues"] == sorted(
        quickstart.queue_name(q) for q in quickstart.queues()
    )
    assert all(w["last_seen"] <= report["taken_at"] + 1 for w in report["workers"])
    table = _invoke("status", QUICKSTART)  # the human view names both
    assert table.exit_code == 0, table.output
    assert "workers alive: 2" in table.stdout
    for process in (first, second):
        assert f":{process.pid}" in table.stdout
    # a container's own health check: only the workers on its host count
    here, result = _status_json("--host", os.uname().nodename, "--min-workers", "2")
    assert result.exit_code == 0 and len(here["workers"]) == 2, result.output
    elsewhere = _invoke("status", QUICKSTART, "--host", "elsewhere", "--min-workers", "1")
    assert elsewhere.exit_code == EXIT_FAILURE
    assert "0 worker(s) alive < --min-workers 1" in elsewhere.stderr


def test_a_backlog_shows_its_depth_and_says_why_its_age_is_unknown(
    quickstart: sqsq.App,
) -> None:
    from examples.quickstart.app import charge

    charge.delay_many([({"order_id": f"o-{i}", "cents": 5},) for i in range(25)])
    charge.apply_async(({"order_id": "later", "cents": 5},), countdown=600)
    report, result = _status_json("--max-age", "1")
    assert result.exit_code == 0, result.output  # an unknown age is not a breach
    default = _queue(report, "default")
    assert (default["visible"], default["in_flight"], default["delayed"]) == (25, 0, 1)
    # moto's CloudWatch has no SQS metrics: the age is unknown, and said why
    assert default["age_s"] is None
    assert "CloudWatch" in default["age_note"]
    assert report["unchecked"] and "--max-age not checked" in result.stderr
    assert _queue(report, "emails")["visible"] == 0


def test_failures_are_grouped_from_the_dlqs_which_keep_them(
    quickstart: sqsq.App, worker: Any
) -> None:
    from examples.quickstart.app import charge, refund

    for i in range(3):
        refund.delay(f"o-{i}")
    for i in range(2):
        charge.delay({"order_id": f"z-{i}", "cents": 0})  # ValueError
    done = worker.run(QUICKSTART)
    assert done.returncode == 0, done.stderr
    found = collect(quickstart)
    groups = {(g.task.rsplit(".", 1)[-1], g.error.rsplit(".", 1)[-1]): g for g in found.failures}
    assert {k: g.count for k, g in groups.items()} == {
        ("refund", "RuntimeError"): 3,
        ("charge", "ValueError"): 2,
    }
    assert groups["refund", "RuntimeError"].latest_s < found.window_s
    dlq = dead_letter_name(quickstart.queue_name("default"))
    assert next(q for q in found.queues if q.queue == "default").dlq_depth == 5
    assert _depth(quickstart, dlq) == (5, 0)  # read, and released again: nothing consumed
    assert found.failures_note is None
    sampled = collect(quickstart, failure_sample=2)
    assert sum(g.count for g in sampled.failures) == 2
    assert sampled.failures_note == f"sampled 2 of 5 in {dlq}"
    older = collect(quickstart, window_s=0)  # every failure is older than no time at all
    assert older.failures == []


def test_thresholds_exit_1_and_name_what_failed(quickstart: sqsq.App, worker: Any) -> None:
    from examples.quickstart.app import refund

    refund.delay("o-1")
    assert worker.run(QUICKSTART).returncode == 0
    broken = _invoke("status", QUICKSTART, "--min-workers", "1", "--max-dlq", "0")
    assert broken.exit_code == EXIT_FAILURE, broken.output
    assert "Unhealthy: 0 worker(s) alive < --min-workers 1" in broken.stderr
    assert "-dlq: 1 message(s) > --max-dlq 0" in broken.stderr
    report, healthy = _status_json("--min-workers", "0", "--max-dlq", "1")
    assert healthy.exit_code == 0, healthy.output
    assert report["breaches"] == []
    as_json, result = _status_json("--max-dlq", "0")
    assert result.exit_code == EXIT_FAILURE
    assert len(as_json["breaches"]) == 1


def test_the_requests_one_status_call_costs(quickstart: sqsq.App) -> None:
    """Counted by the App's botocore ``before-send`` hook (``clients.counter``)."""
    names = [quickstart.queue_name(q) for q in quickstart.queues()]
    queues = len(names)
    for name in names:  # as in a new process
        quickstart.directory.forget(name)
        quickstart.directory.forget(dead_letter_name(name))
    first = collect(quickstart)
    assert first.requests["sqs.GetQueueUrl"] == 2 * queues  # once per process
    again = collect(quickstart)
    assert again.requests == {
        "sqs.GetQueueAttributes": 2 * queues,  # each queue and each DLQ (no batch form)
        "dynamodb.Query": 1,  # the heartbeats
        "cloudwatch.GetMetricData": 1,  # every queue's age in one call
    }


def test_revoke_writes_revocations_that_workers_honour(quickstart: sqsq.App, worker: Any) -> None:
    from examples.quickstart.app import charge

    revoked = [charge.delay({"order_id": f"r-{i}", "cents": 5}) for i in range(2)]
    kept = charge.delay({"order_id": "k", "cents": 5})
    result = _invoke("revoke", QUICKSTART, *(r.id for r in revoked), revoked[0].id)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"revoked {r.id}" for r in revoked]
    assert worker.run(QUICKSTART).returncode == 0
    assert [r.state for r in revoked] == [sqsq.State.REVOKED] * 2
    assert kept.state is sqsq.State.SUCCESS


def test_purge_asks_first_then_empties_the_queue_or_its_dlq(
    quickstart: sqsq.App, worker: Any
) -> None:
    from examples.quickstart.app import charge, refund

    name = quickstart.queue_name("default")
    refund.delay("o-1")
    assert worker.run(QUICKSTART).returncode == 0
    for i in range(3):
        charge.delay({"order_id": f"p-{i}", "cents": 5})
    declined = _invoke("purge", QUICKSTART, "default", input="n\n")
    assert declined.exit_code != 0
    assert "Delete all 3 message(s) in " + name in declined.output
    assert _depth(quickstart, name) == (3, 0)
    purged = _invoke("purge", QUICKSTART, "default", "--yes")
    assert purged.exit_code == 0, purged.output
    assert "60 s" in purged.stdout
    assert _depth(quickstart, name) == (0, 0)
    assert _depth(quickstart, dead_letter_name(name)) == (1, 0)  # the DLQ is its own
    with_flag = _invoke("purge", QUICKSTART, "default", "--dlq", "--yes")
    assert with_flag.exit_code == 0, with_flag.output
    assert f"purged {dead_letter_name(name)}" in with_flag.stdout
    assert _depth(quickstart, dead_letter_name(name)) == (0, 0)
    # by its physical name; a second purge within 60 s is refused (moto as SQS)
    again = _invoke("purge", QUICKSTART, dead_letter_name(name), "--yes")
    _assert_one_line_error(again, EXIT_AWS, "PurgeQueueInProgress", "60 s")


def _assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("command", ["status", "purge"])
def test_an_unknown_app_is_one_line(command: str) -> None:
    extra = ["default", "--yes"] if command == "purge" else []
    result = _invoke(command, "no_such_module:app", *extra)
    _assert_one_line_error(result, EXIT_USAGE, "no_such_module")


def test_missing_resources_are_one_line(local_aws: Any) -> None:
    result = _invoke("status", QUICKSTART)
    _assert_one_line_error(result, EXIT_USAGE, "does not exist", "sqsq resources create")


def test_an_unreachable_endpoint_is_one_line() -> None:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SQSQ_ENDPOINT_URL": "http://127.0.0.1:9",
        "SQSQ_MAX_ATTEMPTS": "1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "sqsq", "status", QUICKSTART],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_AWS, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert "cannot reach AWS" in lines[0]


def _watching(*args: str, **environment: str) -> subprocess.Popen[str]:
    """``sqsq status QUICKSTART --watch ARGS`` in a process, drawn as on a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "sqsq", "status", QUICKSTART, "--watch", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TTY_COMPATIBLE": "1",  # rich draws as on a terminal
            "TTY_INTERACTIVE": "1",
            **environment,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_watch_quits_on_a_second_ctrl_c_while_aws_stalls() -> None:
    """An endpoint that accepts connections and never answers: the first Ctrl-C waits
    for the reading under way (botocore's 60 s read timeout), the second quits at once
    (exit 130) instead of waiting for the reading's threads."""
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(64)  # never accepted: requests are sent, no answer comes
        process = _watching(
            SQSQ_ENDPOINT_URL=f"http://127.0.0.1:{stalled.getsockname()[1]}",
            SQSQ_MAX_ATTEMPTS="1",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
        )
        try:
            readable, _, _ = select.select([stalled], [], [], 60)  # a connection waits
            assert readable, f"no request came: {process.poll()}"
            process.send_signal(signal.SIGINT)
            time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=20) == 128 + signal.SIGINT
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()


def test_watch_redraws_until_ctrl_c(quickstart: sqsq.App) -> None:
    process = _watching("--interval", "1")
    try:
        assert process.stdout is not None
        drawn = 0
        while drawn < 2:  # two redraws of the whole view
            line = process.stdout.readline()
            assert line, f"exited early: {process.wait()} {process.stderr.read()}"  # type: ignore[union-attr]
            drawn += "quickstart: queues" in line
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"still running 30 s after Ctrl-C\n{stdout[-3000:]}\n{stderr}"
            ) from None
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
