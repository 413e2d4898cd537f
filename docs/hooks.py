"""MkDocs hook: an undocumented public name fails the strict build.

The public names are ``sqsq.__all__`` and the public names of the other modules the
API reference covers (:data:`PUBLIC`). Each must be rendered by a ``::: identifier``
directive of some page (the same object: ``sqsq.Worker`` and
``sqsq.worker.engine.Worker`` are one), and it — and each public method or property a
public class defines — must have a docstring of its own. A miss is a warning, which
``strict: true`` turns into a failed build.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from typing import Any

log = logging.getLogger("mkdocs.plugins.sqsq_docs")

#: Module -> its public names (``None``: the module's ``__all__``).
PUBLIC: dict[str, list[str] | None] = {
    "sqsq": None,
    "sqsq.workflows": None,
    "sqsq.events": None,
    "sqsq.interop": None,
    "sqsq.testing": [
        "sqsq_endpoint",
        "local_aws",
        "sqsq_prefix",
        "external_endpoints",
        "ExternalEndpoint",
        "LambdaContext",
        "sqs_record",
        "sqs_event",
        "EventSourceMapping",
        "EventSource",
        "Invocation",
        "build_bundle",
        "SimulatedScheduler",
        "SimulatedSchedule",
        "Fire",
        "Run",
        "schedules_from_template",
        "dead_letter_attributes",
        "fire_schedule",
        "sweep_ttl",
        "Swept",
        "ttl_attribute",
    ],
    "sqsq.settings_model": ["Settings"],
    "sqsq.dlq": ["DeadLetterRow", "describe", "peek", "redrive", "RedriveReport"],
    "sqsq.status": None,
    "sqsq.signals": None,
    "sqsq.tracing": None,
    "sqsq.dashboard": None,
    "sqsq.listing": ["list_results", "Filter", "Page", "Row"],
    "sqsq.payloads": None,
}
#: Names of an ``__all__`` that are not API (an installer the App calls).
NOT_API = {"__version__", "install"}

_DIRECTIVE = re.compile(r"^::: *([\w.]+)", re.M)
_rendered: dict[int, str] = {}


def _resolve(path: str) -> Any:
    """The object a dotted path names (module, then attributes)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def _unwrap(obj: Any) -> Any:
    """The function behind a pytest fixture (its docstring is the function's)."""
    return getattr(obj, "__wrapped__", None) or getattr(obj, "_fixture_function", None) or obj


def _own_doc(obj: Any) -> str:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    doc = (doc or "").strip()
    # a dataclass without a docstring gets its signature as __doc__
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""
    return doc


def public_names() -> dict[str, Any]:
    """Every public name the reference must render, by dotted path."""
    names: dict[str, Any] = {}
    for module_name, listed in PUBLIC.items():
        module = importlib.import_module(module_name)
        for name in listed if listed is not None else module.__all__:
            if name in NOT_API:
                continue
            value = getattr(module, name)
            if inspect.ismodule(value):  # a public name shadowed by a submodule
                raise RuntimeError(f"{module_name}.{name} is a module, not what it names")
            names[f"{module_name}.{name}"] = value
    return names


def undocumented(names: dict[str, Any]) -> list[str]:
    """The public names (and public members of public classes) without a docstring."""
    missing = []
    for path, obj in names.items():
        target = _unwrap(obj)
        if not _own_doc(target):
            missing.append(path)
        if inspect.isclass(target) and not issubclass(target, BaseException):
            for member, value in vars(target).items():
                if member.startswith("_"):
                    continue
                function = value.fget if isinstance(value, property) else value
                function = getattr(function, "__func__", function)
                # an override without a docstring inherits its base's (as griffe shows it)
                if inspect.isfunction(function) and not inspect.getdoc(getattr(target, member)):
                    missing.append(f"{path}.{member}")
    return missing


def on_pre_build(config: Any) -> None:
    _rendered.clear()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for path in _DIRECTIVE.findall(markdown):
        try:
            _rendered[id(_unwrap(_resolve(path)))] = page.file.src_uri
        except (ImportError, AttributeError):
            log.warning("%s: '::: %s' names nothing importable", page.file.src_uri, path)
    return markdown


def on_env(env: Any, config: Any, files: Any) -> Any:
    names = public_names()
    for path, obj in names.items():
        if id(_unwrap(obj)) not in _rendered:
            log.warning("public name %s is on no API reference page (add '::: %s')", path, path)
    for path in undocumented(names):
        log.warning("public name %s has no docstring", path)
    return env
