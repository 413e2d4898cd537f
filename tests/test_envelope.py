"""The wire format: JSON rules of ``to_json``, encode/decode, size limit, JSON Schema."""

from __future__ import annotations

import base64
import enum
import io
import json
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

import sqsq.cli.commands  # noqa: F401  (registers the commands)
from sqsq import limits
from sqsq.cli import cli
from sqsq.envelope import (
    VERSION,
    Envelope,
    decode,
    encode,
    encode_fields,
    json_schema,
    to_json,
    top_level_strings,
)
from sqsq.errors import EnqueueError, MessageTooLarge, NotSerializable, UndecodableMessage
from tests.helpers import examples


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Size(enum.IntEnum):
    SMALL = 1


class Tone(enum.StrEnum):
    WARM = "warm"


class Line(BaseModel):
    sku: str
    quantity: int
    price: Decimal
    when: datetime


class Reading(BaseModel):
    value: float


class Opaque(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: object


class Thing:
    pass


# --- to_json: what is encoded ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (0, 0),
        (2**70, 2**70),
        (-1.5, -1.5),
        ("héllo ☃", "héllo ☃"),
        ([1, "a", None], [1, "a", None]),
        ((1, (2, 3)), [1, [2, 3]]),
        ({"a": {"b": [1]}}, {"a": {"b": [1]}}),
    ],
)
def test_plain_json_values_pass_through(value: Any, expected: Any) -> None:
    assert to_json(value) == expected


def test_datetime_date_and_time_become_iso_8601() -> None:
    aware = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    offset = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert to_json(aware) == "2024-05-06T07:08:09.123456+00:00"
    assert to_json(offset) == "2024-05-06T07:08:09+02:00"
    assert to_json(datetime(2024, 5, 6, 7, 8)) == "2024-05-06T07:08:00"
    assert to_json(date(2024, 2, 29)) == "2024-02-29"
    assert to_json(time(23, 59, 1)) == "23:59:01"
    assert datetime.fromisoformat(to_json(aware)) == aware


def test_uuid_and_decimal_become_strings() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert to_json(ident) == "12345678-1234-5678-1234-567812345678"
    assert to_json(Decimal("10.50")) == "10.50"  # exact, trailing zero kept
    assert to_json(Decimal("-1E+3")) == "-1E+3"
    assert Decimal(to_json(Decimal("0.1"))) == Decimal("0.1")


def test_bytes_like_values_become_standard_base64() -> None:
    raw = bytes([0xFB, 0xFF, 0xFE, 0x00, 0x3E])
    assert to_json(raw) == base64.b64encode(raw).decode("ascii") == "+//+AD4="
    assert to_json(bytearray(b"abc")) == "YWJj"
    assert to_json(memoryview(b"abc")) == "YWJj"
    assert to_json(b"") == ""


def test_enums_become_their_values() -> None:
    assert to_json(Color.RED) == "red"
    assert to_json(Color.BLUE) == 2
    assert to_json(Size.SMALL) == 1
    assert type(to_json(Size.SMALL)) is int
    assert to_json({"c": [Color.RED]}) == {"c": ["red"]}


def test_str_mixin_enum_becomes_a_plain_str() -> None:
    encoded = to_json(Tone.WARM)
    assert encoded == "warm"
    assert type(encoded) is str


def test_pydantic_models_are_dumped_in_json_mode() -> None:
    line = Line(sku="A-1", quantity=3, price=Decimal("9.99"), when=datetime(2024, 1, 2, tzinfo=UTC))
    encoded = to_json({"lines": [line]})
    assert encoded == {
        "lines": [{"sku": "A-1", "quantity": 3, "price": "9.99", "when": "2024-01-02T00:00:00Z"}]
    }
    json.dumps(encoded, allow_nan=False)  # plain JSON all the way down


def test_result_is_plain_json_text() -> None:
    value = [datetime(2024, 1, 1, tzinfo=UTC), uuid.uuid4(), Decimal("1"), b"x", Color.RED]
    text = json.dumps(to_json(value, "args"), allow_nan=False)
    assert isinstance(json.loads(text), list)


# --- to_json: what is refused, and where -----------------------------------------------


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        ({1, 2}, "builtins.set"),
        (frozenset({1}), "builtins.frozenset"),
        (Thing(), "Thing"),
        (object(), "builtins.object"),
        (complex(1, 2), "builtins.complex"),
        (lambda: 1, "function"),
    ],
)
def test_unsupported_types_raise_not_serializable_naming_the_path(bad: Any, kind: str) -> None:
    with pytest.raises(NotSerializable) as info:
        to_json(["ok", bad], "args")
    message = str(info.value)
    assert message.startswith("args[1]:")
    assert kind in message


