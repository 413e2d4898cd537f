"""The versioned wire format of a task message, and its JSON rules.

An envelope is what a producer puts on an SQS queue: a JSON object whose
minimum form, for a producer in any language or AWS service, is::

    {"task": "orders.charge", "args": ["o-1", 500], "kwargs": {}}

Everything else has a default; ``id`` falls back to the SQS MessageId, so a
schedule that sends the same body every hour still yields distinct task ids.
The JSON Schema is published by ``sqsq schema`` (:func:`json_schema`).

JSON rules for arguments and return values (:func:`to_json`): None, bool, int,
finite float, str, list/tuple, dict with str keys, datetime/date/time (ISO 8601),
UUID (str), Decimal (str), bytes (base64), Enum (its value), pydantic models
(``model_dump(mode="json")``). Anything else raises
:class:`~sqsq.errors.NotSerializable` at enqueue time. The worker turns values
back into the annotated parameter types with pydantic (see ``signature.py``).
A message body is untrusted input: no pickle, no eval, only this model.
"""

from __future__ import annotations

import base64
import enum
import json
import math
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticSerializationError, to_jsonable_python

from . import limits
from .errors import MessageTooLarge, NotSerializable, UndecodableMessage

#: Current envelope version; a worker refuses versions it does not know.
VERSION: Literal[1] = 1


