"""The loop watchdog: notices, from a thread, that the worker's event loop is blocked.

Every ``async def`` task runs on the worker's one event loop, so a sync call inside
one (``time.sleep``, ``requests.get``, a long computation) stops every other task,
every receive and every settle until it returns. The leases survive it (the leaser
is a thread of its own); this watchdog says who did it::

    loop:    beat() stamps the time every INTERVAL_S ──╳ blocked ... ──► stamps again
    thread:  stamp older than BLOCKED_S? ─► sample the loop thread's stack (the
             innermost frame of a registered task's function names it), log
             "event loop blocked for 1.0 s so far by task <name> ..."
             stamps again ─► log "event loop was blocked for 6.0 s by task <name> ..."
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import threading
import time
from types import CodeType, FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)

#: How often the loop stamps the time, and the thread looks, seconds.
INTERVAL_S = 0.1
#: A loop that has not stamped for this long is blocked, seconds.
BLOCKED_S = 1.0
#: While the loop stays blocked, "so far" lines come at doubling lags, at most this
#: far apart, seconds (a wedged worker keeps its leases: it must be seen).
MAX_REPORT_INTERVAL_S = 300.0


class LoopWatchdog(threading.Thread):
    """Logs each time the event loop is blocked for ``blocked_s`` or more.

    Start it, and run :meth:`beat` as a task of the loop it watches.

    Args:
        app: the App whose ``async def`` tasks are named when caught blocking.
        blocked_s: the shortest block logged, seconds.
        interval_s: how often the loop stamps the time and the thread looks, seconds.
    """

    def __init__(
        self, app: App, blocked_s: float = BLOCKED_S, interval_s: float = INTERVAL_S
    ) -> None:
        super().__init__(name="sqsq-loop-watchdog", daemon=True)
        self.blocked_s = blocked_s
        self.interval_s = interval_s
        self.blocks = 0
        self._codes: dict[CodeType, str] = {}
        for task in app.tasks.values():
            code = getattr(inspect.unwrap(task.fn), "__code__", None)
            if task.is_async and code is not None:
                self._codes[code] = task.name
        self._stamp = time.monotonic()
        self._loop_thread: int | None = None
        self._stopped = threading.Event()

    async def beat(self) -> None:
        """Stamp the time every ``interval_s`` until cancelled (run on the loop)."""
        self._loop_thread = threading.get_ident()
        while True:
            self._stamp = time.monotonic()
            await asyncio.sleep(self.interval_s)

    def run(self) -> None:
        since: float | None = None  # the last stamp before the block
        culprit = ""
        report_at = self.blocked_s  # lag of the next "so far" line (doubles, ≤ 5 min apart)
        while not self._stopped.wait(self.interval_s):
            if self._loop_thread is None:
                continue  # beat() has not run yet
            stamp = self._stamp
            lag = time.monotonic() - stamp
            if since is not None and stamp != since:  # the loop is back
                blocked_s = stamp - since - self.interval_s
                self.blocks += 1
                logger.warning(
                    "event loop was blocked for %.1f s by %s: a sync call in an async def "
                    "task blocks every other task; await instead, or make it a sync task "
                    "(run in the thread pool)",
                    blocked_s,
                    culprit,
                    extra={
                        "event": "worker.loop_blocked",
                        "blocked_s": round(blocked_s, 3),
                        "culprit": culprit,
                    },
                )
                since, report_at = None, self.blocked_s
            elif lag >= report_at:
                if since is None:
                    since, culprit = stamp, self.culprit()
                logger.warning(
                    "event loop blocked for %.1f s so far by %s; every other task, receive "
                    "and settle waits (leases are still extended)",
                    lag,
                    culprit,
                )
                report_at = lag + min(lag, MAX_REPORT_INTERVAL_S)

    def culprit(self) -> str:
        """What the loop's thread runs now: ``task <name> at <file>:<line>`` when a
        registered task's function is on its stack, else its innermost frame."""
        frame = sys._current_frames().get(self._loop_thread or -1)
        if frame is None:
            return "an unknown call"
        innermost: FrameType | None = frame
        while frame is not None:
            name = self._codes.get(frame.f_code)
            if name is not None:
                return f"task {name} (at {_where(frame)})"
            frame = frame.f_back
        assert innermost is not None
        return f"a call at {_where(innermost)}"

    def stop(self) -> None:
        """Stop watching."""
        self._stopped.set()


def _where(frame: FrameType) -> str:
    return (
        f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}"
    )
