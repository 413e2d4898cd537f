"""Packaging: the Lambda requirements stay a subset of the package's dependencies, and
the Lambda handler path imports nothing outside them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements: list[str]) -> dict[str, str]:
    out = {}
    for line in requirements:
        line = line.split("#", 1)[0].strip()
        if line:
            name = line.split(">", 1)[0].split("<", 1)[0].split("=", 1)[0].split("[", 1)[0].strip()
            out[name.lower()] = line
    return out


def test_lambda_requirements_are_package_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    package = _names(project["dependencies"])
    lambda_reqs = _names((ROOT / "requirements.txt").read_text().splitlines())
    assert lambda_reqs, "requirements.txt is empty"
    for name, line in lambda_reqs.items():
        assert package.get(name) == line, f"{line!r} differs from pyproject's {package.get(name)!r}"


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
    """pip resolves at once only when every allowed boto3 fits the botocore window
    aiobotocore allows: boto3 X needs botocore >= X, so boto3's upper bound must
    not pass botocore's (else pip backtracks through boto3 releases)."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {Requirement(d).name: Requirement(d) for d in project["dependencies"]}
    botocore = next(
        Requirement(r) for r in requires("aiobotocore") or [] if r.startswith("botocore")
    )
    boto3 = deps["boto3"]
    assert deps["aiobotocore"].specifier.contains(version("aiobotocore"))
    upper = {Version(s.version) for s in botocore.specifier if s.operator == "<"}
    boto3_upper = {Version(s.version) for s in boto3.specifier if s.operator == "<"}
    assert boto3_upper and boto3_upper <= upper, (boto3, botocore)
    assert boto3.specifier.contains(version("boto3"))


def test_local_extra_has_no_heavy_server_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    local = " ".join(project["optional-dependencies"]["local"])
    assert "moto[" not in local  # moto[server] brings cfn-lint, sympy, docker, …
    for needed in ("moto", "flask", "flask-cors", "werkzeug"):
        assert needed in local
