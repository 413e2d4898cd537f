"""Shared fixtures: the quick-start app on a clean local endpoint, and a factory
that runs ``sqsq worker`` as a real subprocess.

The endpoint fixtures (``sqsq_endpoint``, ``local_aws``) come from the
``sqsq.testing`` plugin, which the package registers with pytest.

Property tests (hypothesis) run under the ``ci`` profile: random inputs every run,
no deadline (a loaded machine is not a failure), ``print_blob`` (a failure prints its
``@reproduce_failure``). Each session draws one seed, shown in the header and in the
report of every failed test of a module that uses hypothesis; ``--hypothesis-seed=N``
replays a session's inputs. ``SQSQ_HYPOTHESIS_EXAMPLES=N`` runs at least N examples
per property (``tests.helpers.examples``).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = "examples.quickstart.app:app"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import examples  # noqa: E402  (needs ROOT on sys.path)

#: Most workers ``-n auto`` starts (pytest-xdist, in addopts): the tests mostly wait on
#: queues and worker subprocesses, so a few run side by side even on 2 cores.
MAX_TEST_WORKERS = 4

settings.register_profile(
    "ci", max_examples=examples(100), deadline=None, print_blob=True, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: Several independent external endpoints, one per xdist worker (``.ci/conformance``
#: starts them): shards separated by spaces, each ``URL`` (every service) or
#: ``URL,DYNAMODB_URL``. Worker ``gwN`` runs on shard N, a serial run on shard 0.
SHARDS_VARIABLE = "SQSQ_TEST_ENDPOINT_SHARDS"


def endpoint_shards() -> list[tuple[str, str | None]]:
    """The shards of ``SQSQ_TEST_ENDPOINT_SHARDS``: (URL, DynamoDB URL or None) each."""
    shards = []
    for shard in os.environ.get(SHARDS_VARIABLE, "").split():
        url, _, dynamodb = shard.partition(",")
        shards.append((url, dynamodb or None))
    return shards


def use_endpoint_shard(config: pytest.Config) -> None:
    """Point this process at its own shard (``SQSQ_TEST_ENDPOINT_URL[_DYNAMODB]``),
    before anything reads them: the tests of an external endpoint share fixed queue and
    table names, and each test's reset deletes what the session's other tests made, so
    two xdist workers must never share one. Their worker subprocesses inherit it."""
    shards = endpoint_shards()
    if not shards:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if worker is None:  # the controller (it checks -n) or a serial run
        workers = getattr(config.option, "numprocesses", None) or 0
    if workers > len(shards):
        raise pytest.UsageError(
            f"{workers} xdist workers but {len(shards)} endpoint shards in {SHARDS_VARIABLE}:"
            " each worker needs its own (give -n auto or -n N with N <= the shards)"
        )
    url, dynamodb = shards[int(worker.removeprefix("gw")) if worker else 0]
    os.environ["SQSQ_TEST_ENDPOINT_URL"] = url
    if dynamodb is None:
        os.environ.pop("SQSQ_TEST_ENDPOINT_URL_DYNAMODB", None)
    else:
        os.environ["SQSQ_TEST_ENDPOINT_URL_DYNAMODB"] = dynamodb


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Point this process at its endpoint shard (:func:`use_endpoint_shard`). Draw the
    session's hypothesis seed unless ``--hypothesis-seed`` gave one, before
    hypothesis' plugin reads it. The controller's seed reaches pytest-xdist's workers
    through the environment they inherit (``SQSQ_HYPOTHESIS_SEED``)."""
    use_endpoint_shard(config)
    seed = config.getoption("hypothesis_seed", None) or os.environ.get("SQSQ_HYPOTHESIS_SEED")
    seed = seed or str(random.SystemRandom().randrange(2**32))
    config.option.hypothesis_seed = os.environ["SQSQ_HYPOTHESIS_SEED"] = seed


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed")
    return f"hypothesis seed {seed}: replay with --hypothesis-seed={seed}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    module = getattr(item, "module", None)
    if report.failed and module is not None and hasattr(module, "given"):
        seed = item.config.getoption("hypothesis_seed")
        report.sections.append(("hypothesis seed", f"{seed}: replay with --hypothesis-seed={seed}"))


#: The fixture through which a test reaches the AWS endpoint (directly or through
#: ``local_aws``, ``worker``, ``quickstart`` …).
ENDPOINT_FIXTURE = "sqsq_endpoint"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an external endpoint (the conformance pass, ``.ci/conformance``) run only the
    tests that reach it: a test whose fixtures never start ``sqsq_endpoint`` talks to
    no AWS endpoint (or starts its own moto server), so it ran already, identically, in
    the moto pass. ``SQSQ_TEST_ALL=1`` runs everything anyway."""
    from sqsq.testing import external_endpoints

    if external_endpoints() is None or os.environ.get("SQSQ_TEST_ALL") == "1":
        return
    kept = [item for item in items if ENDPOINT_FIXTURE in getattr(item, "fixturenames", ())]
    dropped = [item for item in items if item not in kept]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Each xdist worker starts its own embedded moto endpoint. An external endpoint
    (``SQSQ_TEST_ENDPOINT_URL[_<SERVICE>]``) is one shared account whose resources the
    kit cleans between tests, and the test apps have fixed names: run serially there,
    or one worker per shard of ``SQSQ_TEST_ENDPOINT_SHARDS``."""
    from sqsq.testing import external_endpoints

    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    if shards := endpoint_shards():
        return len(shards) if len(shards) > 1 else 0
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
