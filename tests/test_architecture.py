"""The direction the README draws: the core never imports a capability subpackage.

The core is every module of ``sqsq`` but the capabilities built on it and the
tools around it (:data:`OUTSIDE`) and the facade (:data:`FACADE`: ``App``, ``Task``
and the package's lazy public names), which is the one documented bridge
(``App.event_router()``, ``App.follow_ups()``, ``app.on_*``, ``task.s()``, ...).
The scan reads each core module's syntax tree: an ``import`` or ``from … import``
of a capability (absolute or relative), or a string that names one as a module
(``importlib.import_module("sqsq.workflows")``, ``"..events"``), fails the test.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "sqsq"
#: Capability subpackages: built on the core, reached through the facade.
CAPABILITIES = (
    "workflows",
    "events",
    "schedules",
    "deploy",
    "flow",
    "tracing",
    "interop",
    "payloads",
)
#: Outside the core besides the capabilities: operating and testing tools.
OUTSIDE = (*CAPABILITIES, "cli", "testing", "dashboard")
#: The facade: the one bridge from the core to the capabilities.
FACADE = ("app.py", "task.py", "__init__.py", "__main__.py")

_NAMED = re.compile(
    r"^(?:sqsq)?\.*(?:sqsq\.)?(" + "|".join(CAPABILITIES) + r")(?:\.[A-Za-z_]\w*)*$"
)


def core_modules() -> list[Path]:
    """Every ``.py`` file of the core, sorted."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in OUTSIDE or (len(relative.parts) == 1 and path.name in FACADE):
            continue
        found.append(path)
    return found


def _module_of(path: Path) -> list[str]:
    """``sqsq/worker/engine.py`` -> ``["sqsq", "worker", "engine"]``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose may name a capability)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _module_labels(tree: ast.AST) -> set[int]:
    """ids of strings assigned to ``__module__``: a class's public home, named for
    users (``ChordError.__module__ = "sqsq.workflows"``), loads nothing."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and all(
            isinstance(target, ast.Attribute) and target.attr == "__module__"
            for target in node.targets
        ):
            ids.update(id(c) for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    return ids


def _capability(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == "sqsq" and parts[1] in CAPABILITIES:
        return parts[1]
    return None


def violations(source: str, path: Path) -> list[str]:
    """``"<file>:<line>: <what>"`` for each import or naming of a capability."""
    tree = ast.parse(source)
    here = _module_of(path)
    package = here if path.name == "__init__.py" else here[:-1]
    docstrings = _docstrings(tree) | _module_labels(tree)
    found = []
    for node in ast.walk(tree):
        named: list[str] = []
        if isinstance(node, ast.Import):
            named = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            named = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and _NAMED.match(node.value.strip()):
                found.append(f"{path.name}:{node.lineno}: names {node.value!r}")
            continue
        for module in named:
            if _capability(module):
                found.append(f"{path.name}:{node.lineno}: imports {module}")
                break
    return found


def test_the_scan_finds_every_way_of_reaching_a_capability() -> None:
    """The scanner itself: each form below is caught, the allowed ones are not."""
    path = PACKAGE / "worker" / "engine.py"
    caught = {
        "import sqsq.workflows": "imports sqsq.workflows",
        "from sqsq.events import install": "imports sqsq.events",
        "from ..schedules.eta import send_later": "imports sqsq.schedules.eta",
        "from .. import deploy": "imports sqsq.deploy",
        "def f():\n    from ..workflows import install": "imports sqsq.workflows",
        'importlib.import_module("sqsq.workflows")': "names 'sqsq.workflows'",
        'import_module("..events", __package__)': "names '..events'",
        'ROUTER = "sqsq.events.router"': "names 'sqsq.events.router'",
    }
    for source, what in caught.items():
        assert [v.split(": ", 1)[1] for v in violations(source, path)] == [what], source
    allowed = [
        '"""Docstrings may say sqsq.workflows."""',
        "from .. import settle",
        "from ..settle import store",
        'log("the events of sqsq.events")',
        "import sqsq.settle",
        'ChordError.__module__ = "sqsq.workflows"',
    ]
    for source in allowed:
        assert violations(source, path) == [], source
    settle = PACKAGE / "settle.py"
    assert violations("from .workflows import install", settle) == [
        "settle.py:1: imports sqsq.workflows"
    ]
    assert violations("from .workflows import install", PACKAGE / "worker" / "__init__.py") == []


def test_the_core_never_imports_a_capability() -> None:
    modules = core_modules()
    names = {str(p.relative_to(PACKAGE)) for p in modules}
    assert {"execution.py", "settle.py", "aws_lambda.py", "worker/engine.py"} <= names
    assert not names & {"app.py", "task.py", "workflows/__init__.py", "events/router.py"}
    found = [v for path in modules for v in violations(path.read_text(), path)]
    assert found == []


def test_loading_the_runners_loads_no_capability() -> None:
    """At run time too: a worker's and a Lambda handler's modules, with an app that
    declares only plain tasks, leave every capability out of ``sys.modules`` until the
    App's facade loads one (``App.follow_ups()`` here). Tracing is enabled by
    installing OpenTelemetry's API (``sqsq.tracing``): off here, as without it."""
    code = (
        "import sys\n"
        "import sqsq.worker.engine, sqsq.aws_lambda, sqsq.settle, sqsq.execution\n"
        "from tests.apps.canvas import app\n"
        f"caps = {CAPABILITIES!r}\n"
        "def loaded():\n"
        "    return sorted({m.split('.')[1] for m in sys.modules\n"
        "                   if m.startswith('sqsq.') and m.split('.')[1] in caps})\n"
        "print(loaded(), app.continuation is None)\n"
        "app.follow_ups()\n"
        "print(loaded(), type(app.continuation).__module__)\n"
    )
    env = {**os.environ, "SQSQ_TRACING": "false"}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "[] True",
        "['workflows'] sqsq.workflows.continuation",
    ]
