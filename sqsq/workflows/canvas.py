"""Signatures and Celery's canvas primitives: chain, group, chord.

A signature is a task call that has not been sent: task name, arguments and
options. Canvas objects compose them; :meth:`Canvas.apply_async` *freezes* the
whole tree first (every task gets its id, so results are known before anything
runs and a re-sent follow-up keeps its id), then plans and sends it
(``plan.py``). Every canvas has a JSON form (:meth:`Canvas.to_dict`): that is
what travels in an envelope's ``workflow`` field and in a chord's counter item.

Chains are normalized as in Celery: a group followed by another step becomes a
chord (the step receives the list of the group's results), and the steps after a
chord run after its body.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..aws_errors import aws_boundary
from ..calls import Steps, arun, run
from ..errors import ConfigurationError
from ..result import State

if TYPE_CHECKING:
    from ..app import App
    from ..result import AsyncResult
    from ..task import Task
    from .result import GroupResult

#: Options a task signature accepts (``.set()`` / ``apply_async``), as in ``Task.apply_async``.
TASK_OPTIONS = frozenset({"queue", "countdown", "expires", "task_id", "idempotency_key"})


#: No previous step (the first step of an eager chain).
_NOTHING: Any = object()


def _new_id() -> str:
    return str(uuid.uuid4())


def _seconds(value: Any) -> Any:
    return value.total_seconds() if isinstance(value, timedelta) else value


class Canvas:
    """What every canvas object has: links, options, composition with ``|``."""

    kind = ""

    def __init__(self, app: App | None) -> None:
        self.app = app
        self.options: dict[str, Any] = {}
        self.links: list[Canvas] = []
        self.errbacks: list[Canvas] = []

    # --- composing ----------------------------------------------------------------

    def __or__(self, other: Canvas) -> chain:
        """``a | b`` is ``chain(a, b)``."""
        if not isinstance(other, Canvas):
            return NotImplemented
        return chain(self, other)

    def link(self, callback: Canvas) -> Canvas:
        """Apply ``callback`` with this canvas's result when it succeeds (Celery's
        ``link``). Returns ``callback``."""
        self.links.append(callback)
        return callback

    def link_error(self, errback: Canvas) -> Canvas:
        """Apply ``errback`` with the failed task's id when it fails (Celery's
        ``link_error``, old-style: the errback receives the task id). Returns ``errback``."""
        self.errbacks.append(errback)
        return errback

    def on_error(self, errback: Canvas) -> Canvas:
        """Like :meth:`link_error`, but returns this canvas (Celery)."""
        self.link_error(errback)
        return self

    def set(self, **options: Any) -> Canvas:
        """Set sending options (``queue``, ``countdown``, ``expires``, ``task_id``,
        ``idempotency_key`` for tasks); returns this canvas."""
        self.options.update({k: _seconds(v) for k, v in options.items()})
        return self

    def clone(self) -> Canvas:
        """A deep copy sharing the App (frozen ids included)."""
        return copy.deepcopy(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Canvas:
        memo[id(self.app)] = self.app  # the App (clients, locks) is shared, never copied
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            setattr(new, name, copy.deepcopy(value, memo))
        return new

    # --- JSON form -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see the module docstring)."""
        raise NotImplementedError

    def _common(self) -> dict[str, Any]:
        d: dict[str, Any] = {"t": self.kind}
        if self.links:
            d["link"] = [s.to_dict() for s in self.links]
        if self.errbacks:
            d["link_error"] = [s.to_dict() for s in self.errbacks]
        return d

    # --- sending -------------------------------------------------------------------

    def freeze(self) -> Any:
        """Assign ids to every task in the tree (once); returns the result handle."""
        raise NotImplementedError

    def _app(self) -> App:
        if self.app is None:
            raise ConfigurationError(
                f"{self!r} has no app: build it from tasks (task.s()) or pass app="
            )
        return self.app

    @aws_boundary()
    def apply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult | GroupResult:
        """Freeze and send: chord counter items are written first (one PutItem per
        chord), then all first messages with SendMessageBatch.

        Args:
            args: arguments prepended to the first task(s) (partial application).
            kwargs: keyword arguments merged into the first task(s).
            **options: sending options, as in :meth:`set`; ``link=`` / ``link_error=``
                (a canvas or a list) as :meth:`link` / :meth:`link_error`.

        Returns:
            An :class:`~sqsq.AsyncResult` (task, chain, chord) or a
            :class:`~sqsq.workflows.GroupResult` (group; chain or chord ending in one).

        Raises:
            EnqueueError: as ``Task.apply_async`` (also its ArgumentError,
                NotSerializable and MessageTooLarge); ConfigurationError and AWSError as
                there too (an AWSError of a chord names no resource: its table and
                queues are several).
        """
        app = self._app()
        if app.settings.task_always_eager:
            return self._prepared(args, kwargs, options)._eagerly(app)
        return run(self._sending(app, args, kwargs, options), app.clients, app.directory)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult | GroupResult:
        """``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    @aws_boundary()
    async def aapply_async(
        self,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult | GroupResult:
        """Asyncio twin of :meth:`apply_async` (aiobotocore)."""
        app = self._app()
        if app.settings.task_always_eager:
            return self._prepared(args, kwargs, options)._eagerly(app)
        return await arun(self._sending(app, args, kwargs, options), app.clients, app.directory)

    async def adelay(self, *args: Any, **kwargs: Any) -> AsyncResult | GroupResult:
        """``aapply_async(args, kwargs)``."""
        return await self.aapply_async(args, kwargs)

    def _eagerly(self, app: App) -> AsyncResult:
        """Run here (``task_always_eager``): a task signature or a chain of them."""
        raise ConfigurationError(
            f"task_always_eager runs a task signature or a chain of them here; "
            f"a {self.kind} is not run eagerly (test it with a worker)"
        )

    def _sending(
        self,
        app: App,
        args: Iterable[Any] | None,
        kwargs: dict[str, Any] | None,
        options: dict[str, Any],
    ) -> Steps[AsyncResult | GroupResult]:
        """The calls of :meth:`apply_async` (see :mod:`sqsq.calls`): frozen, then sent."""
        from .plan import sending

        canvas = self._prepared(args, kwargs, options)
        result = canvas.freeze()
        yield from sending(app, canvas.to_dict())
        return result  # type: ignore[no-any-return]

    def _prepared(
        self, args: Iterable[Any] | None, kwargs: dict[str, Any] | None, options: dict[str, Any]
    ) -> Canvas:
        canvas = self.clone()
        for callback in _as_list(options.pop("link", None)):
            canvas.link(callback)
        for errback in _as_list(options.pop("link_error", None)):
            canvas.link_error(errback)
        if options:
            canvas.set(**options)
        if args or kwargs:
            canvas._partial(list(args or ()), dict(kwargs or {}))
        return canvas

    def _partial(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        raise NotImplementedError


class Signature(Canvas):
    """One task call, not yet sent (Celery's ``signature`` / ``task.s()``).

    Args:
        task: a :class:`~sqsq.Task` or a registered task name (then ``app`` is needed).
        args / kwargs: the call's arguments (JSON under the envelope's rules).
        immutable: do not prepend the parent's result (``task.si()``).
        app: the App (taken from ``task`` when it is a Task).
        **options: sending options (see :data:`TASK_OPTIONS`).

    Raises:
        ConfigurationError: an unknown option.
    """

    kind = "task"

    def __init__(
        self,
        task: Task[Any, Any] | str,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        immutable: bool = False,
        app: App | None = None,
        **options: Any,
    ) -> None:
        if isinstance(task, str):
            name = task
        else:
            name = task.name
            app = app or task.app
        super().__init__(app)
        self.task = name
        self.args = list(args or ())
        self.kwargs = dict(kwargs or {})
        self.immutable = immutable
        self.set(**options)

    def __repr__(self) -> str:
        return f"{self.task}({', '.join(map(repr, self.args))})" + ("!" if self.immutable else "")

    def set(self, **options: Any) -> Signature:
        unknown = set(options) - TASK_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown signature option(s) {sorted(unknown)}; known: {sorted(TASK_OPTIONS)}"
            )
        super().set(**options)
        return self

    @property
    def id(self) -> str | None:
        """The task id once frozen (or set with ``task_id=``)."""
        return self.options.get("task_id")

    def _partial(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        if not self.immutable:
            self.args = [*args, *self.args]
        self.kwargs.update(kwargs)

    def _eagerly(self, app: App, previous: Any = _NOTHING) -> AsyncResult:
        if self.links or self.errbacks:
            raise ConfigurationError(
                f"task_always_eager: {self!r} has link/link_error callbacks, not run eagerly"
            )
        task = app.tasks.get(self.task)
        if task is None:
            raise ConfigurationError(f"task_always_eager: no task named {self.task!r} here")
        args = self.args if self.immutable or previous is _NOTHING else [previous, *self.args]
        return task._eager(args, self.kwargs, self.options.get("task_id"))

    def freeze(self) -> AsyncResult:
        self.options.setdefault("task_id", _new_id())
        for s in (*self.links, *self.errbacks):
            s.freeze()
        return self._app().AsyncResult(self.options["task_id"])

    def to_dict(self) -> dict[str, Any]:
        d = self._common()
        d.update(task=self.task, args=self.args, kwargs=self.kwargs, options=dict(self.options))
        if self.immutable:
            d["immutable"] = True
        return d


class chain(Canvas):
    """Steps run one after the other; each receives the previous result first.

    The next step is sent only once the previous outcome is stored; a failure
    stops the chain and marks the remaining steps FAILURE (``ChainError``). The
    chain's result is its last step's, whose ``parent`` walks back.

    Args:
        *tasks: signatures or canvases (a single iterable is accepted too).
    """

    kind = "chain"

    def __init__(self, *tasks: Canvas | Iterable[Canvas], app: App | None = None) -> None:
        steps: list[Canvas] = []
        for t in tasks:
            steps.extend([t] if isinstance(t, Canvas) else list(t))
        super().__init__(app or next((s.app for s in steps if s.app is not None), None))
        self.tasks = _normalize(steps)

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.tasks))

    def _partial(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        if self.tasks:
            self.tasks[0]._partial(args, kwargs)

    def _eagerly(self, app: App) -> AsyncResult:
        """Each step here, given the previous step's value; a step that does not
        succeed stops the chain, and its result is the chain's."""
        if self.links or self.errbacks or not self.tasks:
            return super()._eagerly(app)
        result: AsyncResult | None = None
        value: Any = _NOTHING
        for step in self.tasks:
            if not isinstance(step, Signature):
                return step._eagerly(app)  # a group or chord inside: refused
            step_result = step._eagerly(app, value)
            step_result.parent = result
            result = step_result
            record = step_result.record
            if record is None or record.state is not State.SUCCESS:
                break
            value = record.value
        assert result is not None
        return result

    def freeze(self) -> Any:
        if not self.tasks:
            raise ConfigurationError("an empty chain has no result")
        results = [t.freeze() for t in self.tasks]
        for s in (*self.links, *self.errbacks):
            s.freeze()
        for parent, child in itertools.pairwise(results):
            _attach(child, parent)
        return results[-1]

    def to_dict(self) -> dict[str, Any]:
        d = self._common()
        d["tasks"] = [t.to_dict() for t in self.tasks]
        d["options"] = dict(self.options)
        return d


