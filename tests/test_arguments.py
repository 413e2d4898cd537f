"""Arguments against the task function's signature: the worker converts the envelope's
JSON back to the annotated types; the producer refuses calls that do not bind."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

import sqsq
from sqsq.arguments import Signature
from sqsq.envelope import decode, to_json
from sqsq.errors import ArgumentError, InvalidArguments


class Order(BaseModel):
    order_id: str
    cents: int
    placed: datetime


def typed(
    when: datetime,
    ident: uuid.UUID,
    amount: Decimal,
    blob: bytes,
    order: Order,
    day: date | None = None,
) -> None:
    """A function whose parameters all need converting back from JSON."""


def varargs(first: int, *rest: Decimal, **options: datetime) -> None:
    """*args and **kwargs with annotations."""


def untyped(a, b=2, *more, **extra):  # type: ignore[no-untyped-def]
    """No annotations: values arrive as JSON."""


def kinds(a: int, /, b: int, *, c: int = 0) -> None:
    """Positional-only, ordinary and keyword-only parameters."""


def clashing(model_config: str, p0: int, validate: bool = False) -> None:
    """Parameter names that clash with pydantic attributes and internal field names."""


def _json_args(*args: Any, **kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """What the worker sees: the values encoded under the envelope's JSON rules."""
    return to_json(list(args), "args"), to_json(kwargs, "kwargs")


# --- worker side: conversion ---------------------------------------------------------


