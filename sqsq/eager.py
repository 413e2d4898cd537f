"""Eager mode: run a task here and now, retries included (``Task.apply``, Celery's
``task_always_eager``).

::

    apply(…) ─► which form? ─► encode/decode (envelope) ─► Executor.prepare
                                                              │
              ┌───────────── RETRY: attempt + 1 (countdown slept only if asked) ◄─┐
              ▼                                                                   │
        Executor.call ─► SUCCESS / FAILURE / RETRY ───────────────────────────────┘
              │
              ▼
        AsyncResult(record=…)   final, so get() never waits

The call takes the worker's path — the arguments encoded under the envelope's JSON
rules, decoded and validated, the function called by the execution core, its
outcome judged by the same retry policy (``autoretry_for``, backoff,
``self.retry()``, ``max_retries``) — with no AWS request: nothing is sent, stored,
claimed (idempotency keys are not consulted) or deleted.

Which form a call is in (:func:`split_call`):

1. **sqsq's direct form** ``add.apply(1, 2)`` / ``add.apply(1, y=2)``: the
   arguments as the function takes them, when they bind to the function's own
   signature and pass its validation.
2. **Celery's positional form** ``add.apply((1, 2))`` / ``add.apply((1,), {"y": 2})``
   / ``add.apply((1,), kwargs={"y": 2})``: one or two positional arguments, a
   tuple or list then an optional dict, when read as Celery's ``(args, kwargs)``
   they bind and validate.
3. **Celery's keyword form** ``add.apply(args=(1, 2), kwargs={"y": 2})``.

``apply``'s own keywords — ``args``, ``kwargs``, ``task_id``, ``throw``, ``sleep`` —
are apply's unless the function has a parameter of that very name (then they are
the function's; ``*args`` / ``**kwargs`` do not count). A call that fits both
forms — ``add.apply((1,), {"y": 5})`` on an unannotated ``add(x, y)`` could mean
``add((1,), {"y": 5})`` or Celery's ``add(1, y=5)`` — is refused with
:class:`~sqsq.ArgumentError` rather than guessed: say ``args=`` / ``kwargs=`` for
Celery's, or pass the function's arguments by keyword (annotations settle most
cases: ``add(x: int, y: int)`` does not validate ``(1,)`` as ``x``). A call that
fits neither raises :class:`~sqsq.ArgumentError` naming the task's signature.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .arguments import _qualname
from .errors import ArgumentError
from .result import AsyncResult, State

if TYPE_CHECKING:
    from .outcome import Outcome
    from .task import Task

#: ``apply``'s own keywords (taken from ``**kwargs`` unless the function has a
#: parameter of the same name).
APPLY_OPTIONS = ("args", "kwargs", "task_id", "throw", "sleep")


def split_call(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Sort an ``apply(*args, **kwargs)`` call into the function's arguments and
    apply's options (see the module docstring for the rule).

    Returns:
        ``(args, kwargs, options)``: the function's arguments, and apply's own
        keywords (``task_id``, ``throw``, ``sleep``).

    Raises:
        ArgumentError: no form fits; the message names the task's signature.
    """
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = {n for n, p in task.signature.signature.parameters.items() if p.kind not in variadic}
    options = {k: kwargs.pop(k) for k in APPLY_OPTIONS if k in kwargs and k not in params}
    if "args" in options or "kwargs" in options:  # Celery's keyword form
        if "args" not in options and len(args) == 1 and isinstance(args[0], tuple | list):
            options["args"], args = args[0], ()  # apply((1,), kwargs={...})
        if args:
            raise _misfit(task, "positional arguments beside args=/kwargs=")
        call_args, call_kwargs = options.pop("args", None), options.pop("kwargs", None)
        call = (list(call_args or ()), {**(call_kwargs or {}), **kwargs})
        error = _check(task, *call)
        if error is not None:
            raise _misfit(task, error)
        return (*call, options)
    error = _check(task, list(args), kwargs)
    celery = _celery_form(args, kwargs)
    celery_error = _check(task, *celery) if celery is not None else "not Celery's shape"
    if error is None and celery_error is None:
        assert celery is not None
        raise ArgumentError(
            f"{signature_text(task)}: ambiguous call: it fits both the function's "
            f"arguments and Celery's apply(args={celery[0]!r}, kwargs={celery[1]!r}); "
            "say apply(args=..., kwargs=...) for Celery's, or pass the function's "
            "arguments by keyword"
        )
    if error is None:
        return list(args), kwargs, options
    if celery is None:
        raise _misfit(task, error)
    if celery_error is None:
        return (*celery, options)
    raise _misfit(task, f"{error}; read as Celery's apply(args, kwargs): {celery_error}")


