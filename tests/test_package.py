"""``sqsq package``: the Lambda deployment package built without Docker holds the app's
code, sqsq and the handler's requirements as binary wheels for the target runtime and
architecture; the host's imports and runs a task with nothing else on the path, and
an arm64 or x86_64 one holds no binary of the other architecture."""

from __future__ import annotations

import json
import platform
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

import sqsq.cli.deploy  # noqa: F401  (registers `sqsq package`)
from sqsq import State
from sqsq.cli import cli
from sqsq.deploy.package import RUNTIME_SDK, package
from sqsq.testing.lambda_esm import EventSourceMapping
from tests.helpers import cfn_lint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
APP = "examples.quickstart.app:app"
HOST_RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
HOST_ARCHITECTURE = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
#: ELF e_machine of each architecture ("System V ABI" processor supplements).
ELF_MACHINE = {"x86_64": 62, "arm64": 183}
WHEEL_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}

_IMPORT = """
import json, sys
sys.path[:0] = sys.argv[1:]
from examples.quickstart.app import app
import boto3, botocore, croniter, pydantic_core, sqsq, sqsq.aws_lambda
assert callable(app.lambda_handler)
print(json.dumps([m.__file__ for m in (boto3, botocore, croniter, pydantic_core, sqsq)]))
"""


def unzip(artifact: Path, dest: Path) -> Path:
    with zipfile.ZipFile(artifact) as archive:
        archive.extractall(dest)
    return dest


def imported_from(*paths: Path) -> list[str]:
    """Import the handler module in ``python -I -S``: only ``paths`` and the standard
    library on ``sys.path``; the files the handler's dependencies came from."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _IMPORT, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_the_host_package_imports_and_runs_a_task_with_nothing_else(
    quickstart: Any, tmp_path: Path
) -> None:
    from examples.quickstart.app import Order, charge

    out = tmp_path / "function.zip"
    command = ["package", APP, "--out", str(out), "--runtime", HOST_RUNTIME]
    command += ["--architecture", HOST_ARCHITECTURE]
    done = CliRunner().invoke(cli, command, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "MB unzipped" in done.output and "MB zipped" in done.output
    function = unzip(out, tmp_path / "function")
    installed = set()
    for record in function.glob("*.dist-info/RECORD"):
        installed |= {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()}
    assert {p.name for p in function.iterdir()} - installed == {"sqsq", "examples"}
    assert not list(function.rglob("__pycache__")) and not (function / "bin").exists()
    for file in imported_from(function):
        assert Path(file).is_relative_to(function), file
    result = charge.delay(Order(order_id="p-1", cents=250))

    with EventSourceMapping.from_template(
        ROOT / "template.yaml", code_dir=function, isolated=True
    ) as esm:
        invocations = esm.drain(until=lambda: result.state != State.PENDING, timeout_s=60)

    assert not any(i.error for i in invocations), [i.error for i in invocations]
    assert result.get(timeout=5) == {"order_id": "p-1", "charged": 250, "currency": "EUR"}


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int(struct.unpack("<H", header[18:20])[0])


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_the_wheels_are_for_the_target_architecture_and_runtime(
    architecture: str, tmp_path: Path
) -> None:
    (artifact,) = package(APP, tmp_path / "f.zip", runtime="python3.13", architecture=architecture)
    function = unzip(artifact.path, tmp_path / "function")

    tags = [
        line.removeprefix("Tag: ").split("-")
        for wheel in function.glob("*.dist-info/WHEEL")
        for line in wheel.read_text().splitlines()
        if line.startswith("Tag: ")
    ]
    assert tags
    binary = [t for t in tags if t[2] != "any"]
    assert binary, "pydantic-core is a binary wheel"
    for python, abi, platform_tag in tags:
        assert python in {"py3", "py2", "cp313"} or python.startswith("py2.py3"), python
        assert abi in {"none", "abi3", "cp313"}, abi
        if platform_tag != "any":
            assert platform_tag.startswith("manylinux"), platform_tag
            assert platform_tag.endswith(WHEEL_MACHINE[architecture]), platform_tag
    shared = list(function.rglob("*.so"))
    assert shared
    assert {elf_machine(so) for so in shared} == {ELF_MACHINE[architecture]}
    assert all("cpython-313" in so.name or "abi3" in so.name for so in shared), shared


def test_a_layer_holds_sqsq_and_the_requirements_and_the_runtime_sdk_can_be_left_out(
    tmp_path: Path,
) -> None:
    function_zip, layer_zip = package(
        APP,
        tmp_path / "function.zip",
        layer=tmp_path / "layer.zip",
        runtime=HOST_RUNTIME,
        architecture=HOST_ARCHITECTURE,
        sdk="runtime",
    )
    function = unzip(function_zip.path, tmp_path / "function")
    layer = unzip(layer_zip.path, tmp_path / "layer")

    assert {p.name for p in function.iterdir()} == {"examples"}
    assert {p.name for p in layer.iterdir()} == {"python"}  # Lambda's path for Python layers
    names = {p.name.partition("-")[0].lower() for p in (layer / "python").glob("*.dist-info")}
    assert {"pydantic", "pydantic_core", "pydantic_settings", "croniter"} <= names
    assert not names & set(RUNTIME_SDK)
    assert (layer / "python" / "sqsq" / "aws_lambda.py").is_file()
    assert function_zip.unzipped_bytes < 1_000_000 < layer_zip.unzipped_bytes
    # The runtime's boto3 (here this environment's, after the layer on the path): the
    # rest comes from the layer, as Lambda orders /var/task, /opt/python, the runtime's.
    runtime_site = Path(boto3.__file__).parents[1]
    files = imported_from(function, layer / "python", runtime_site)
    assert [Path(f).is_relative_to(layer) for f in files] == [False, False, True, True, True]


def test_infra_deploys_the_package_and_its_layer(tmp_path: Path) -> None:
    """``sqsq infra --code-uri function.zip --layer-uri layer.zip``: the function's
    CodeUri is the .zip (no requirements.txt to check: ``sqsq package`` resolved them)
    and it uses the layer the template declares for its runtime and architecture;
    cfn-lint finds nothing."""
    out = tmp_path / "template.yaml"
    command = ["infra", APP, "--target", "lambda", "--out", str(out)]
    command += ["--code-uri", "build/function.zip", "--layer-uri", "build/layer.zip"]
    done = CliRunner().invoke(cli, command, catch_exceptions=False)
    assert done.exit_code == 0, done.output

    resources = yaml.safe_load(out.read_text())["Resources"]
    function = resources["TaskFunction"]["Properties"]
    assert function["CodeUri"] == "build/function.zip"
    assert function["Layers"] == [{"Ref": "SqsqLayer"}]
    layer = resources["SqsqLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "build/layer.zip"
    assert layer["Properties"]["CompatibleRuntimes"] == [function["Runtime"]]
    assert layer["Properties"]["CompatibleArchitectures"] == function["Architectures"]
    linted = cfn_lint(out)
    assert linted.returncode == 0, linted.stdout + linted.stderr
