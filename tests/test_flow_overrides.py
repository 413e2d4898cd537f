"""``sqsq limits``: runtime overrides set from the command line, listed, cleared,
and picked up by a worker that is already running."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from click.testing import CliRunner, Result

import sqsq.cli.commands  # noqa: F401  (registers the commands)
from sqsq.cli import EXIT_USAGE, cli
from sqsq.local import LocalEndpoint
from tests.apps import flow

APP = "tests.apps.flow:app"
UNLIMITED = "tests.apps.flow.unlimited"


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_set_ls_clear(local_aws: LocalEndpoint) -> None:
    flow.setup()
    done = _invoke("limits", "set", APP, UNLIMITED, "50/s")
    assert done.exit_code == 0, done.output
    assert f"task {UNLIMITED}: 50/s" in done.output
    assert _invoke("limits", "set", APP, "--queue", "default", "2/m").exit_code == 0

    listed = _invoke("limits", "ls", APP).output.splitlines()
    assert any(line.split() == ["task", UNLIMITED, "-", "50/s"] for line in listed), listed
    assert any(line.split() == ["task", "tests.apps.flow.limited", "20/s", "-"] for line in listed)
    assert any(line.split() == ["queue", "default", "-", "2/m"] for line in listed), listed
    assert any(line.split() == ["queue", "metered", "10/s", "-"] for line in listed), listed

    assert "override cleared" in _invoke("limits", "clear", APP, UNLIMITED).output
    assert "had no override" in _invoke("limits", "clear", APP, UNLIMITED).output
    listed = _invoke("limits", "ls", APP).output.splitlines()
    assert any(line.split() == ["task", UNLIMITED, "-", "-"] for line in listed), listed


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("set", APP, UNLIMITED, "fast"), "rate_limit must be like"),
        (("set", APP, "tests.apps.flow.unlimted", "5/s"), "unlimited"),  # did you mean
        (("set", APP, "--queue", "nope", "5/s"), "not used by flowt"),
        (("set", APP, "--queue", "default", UNLIMITED, "5/s"), "with --queue, give no TASK"),
        (("set", APP), "give a RATE"),
        (("clear", APP), "give a TASK, or --queue QUEUE"),
    ],
)
def test_user_errors_are_one_line(
    local_aws: LocalEndpoint, args: tuple[str, ...], fragment: str
) -> None:
    flow.setup()
    done = _invoke("limits", *args)
    assert done.exit_code == EXIT_USAGE, done.output
    assert "Traceback" not in done.output
    assert fragment in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_running_worker_picks_up_an_override(worker: Any, local_aws: LocalEndpoint) -> None:
    """The unlimited task is never put back until an override limits it to 2/s: the
    running worker learns it with its revocation Query, and puts messages back."""
    app = flow.setup()
    # a limit's put-back is logged at DEBUG
    process = worker.start(APP, "-Q", "default", "--log-format", "json", "--log-level", "DEBUG")
    first = flow.unlimited.delay_many([(i,) for i in range(10)])
    for result in first:
        assert result.get(timeout=30) is not None
    assert _invoke("limits", "set", APP, UNLIMITED, "2/s").exit_code == 0
    time.sleep(app.settings.revocation_interval_s)  # older than one interval: refreshed
    second = flow.unlimited.delay_many([(i,) for i in range(10)])
    for result in second:
        assert result.get(timeout=60) is not None
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    waits = [r for r in records if "rate limit 2/s of tests.apps.flow.unlimited" in r["message"]]
    assert waits, stderr[-3000:]  # put back after the override, never before it
    summary = next(r for r in records if r.get("event") == "worker.stopped")
    assert summary["counters"]["succeeded"] == 20
    assert summary["counters"]["resent"] == len(waits)
