"""``sqsq package APP``: the Lambda function's deployment package, built without Docker.

``sam build`` copies the whole ``CodeUri`` directory and installs its
``requirements.txt`` for the machine it runs on, unless told to build in a
container (:mod:`.bundle`). This builds the .zip itself, holding exactly:

- the app's code: the top-level packages and modules of ``CodeUri``
  (:func:`~.bundle.code_root`) that importing the app loads — found by importing it
  in a fresh interpreter, so a project's tests, docs and benchmarks beside it stay
  out;
- sqsq: its source as installed here (the version the app was tested with);
- the handler's requirements (:data:`~.bundle.HANDLER_REQUIREMENTS`) and the app's
  own (``--requirements``), resolved **for the function's runtime and
  architecture** from binary wheels ("Working with .zip file archives for Python
  Lambda functions", section "Creating a .zip deployment package with native
  libraries")::

      pip install --platform manylinux2014_aarch64 --implementation cp
                  --python-version 3.13 --only-binary=:all: --target DIR

  Lambda's Python runtimes run on Amazon Linux 2023 (glibc 2.34), which runs
  ``manylinux2014`` (glibc 2.17) wheels; a requirement that has no such wheel fails
  here, not at import on AWS.

**Pins.** Each handler requirement, plus ``botocore`` and ``pydantic-core``, is
pinned to the version installed where the package is built: what ships is what the
app's tests ran against. boto3 is packed too by default (``sdk="bundle"``) although
the runtime has one: the runtime's copy changes when AWS updates the runtime, and
may be older than sqsq's floor (``boto3>=1.34``) or than the botocore your tests
used — AWS's own advice is to package the SDK for a function in production ("Lambda
runtimes", section "Runtime-included SDK versions"). ``sdk="runtime"`` leaves
boto3, botocore, s3transfer, jmespath and urllib3 out and uses the runtime's, for
the smallest package (it then fails at import on a runtime whose boto3 is older
than 1.34, which none of the supported ones ship).

**Layer** (``layer=``): sqsq and every installed requirement go under ``python/``
of a second .zip (Lambda puts a layer's ``python/`` on ``sys.path``: "Packaging
your layer content"), and the function's .zip holds only the app's code — a code
change uploads kilobytes. The function's template must then name the layer
(``sqsq infra --layer-uri``).

Measured for the quick-start app (``examples.quickstart.app``, Python 3.13, arm64):
see the Deploy guide.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigurationError
from .bundle import HANDLER_REQUIREMENTS, code_root, requirement_names

#: pip ``--platform`` of each Lambda architecture (Amazon Linux 2023 runs
#: manylinux2014 wheels).
PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
#: Distributions the Lambda Python runtimes include (boto3 and its dependencies),
#: left out with ``sdk="runtime"``. python-dateutil is kept: croniter needs it too.
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3")
#: Distributions pinned besides :data:`HANDLER_REQUIREMENTS`: those whose version
#: must match what the handler requirements were tested with.
PINNED_TOO = ("botocore", "pydantic-core")
#: Largest deployment package Lambda accepts unzipped, function and layers together
#: ("Lambda quotas": 250 MB).
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
#: Never copied from the app's code or sqsq's.
IGNORE = (".git", ".venv", ".cache", ".aws-sam", "__pycache__", "node_modules", "*.pyc")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same inputs make the same .zip

Sdk = Literal["bundle", "runtime"]


@dataclass(frozen=True)
class Artifact:
    """One .zip built: where, how many files, and its sizes in bytes."""

    path: Path
    files: int
    unzipped_bytes: int
    zipped_bytes: int

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.files} files, {_size(self.unzipped_bytes)} unzipped, "
            f"{_size(self.zipped_bytes)} zipped"
        )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def pins() -> list[str]:
    """``name==version`` of the handler's requirements as installed here."""
    pinned = []
    for name in (*HANDLER_REQUIREMENTS, *PINNED_TOO):
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


