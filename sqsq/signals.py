"""Signals in Celery's names: hooks around a task's run, its publishing and the worker.

::

    producer (caller's thread)      before_task_publish ─► SendMessage(Batch) ─► after_task_publish
    process-pool child, at start    worker_process_init
    the thread/process of the body  task_prerun ─► body ─► task_success | task_retry | task_failure
                                                        ─► task_postrun
    the worker's loop / Lambda      task_revoked (revoked or expired: the body never runs)
    the worker, at exit             worker_shutdown

A receiver is called with keyword arguments named as Celery names them, plus
``sender`` and ``signal``; write it with ``**kwargs`` so that arguments added
later do not break it::

    from sqsq.signals import task_failure

    @task_failure.connect
    def report(sender, task_id, exception, **kwargs):
        ...

A receiver that raises is logged (logger ``sqsq.signals``, with the traceback)
and skipped: it never changes a task's outcome, never stops a send, never stops
the worker. A slow receiver is the caller's time: it runs inline, in the thread
named above (a task's receivers count against its time limit's wall clock but
not its recorded run time). With no receiver connected, sending a signal is one
attribute check.

Deliberately small (no blinker, no weak references): receivers are held
strongly until :meth:`Signal.disconnect`, in the order they were connected.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "Signal",
    "after_task_publish",
    "before_task_publish",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_retry",
    "task_revoked",
    "task_success",
    "worker_process_init",
    "worker_shutdown",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: A receiver's entry: (receiver, the sender it filters on or None for any).
_Entry = tuple[Callable[..., Any], Any]


def _matches(wanted: Any, sender: Any) -> bool:
    """Whether a receiver connected with ``sender=wanted`` hears from ``sender``:
    the same object, an equal value, or a task name equal to the sender task's."""
    if wanted is None or wanted is sender:
        return True
    if isinstance(wanted, str):
        return wanted == (sender if isinstance(sender, str) else getattr(sender, "name", None))
    name = getattr(wanted, "name", None)
    return isinstance(name, str) and name == sender  # a Task object, sender a task name


