"""Settings: keyword argument > ``SQSQ_*`` environment variable > default.

One rule everywhere. ``App(name, table_name="t")`` wins over ``SQSQ_TABLE_NAME``,
which wins over the default. Durations are seconds (``float`` or ``timedelta``).

AWS's own conventions are untouched: credentials and region come from the usual
boto3 chain (``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, instance roles, …) and
botocore's ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_SQS`` /
``AWS_ENDPOINT_URL_DYNAMODB`` point clients at a local endpoint; ``endpoint_url``
(or ``SQSQ_ENDPOINT_URL``) overrides them for both services.

The fields are declared as pydantic-settings would declare them (``Field(ge=...)``,
``Literal``, ``Seconds``), but read by the small reader below. Importing
pydantic-settings (which pulls in pydantic and asyncio) cost 95–120 ms on the
development machine, on top of an already imported boto3 — more than everything
else a producer imports besides botocore — and every ``App(...)``, so every Lambda
cold start and every short-lived producer, paid it. The reader covers exactly
what these fields use: ``str``, ``int``, ``float``, ``bool``, ``Literal``,
``X | None``, ``Seconds``, ``ge`` / ``gt`` / ``le`` bounds and ``field_validator``;
environment variables are upper case (``SQSQ_TABLE_NAME``).
"""

from __future__ import annotations

import inspect
import math
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal

from . import limits

#: Prefix of the environment variables that set fields (``SQSQ_TABLE_NAME``).
ENV_PREFIX = "SQSQ_"


def seconds(value: Any) -> Any:
    """Accept ``timedelta`` wherever a duration in seconds is expected."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


class _SecondsMarker:
    """Marks a duration: seconds as a float ≥ 0, ``timedelta`` accepted."""


#: A non-negative duration in seconds; ``timedelta`` is accepted and converted.
Seconds = Annotated[float, _SecondsMarker]


@dataclass(frozen=True)
class FieldInfo:
    """A field's default and bounds (what ``Field(...)`` declares)."""

    default: Any
    ge: float | None = None
    gt: float | None = None
    le: float | None = None


def Field(
    default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> Any:
    """Declare a field with bounds: ``Field(default=5, ge=1, le=1000)``."""
    return FieldInfo(default, ge=ge, gt=gt, le=le)


def field_validator(*names: str) -> Callable[[Any], Any]:
    """Mark a ``@classmethod`` that checks (and may convert) the named fields;
    it raises ValueError for a bad value."""

    def mark(method: Any) -> Any:
        return _Validator(names, method)

    return mark


@dataclass(frozen=True)
class _Validator:
    names: tuple[str, ...]
    method: Any


_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def check_queue_name(name: str) -> str:
    """Validate a physical SQS queue name ("Amazon SQS queue quotas": 1–80
    characters of alphanumerics, hyphens and underscores; FIFO names end in
    ``.fifo``). Raises ValueError."""
    base = name[: -len(".fifo")] if name.endswith(".fifo") else name
    if len(name) > limits.SQS_MAX_QUEUE_NAME_CHARS or not _QUEUE_NAME.match(base):
        raise ValueError(
            f"invalid SQS queue name {name!r}: 1-{limits.SQS_MAX_QUEUE_NAME_CHARS} characters "
            "of letters, digits, '-' and '_' (FIFO queues end in '.fifo')"
        )
    return name


class _FieldReader:
    """Reads the annotated fields of a subclass: keyword > ``SQSQ_*`` > default;
    frozen; unknown keywords refused."""

    _fields: ClassVar[dict[str, tuple[Any, FieldInfo]]] = {}
    _validators: ClassVar[dict[str, list[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = typing.get_type_hints(cls, include_extras=True)
        own = inspect.get_annotations(cls)
        cls._fields = dict(cls._fields)  # a subclass keeps its parents' fields
        cls._validators = {k: list(v) for k, v in cls._validators.items()}
        for name, kind in hints.items():
            if typing.get_origin(kind) is ClassVar or name.startswith("_") or name not in own:
                continue
            declared = cls.__dict__.get(name)
            info = declared if isinstance(declared, FieldInfo) else FieldInfo(declared)
            cls._fields[name] = (kind, info)
            setattr(cls, name, info.default)
        for attr, value in list(cls.__dict__.items()):
            if isinstance(value, _Validator):
                for name in value.names:
                    cls._validators.setdefault(name, []).append(value.method.__get__(None, cls))
                setattr(cls, attr, value.method)

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(self._fields))
        problems = [f"unknown setting {name!r}" for name in unknown]
        for name, (kind, info) in self._fields.items():
            env_name = ENV_PREFIX + name.upper()
            if name in values:
                raw, source = values[name], name
            elif env_name in os.environ:
                raw, source = os.environ[env_name], env_name
            else:
                object.__setattr__(self, name, info.default)
                continue
            try:
                value = _convert(raw, kind, from_env=source == env_name)
                _check_bounds(value, info)
                for check in self._validators.get(name, ()):
                    value = check(value)
            except (TypeError, ValueError) as exc:
                problems.append(f"{source}: {exc}")
                continue
            object.__setattr__(self, name, value)
        if problems:
            raise ValueError("; ".join(problems))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are frozen: cannot set {name!r}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in self._fields))


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _convert(raw: Any, kind: Any, *, from_env: bool) -> Any:
    """``raw`` as a value of ``kind`` (environment values arrive as text)."""
    origin, parts = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        value = _convert(seconds(raw), parts[0], from_env=from_env)
        if _SecondsMarker in parts[1:] and value < 0:
            raise ValueError(f"must be >= 0 seconds, got {raw!r}")
        return value
    if origin is Literal:
        if raw not in parts:
            raise ValueError(f"must be one of {', '.join(map(repr, parts))}, got {raw!r}")
        return raw
    if parts and type(None) in parts:  # X | None
        if raw is None:
            return None
        (inner,) = [p for p in parts if p is not type(None)]
        return _convert(raw, inner, from_env=from_env)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"must be a boolean (true/false, 1/0, yes/no, on/off), got {raw!r}")
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError(f"must be an integer, got {raw!r}")
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"must be a number, got {raw!r}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {raw!r}")
        return value
    if kind is str:
        if not isinstance(raw, str):
            raise ValueError(f"must be a string, got {raw!r}")
        return raw
    raise TypeError(f"settings cannot read fields of type {kind!r}")  # a declaration bug


