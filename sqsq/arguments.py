"""Binding and validating a task's arguments against its function signature.

The producer binds and validates the arguments before sending — the same pydantic
validation the worker applies, so a wrong type fails at ``delay()`` rather than in
the dead-letter queue. The worker binds again — a message body is untrusted — and validates
each annotated parameter with pydantic, turning the envelope's JSON back into the
annotated types (ISO strings into ``datetime``, base64 into ``bytes``, objects
into pydantic models, …). Unannotated parameters receive the JSON value as is.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .envelope import dumps, to_json
from .errors import ArgumentError, InvalidArguments, NotSerializable, SqsqError

if TYPE_CHECKING:
    from pydantic import BaseModel

if TYPE_CHECKING:
    from pydantic import BaseModel


class Signature:
    """The validated calling convention of one task function.

    Args:
        fn: the task function.
        skip_first: drop the first parameter (``bind=True`` tasks receive the
            task context there).
    """

    def __init__(self, fn: Callable[..., Any], *, skip_first: bool = False) -> None:
        self.fn = fn
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        if skip_first:
            params = params[1:]
        self.signature = sig.replace(parameters=params)
        self._model: type[BaseModel] | None = None

    def check(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> None:
        """Producer-side check: the arguments bind and pass the worker's validation.

        Raises:
            ArgumentError: wrong number of arguments, unknown keywords, or a value
                that fails validation against the annotations.

        A value that is not JSON is left to the envelope's encoder (NotSerializable).
        """
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"{_qualname(self.fn)}: {exc}") from None
        self._convert(bound, ArgumentError, producer=True)

    def validate(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Worker-side bind and validation of decoded JSON arguments.

        Returns:
            ``(args, kwargs)`` converted to the annotated types.

        Raises:
            InvalidArguments: the arguments do not bind, or a value fails validation.
        """
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{_qualname(self.fn)}: {exc}") from None
        self._convert(bound, InvalidArguments)
        return list(bound.args), dict(bound.kwargs)

    def _convert(
        self, bound: inspect.BoundArguments, error: type[SqsqError], producer: bool = False
    ) -> None:
        """Validate ``bound`` through its JSON form; converted values replace it."""
        from pydantic import ValidationError

        model = self._validation_model()
        try:
            validated = model.model_validate_json(dumps(to_json(bound.arguments, "arguments")))
        except NotSerializable as exc:
            if producer:
                return  # the envelope's encoder raises it, naming args[i] / kwargs[k]
            raise error(f"{_qualname(self.fn)}: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors(include_url=False)[:5]
            )
            raise error(f"{_qualname(self.fn)}: {problems}") from None
        if not producer:
            for name in bound.arguments:
                bound.arguments[name] = getattr(validated, f"p{self._index[name]}")

    def _validation_model(self) -> type[BaseModel]:
        if self._model is None:
            from pydantic import ConfigDict, Field, create_model

            try:
                hints = typing.get_type_hints(self.fn)
            except Exception:  # unresolvable forward references: validate nothing
                hints = {}
            fields: dict[str, Any] = {}
            self._index: dict[str, int] = {}
            for i, param in enumerate(self.signature.parameters.values()):
                ann: Any = hints.get(param.name, Any)
                if param.kind is inspect.Parameter.VAR_POSITIONAL:
                    ann = tuple[ann, ...]
                elif param.kind is inspect.Parameter.VAR_KEYWORD:
                    ann = dict[str, ann]
                self._index[param.name] = i
                # Positional field names with aliases avoid clashes with BaseModel attributes.
                fields[f"p{i}"] = (ann, Field(default=None, alias=param.name))
            self._model = create_model(
                f"{_qualname(self.fn)}.arguments",
                __config__=ConfigDict(
                    val_json_bytes="base64", arbitrary_types_allowed=True, extra="forbid"
                ),
                **fields,
            )
        assert self._model is not None
        return self._model


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
