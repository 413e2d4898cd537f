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
back into the annotated parameter types with pydantic (see ``arguments.py``).
A message body is untrusted input: no pickle, no eval, only this model.

Producers encode without pydantic (:func:`encode_fields`, the same rules as the
model, checked by hand), so ``import sqsq`` and a cold ``delay()`` never load it;
:func:`decode` and :func:`json_schema` go through the pydantic :class:`Envelope`
(``sqsq/envelope_model.py``), loaded on first use.
"""

from __future__ import annotations

import enum
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any, Literal

from . import limits
from .errors import EnqueueError, MessageTooLarge, NotSerializable, UndecodableMessage

if TYPE_CHECKING:
    from .envelope_model import Envelope as Envelope

#: Current envelope version; a worker refuses versions it does not know.
VERSION: Literal[1] = 1
#: Longest task id, characters.
MAX_ID_CHARS = 128
#: Longest task name, characters.
MAX_TASK_NAME_CHARS = 256
#: Longest idempotency key, characters.
MAX_IDEMPOTENCY_KEY_CHARS = 1024
#: Longest Step Functions task token, characters (limits.STEPFUNCTIONS_MAX_TASK_TOKEN_CHARS).
MAX_TASK_TOKEN_CHARS = limits.STEPFUNCTIONS_MAX_TASK_TOKEN_CHARS


def __getattr__(name: str) -> Any:
    if name == "Envelope":  # the pydantic model, built on first use
        from .envelope_model import Envelope

        return Envelope
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def new_task_id() -> str:
    """A fresh task id (UUID4, 36 characters)."""
    import uuid

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
    # A UUID or Decimal exists only if its module was imported: no import needed here.
    if isinstance(value, _loaded_type("uuid", "UUID")):
        return str(value)
    if isinstance(value, _loaded_type("decimal", "Decimal")):
        if not value.is_finite():
            raise NotSerializable(f"{path}: Decimal {value} is not a finite number")
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    if _is_pydantic_model(value):
        from pydantic_core import PydanticSerializationError, to_jsonable_python

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


def _loaded_type(module: str, name: str) -> Any:
    """``module.name`` if ``module`` was imported, else ``()`` (isinstance of nothing)."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name) if loaded is not None else ()


def _is_pydantic_model(value: Any) -> bool:
    # Without pydantic imported there can be no model instance: no import needed.
    main = sys.modules.get("pydantic.main")
    return main is not None and isinstance(value, main.BaseModel)


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


def _iso(value: datetime) -> str:
    if value.tzinfo is None:  # naive times are UTC, as the model reads them
        value = value.replace(tzinfo=UTC)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _text(name: str, value: str | None, max_chars: int) -> str | None:
    if value is not None and not (isinstance(value, str) and 0 < len(value) <= max_chars):
        raise EnqueueError(f"{name} must be a str of 1-{max_chars} characters, got {value!r:.80}")
    return value


def encode_fields(
    *,
    task: str,
    id: str | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    eta: datetime | None = None,
    expires: datetime | None = None,
    retries: int = 0,
    idempotency_key: str | None = None,
    parent_id: str | None = None,
    root_id: str | None = None,
    workflow: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    sent_at: datetime | None = None,
    scheduled_at: datetime | None = None,
    task_token: str | None = None,
    max_bytes: int | None = limits.SQS_MAX_MESSAGE_BYTES,
) -> str:
    """The SQS message body of an envelope with these fields, built without pydantic.

    The producer's encoder: the same field rules as :class:`Envelope` (so the body
    always decodes to the envelope of these fields), fields at their default left
    out, ``version`` first. ``args`` / ``kwargs`` must already be plain JSON
    (:func:`to_json`).

    Raises:
        EnqueueError: a field breaks the envelope's rules (id over 128 characters,
            empty task name, negative retries, non-str headers, ...).
        MessageTooLarge: over ``limits.SQS_MAX_MESSAGE_BYTES`` (1 MiB, "Amazon SQS
            message quotas"), or over ``max_bytes`` when given (None: no limit, the
            body goes to S3: ``sqsq.payloads``); checked before any AWS call is made.
    """
    fields: dict[str, Any] = {"version": VERSION}
    if _text("task id", id, MAX_ID_CHARS) is not None:
        fields["id"] = id
    if task is None:
        raise EnqueueError("an envelope needs a task name")
    fields["task"] = _text("task name", task, MAX_TASK_NAME_CHARS)
    if args:
        fields["args"] = list(args)
    if kwargs:
        fields["kwargs"] = dict(kwargs)
    if queue is not None:
        fields["queue"] = str(queue)
    if eta is not None:
        fields["eta"] = _iso(eta)
    if expires is not None:
        fields["expires"] = _iso(expires)
    if retries:
        if not isinstance(retries, int) or retries < 0:
            raise EnqueueError(f"retries must be an int >= 0, got {retries!r}")
        fields["retries"] = retries
    if _text("idempotency key", idempotency_key, MAX_IDEMPOTENCY_KEY_CHARS) is not None:
        fields["idempotency_key"] = idempotency_key
    if parent_id is not None:
        fields["parent_id"] = str(parent_id)
    if root_id is not None:
        fields["root_id"] = str(root_id)
    if workflow:
        fields["workflow"] = to_json(dict(workflow), "workflow")
    if headers:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise EnqueueError("headers must map str to str")
        fields["headers"] = dict(headers)
    if sent_at is not None:
        fields["sent_at"] = _iso(sent_at)
    if scheduled_at is not None:
        fields["scheduled_at"] = _iso(scheduled_at)
    if _text("task token", task_token, MAX_TASK_TOKEN_CHARS) is not None:
        fields["task_token"] = task_token
    body = dumps(fields)
    size = len(body)  # dumps() is ASCII-only: characters are bytes
    if max_bytes is not None and size > max_bytes:
        raise MessageTooLarge(
            f"task {task} ({id}): message is {size} bytes, over "
            f"SQS_MAX_MESSAGE_BYTES={limits.SQS_MAX_MESSAGE_BYTES} (Amazon SQS message quotas); "
            "set payload_bucket to send it through S3 (sqsq.payloads), or pass a reference"
        )
    return body


