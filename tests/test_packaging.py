"""Packaging: the core dependencies are what a producer and the Lambda handler need, the
worker's stack is the ``worker`` extra, the Lambda requirements are the core, and the
Lambda handler path imports nothing outside them (tests/test_install_window.py installs
the core for real)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: What template.yaml's function installs (its CodeUri, infra/lambda).
LAMBDA_REQUIREMENTS = "infra/lambda/requirements.txt"


def _names(requirements: list[str]) -> dict[str, str]:
    out = {}
    for line in requirements:
        line = line.split("#", 1)[0].strip()
        if line:
            name = line.split(">", 1)[0].split("<", 1)[0].split("=", 1)[0].split("[", 1)[0].strip()
            out[name.lower()] = line
    return out


def _project() -> dict[str, Any]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])


def test_lambda_requirements_are_the_core_dependencies() -> None:
    """template.yaml's function installs exactly sqsq's core (what its handler imports),
    with pyproject's specifiers: no worker extra on Lambda."""
    from sqsq.deploy.bundle import HANDLER_REQUIREMENTS

    core = _names(_project()["dependencies"])
    lambda_reqs = _names((ROOT / LAMBDA_REQUIREMENTS).read_text().splitlines())
    assert lambda_reqs == core
    assert set(core) == set(HANDLER_REQUIREMENTS)


def test_the_worker_stack_is_the_worker_extra_only() -> None:
    """A core install (`pip install sqsq`) brings none of the worker's or the CLI's
    packages; `test` pulls the worker with the local endpoint, the event models and
    the documentation site's toolchain."""
    project = _project()
    extras = project["optional-dependencies"]
    worker = set(_names(extras["worker"]))
    assert {"aiobotocore", "click", "rich", "pebble", "python-json-logger", "pyyaml"} <= worker
    assert not (worker - {"boto3"}) & set(_names(project["dependencies"]))
    assert "sqsq[worker,local,events,docs]" in extras["test"]


def test_lambda_handler_imports_only_the_lambda_requirements() -> None:
    code = (
        "import sys\n"
        "from examples.quickstart.lambda_function import handler\n"
        "heavy = [m for m in ('aiobotocore', 'aiohttp', 'click', 'rich', 'pebble', "
        "'pythonjsonlogger', 'moto') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == ""


def test_boto3_is_pinned_to_aiobotocores_botocore_window() -> None:
    """pip resolves sqsq[worker] at once only when every boto3 the extra allows fits the
    botocore window aiobotocore allows: boto3 X needs botocore >= X, so the extra's
    boto3 upper bound must not pass botocore's (else pip backtracks through boto3
    releases); and that window lies inside the core's wide boto3 range."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement
    from packaging.version import Version

    project = _project()
    worker = {
        Requirement(d).name: Requirement(d) for d in project["optional-dependencies"]["worker"]
    }
    core = {Requirement(d).name: Requirement(d) for d in project["dependencies"]}
    botocore = next(
        Requirement(r) for r in requires("aiobotocore") or [] if r.startswith("botocore")
    )
    boto3 = worker["boto3"]
    assert worker["aiobotocore"].specifier.contains(version("aiobotocore"))
    upper = {Version(s.version) for s in botocore.specifier if s.operator == "<"}
    boto3_upper = {Version(s.version) for s in boto3.specifier if s.operator == "<"}
    assert boto3_upper and boto3_upper <= upper, (boto3, botocore)
    assert boto3.specifier.contains(version("boto3"))
    lower = [Version(s.version) for s in boto3.specifier if s.operator == ">="]
    assert lower and all(core["boto3"].specifier.contains(v) for v in lower), (boto3, core)


def test_local_extra_has_no_heavy_server_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    local = " ".join(project["optional-dependencies"]["local"])
    assert "moto[" not in local  # moto[server] brings cfn-lint, sympy, docker, …
    for needed in ("moto", "flask", "flask-cors", "werkzeug"):
        assert needed in local