def test_open_file_is_not_serializable() -> None:
    with io.StringIO("data") as handle, pytest.raises(NotSerializable, match=r"^args\[1\]:"):
        to_json([1, handle], "args")


def test_real_open_file_is_not_serializable(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    with path.open() as handle, pytest.raises(NotSerializable, match=r"^kwargs\['f'\]"):
        to_json({"f": handle}, "kwargs")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("Inf")])
def test_nan_and_infinity_raise(bad: Any) -> None:
    with pytest.raises(NotSerializable, match=r"^args\[2\]:"):
        to_json([0, 1, bad], "args")


def test_non_str_dict_keys_raise() -> None:
    for key in (1, None, (1, 2), 1.5):
        with pytest.raises(NotSerializable, match=r"^args\[0\]: dict key .* must be str"):
            to_json([{key: "v"}], "args")


def test_path_of_a_deeply_nested_value() -> None:
    with pytest.raises(NotSerializable) as info:
        to_json({"order": {"items": [1, {2}]}}, "kwargs")
    assert str(info.value).startswith("kwargs['order']['items'][1]:")


def test_not_serializable_is_an_enqueue_error_and_a_type_error() -> None:
    with pytest.raises(NotSerializable) as info:
        to_json(set())
    assert isinstance(info.value, TypeError)
    assert str(info.value).startswith("value:")  # the default path


def test_nan_inside_a_pydantic_model_raises() -> None:
    with pytest.raises(NotSerializable, match=r"^args\[0\]"):
        to_json([Reading(value=math.nan)], "args")


def test_unserializable_field_of_a_pydantic_model_raises_not_serializable() -> None:
    with pytest.raises(NotSerializable, match=r"^args\[0\]"):
        to_json([Opaque(thing=Thing())], "args")


_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=examples(60))
@given(value=_json_values)
def test_plain_json_round_trips_through_an_envelope(value: Any) -> None:
    assert to_json(value) == value
    envelope = Envelope(id="t-1", task="demo.echo", args=[value], kwargs={"k": value})
    decoded = decode(encode(envelope))
    assert decoded.args == [value]
    assert decoded.kwargs == {"k": value}


# --- encode / decode -----------------------------------------------------------------


def _full_envelope() -> Envelope:
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    return Envelope(
        id="0d6c1f4e-5a0e-4a4e-9c59-1b5f0b1f2a10",
        task="orders.charge",
        args=["o-1", 500, {"nested": [1.5, None]}],
        kwargs={"currency": "EUR"},
        queue="default",
        eta=now + timedelta(seconds=30),
        expires=now + timedelta(hours=1),
        retries=2,
        idempotency_key="charge:o-1",
        parent_id="p-1",
        root_id="r-1",
        headers={"traceparent": "00-abc-def-01"},
        sent_at=now,
    )


def test_encode_decode_round_trip_keeps_every_field() -> None:
    envelope = _full_envelope()
    body = encode(envelope)
    decoded = decode(body, message_id="ignored-message-id")
    assert decoded == envelope
    assert decoded.task_id == envelope.id  # the body's id wins over the MessageId
    assert decoded.eta is not None and decoded.eta.utcoffset() == timedelta(0)


def test_encoded_body_is_compact_ascii_json_with_version_first() -> None:
    envelope = Envelope(id="i", task="t", args=["☃", {"a": 1}], kwargs={})
    body = encode(envelope)
    assert body.isascii()
    assert "\\u2603" in body
    assert " " not in body  # compact separators
    parsed = json.loads(body)
    assert next(iter(parsed)) == "version"
    assert parsed["version"] == VERSION == 1
    assert parsed["args"] == ["☃", {"a": 1}]
    # defaults are left out of the wire form
    assert "retries" not in parsed and "headers" not in parsed and "eta" not in parsed


def test_minimum_foreign_body_decodes_and_takes_the_message_id() -> None:
    body = '{"task": "orders.charge", "args": ["o-1", 500], "kwargs": {}}'
    first = decode(body, message_id="msg-1")
    second = decode(body, message_id="msg-2")
    assert first.task == "orders.charge"
    assert first.args == ["o-1", 500]
    assert first.kwargs == {}
    assert first.version == 1
    assert first.retries == 0
    assert first.task_id == "msg-1"
    assert second.task_id == "msg-2"  # same body, distinct task ids