class Envelope(BaseModel):
    """One task invocation on the wire (immutable). Fields are documented below
    and in the JSON Schema (``sqsq schema``)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        title="sqsq task envelope",
        use_attribute_docstrings=True,
        json_schema_extra={
            "description": "A sqsq task message. Minimum: "
            '{"task": "<registered name>", "args": [...], "kwargs": {...}}.'
        },
    )

    version: Literal[1] = VERSION
    """Wire-format version; workers refuse versions they do not know."""
    id: str | None = Field(default=None, min_length=1, max_length=128)
    """Task id; omitted by foreign producers, then the SQS MessageId is used."""
    task: str = Field(min_length=1, max_length=256)
    """Registered task name, e.g. "orders.charge"."""
    args: list[Any] = Field(default_factory=list)
    """Positional arguments (JSON values)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments (JSON values)."""
    queue: str | None = None
    """Logical queue the producer sent to."""
    eta: datetime | None = None
    """Earliest time to run (ISO 8601, UTC)."""
    expires: datetime | None = None
    """Time after which the task must not run (ISO 8601, UTC)."""
    retries: int = Field(default=0, ge=0)
    """Retries that came before this message (explicit re-sends)."""
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=1024)
    """Run the body at most once per key, if set."""
    parent_id: str | None = None
    """Id of the task that enqueued this one (workflows)."""
    root_id: str | None = None
    """Id of the first task of the workflow."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Free-form string headers (trace context, ...)."""
    sent_at: datetime | None = None
    """When the producer enqueued it (ISO 8601, UTC)."""
    scheduled_at: datetime | None = None
    """The fire time of the schedule that sent it (EventBridge Scheduler's
    <aws.scheduler.scheduled-time>, ISO 8601, UTC); None for other tasks."""

    @field_validator("eta", "expires", "sent_at", "scheduled_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Times without an offset are UTC (foreign producers often send them so)."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def task_id(self) -> str:
        """The id, which a decoded envelope always has (see :func:`decode`)."""
        assert self.id is not None, "decode() fills id from the SQS MessageId"
        return self.id


def new_task_id() -> str:
    """A fresh task id (UUID4, 36 characters)."""
    return str(uuid.uuid4())


# --- JSON rules ------------------------------------------------------------------


def to_json(value: Any, path: str = "value") -> Any:
    """Convert ``value`` to plain JSON types under the envelope's rules.

    Args:
        value: the value to convert.
        path: how to name the value in errors, e.g. ``"args[0]"``.

    Returns:
        A structure of dict/list/str/int/float/bool/None.

    Raises:
        NotSerializable: for sets, files, NaN/infinity, non-str dict keys and any
            type not listed in the module docstring; the message names the path.
    """
    if isinstance(value, enum.Enum):
        return to_json(value.value, path)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotSerializable(f"{path}: {value!r} is not valid JSON (NaN and infinity are not)")
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotSerializable(
                    f"{path}: dict key {key!r} is {type(key).__name__}, JSON object keys must be str"
                )
            out[key] = to_json(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        return [to_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise NotSerializable(f"{path}: Decimal {value} is not a finite number")
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, BaseModel):
        try:  # NaN/inf kept as floats, so the check below names them
            dumped = to_jsonable_python(value, inf_nan_mode="constants", bytes_mode="base64")
        except PydanticSerializationError as exc:
            raise NotSerializable(
                f"{path}: {type(value).__qualname__} cannot be serialized: {exc}"
            ) from None
        return to_json(dumped, path)
    kind = type(value)
    raise NotSerializable(
        f"{path}: {kind.__module__}.{kind.__qualname__} is not JSON-serializable under sqsq's "
        "envelope rules (use str/int/float/bool/None, list, dict, datetime, UUID, Decimal, "
        "bytes, Enum or a pydantic model)"
    )


def too_deep(value: Any, limit: int = limits.MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests lists/tuples/dicts more than ``limit`` levels deep.

    Iterative and depth-first, so it never recurses itself and ends at once on a
    structure that contains itself (its depth is unbounded)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def unencodable(text: str) -> bool:
    """Whether ``text`` cannot be written as UTF-8 (it holds a lone surrogate, which
    JSON's ``\\ud800`` escapes can produce); AWS refuses such strings in keys and
    attributes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def dumps(value: Any) -> str:
    """Compact, ASCII-only JSON text (always a valid SQS body: no raw control or
    surrogate characters). ``value`` must already be plain JSON (see :func:`to_json`)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


# --- encode / decode -------------------------------------------------------------


def encode(envelope: Envelope) -> str:
    """The envelope as an SQS message body.

    Raises:
        MessageTooLarge: over ``limits.SQS_MAX_MESSAGE_BYTES`` (1 MiB, "Amazon SQS
            message quotas"); checked before any AWS call is made.
    """
    fields = envelope.model_dump(mode="json", exclude_defaults=True, exclude={"version"})
    body = dumps({"version": envelope.version, **fields})
    size = len(body.encode("utf-8"))
    if size > limits.SQS_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"task {envelope.task} ({envelope.id}): message is {size} bytes, over "
            f"SQS_MAX_MESSAGE_BYTES={limits.SQS_MAX_MESSAGE_BYTES} (Amazon SQS message quotas); "
            "pass a reference (e.g. an S3 key) instead of the data"
        )
    return body


def decode(body: str, message_id: str | None = None) -> Envelope:
    """Parse an SQS message body into an :class:`Envelope`.

    Args:
        body: the message body (untrusted).
        message_id: the SQS MessageId, used as the task id when the body has none.

    Raises:
        UndecodableMessage: the body is not JSON, not an object, nested deeper than
            ``limits.MAX_JSON_DEPTH``, or not a valid envelope (pydantic refuses
            strings holding a lone surrogate, which AWS could not store either).
    """
    try:
        raw = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise UndecodableMessage(_too_deep_message()) from None
    except (ValueError, TypeError) as exc:
        raise UndecodableMessage(f"message body is not JSON: {exc}") from None
    if too_deep(raw):
        error = UndecodableMessage(_too_deep_message())
        if isinstance(raw, dict):
            _identify(error, raw)
        raise error
    if not isinstance(raw, dict):
        raise UndecodableMessage(
            f"message body is JSON {type(raw).__name__}, not an object with a 'task' field"
        )
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False)[:5]
        )
        error = UndecodableMessage(f"message body is not a sqsq envelope: {problems}")
        _identify(error, raw)
        raise error from None
    if envelope.id is None and message_id is not None:
        envelope = envelope.model_copy(update={"id": message_id})
    return envelope


def _identify(error: UndecodableMessage, raw: dict[str, Any]) -> None:
    """Keep what identifies the task, so its result is found under its own id."""
    if _usable(raw.get("id"), 128):
        error.task_id = raw["id"]
    if _usable(raw.get("task"), 256):
        error.task = raw["task"]


def _usable(value: Any, max_chars: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_chars and not unencodable(value)


def _too_deep_message() -> str:
    return (
        f"message body is nested deeper than MAX_JSON_DEPTH={limits.MAX_JSON_DEPTH} "
        "levels of arrays/objects"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_schema() -> dict[str, Any]:
    """The envelope's JSON Schema (draft 2020-12), as printed by ``sqsq schema``."""
    schema = Envelope.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://sqsq.dev/schemas/envelope-v{VERSION}.json"
    return schema