def _check_bounds(value: Any, info: FieldInfo) -> None:
    if value is None:
        return
    if info.ge is not None and value < info.ge:
        raise ValueError(f"must be >= {info.ge:g}, got {value!r}")
    if info.gt is not None and value <= info.gt:
        raise ValueError(f"must be > {info.gt:g}, got {value!r}")
    if info.le is not None and value > info.le:
        raise ValueError(f"must be <= {info.le:g}, got {value!r}")


class Settings(_FieldReader):
    """Configuration of one :class:`sqsq.App`.

    Every field can be set as a keyword of ``App(...)`` or as ``SQSQ_<FIELD>``.

    Raises:
        ValueError: an unknown keyword or a bad value (every problem in one message);
            ``App`` raises it as ConfigurationError.
    """

    #: AWS region; None uses boto3's chain (AWS_DEFAULT_REGION, profile, IMDS).
    region_name: str | None = None
    #: One endpoint for SQS and DynamoDB (a local moto server); None uses
    #: botocore's AWS_ENDPOINT_URL_* variables or the real AWS endpoints.
    endpoint_url: str | None = None
    #: Prepended to every logical queue name; None means ``"<app name>-"``.
    queue_prefix: str | None = None
    #: DynamoDB table for results; None means ``"<app name>-sqsq"``.
    table_name: str | None = None
    #: Logical queue of tasks that do not name one.
    default_queue: str = "default"
    #: Receives before SQS moves a message to the DLQ (redrive policy), 1–1000.
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    #: Visibility timeout that ``resources create`` gives new queues, seconds.
    visibility_timeout_s: Seconds = 30.0
    #: How long results stay readable, seconds (DynamoDB TTL on ``expires_at``).
    result_ttl_s: Seconds = 86_400.0
    #: Long-polling wait of the worker's ReceiveMessage, seconds (0–20).
    wait_time_s: Seconds = Field(default=20.0, le=limits.SQS_MAX_WAIT_TIME_S)
    #: The Lambda handler starts no record when less time than this remains, seconds.
    lambda_safety_margin_s: Seconds = 5.0
    #: Look revocations up before running (one BatchGetItem per received batch);
    #: False saves that read when ``AsyncResult.revoke()`` is never used.
    check_revocations: bool = True
    #: botocore retry mode for every client: "standard" or "adaptive".
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    #: botocore max attempts per AWS call, including the first.
    max_attempts: int = Field(default=5, ge=1)
    #: Concurrent ``delay()`` / ``adelay()`` calls of one process to one queue share
    #: SendMessageBatch calls; each caller still returns only once SQS acknowledged
    #: its own message. False sends one SendMessage per call (see ``producer.py``).
    coalesce_sends: bool = True
    #: Once concurrent sends were seen (in the last second), a send that starts
    #: alone waits up to this long for others to join its batch, seconds. A lone
    #: sequential producer never waits.
    send_linger_s: Seconds = Field(default=0.002, le=1.0)

    @field_validator("default_queue")
    @classmethod
    def _logical_queue(cls, value: str) -> str:
        return check_queue_name(value)