def test_task_alone_is_enough() -> None:
    envelope = decode('{"task": "t"}', message_id="m")
    assert (envelope.args, envelope.kwargs, envelope.task_id) == ([], {}, "m")


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ("", "not JSON"),
        ("not json at all", "not JSON"),
        ('{"task": "t"', "not JSON"),
        ("[]", "list"),
        ('["t", [], {}]', "list"),
        ('"orders.charge"', "str"),
        ("null", "NoneType"),
        ("42", "int"),
        ("{}", "task"),
        ('{"version": 1, "task": "t", "unknown": 1}', "unknown"),
        ('{"task": "t", "args": {"a": 1}}', "args"),
        ('{"task": "t", "args": "o-1"}', "args"),
        ('{"task": "t", "kwargs": [1]}', "kwargs"),
        ('{"task": 5}', "task"),
        ('{"task": ""}', "task"),
        ('{"task": "t", "version": 2}', "version"),
        ('{"task": "t", "version": "1x"}', "version"),
        ('{"task": "t", "retries": -1}', "retries"),
        ('{"task": "t", "id": ""}', "id"),
        ('{"task": "t", "eta": "tomorrow"}', "eta"),
        ('{"task": "t", "headers": {"a": 1}}', "headers"),
    ],
)
def test_undecodable_bodies_raise(body: str, hint: str) -> None:
    with pytest.raises(UndecodableMessage) as info:
        decode(body, message_id="m-1")
    assert hint in str(info.value)
    assert info.value.reason == "undecodable_message"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_tokens_are_undecodable(token: str) -> None:
    with pytest.raises(UndecodableMessage):
        decode(f'{{"task": "t", "args": [{token}]}}', message_id="m")


# --- size --------------------------------------------------------------------------------


def _body_bytes(filler: int) -> int:
    envelope = Envelope(id="size-test", task="t", args=["x" * filler])
    fields = envelope.model_dump(mode="json", exclude_defaults=True, exclude={"version"})
    return len(json.dumps({"version": 1, **fields}, separators=(",", ":")).encode())


def test_message_of_exactly_one_mib_is_accepted_one_byte_more_is_refused() -> None:
    overhead = _body_bytes(0)
    fits = limits.SQS_MAX_MESSAGE_BYTES - overhead
    body = encode(Envelope(id="size-test", task="t", args=["x" * fits]))
    assert len(body.encode()) == limits.SQS_MAX_MESSAGE_BYTES == 1_048_576
    with pytest.raises(MessageTooLarge) as info:
        encode(Envelope(id="size-test", task="t", args=["x" * (fits + 1)]))
    assert "1048577" in str(info.value)
    assert "SQS_MAX_MESSAGE_BYTES" in str(info.value)


def test_size_counts_encoded_bytes_of_non_ascii_text() -> None:
    # "é" is sent as the 6-byte escape \u00e9: 200,000 of them do not fit in 1 MiB
    with pytest.raises(MessageTooLarge):
        encode(Envelope(id="i", task="t", args=["é" * 200_000]))
    assert len(encode(Envelope(id="i", task="t", args=["é" * 150_000]))) < 1_048_576


# --- JSON Schema -------------------------------------------------------------------------


def _validator() -> Any:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_identifies_itself_and_requires_only_task() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("envelope-v1.json")
    assert schema["type"] == "object"
    assert schema["required"] == ["task"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["version"]["const"] == 1
    assert {"id", "task", "args", "kwargs", "eta", "headers"} <= set(schema["properties"])


def test_schema_accepts_real_envelopes_and_the_minimum_foreign_body() -> None:
    validator = _validator()
    validator.validate(json.loads(encode(_full_envelope())))
    validator.validate(json.loads(encode(Envelope(id="i", task="t"))))
    validator.validate({"task": "orders.charge", "args": ["o-1", 500], "kwargs": {}})


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"version": 1, "task": "t", "unknown": 1},
        {"task": "t", "version": 2},
        {"task": "t", "args": {}},
        {"task": "t", "kwargs": []},
        {"task": ""},
        {"task": "t", "headers": {"a": 1}},
    ],
)
def test_schema_rejects_what_decode_rejects(body: dict[str, Any]) -> None:
    validator = _validator()
    assert not validator.is_valid(body)
    with pytest.raises(UndecodableMessage):
        decode(json.dumps(body), message_id="m")