def encode(envelope: Envelope) -> str:
    """An :class:`Envelope` as an SQS message body (see :func:`encode_fields`).

    Raises:
        MessageTooLarge: over ``limits.SQS_MAX_MESSAGE_BYTES`` (1 MiB).
    """
    # Every field of the model: one it gains that encode_fields() lacks fails loudly.
    fields = {name: getattr(envelope, name) for name in type(envelope).model_fields}
    del fields["version"]
    fields["args"] = to_json(envelope.args, "args")
    fields["kwargs"] = to_json(envelope.kwargs, "kwargs")
    return encode_fields(**fields)


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
    return from_json(parse(body), message_id)


def parse(body: str) -> Any:
    """The JSON value of a message body, bounded in depth (the first half of
    :func:`decode`; the execution core looks at it before deciding whether it is an
    envelope or a foreign event).

    Raises:
        UndecodableMessage: not JSON, or nested deeper than ``limits.MAX_JSON_DEPTH``.
    """
    try:
        raw = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        error = UndecodableMessage(_too_deep_message())
        # too deep for json.loads itself: its id and task are read without recursion,
        # so the result is still found under the id its producer holds
        _identify(error, top_level_strings(body, ("id", "task")))
        raise error from None
    except (ValueError, TypeError) as exc:
        raise UndecodableMessage(f"message body is not JSON: {exc}") from None
    if too_deep(raw):
        error = UndecodableMessage(_too_deep_message())
        if isinstance(raw, dict):
            _identify(error, raw)
        raise error
    return raw


#: Header holding the unknown top-level fields of a foreign envelope, as a JSON object.
EXTRA_HEADER = "sqsq-extra"


def from_json(raw: Any, message_id: str | None = None) -> Envelope:
    """The :class:`Envelope` of a parsed body (the second half of :func:`decode`).

    A body with sqsq's ``version`` is validated strictly (an unknown field is an
    error). A body without it is a foreign producer's form (``{"task", "args",
    "kwargs"}`` and any fields sqsq knows): its unknown top-level fields are
    tolerated and kept, as a JSON object in ``headers["sqsq-extra"]``
    (:data:`EXTRA_HEADER`), so a re-sent copy keeps them too.

    Raises:
        UndecodableMessage: not an object, or not a valid envelope.
    """
    if not isinstance(raw, dict):
        raise UndecodableMessage(
            f"message body is JSON {type(raw).__name__}, not an object with a 'task' field"
        )
    from pydantic import ValidationError

    from .envelope_model import Envelope

    if "version" not in raw:
        raw = _tolerate_extra(raw, Envelope.model_fields.keys())
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


def _tolerate_extra(raw: dict[str, Any], known: Any) -> dict[str, Any]:
    """``raw`` with its unknown fields moved into ``headers[EXTRA_HEADER]``."""
    extra = {name: value for name, value in raw.items() if name not in known}
    if not extra:
        return raw
    kept = {name: value for name, value in raw.items() if name in known}
    headers = kept.get("headers", {})
    if isinstance(headers, dict):  # anything else fails validation as before
        kept["headers"] = {**headers, EXTRA_HEADER: dumps(extra)}
    return kept


#: The characters that change a JSON scanner's state: quotes, brackets, commas.
_STRUCTURE = re.compile(r'["{}\[\],]')


def top_level_strings(body: str, names: tuple[str, ...]) -> dict[str, str]:
    """The string members ``names`` of a JSON object body, read without recursion.

    For a body too deep for :func:`json.loads` (which recurses once per level):
    only the top-level object's members are looked at, nested values are skipped
    by counting brackets outside strings. Members whose value is not a string, and
    anything after malformed text, are left out. Never raises.

    Args:
        body: the message body (untrusted).
        names: member names to return.

    Returns:
        name → value for each of ``names`` found with a string value (the first
        occurrence).
    """
    found: dict[str, str] = {}
    if not body.lstrip().startswith("{"):
        return found
    depth = 0
    key: str | None = None  # the current top-level member's name, once read
    expect_key = False
    position = 0
    while (match := _STRUCTURE.search(body, position)) is not None:
        char, at = match.group(), match.start()
        position = at + 1
        if char == '"':
            end = _string_end(body, at)
            if end < 0:
                break
            position = end + 1
            if depth != 1:
                continue
            try:
                text = json.loads(body[at:position])
            except ValueError:
                break
            if expect_key:
                key, expect_key = text, False
            elif key is not None:
                if key in names and key not in found:
                    found[key] = text
                key = None
        elif char in "{[":
            if depth == 1:
                key = None  # a nested value: skipped
            depth += 1
            expect_key = depth == 1
        elif char in "}]":
            depth -= 1
            if depth <= 0:
                break
        elif depth == 1:  # a comma between top-level members
            key, expect_key = None, True
    return found


def _string_end(text: str, start: int) -> int:
    """Index of the quote closing the JSON string opened at ``start``; -1 if none."""
    at = start
    while (at := text.find('"', at + 1)) >= 0:
        backslashes = 0
        while text[at - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return at
    return -1


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
    from .envelope_model import Envelope

    schema = Envelope.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://sqsq.dev/schemas/envelope-v{VERSION}.json"
    return schema