def test_json_is_converted_back_to_the_annotated_types() -> None:
    when = datetime(2024, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    ident = uuid.uuid4()
    blob = bytes(range(256))  # base64 with "+" and "/"
    order = Order(order_id="o-1", cents=500, placed=when)
    args, kwargs = _json_args(when, ident, Decimal("12.30"), blob, order, day=date(2024, 2, 29))
    assert isinstance(args[0], str) and isinstance(args[3], str)  # really JSON on the wire

    out_args, out_kwargs = Signature(typed).validate(args, kwargs)
    # "day" is positional-or-keyword, so the bound call passes it positionally
    assert out_args == [when, ident, Decimal("12.30"), blob, order, date(2024, 2, 29)]
    assert out_kwargs == {}
    assert isinstance(out_args[0], datetime) and out_args[0].tzinfo is not None
    assert isinstance(out_args[1], uuid.UUID)
    assert isinstance(out_args[2], Decimal) and str(out_args[2]) == "12.30"
    assert isinstance(out_args[3], bytes)
    assert isinstance(out_args[4], Order)
    assert type(out_args[5]) is date


def test_omitted_defaults_are_left_to_the_function() -> None:
    args, kwargs = _json_args(
        datetime(2024, 1, 1, tzinfo=UTC),
        uuid.uuid4(),
        Decimal(1),
        b"",
        {"order_id": "o", "cents": 1, "placed": "2024-01-01T00:00:00Z"},
    )
    out_args, out_kwargs = Signature(typed).validate(args, kwargs)
    assert len(out_args) == 5 and out_kwargs == {}
    assert out_args[4] == Order(order_id="o", cents=1, placed=datetime(2024, 1, 1, tzinfo=UTC))


def test_arguments_given_by_keyword_are_converted_too() -> None:
    ident = uuid.uuid4()
    args, kwargs = _json_args(
        when=datetime(2024, 1, 1, tzinfo=UTC),
        ident=ident,
        amount=Decimal("0.1"),
        blob=b"\x00\xff",
        order={"order_id": "o", "cents": "7", "placed": "2024-01-01T00:00:00+00:00"},
    )
    out_args, out_kwargs = Signature(typed).validate(args, kwargs)
    bound = {
        **dict(zip(["when", "ident", "amount", "blob", "order"], out_args, strict=True)),
        **out_kwargs,
    }
    assert bound["ident"] == ident
    assert bound["amount"] == Decimal("0.1")
    assert bound["blob"] == b"\x00\xff"
    assert bound["order"].cents == 7


def test_var_positional_and_var_keyword_are_converted() -> None:
    args, kwargs = _json_args(
        "1", Decimal("1.5"), Decimal("2.5"), at=datetime(2024, 1, 1, tzinfo=UTC)
    )
    out_args, out_kwargs = Signature(varargs).validate(args, kwargs)
    assert out_args == [1, Decimal("1.5"), Decimal("2.5")]
    assert all(isinstance(a, Decimal) for a in out_args[1:])
    assert out_kwargs == {"at": datetime(2024, 1, 1, tzinfo=UTC)}
    assert isinstance(out_kwargs["at"], datetime)


def test_unannotated_parameters_receive_the_json_value_as_is() -> None:
    out_args, out_kwargs = Signature(untyped).validate(
        ["2024-01-01", {"k": [1]}, "x", 3], {"z": None}
    )
    assert out_args == ["2024-01-01", {"k": [1]}, "x", 3]
    assert out_kwargs == {"z": None}


def test_parameter_kinds_are_respected() -> None:
    out_args, out_kwargs = Signature(kinds).validate(["1", "2"], {"c": "3"})
    assert out_args == [1, 2] and out_kwargs == {"c": 3}
    with pytest.raises(InvalidArguments):
        Signature(kinds).validate([], {"a": 1, "b": 2})  # a is positional-only
    with pytest.raises(InvalidArguments):
        Signature(kinds).validate([1, 2, 3], {})  # c is keyword-only


def test_parameter_names_that_clash_with_pydantic_work() -> None:
    out_args, out_kwargs = Signature(clashing).validate(["cfg", "4"], {"validate": True})
    # BoundArguments puts a positional-or-keyword parameter given by name into args
    assert (out_args, out_kwargs) == (["cfg", 4, True], {})


def test_minimum_foreign_body_validates_against_the_function() -> None:
    envelope = decode(
        '{"task": "t", "args": ["2024-01-01T00:00:00Z", "12345678-1234-5678-1234-567812345678",'
        ' "9.99", "aGk=", {"order_id": "o", "cents": 1, "placed": "2024-01-01T00:00:00Z"}],'
        ' "kwargs": {}}',
        message_id="m",
    )
    out_args, _ = Signature(typed).validate(envelope.args, envelope.kwargs)
    assert out_args[1] == uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert out_args[3] == b"hi"


# --- worker side: refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "hint"),
    [
        ([], {}, "missing a required argument"),
        (["2024-01-01T00:00:00Z"], {}, "missing a required argument"),
        ([1, 2, 3, 4, 5, 6, 7], {}, "too many positional arguments"),
        ([1, 2, 3, 4, 5], {"nope": 1}, "unexpected keyword argument 'nope'"),
    ],
)
def test_arity_and_unknown_keywords_raise_invalid_arguments(
    args: list[Any], kwargs: dict[str, Any], hint: str
) -> None:
    with pytest.raises(InvalidArguments, match=hint) as info:
        Signature(typed).validate(args, kwargs)
    assert info.value.reason == "invalid_arguments"
    assert "test_arguments.typed" in str(info.value)


_GOOD: dict[str, Any] = {
    "when": "2024-01-01T00:00:00Z",
    "ident": "12345678-1234-5678-1234-567812345678",
    "amount": "1.00",
    "blob": "aGk=",
    "order": {"order_id": "o", "cents": 1, "placed": "2024-01-01T00:00:00Z"},
}


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("when", "next tuesday"),
        ("ident", "not-a-uuid"),
        ("amount", "twelve"),
        ("blob", "***not base64***"),
        ("order", {"order_id": "o"}),
        ("order", {"order_id": "o", "cents": "many", "placed": "2024-01-01T00:00:00Z"}),
        ("order", ["o", 1]),
    ],
)
def test_values_that_fail_validation_raise_invalid_arguments(name: str, bad: Any) -> None:
    kwargs = {**_GOOD, name: bad}
    with pytest.raises(InvalidArguments) as info:
        Signature(typed).validate([], kwargs)
    assert name in str(info.value)  # names the offending parameter


def test_var_positional_item_that_fails_validation() -> None:
    with pytest.raises(InvalidArguments, match="rest"):
        Signature(varargs).validate([1, "1.5", "lots"], {})
    with pytest.raises(InvalidArguments, match="options"):
        Signature(varargs).validate([1], {"at": "never"})