class group(Canvas):
    """Tasks run in parallel, sent with SendMessageBatch; the result is a
    :class:`~sqsq.workflows.GroupResult` (values in order).

    Args:
        *tasks: signatures or canvases (a single iterable is accepted too).
    """

    kind = "group"

    def __init__(self, *tasks: Canvas | Iterable[Canvas], app: App | None = None) -> None:
        members: list[Canvas] = []
        for t in tasks:
            members.extend([t] if isinstance(t, Canvas) else list(t))
        super().__init__(app or next((s.app for s in members if s.app is not None), None))
        self.tasks = members

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.tasks))})"

    def __len__(self) -> int:
        return len(self.tasks)

    def _partial(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        for t in self.tasks:
            t._partial(args, kwargs)

    def freeze(self) -> GroupResult:
        from .result import GroupResult

        self.options.setdefault("group_id", _new_id())
        results = [t.freeze() for t in self.tasks]
        for s in (*self.links, *self.errbacks):
            s.freeze()
        return GroupResult(self.options["group_id"], results, app=self._app())

    def to_dict(self) -> dict[str, Any]:
        d = self._common()
        d["tasks"] = [t.to_dict() for t in self.tasks]
        d["options"] = dict(self.options)
        return d


class chord(Canvas):
    """A group (the header) whose ordered results go to one callback (the body).

    Completion is counted in DynamoDB (one conditional UpdateItem per member,
    counted once however often it is delivered); exactly one finisher sends the
    body, with a deterministic id and an idempotency key. A failed member fails
    the chord (``ChordError`` naming the member): the body does not run, its
    errbacks do.

    Args:
        header: a group, or an iterable of signatures.
        body: the callback; may be given later: ``chord(header)(body)``.
    """

    kind = "chord"

    def __init__(
        self,
        header: group | Iterable[Canvas],
        body: Canvas | None = None,
        app: App | None = None,
    ) -> None:
        self.header = header if isinstance(header, group) else group(header, app=app)
        super().__init__(app or self.header.app or (body.app if body else None))
        self.body = body

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def __call__(self, body: Canvas | None = None, **options: Any) -> AsyncResult | GroupResult:
        """``chord(header)(body)`` sends the chord (Celery)."""
        canvas = copy.deepcopy(self)
        if body is not None:
            canvas.body = body
        return canvas.apply_async(**options)

    def link(self, callback: Canvas) -> Canvas:
        return self._need_body().link(callback)

    def link_error(self, errback: Canvas) -> Canvas:
        return self._need_body().link_error(errback)

    def _need_body(self) -> Canvas:
        if self.body is None:
            raise ConfigurationError("a chord needs a body (its callback)")
        return self.body

    def _partial(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.header._partial(args, kwargs)

    def freeze(self) -> Any:
        body = self._need_body()
        self.options.setdefault("chord_id", _new_id())
        header = self.header.freeze()
        result = body.freeze()
        _attach(result, header)
        return result

    def to_dict(self) -> dict[str, Any]:
        d = self._common()
        d.update(
            header=[t.to_dict() for t in self.header.tasks],
            body=self._need_body().to_dict(),
            options=dict(self.options),
        )
        return d


def _as_list(value: Canvas | Iterable[Canvas] | None) -> list[Canvas]:
    if value is None:
        return []
    return [value] if isinstance(value, Canvas) else list(value)


def _attach(child: Any, parent: Any) -> None:
    """Make ``parent`` the parent of the first step of ``child``'s own chain."""
    node = child
    while node.parent is not None:
        node = node.parent
    if node is not parent:
        node.parent = parent


def signature(
    task: Task[Any, Any] | str,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    app: App | None = None,
    immutable: bool = False,
    **options: Any,
) -> Signature:
    """A :class:`Signature` of ``task`` (a Task or a registered name with ``app=``)."""
    return Signature(task, args, kwargs, immutable=immutable, app=app, **options)


def _normalize(steps: list[Canvas]) -> list[Canvas]:
    """Flatten nested chains; a group followed by a step becomes a chord; the steps
    after a chord go into its body (Celery's rules)."""
    flat: list[Canvas] = []
    for s in steps:
        if isinstance(s, chain) and not s.links and not s.errbacks:
            flat.extend(s.tasks)
        else:
            flat.append(s)
    out: list[Canvas] = []
    i = 0
    while i < len(flat):
        step = flat[i]
        rest = flat[i + 1 :]
        if isinstance(step, group) and rest:
            body = rest[0] if len(rest) == 1 else chain(*rest)
            out.append(chord(step, body))
            break
        if isinstance(step, chord) and rest:
            inner = chord(step.header, chain(step._need_body(), *rest), app=step.app)
            inner.options = step.options
            out.append(inner)
            break
        out.append(step)
        i += 1
    return out
