"""Celery's canvas on SQS and DynamoDB: signatures, chain, group, chord, callbacks.

:func:`install` puts its :class:`~sqsq.workflows.continuation.Continuation` in the
App's slot (``App.continuation``): the one hook through which follow-ups are sent
after an outcome is stored and before its message is deleted. The core never
imports this package: settle asks the App (``App.follow_ups()``), whose facade
installs it on first use.

Modules, in the order data flows::

    canvas.py        Signature, chain, group, chord: building and freezing (ids)
    plan.py          frozen canvas -> chord counter items + messages (pure); send()
    continuation.py  after an outcome is stored: next step, callbacks, chord counting
    result.py        GroupResult (BatchGetItem)

A failed step stops what depends on it: ``AsyncResult.get()`` of a chain step that
never ran raises :class:`ChainError`, of a chord's body whose member failed
:class:`ChordError` (both ``sqsq.TaskFailed``; their ``remote_message`` names the
step or member that failed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ChainError, ChordError
from .canvas import Canvas, Signature, chain, chord, group, signature
from .continuation import Continuation
from .result import GroupResult

if TYPE_CHECKING:
    from ..app import App
    from ..settle import Continuation as Hook

__all__ = [
    "Canvas",
    "ChainError",
    "ChordError",
    "GroupResult",
    "Signature",
    "chain",
    "chord",
    "group",
    "install",
    "signature",
]


def install(app: App) -> Hook:
    """``app.continuation``, holding this package's :class:`Continuation` unless one
    is installed already (``App.follow_ups()`` calls this when settle first needs it)."""
    if app.continuation is None:
        app.continuation = Continuation()
    return app.continuation