_FIND_MODULES = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps({n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}))
"""


def app_code(app_path: str, python: str | None = None) -> list[Path]:
    """The top-level packages and modules of the app's code root that importing the
    app loads (sqsq excluded), found in a fresh interpreter.

    Raises:
        ConfigurationError: the app cannot be imported.
    """
    root = code_root(app_path)
    module = app_path.partition(":")[0]
    done = subprocess.run(
        [python or sys.executable, "-c", _FIND_MODULES, module],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])},
        timeout=120,
    )
    if done.returncode != 0:
        raise ConfigurationError(f"cannot import {module}: {done.stderr.strip()[-2000:]}")
    found: set[Path] = set()
    for name, file in json.loads(done.stdout.splitlines()[-1]).items():
        top = name.partition(".")[0]
        if not file or top == "sqsq" or not Path(file).resolve().is_relative_to(root):
            continue
        if Path(file).resolve().relative_to(root).parts[0] not in (top, f"{top}.py"):
            continue  # not at the root's top: a virtualenv inside it (.venv/…/site-packages)
        package = root / top
        found.add(package if package.is_dir() else root / f"{top}.py")
    return sorted(found)


def install(
    requirements: Iterable[str],
    dest: Path,
    *,
    runtime: str,
    architecture: str,
    python: str | None = None,
) -> None:
    """``pip install --target dest`` of ``requirements``, binary wheels for the runtime
    (``python3.13``) and architecture (``arm64`` / ``x86_64``).

    Raises:
        ConfigurationError: the architecture or runtime is unknown, or pip failed (a
            requirement without a wheel for the target: pip's words quoted).
    """
    if architecture not in PLATFORMS:
        raise ConfigurationError(f"architecture {architecture!r}: one of {sorted(PLATFORMS)}")
    version = runtime.removeprefix("python")
    if not re.fullmatch(r"3\.\d+", version):
        raise ConfigurationError(f"runtime {runtime!r}: a Lambda Python runtime, e.g. python3.13")
    command = [
        *(python or sys.executable, "-m", "pip", "install", "--quiet", "--no-compile"),
        *("--disable-pip-version-check", "--target", str(dest)),
        *("--platform", PLATFORMS[architecture], "--implementation", "cp"),
        *("--python-version", version, "--only-binary=:all:", *requirements),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise ConfigurationError(
            f"pip could not install the function's requirements for {runtime} on "
            f"{architecture} (binary wheels only):\n{done.stderr.strip()[-3000:]}"
        )


def remove_distributions(site: Path, names: Iterable[str]) -> None:
    """Delete the files of installed distributions ``names`` (their ``RECORD``)."""
    wanted = {re.sub(r"[-_.]+", "_", name).lower() for name in names}
    for info in site.glob("*.dist-info"):
        if re.sub(r"[-_.]+", "_", info.name.partition("-")[0]).lower() in wanted:
            for line in (info / "RECORD").read_text().splitlines():
                path = site / line.partition(",")[0]
                if path.is_file() and path.resolve().is_relative_to(site.resolve()):
                    path.unlink()
            shutil.rmtree(info, ignore_errors=True)
    for directory in sorted(site.rglob("*"), reverse=True):  # emptied package directories
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _copy(source: Path, dest: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, dest / source.name, ignore=shutil.ignore_patterns(*IGNORE))
    else:
        shutil.copy2(source, dest / source.name)


def write_zip(tree: Path, out: Path) -> Artifact:
    """Zip ``tree``'s contents into ``out`` (deflated, sorted, fixed timestamps)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    size = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), _ZIP_TIME)
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            size += len(data)
            archive.writestr(info, data)
    return Artifact(out, len(files), size, out.stat().st_size)


def app_requirements(path: Path | None) -> list[str]:
    """The requirement lines of the app's own requirements file, less sqsq (packed
    from source) and options (``-r``, ``--index-url``: give pip's own config)."""
    if path is None:
        return []
    lines = []
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-") and requirement_names(text) != {"sqsq"}:
            lines.append(text)
    return lines


def package(
    app_path: str,
    out: Path,
    *,
    layer: Path | None = None,
    runtime: str,
    architecture: str,
    sdk: Sdk = "bundle",
    requirements: Path | None = None,
    python: str | None = None,
) -> list[Artifact]:
    """Build the Lambda deployment package of ``app_path`` (``module:attribute``).

    Args:
        out: the function's .zip.
        layer: a layer .zip to write sqsq and the requirements to (under
            ``python/``); ``out`` then holds the app's code only.
        runtime / architecture: the function's (``python3.13``, ``arm64``).
        sdk: ``"bundle"`` packs boto3 pinned to this environment's version;
            ``"runtime"`` uses the Lambda runtime's boto3 (:data:`RUNTIME_SDK`).
        requirements: the app's own requirements file (third-party packages its
            tasks import); a ``sqsq`` line is skipped.
        python: the interpreter to import the app and run pip with (default: this
            one).

    Returns:
        The function's artifact, then the layer's.

    Raises:
        ConfigurationError: the app cannot be imported, a requirement has no
            binary wheel for the target, or the package is over Lambda's 250 MB
            unzipped (:data:`MAX_UNZIPPED_BYTES`).
    """
    code = app_code(app_path, python)
    with tempfile.TemporaryDirectory(prefix="sqsq-package-") as tmp:
        function_dir = Path(tmp) / "function"
        site = Path(tmp) / "layer" / "python" if layer is not None else function_dir
        function_dir.mkdir()
        site.mkdir(parents=True, exist_ok=True)
        wanted = [*pins(), *app_requirements(requirements)]
        install(wanted, site, runtime=runtime, architecture=architecture, python=python)
        if sdk == "runtime":
            remove_distributions(site, RUNTIME_SDK)
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts: not run on Lambda
        _copy(Path(__file__).resolve().parents[1], site)  # sqsq
        for source in code:
            _copy(source, function_dir)
        built = [write_zip(function_dir, out)]
        if layer is not None:
            built.append(write_zip(site.parent, layer))
    total = sum(a.unzipped_bytes for a in built)
    if total > MAX_UNZIPPED_BYTES:
        raise ConfigurationError(
            f"the package is {total / 1e6:.0f} MB unzipped, over Lambda's 250 MB "
            "(MAX_UNZIPPED_BYTES, 'Lambda quotas'): use a container image"
        )
    return built


__all__ = [
    "PLATFORMS",
    "RUNTIME_SDK",
    "Artifact",
    "app_code",
    "install",
    "package",
    "pins",
    "remove_distributions",
    "write_zip",
]
