"""A test app whose module connects receivers to every signal (``sqsq.signals``).

Each receiver appends one JSON line per call to the file named by the
``SQSQ_TEST_SIGNALS_LOG`` environment variable (nothing when it is unset): the
signal, where it ran (pid, thread), and what it was given — the tests read it.
Receivers that raise are connected *first* to ``task_prerun``,
``task_success``, ``task_failure``, ``task_postrun`` and ``before_task_publish``:
the outcomes and sends must not change, and the recording receivers after them
must still be called.

Only this app's tasks are recorded (receivers filter on the sender's name).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import sqsq
from sqsq import signals

app = sqsq.App("hooked")

LOG_VARIABLE = "SQSQ_TEST_SIGNALS_LOG"


@app.task
def ok(n: int) -> int:
    return n * 2


@app.task
async def aok(n: int) -> int:
    return n * 3


@app.task(max_retries=0)
def fails(message: str) -> None:
    raise ValueError(message)


@app.task(autoretry_for=(KeyError,), max_retries=1, default_retry_delay=0)
def flaky(key: str) -> None:
    raise KeyError(key)


@app.task(time_limit=1)
def overrun(seconds: float) -> str:
    time.sleep(seconds)
    return "late"


def _ours(sender: Any) -> bool:
    name = sender if isinstance(sender, str) else getattr(sender, "name", None)
    return name in app.tasks


def _plain(value: Any) -> Any:
    """``value`` as JSON: exceptions by type name, tasks by name, the rest by repr."""
    if isinstance(value, BaseException):
        return {"exception": type(value).__name__, "message": str(value)}
    if isinstance(value, sqsq.Task):
        return value.name
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    if hasattr(value, "__dataclass_fields__"):  # a Request
        return {k: _plain(getattr(value, k)) for k in ("id", "task", "attempt", "queue")}
    return repr(value)


def record(signal: signals.Signal, sender: Any, **named: Any) -> None:
    path = os.environ.get(LOG_VARIABLE)
    if not path or (sender is not None and signal.name != "worker_shutdown" and not _ours(sender)):
        return
    line = {
        "signal": signal.name,
        "sender": _plain(sender),
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        **{k: _plain(v) for k, v in named.items()},
    }
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(line, default=repr) + "\n")


def explode(sender: Any, **kwargs: Any) -> None:
    if _ours(sender):
        raise RuntimeError("a broken receiver")


for _signal in (
    signals.task_prerun,
    signals.task_success,
    signals.task_failure,
    signals.task_postrun,
    signals.before_task_publish,
):
    _signal.connect(explode)

for _signal in (
    signals.task_prerun,
    signals.task_postrun,
    signals.task_success,
    signals.task_failure,
    signals.task_retry,
    signals.task_revoked,
    signals.worker_process_init,
    signals.worker_shutdown,
    signals.before_task_publish,
    signals.after_task_publish,
):
    _signal.connect(record)
