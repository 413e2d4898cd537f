"""A core install (``pip install sqsq``) works with any boto3 from the lowest release
pyproject.toml allows to the newest, and brings none of the worker's stack.

For each boto3 a fresh virtual environment gets sqsq's wheel (built from this
checkout) with its declared core dependencies, resolved by pip from the package index
(pip's cache makes the second run fast). In it, a real producer enqueues a task on
this test's moto endpoint and reads the message back with that boto3; the async API
and the ``sqsq`` console script say which extra they need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: What sqsq[worker] adds, and aiohttp (aiobotocore's HTTP client): none of it may come
#: with the core.
WORKER_STACK = ("aiobotocore", "aiohttp", "click", "rich", "pebble", "python-json-logger", "pyyaml")
PIP_TIMEOUT_S = 600

pytestmark = pytest.mark.slow

APP = """
import sqsq

app = sqsq.App("window")


@app.task
def add(x: int, y: int) -> int:
    return x + y
"""

PRODUCER = r"""
import asyncio, importlib.metadata as md, json, sys
import boto3, botocore
import sqsq
from windowapp import add, app

installed = []
for name in sys.argv[1:]:
    try:
        md.distribution(name)
        installed.append(name)
    except md.PackageNotFoundError:
        pass
result = add.delay(2, 3)
sqs = app.clients.sync("sqs")
url = sqs.get_queue_url(QueueName=app.queue_name("default"))["QueueUrl"]
messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
async_errors = []
for call in (lambda: add.adelay(1, 1), lambda: result.aget(timeout=1)):
    try:
        asyncio.run(call())
        async_errors.append(None)
    except sqsq.ConfigurationError as exc:
        async_errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps({
    "boto3": boto3.__version__,
    "botocore": botocore.__version__,
    "installed": installed,
    "id": result.id,
    "state": result.state.value,
    "bodies": [json.loads(m["Body"]) for m in messages.get("Messages", [])],
    "async_errors": async_errors,
}))
"""


def _lowest_boto3() -> str:
    """The lowest boto3 pyproject.toml's core dependencies allow (``>=X``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    boto3 = next(Requirement(d) for d in project["dependencies"] if d.startswith("boto3"))
    (lower,) = [s.version for s in boto3.specifier if s.operator == ">="]
    return lower


def _pip(python: Path, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
    )


@pytest.fixture(scope="module", params=["lowest", "newest"])
def core_install(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """``("lowest"|"newest", python)``: the python of a fresh environment holding sqsq's core with the lowest boto3 it
    allows (and that boto3's own botocore), or with the newest boto3 there is. One per
    parameter, so that xdist workers build them side by side."""
    base = tmp_path_factory.mktemp(f"install-{request.param}")
    _pip(Path(sys.executable), "wheel", "--no-deps", "-w", str(base / "dist"), str(ROOT))
    (wheel,) = (base / "dist").glob("sqsq-*.whl")
    lowest = _lowest_boto3()
    boto3 = {
        "lowest": [f"boto3=={lowest}", f"botocore=={lowest}"],
        "newest": ["--upgrade", "boto3", "botocore"],
    }[request.param]
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=120)
    python = base / "venv" / "bin" / "python"
    _pip(python, "install", str(wheel), *boto3)
    return request.param, python


def test_a_core_install_enqueues_with_boto3_across_its_window(
    core_install: tuple[str, Path], local_aws: Any, tmp_path: Path
) -> None:
    boto3, python = core_install
    (tmp_path / "windowapp.py").write_text(APP)
    sys.path.insert(0, str(tmp_path))
    try:
        from windowapp import app  # type: ignore[import-not-found]

        from sqsq.resources import apply

        apply(app)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("windowapp", None)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [str(python), "-c", PRODUCER, *WORKER_STACK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)

    if boto3 == "lowest":
        lowest = Version(_lowest_boto3())
        assert Version(out["boto3"]) == Version(out["botocore"]) == lowest
    assert out["installed"] == [], f"a core install brought {out['installed']}"
    (body,) = out["bodies"]
    assert body["id"] == out["id"]
    assert body["task"] == "windowapp.add" and body["args"] == [2, 3]
    assert out["state"] == "PENDING"
    for error in out["async_errors"]:  # adelay, aget
        assert error.startswith("MissingExtra: the async API (adelay, aget, the worker)")
        assert error.endswith("pip install 'sqsq[worker]'")

    script = subprocess.run(
        [str(python.parent / "sqsq"), "worker", "windowapp:app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 2
    assert script.stderr.startswith("Error: the sqsq command line needs sqsq[worker]")
    assert "pip install 'sqsq[worker]'" in script.stderr
    assert "Traceback" not in script.stderr + script.stdout
