"""Shared fixtures: the quick-start app on a clean local endpoint, and a factory
that runs ``sqsq worker`` as a real subprocess.

The endpoint fixtures (``sqsq_endpoint``, ``local_aws``) come from the
``sqsq.testing`` plugin, which the package registers with pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = "examples.quickstart.app:app"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Most workers ``-n auto`` starts (pytest-xdist, in addopts): the tests mostly wait on
#: queues and worker subprocesses, so a few run side by side even on 2 cores.
MAX_TEST_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Each xdist worker starts its own embedded moto endpoint. An external endpoint
    (``SQSQ_TEST_ENDPOINT_URL[_<SERVICE>]``) is one shared account whose resources the
    kit cleans between tests, and the test apps have fixed names: run serially there."""
    from sqsq.testing import external_endpoints

    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    if external_endpoints() is not None:
        return 0
    return min(MAX_TEST_WORKERS, os.cpu_count() or 1)


@pytest.fixture
def quickstart(local_aws: Any) -> Iterator[Any]:
    """The quick-start App with its queues and table created on a clean endpoint."""
    from examples.quickstart.app import app
    from sqsq.resources import apply

    apply(app)
    yield app


@pytest.fixture
def hostile(local_aws: Any) -> Any:
    """The hostile-input test app (tests/apps/hostile.py) with its queues and table."""
    from sqsq.resources import apply
    from tests.apps.hostile import app

    apply(app)
    return app


class WorkerFactory:
    """Runs ``python -m sqsq worker`` in a subprocess (cwd: the repository root)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[str]] = []

    def command(self, app: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "sqsq", "worker", app, *args]

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(extra)
        return env

    def run(
        self, app: str = QUICKSTART, *args: str, timeout: float = 90, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sqsq worker APP --burst ARGS`` to completion."""
        return subprocess.run(
            self.command(app, "--burst", *args),
            cwd=self.tmp_path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, app: str = QUICKSTART, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start ``sqsq worker APP ARGS``; stopped (SIGKILL) at teardown if still running.

        A 2 s long poll unless ``--wait-time`` is given: at SIGTERM the worker lets
        its open poll return (it cannot be withdrawn from SQS), so this keeps
        shutdowns short.
        """
        if "--wait-time" not in args:
            args = (*args, "--wait-time", "2")
        process = subprocess.Popen(
            self.command(app, *args),
            cwd=self.tmp_path,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


@pytest.fixture
def worker(tmp_path: Path, local_aws: Any) -> Iterator[WorkerFactory]:
    """Factory for real worker processes: ``worker.run(...)``, ``worker.start(...)``."""
    factory = WorkerFactory(tmp_path)
    yield factory
    factory.close()