def test_a_foreign_envelope_keeps_unknown_fields_in_a_header_and_sqsqs_own_stay_strict() -> None:
    """Issue 11: a body without sqsq's ``version`` (a foreign producer's minimal form)
    tolerates fields sqsq does not know and keeps them, as a JSON object in
    ``headers["sqsq-extra"]``, so a re-sent copy keeps them too; a versioned
    envelope with the same field is refused (and so is it by the published schema)."""
    from sqsq.envelope import EXTRA_HEADER

    body = {
        "task": "t",
        "args": [1],
        "source": "billing",
        "detail": {"n": [1, 2]},
        "headers": {"traceparent": "00-x"},
    }
    envelope = decode(json.dumps(body), message_id="m-9")
    assert envelope.task == "t" and envelope.args == [1] and envelope.id == "m-9"
    assert envelope.headers["traceparent"] == "00-x"
    assert json.loads(envelope.headers[EXTRA_HEADER]) == {
        "source": "billing",
        "detail": {"n": [1, 2]},
    }
    assert decode(encode(envelope)).headers == envelope.headers  # kept when re-sent
    with pytest.raises(UndecodableMessage, match="source"):
        decode(json.dumps({"version": 1, **body}), message_id="m-9")
    assert not _validator().is_valid(body)  # the schema documents the strict form


def test_sqsq_schema_command_prints_the_schema() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json_schema()


# --- the producer's encoder (no pydantic) and the model agree ------------------------------

_aware = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))]),
)
_maybe_text = st.none() | st.text(min_size=1, max_size=40)
_fields = st.fixed_dictionaries(
    {"task": st.text(min_size=1, max_size=60)},
    optional={
        "id": _maybe_text,
        "args": st.lists(_json_values, max_size=3),
        "kwargs": st.dictionaries(st.text(max_size=8), _json_values, max_size=3),
        "queue": _maybe_text,
        "eta": st.none() | _aware,
        "expires": st.none() | _aware,
        "retries": st.integers(min_value=0, max_value=10_000),
        "idempotency_key": _maybe_text,
        "parent_id": _maybe_text,
        "root_id": _maybe_text,
        "headers": st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
        "sent_at": st.none() | _aware,
    },
)


@settings(max_examples=examples(150))
@given(fields=_fields)
def test_an_encoded_body_always_decodes_to_the_envelope_of_its_fields(
    fields: dict[str, Any],
) -> None:
    body = encode_fields(**fields)
    expected = Envelope(**fields)
    if expected.id is None:  # decode() takes the MessageId
        expected = expected.model_copy(update={"id": "m"})
    assert decode(body, message_id="m") == expected
    assert body == encode(Envelope(**fields))  # one encoder for the model and the producer


@pytest.mark.parametrize(
    "fields",
    [
        {"task": ""},
        {"task": "t" * 257},
        {"task": "t", "id": ""},
        {"task": "t", "id": "i" * 129},
        {"task": "t", "idempotency_key": ""},
        {"task": "t", "idempotency_key": "k" * 1025},
        {"task": "t", "retries": -1},
        {"task": "t", "headers": {"a": 1}},
    ],
)
def test_the_encoder_refuses_what_the_model_refuses(fields: dict[str, Any]) -> None:
    from pydantic import ValidationError

    with pytest.raises(EnqueueError):
        encode_fields(**fields)
    with pytest.raises(ValidationError):
        Envelope(**fields)


def test_the_encoder_takes_every_field_of_the_model() -> None:
    import inspect

    parameters = set(inspect.signature(encode_fields).parameters) - {"max_bytes"}  # not a field
    assert parameters == set(Envelope.model_fields) - {"version"}


def test_a_body_too_deep_for_json_loads_keeps_its_id_and_task() -> None:
    deep = "[" * 5000 + "]" * 5000
    body = '{"args": ' + deep + ', "kwargs": {"id": "inner"}, "id": "abc\\"1", "task": "m.t"}'
    with pytest.raises(UndecodableMessage, match="MAX_JSON_DEPTH") as caught:
        decode(body)
    assert (caught.value.task_id, caught.value.task) == ('abc"1', "m.t")
    # read without recursion: only top-level string members, nothing after bad text
    assert top_level_strings('{"a": "id", "id": 5}', ("id",)) == {}
    assert top_level_strings('["id", "x"]', ("id",)) == {}
    assert top_level_strings('{"id": "unterminated', ("id",)) == {}
    assert top_level_strings('{"id": "a", "id": "b"}', ("id",)) == {"id": "a"}
