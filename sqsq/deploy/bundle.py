"""What ``sam build`` packs for the function: ``CodeUri`` and its ``requirements.txt``.

SAM resolves ``CodeUri`` against the template's own directory and, for a Python
function, copies that whole directory (less caches such as ``.git`` and
``__pycache__``) and installs the ``requirements.txt`` found there ("Building Python
Lambda functions with AWS SAM"). So:

- ``CodeUri`` is the directory the app's top-level package is imported from (the
  ``sys.path`` entry holding ``examples/`` for ``examples.quickstart.app``), written
  relative to the directory of ``--out`` — the same template works wherever it is
  written, and ``sam build`` never packs a directory of YAML files only. Where that
  directory holds more than the function's code (a project's tests, docs,
  benchmarks), give ``--code-uri`` a directory of its own holding only the app's
  top-level package and ``requirements.txt``: sqsq's own ``template.yaml`` uses
  ``infra/lambda``, whose ``sqsq`` and ``examples`` are links into the repository
  (``sam build`` copies what they point to);
- the app's module must be under ``CodeUri`` (else the handler cannot import on
  Lambda), and its ``requirements.txt`` must name what the handler imports:
  ``sqsq`` itself, or — where the code directory holds sqsq's source, as in
  sqsq's own repository — sqsq's core dependencies (:data:`HANDLER_REQUIREMENTS`;
  the handler needs no ``sqsq[worker]``).
  A missing file or name is a :class:`~sqsq.errors.ConfigurationError` at
  generation time, not a ``ModuleNotFoundError`` on AWS.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from ..errors import ConfigurationError

#: What the Lambda handler imports besides the standard library and the app:
#: the distributions of sqsq's core that its handler path loads (boto3 and botocore
#: for AWS, pydantic for envelopes and settings, croniter for schedule expressions).
HANDLER_REQUIREMENTS = ("boto3", "pydantic", "pydantic-settings", "croniter")
REQUIREMENTS_FILE = "requirements.txt"

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def code_root(app_path: str) -> Path:
    """The ``sys.path`` entry the app's top-level package is imported from.

    Raises:
        ConfigurationError: the module cannot be imported or has no file.
    """
    module_name = app_path.partition(":")[0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name}: {exc}") from exc
    if not getattr(module, "__file__", None):
        raise ConfigurationError(f"{module_name} has no file to pack into a Lambda bundle")
    path = Path(str(module.__file__)).resolve()
    if path.name == "__init__.py":
        path = path.parent
    return path.parents[len(module_name.split(".")) - 1]


def code_uri(app_path: str, out: Path | None) -> str:
    """``CodeUri`` for a template written to ``out`` (stdout: the current directory):
    :func:`code_root`, relative to the template's directory, in POSIX form."""
    base = out.resolve().parent if out is not None else Path.cwd()
    return Path(os.path.relpath(code_root(app_path), base)).as_posix()


def requirement_names(text: str) -> set[str]:
    """Distribution names of a requirements file (PEP 503 normalized)."""
    names = set()
    for line in text.splitlines():
        if line.lstrip().startswith(("#", "-")):
            continue
        match = _NAME.match(line)
        if match:
            names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def check(code_dir: Path, module: str | None = None) -> list[str]:
    """The requirements the function needs that ``code_dir/requirements.txt`` lacks.

    Args:
        code_dir: the resolved ``CodeUri`` directory.
        module: the app's module (``examples.quickstart.app``), which must be in
            ``code_dir``.

    Returns:
        Missing distribution names (empty: the bundle has what the handler imports).

    Raises:
        ConfigurationError: ``module`` is not in ``code_dir``, or there is no
            ``requirements.txt`` in ``code_dir``.
    """
    if module is not None:
        path = code_dir.joinpath(*module.split("."))
        if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
            raise ConfigurationError(
                f"CodeUri {code_dir} does not hold {module} ({path.relative_to(code_dir)}.py): "
                "sam build packs CodeUri only, so the handler could not import it on Lambda"
            )
    path = code_dir / REQUIREMENTS_FILE
    if not path.is_file():
        raise ConfigurationError(
            f"{path} does not exist: sam build installs the function's dependencies from "
            f"the requirements.txt of CodeUri ({code_dir}); write one naming at least `sqsq`, "
            "or pass --code-uri a directory holding only the function's code and its "
            "requirements.txt"
        )
    have = requirement_names(path.read_text())
    vendored = (code_dir / "sqsq" / "__init__.py").is_file()
    need = HANDLER_REQUIREMENTS if vendored else ("sqsq",)
    return [name for name in need if name not in have]


__all__ = ["HANDLER_REQUIREMENTS", "check", "code_root", "code_uri", "requirement_names"]