def _celery_form(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]] | None:
    """``(args, kwargs)`` read as Celery's ``apply(args, kwargs)``, or None when
    the call does not have that shape."""
    if not 1 <= len(args) <= 2 or not isinstance(args[0], tuple | list) or kwargs:
        return None
    extra = args[1] if len(args) == 2 else {}
    if extra is None:
        extra = {}
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        return None
    return list(args[0]), dict(extra)


def _check(task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Why these arguments do not fit the function (None: they do)."""
    try:
        task.signature.check(args, kwargs)
    except ArgumentError as exc:
        return str(exc).removeprefix(f"{_qualname(task.fn)}: ")
    return None


class _Written(str):
    """An annotation shown as written (``int``, not ``'int'``)."""

    def __repr__(self) -> str:
        return str(self)


def signature_text(task: Task[Any, Any]) -> str:
    """``name(x: int, y: int = 0)``: the task's signature as its messages name it."""
    sig = task.signature.signature
    params = [
        p.replace(annotation=_Written(p.annotation)) if isinstance(p.annotation, str) else p
        for p in sig.parameters.values()
    ]
    plain = sig.replace(parameters=params, return_annotation=inspect.Signature.empty)
    return f"{task.name}{plain}"


def _misfit(task: Task[Any, Any], why: str) -> ArgumentError:
    return ArgumentError(
        f"{signature_text(task)}: {why} "
        "(apply takes the function's arguments, apply(1, 2), or Celery's form, "
        "apply((1, 2), {'y': 3}) / apply(args=..., kwargs=...))"
    )


def apply(
    task: Task[Any, Any],
    args: Iterable[Any] | None,
    kwargs: dict[str, Any] | None,
    *,
    task_id: str | None = None,
    throw: bool | None = None,
    sleep: bool = False,
) -> AsyncResult:
    """Run ``task`` here, retries in place, and return its final result.

    Args:
        task: the task.
        args / kwargs: the function's arguments.
        task_id: the id of the run (default: a UUID4).
        throw: raise the failure at once (a :class:`~sqsq.TaskFailed` whose
            ``remote_type`` names the task's exception); None: the app's
            ``task_eager_propagates`` setting.
        sleep: wait out each retry's countdown (default: retry at once).

    Returns:
        An :class:`~sqsq.AsyncResult` in SUCCESS, FAILURE or REVOKED, never RETRY:
        ``get()`` returns or raises at once. ``record.attempts`` counts the runs.

    Raises:
        ArgumentError / NotSerializable: as ``delay()`` would.
        TaskFailed: the task failed and ``throw`` (or ``task_eager_propagates``) is on.
    """
    from .delivery import Delivery
    from .execution import Executor
    from .outcome import OutcomeKind, Prepared
    from .producer import created_here

    message = task._build(args, kwargs, task_id=task_id)
    created_here([message])  # run here, never sent: its producer span ends now
    delivery = Delivery(
        message_id=message.task_id,
        receipt_handle="",
        body=message.body,
        queue=task.queue,
        message_attributes=dict(message.attributes or {}),  # signed, when signing is on
    )
    executor = Executor(task.app, worker_id="eager")
    prepared = executor.prepare(delivery)
    outcome: Outcome
    while True:
        if not isinstance(prepared, Prepared):
            outcome = prepared
            break
        outcome = executor.call(prepared)
        retried = outcome.kind in (OutcomeKind.RETRY, OutcomeKind.RESEND) and outcome.record
        if not retried:
            break
        if sleep:
            time.sleep(outcome.delay_s)
        # the next attempt, as SQS's next receive of the message would count it
        count = prepared.delivery.receive_count + 1
        prepared = replace(prepared, delivery=replace(prepared.delivery, receive_count=count))
    result = AsyncResult(outcome.task_id, record=outcome.record)
    propagate = task.app.settings.task_eager_propagates if throw is None else throw
    record = outcome.record
    if propagate and record is not None and record.state is not State.SUCCESS:
        raise record.error()
    return result
