"""EventBridge event patterns: checking a pattern, and matching an event against it.

Routes (``routes.py``) select events with the same JSON a rule's ``EventPattern``
(or a pipe's filter) holds, so a route can be deployed as an EventBridge rule
unchanged. The rules followed, from "Amazon EventBridge event patterns" and
"Content filtering in Amazon EventBridge event patterns":

- a pattern is a JSON object; every field it names must match (AND); a nested
  object matches the event's object at that field;
- a field's value is an array of matchers, any of which may match (OR); when the
  event's value is an array, the field matches if any element matches;
- a field missing from the event, or holding an object (not a leaf), matches only
  ``{"exists": false}``;
- when the event holds an array of objects, a nested pattern must match within one
  element (EventBridge's array consistency).

Matchers supported (the others — ``cidr``, ``anything-but`` with ``wildcard`` lists,
``$or`` inside a leaf — raise :class:`~sqsq.errors.ConfigurationError`)::

    "x" / 12 / true / null          exact value (strings character by character; numbers
                                    as written: 300 ≠ 300.0, but 300.0 == 3.0e2 here;
                                    a string never equals a number)
    {"prefix": "us-"}               begins with; {"prefix": {"equals-ignore-case": "us-"}}
    {"suffix": ".png"}              ends with;   {"suffix": {"equals-ignore-case": ".png"}}
    {"equals-ignore-case": "x"}     equal, ignoring case
    {"wildcard": "dir/*.png"}       ``*`` is any run of characters, ``\\*`` a literal star
    {"anything-but": v}             not v: a value, a list of values, or
                                    {"prefix": …} / {"suffix": …} / {"equals-ignore-case": …}
                                    / {"wildcard": …}; the field must exist
    {"numeric": [">", 0, "<=", 5]}  numeric range (=, <, <=, >, >=; numbers only)
    {"exists": true|false}          the field is present as a leaf (true) / absent (false)
    "$or": [pattern, …]             (as a field of an object) any of the sub-patterns

Matching never backtracks: every matcher examines an event value at most once per
character (``wildcard`` included, see :func:`wildcard_match`), so the work is linear
in the event for a given pattern — a worker matches routes on its event loop, and an
event is at most an SQS message (``limits.SQS_MAX_MESSAGE_BYTES``).

Everything here is pure and has no dependency; tested against the documentation's
examples, and against a dynamic-programming reference with a step budget, in
tests/test_events_patterns.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from ..errors import ConfigurationError

_NUMERIC_OPS = {"=", "<", "<=", ">", ">="}
_MISSING = object()


def check(pattern: Any, path: str = "pattern") -> dict[str, Any]:
    """``pattern`` if it is a valid event pattern of the supported form.

    Raises:
        ConfigurationError: not an object of arrays of supported matchers; the
            message names the path, e.g. ``pattern.detail.state[0]``.
    """
    if not isinstance(pattern, Mapping) or not pattern:
        raise ConfigurationError(f"{path}: an event pattern is a non-empty JSON object")
    for name, value in pattern.items():
        where = f"{path}.{name}"
        if name == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise ConfigurationError(f"{where}: $or takes a list of two or more patterns")
            for i, sub in enumerate(value):
                check(sub, f"{where}[{i}]")
        elif isinstance(value, Mapping):
            check(value, where)
        elif isinstance(value, list):
            if not value:
                raise ConfigurationError(f"{where}: an empty list matches nothing")
            for i, matcher in enumerate(value):
                _check_matcher(matcher, f"{where}[{i}]")
        else:
            raise ConfigurationError(
                f"{where}: a field's value is a list of matchers (e.g. [{json.dumps(value)}]) "
                "or a nested pattern object"
            )
    try:
        json.dumps(pattern, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{path}: not JSON: {exc}") from None
    return dict(pattern)


def _check_matcher(matcher: Any, where: str) -> None:
    if not isinstance(matcher, Mapping):
        if isinstance(matcher, list) or (isinstance(matcher, float) and matcher != matcher):
            raise ConfigurationError(f"{where}: a matcher is a value or an operator object")
        return
    if len(matcher) != 1:
        raise ConfigurationError(f"{where}: an operator object has exactly one key")
    ((op, arg),) = matcher.items()
    if op in ("prefix", "suffix"):
        if not (isinstance(arg, str) or _ignore_case_arg(arg)):
            raise ConfigurationError(f"{where}: {op} takes a string or {{equals-ignore-case: s}}")
    elif op in ("equals-ignore-case", "wildcard"):
        if not isinstance(arg, str):
            raise ConfigurationError(f"{where}: {op} takes a string")
    elif op == "exists":
        if not isinstance(arg, bool):
            raise ConfigurationError(f"{where}: exists takes true or false")
    elif op == "numeric":
        _numeric_checked(arg, where)
    elif op == "anything-but":
        if isinstance(arg, Mapping):
            if len(arg) != 1 or next(iter(arg)) not in (
                "prefix",
                "suffix",
                "equals-ignore-case",
                "wildcard",
            ):
                raise ConfigurationError(
                    f"{where}: anything-but takes a value, a list, or one of prefix / suffix / "
                    "equals-ignore-case / wildcard"
                )
            ((inner, value),) = arg.items()
            ok = isinstance(value, str) or (
                inner == "equals-ignore-case"
                and isinstance(value, list)
                and all(isinstance(v, str) for v in value)
            )
            if not ok:
                raise ConfigurationError(f"{where}: anything-but {inner} takes a string")
        elif isinstance(arg, list):
            if not all(_scalar(v) for v in arg):
                raise ConfigurationError(f"{where}: anything-but lists hold strings or numbers")
        elif not _scalar(arg):
            raise ConfigurationError(f"{where}: anything-but takes a string, number or list")
    else:
        raise ConfigurationError(
            f"{where}: operator {op!r} is not supported by sqsq's matcher (supported: prefix, "
            "suffix, equals-ignore-case, wildcard, anything-but, numeric, exists)"
        )


def _scalar(value: Any) -> bool:
    return isinstance(value, str) or _number(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ignore_case_arg(arg: Any) -> bool:
    return (
        isinstance(arg, Mapping)
        and set(arg) == {"equals-ignore-case"}
        and isinstance(arg["equals-ignore-case"], str)
    )


def _numeric_checked(arg: Any, where: str) -> list[tuple[str, float]]:
    if not isinstance(arg, list) or not arg or len(arg) % 2 or len(arg) > 4:
        raise ConfigurationError(f"{where}: numeric takes [op, number] or [op, n, op, n]")
    pairs = []
    for op, value in zip(arg[::2], arg[1::2], strict=True):
        if op not in _NUMERIC_OPS or not _number(value):
            raise ConfigurationError(f"{where}: numeric: {op!r} {value!r} is not op, number")
        pairs.append((op, float(value)))
    return pairs


# --- matching ----------------------------------------------------------------------


class Steps:
    """A budget meter for matching: counts the characters of event values the string
    matchers examine (tests assert a match's work from it, not from the clock).

    Pass one to :func:`matches` (``steps=``); ``count`` is the total afterwards."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


def matches(pattern: Mapping[str, Any], event: Any, steps: Steps | None = None) -> bool:
    """Whether ``event`` (parsed JSON) matches ``pattern`` (a :func:`check`-ed pattern).

    The work is linear in the event for a given pattern: every matcher examines a
    value at most once per character (:func:`wildcard_match` included), and each
    array element is visited once per matcher that reads it. ``steps`` (optional)
    adds up the characters examined.
    """
    if not isinstance(event, Mapping):
        return False
    for name, value in pattern.items():
        if name == "$or":
            if not any(matches(sub, event, steps) for sub in value):
                return False
            continue
        field = event.get(name, _MISSING)
        if isinstance(value, Mapping):
            if isinstance(field, list):
                if not any(matches(value, item, steps) for item in field):
                    return False
            elif not matches(value, field, steps):
                return False
        elif not _leaf(value, field, steps):
            return False
    return True


def _leaf(matchers: list[Any], field: Any, steps: Steps | None) -> bool:
    leaf = field is not _MISSING and not isinstance(field, Mapping)  # exists: leaf nodes only
    if not leaf:
        return any(isinstance(m, Mapping) and m.get("exists") is False for m in matchers)
    values = field if isinstance(field, list) else [field]
    for matcher in matchers:
        if isinstance(matcher, Mapping) and "exists" in matcher:
            if matcher["exists"] is True:
                return True
            continue
        if any(_one(matcher, value, steps) for value in values):
            return True
    return False


def _equal(a: Any, b: Any) -> bool:
    """Exact matching: strings character by character; numbers by their JSON
    representation, which parsed JSON keeps only as int vs float (300 ≠ 300.0;
    300.0 and 3.0e2, which EventBridge tells apart, both parse to 300.0)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    return type(a) is type(b) and isinstance(a, str | int | float) and a == b


def _one(matcher: Any, value: Any, steps: Steps | None) -> bool:
    if not isinstance(matcher, Mapping):
        if steps is not None and isinstance(value, str) and isinstance(matcher, str):
            steps.count += min(len(value), len(matcher))
        return _equal(matcher, value)
    ((op, arg),) = matcher.items()
    if op == "numeric":
        if not _number(value):
            return False
        return all(_compare(float(value), o, n) for o, n in _numeric_checked(arg, "numeric"))
    if op == "anything-but":
        return _anything_but(arg, value, steps)
    if not isinstance(value, str):
        return False
    return _string_op(op, arg, value, steps)


def _string_op(op: str, arg: Any, value: str, steps: Steps | None) -> bool:
    """prefix / suffix (optionally ignoring case), equals-ignore-case, wildcard: each
    examines ``value`` once (``casefold`` and ``startswith`` / ``endswith`` / ``==`` are
    linear; :func:`wildcard_match` scans once)."""
    if op == "wildcard":
        return wildcard_match(arg, value, steps)
    if steps is not None:
        steps.count += len(value)
    if op == "equals-ignore-case":
        return value.casefold() == str(arg).casefold()
    if isinstance(arg, Mapping):  # prefix / suffix with equals-ignore-case
        text, value = str(arg["equals-ignore-case"]).casefold(), value.casefold()
    else:
        text = arg
    return value.startswith(text) if op == "prefix" else value.endswith(text)


def _anything_but(arg: Any, value: Any, steps: Steps | None) -> bool:
    if isinstance(arg, Mapping):
        ((op, inner),) = arg.items()
        if not isinstance(value, str):
            return True
        if isinstance(inner, list):  # equals-ignore-case over a list
            return not any(_string_op(op, item, value, steps) for item in inner)
        return not _string_op(op, inner, value, steps)
    excluded = arg if isinstance(arg, list) else [arg]
    return not any(_equal(item, value) for item in excluded)


def _compare(value: float, op: str, bound: float) -> bool:
    if op == "=":
        return value == bound
    if op == "<":
        return value < bound
    if op == "<=":
        return value <= bound
    if op == ">":
        return value > bound
    return value >= bound


@lru_cache(maxsize=1024)
def wildcard_parts(text: str) -> tuple[str, ...]:
    """A ``wildcard`` matcher's literal runs between its stars: ``"*-*-*.log"`` →
    ``("", "-", "-", ".log")`` (``\\*`` is a literal star, ``\\\\`` a backslash).
    One part: no star (the value must equal it)."""
    parts: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "*\\":
            literal.append(text[i + 1])
            i += 2
            continue
        if char == "*":
            parts.append("".join(literal))
            literal = []
        else:
            literal.append(char)
        i += 1
    parts.append("".join(literal))
    return tuple(parts)


def wildcard_match(text: str, value: str, steps: Steps | None = None) -> bool:
    """Whether ``value`` matches the wildcard ``text`` (``*``: any run of characters).

    Never backtracks: the first part must begin the value, the last must end it,
    and each part between is found at its leftmost place after the one before
    (``str.find``), which is a match whenever any is — a star only asks for the
    parts in order. Each search starts where the previous match ended, so the
    value is scanned once: at most ``len(value)`` characters examined (counted in
    ``steps``), whatever the pattern; ``re`` backtracks to O(n^k) on
    ``*-*-*.log`` against a long value.
    """
    parts = wildcard_parts(text)
    if len(parts) == 1:
        if steps is not None:
            steps.count += min(len(value), len(text))
        return value == parts[0]
    first, *middle, last = parts
    if len(first) + len(last) > len(value):
        return False
    if steps is not None:
        steps.count += len(first) + len(last)
    if not (value.startswith(first) and value.endswith(last)):
        return False
    position, end = len(first), len(value) - len(last)
    for part in middle:
        found = value.find(part, position, end)
        if steps is not None:
            steps.count += (end if found < 0 else found + len(part)) - position
        if found < 0:
            return False
        position = found + len(part)
    return True
