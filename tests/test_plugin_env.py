"""The pytest plugin ignores the shell: pytest run in a subprocess whose environment
holds ``sqsq dev``'s export lines (and more ``SQSQ_*`` settings) pointing at a port
where nothing listens; its tests still talk to their own embedded endpoint, and see
the shell's variables again once the session ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

#: Where ``sqsq dev``'s exports would point: the discard port, nothing listens there.
NOWHERE = "http://127.0.0.1:9"

POLLUTION = {
    "SQSQ_ENDPOINT_URL": NOWHERE,
    "AWS_ENDPOINT_URL": NOWHERE,
    "AWS_ENDPOINT_URL_SQS": NOWHERE,
    "AWS_ENDPOINT_URL_DYNAMODB": NOWHERE,
    "SQSQ_TABLE_NAME": "someone-elses-table",
    "SQSQ_QUEUE_PREFIX": "elsewhere-",
    "SQSQ_MAX_ATTEMPTS": "1",
    "SQSQ_UNRELATED": "kept",  # not a setting: left alone
}

#: Run inside the subprocess: a module-level App (built at import, before any fixture),
#: a round trip through SQS and DynamoDB, and what the environment held.
TEST_MODULE = textwrap.dedent(
    """
    import os

    import boto3
    import sqsq
    import sqsq.resources

    app = sqsq.App("plugenv")  # at import: reads the environment as it is then


    @app.task
    def add(x: int, y: int) -> int:
        return x + y


    def test_without_the_fixtures_botocore_variables_stay():
        # first in the file: before the session's endpoint starts
        assert os.environ["AWS_ENDPOINT_URL_SQS"] == "http://127.0.0.1:9"
        assert "SQSQ_ENDPOINT_URL" not in os.environ


    def test_the_tests_use_their_own_endpoint(sqsq_endpoint):
        assert app.settings.endpoint_url is None
        assert app.table_name == "plugenv-sqsq"
        assert os.environ["AWS_ENDPOINT_URL"] == sqsq_endpoint.url
        for name in ("SQSQ_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "SQSQ_TABLE_NAME"):
            assert name not in os.environ, name
        assert os.environ["SQSQ_UNRELATED"] == "kept"
        sqsq.resources.apply(app)
        result = add.delay(2, 3)
        sqs = boto3.client("sqs")  # botocore's own variables: the plugin's endpoint
        url = sqs.get_queue_url(QueueName=app.queue_name("default"))["QueueUrl"]
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
        assert len(messages) == 1
        assert result.state is sqsq.State.PENDING  # DynamoDB answered (its table is here)
        fresh = sqsq.App("plugenv2")  # built during the test: the same
        assert fresh.settings.endpoint_url is None and fresh.settings.max_attempts == 5


    def test_a_test_may_still_set_a_variable(monkeypatch):
        monkeypatch.setenv("SQSQ_TABLE_NAME", "mine")
        assert sqsq.App("plugenv3").table_name == "mine"
    """
)


def run_pytest(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_polluted.py").write_text(TEST_MODULE)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SQSQ_", "AWS_ENDPOINT_URL", "PYTEST_"))
    }
    env.update(POLLUTION, **extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-q",
            "-o",
            "addopts=",
            str(tmp_path / "test_polluted.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_polluted_shell_does_not_reach_the_tests(tmp_path: Path) -> None:
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_keep_env_keeps_the_shell(tmp_path: Path) -> None:
    """The opt-out: with SQSQ_TEST_KEEP_ENV=1 the module-level App reads the shell's
    endpoint — the first two tests fail on it (and show that the checks above can fail)."""
    done = run_pytest(tmp_path, SQSQ_TEST_KEEP_ENV="1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 failed, 1 passed" in done.stdout, done.stdout


def test_the_shell_comes_back_after_the_session() -> None:
    """pytest_unconfigure puts back what pytest_configure cleared (in-process); botocore's
    endpoint variables are not cleared at configure."""
    import pytest as _pytest

    from sqsq import testing

    saved = dict(os.environ)
    os.environ["SQSQ_REGION_NAME"] = "eu-west-1"
    os.environ["AWS_ENDPOINT_URL_S3"] = NOWHERE
    try:
        config = _pytest.Config.__new__(_pytest.Config)
        testing.pytest_configure(config)
        assert "SQSQ_REGION_NAME" not in os.environ
        # botocore's variables: only while sqsq_endpoint is active
        assert os.environ["AWS_ENDPOINT_URL_S3"] == NOWHERE
        testing.pytest_unconfigure(config)
        assert os.environ["SQSQ_REGION_NAME"] == "eu-west-1"
        assert os.environ["AWS_ENDPOINT_URL_S3"] == NOWHERE
    finally:
        os.environ.clear()
        os.environ.update(saved)