def test_nan_from_a_message_body_is_invalid_arguments_not_a_producer_error() -> None:
    # json.loads (used by decode) accepts NaN; the worker must dead-letter such a message
    with pytest.raises(InvalidArguments):
        Signature(varargs).validate([math.nan], {})


# --- producer side -------------------------------------------------------------------------


def test_check_accepts_calls_that_bind_and_refuses_others() -> None:
    def untyped(when, ident, amount, blob, order, day=None):  # type: ignore[no-untyped-def]
        """The parameters of ``typed`` without annotations: any JSON value passes."""

    signature = Signature(untyped)
    signature.check([1, 2, 3, 4, 5], {})
    signature.check([], {"when": 1, "ident": 2, "amount": 3, "blob": 4, "order": 5, "day": 6})
    for args, kwargs in [([], {}), ([1, 2, 3, 4, 5, 6, 7], {}), ([1, 2, 3, 4, 5], {"x": 1})]:
        with pytest.raises(ArgumentError) as info:
            signature.check(args, kwargs)
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, sqsq.EnqueueError)


def test_bind_true_style_signature_skips_the_first_parameter() -> None:
    def bound(self: Any, x: int) -> None: ...

    signature = Signature(bound, skip_first=True)
    signature.check([1], {})
    with pytest.raises(ArgumentError):
        signature.check([object(), 1], {})


def test_delay_with_arguments_that_do_not_bind_raises_before_any_aws_call(
    sqsq_endpoint: Any,
) -> None:
    app = sqsq.App("sigcheck", endpoint_url=sqsq_endpoint.url, region_name="us-east-1")

    @app.task
    def charge(order_id: str, cents: int) -> None: ...

    with pytest.raises(ArgumentError, match="missing a required argument"):
        charge.delay("o-1")
    with pytest.raises(ArgumentError, match="too many positional arguments"):
        charge.delay("o-1", 5, 6)
    with pytest.raises(ArgumentError, match="unexpected keyword argument 'currency'"):
        charge.apply_async(["o-1", 5], {"currency": "EUR"})
    with pytest.raises(ArgumentError):
        charge.delay_many([("o-1", 5), ("o-2",)])
    assert app.clients.counter.snapshot() == {}  # no request at all, not even GetQueueUrl
    app.close()


def test_producer_applies_the_workers_validation(sqsq_endpoint: Any) -> None:
    """delay() validates as the worker will: a wrong type fails here, not in the DLQ."""
    app = sqsq.App("sigtypes", endpoint_url=sqsq_endpoint.url, region_name="us-east-1")

    @app.task
    def double(n: int) -> int:
        return n * 2

    assert double.apply("21").get() == 42  # "21" converts to int, on the worker path too
    with pytest.raises(ArgumentError, match=r"n: Input should be a valid integer"):
        double.delay("twenty")
    with pytest.raises(ArgumentError, match="valid integer"):
        double.apply("twenty")
    with pytest.raises(ArgumentError):
        double.delay_many([(1,), ("two",)])
    assert app.clients.counter.snapshot() == {}  # no request at all
    app.close()


def test_celery_apply_form(sqsq_endpoint: Any) -> None:
    app = sqsq.App("sigapply", endpoint_url=sqsq_endpoint.url, region_name="us-east-1")

    @app.task
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task
    def takes_args(args: list[int]) -> int:
        return sum(args)

    assert add.apply(1, 2).get() == 3
    assert add.apply(args=(1, 2)).get() == 3  # Celery's task.apply(args=, kwargs=)
    assert add.apply(args=[1], kwargs={"y": 5}).get() == 6
    assert add.apply(kwargs={"x": 4}).get() == 4
    assert takes_args.apply(args=[1, 2]).get() == 3  # a parameter named args: plain call
    with pytest.raises(ArgumentError):
        add.apply(args=(1, 2, 3))
    app.close()


def test_the_validation_model_is_built_on_first_use_not_at_declaration() -> None:
    """arguments.py imports pydantic inside its functions; declaring a task builds
    nothing (cheap imports of task modules, e.g. a Lambda cold start)."""
    app = sqsq.App("siglazy", region_name="us-east-1")

    @app.task
    def f(n: int) -> int:
        return n

    assert f.signature._model is None
    assert f.apply(n=2).get() == 2
    assert f.signature._model is not None