class Signal:
    """A hook that receivers connect to; sqsq sends it with keyword arguments.

    Args:
        name: the signal's name (Celery's).
        providing_args: the keyword arguments a receiver is given (besides
            ``sender`` and ``signal``), for documentation.

    Example:
        >>> from sqsq.signals import Signal
        >>> ping = Signal("ping", ["n"])
        >>> seen = []
        >>> @ping.connect
        ... def on_ping(sender, n, **kwargs):
        ...     seen.append((sender, n))
        >>> _ = ping.send("me", n=1)
        >>> seen
        [('me', 1)]
    """

    def __init__(self, name: str, providing_args: list[str] | None = None) -> None:
        self.name = name
        self.providing_args = tuple(providing_args or ())
        self._lock = threading.Lock()
        #: connected receivers; replaced (never mutated) so that send() reads it unlocked
        self.receivers: tuple[_Entry, ...] = ()

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"

    def connect(self, receiver: F | None = None, *, sender: Any = None) -> Any:
        """Connect ``receiver``; usable as ``@signal.connect``,
        ``@signal.connect(sender=task)`` or ``signal.connect(fn)``.

        Args:
            receiver: a callable taking keyword arguments (``**kwargs`` advised).
            sender: only hear sends from this sender: for task signals a
                :class:`~sqsq.Task` or its registered name, for the publish
                signals the task name. None: every sender.

        Returns:
            ``receiver`` (so it works as a decorator), or a decorator when
            ``receiver`` is not given. Connecting the same receiver with the same
            ``sender`` twice keeps one connection.
        """
        if receiver is None:
            return lambda fn: self.connect(fn, sender=sender)
        with self._lock:
            entry = (receiver, sender)
            if not any(r == receiver and s is sender for r, s in self.receivers):
                self.receivers = (*self.receivers, entry)
        return receiver

    def disconnect(self, receiver: Callable[..., Any], *, sender: Any = None) -> bool:
        """Disconnect ``receiver`` (connected with this ``sender``).

        Returns:
            True when it was connected.
        """
        with self._lock:
            kept = tuple((r, s) for r, s in self.receivers if not (r == receiver and s is sender))
            found = len(kept) != len(self.receivers)
            self.receivers = kept
        return found

    def send(self, sender: Any, **named: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Call each receiver that listens to ``sender`` with ``sender=``,
        ``signal=`` and ``named``; an exception a receiver raises is logged and
        becomes its entry's value.

        Returns:
            ``[(receiver, what it returned or raised), ...]``, in connection order.
        """
        replies: list[tuple[Callable[..., Any], Any]] = []
        for receiver, wanted in self.receivers:
            if not _matches(wanted, sender):
                continue
            try:
                reply = receiver(signal=self, sender=sender, **named)
            except Exception as exc:
                logger.exception(
                    "signal %s: receiver %s raised %s (ignored)",
                    self.name,
                    getattr(receiver, "__qualname__", repr(receiver)),
                    type(exc).__name__,
                )
                reply = exc
            replies.append((receiver, reply))
        return replies


before_task_publish = Signal(
    "before_task_publish",
    ["body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy"],
)
"""Before a task message is sent, once per message (each of ``delay_many``'s too),
in the sending call's thread (or on its event loop). ``sender``: the task name.
``body`` is the envelope as JSON, ``headers`` Celery-shaped (``id``, ``task``, the
envelope's routing fields and headers), ``routing_key`` the SQS queue name,
``exchange`` ``""``, ``properties`` ``delay_seconds`` / ``message_group_id`` /
``deduplication_id``; ``declare`` ``[]``, ``retry_policy`` None. Copies: changing
them changes nothing that is sent."""

after_task_publish = Signal("after_task_publish", ["body", "exchange", "routing_key", "headers"])
"""After SQS acknowledged a task message (a refused message has none), where
:data:`before_task_publish` ran. ``sender``: the task name."""

task_prerun = Signal("task_prerun", ["task_id", "task", "args", "kwargs"])
"""Before the body runs, in the thread or process that runs it. ``sender``: the task;
``args`` / ``kwargs`` the validated arguments."""

task_postrun = Signal("task_postrun", ["task_id", "task", "args", "kwargs", "retval", "state"])
"""After the body ran and its outcome signal was sent, in the thread or process that
ran it. ``retval``: the return value, or the exception; ``state``: ``"SUCCESS"``,
``"RETRY"`` or ``"FAILURE"``. ``sender``: the task."""

task_success = Signal("task_success", ["result", "runtime", "task_id", "request"])
"""The body returned (``result``; ``runtime`` in seconds). ``sender``: the task.
sqsq also passes ``task_id`` and ``request`` (a :class:`~sqsq.task.Request`): a
Celery receiver reads them from ``sender.request``, which a sqsq task lacks."""

task_retry = Signal("task_retry", ["request", "reason", "einfo"])
"""The body failed and will run again (``autoretry_for``, ``Retry``): ``reason`` is
the exception, ``einfo`` its formatted traceback. ``sender``: the task."""

task_failure = Signal(
    "task_failure", ["task_id", "exception", "args", "kwargs", "traceback", "einfo"]
)
"""The body failed for good (not retried, or no retry left): ``exception`` as
raised, ``traceback`` its traceback object, ``einfo`` the formatted traceback (a
string). ``sender``: the task."""

task_revoked = Signal("task_revoked", ["request", "terminated", "signum", "expired"])
"""A revoked (``expired`` False) or expired message reached a worker, the Lambda
handler or ``apply()``: its body does not run. ``terminated`` is always False and
``signum`` None (a running task is not stopped). ``sender``: the task."""

worker_process_init = Signal("worker_process_init", [])
"""In each ``--pool processes`` child, once, after it imported the app.
``sender``: None."""

worker_shutdown = Signal("worker_shutdown", [])
"""At ``sqsq worker`` exit, after its pools stopped, in its main thread.
``sender``: the :class:`~sqsq.Worker`."""
