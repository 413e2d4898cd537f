"""Celery's canvas on SQS and DynamoDB: signatures, chain, group, chord, callbacks.

Importing this package registers its :class:`~sqsq.workflows.continuation.Continuation`
with the core (``sqsq.settle.register_continuation``): the one hook through which
follow-ups are sent after an outcome is stored and before its message is deleted.
The core never imports this package at import time (settle loads it by name when
an envelope carries a ``workflow`` and nothing is registered yet).

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

from ..errors import ChainError, ChordError
from ..settle import register_continuation
from .canvas import Canvas, Signature, chain, chord, group, signature
from .continuation import Continuation
from .result import GroupResult

__all__ = [
    "Canvas",
    "ChainError",
    "ChordError",
    "GroupResult",
    "Signature",
    "chain",
    "chord",
    "group",
    "signature",
]

register_continuation(Continuation())
