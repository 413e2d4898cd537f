"""``sqsq dev``: embedded endpoint + resources + worker in one process, and a second
shell that sends to it with the printed ``export`` lines."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = "examples.quickstart.app:app"


@pytest.mark.slow
def test_dev_prints_an_endpoint_that_a_second_shell_can_send_to(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQSQ_", "AWS_"))}
    env["PYTHONPATH"] = str(ROOT)
    dev = subprocess.Popen(
        [sys.executable, "-m", "sqsq", "dev", APP],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dev.stderr is not None
        exports: dict[str, str] = {}
        example = ""
        for line in dev.stderr:
            if line.strip().startswith("export "):
                name, _, value = line.strip().removeprefix("export ").partition("=")
                exports[name] = value
            if line.strip().startswith("sqsq send "):
                example = line.strip()
            if "consuming" in line:  # the worker is up
                break
        assert exports["SQSQ_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        # plain boto3 and the AWS CLI in a second shell find the endpoint too
        assert exports["AWS_ENDPOINT_URL"] == exports["SQSQ_ENDPOINT_URL"]
        plain = {k: v for k, v in exports.items() if k != "SQSQ_ENDPOINT_URL"}
        listed = subprocess.run(
            [sys.executable, "-c", "import boto3; print(boto3.client('sqs').list_queues())"],
            env={**env, **plain},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert "quickstart-default" in listed.stdout
        # the printed example command works as printed
        command = shlex.split(example)
        assert command[:2] == ["sqsq", "send"], example
        ran = subprocess.run(
            [sys.executable, "-m", "sqsq", *command[1:]],
            cwd=tmp_path,
            env={**env, **exports},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr
        assert "SUCCESS" in ran.stdout
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "sqsq",
                "send",
                APP,
                "examples.quickstart.app.charge",
                "--args",
                '[{"order_id": "o-1", "cents": 250}]',
                "--wait",
                "30",
            ],
            cwd=tmp_path,
            env={**env, **exports},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        assert "SUCCESS" in sent.stdout and '"charged": 250' in sent.stdout
    finally:
        dev.send_signal(signal.SIGTERM)
        _, rest = dev.communicate(timeout=60)
    assert dev.returncode == 0, rest
    assert "succeeded=2" in rest


@pytest.mark.slow
def test_dev_fires_the_apps_schedules_on_time(tmp_path: Path) -> None:
    """The embedded endpoint stores schedules but never fires them; ``sqsq dev`` does
    (a ``rate(1 minute)`` schedule fires at the next whole minute)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQSQ_", "AWS_"))}
    env["PYTHONPATH"] = str(ROOT)
    dev = subprocess.Popen(
        [sys.executable, "-m", "sqsq", "dev", "tests.apps.periodic:app"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert dev.stderr is not None
        for line in dev.stderr:
            seen.append(line)
            if "task tick[" in line and "SUCCESS" in line:  # dev's worker ran the fire
                break
        fired = [line for line in seen if "fired tick" in line]
        assert len(fired) == 1, "".join(seen)
    finally:
        dev.send_signal(signal.SIGTERM)
        _, rest = dev.communicate(timeout=60)
    assert dev.returncode == 0, rest
