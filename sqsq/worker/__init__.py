"""The long-poll worker (``sqsq worker``): an asyncio pipeline on aiobotocore.

::

    receivers (one per queue) ── ReceiveMessage(MaxNumberOfMessages ≤ 10, WaitTimeSeconds ≤ 20)
        │   whenever a full batch fits (or a run slot would idle): inbox.py
        ▼
    ready buffer ─ at most concurrency + prefetch messages held, leases kept (leaser.py,
        │          a thread: a task blocking the loop cannot starve them; watchdog.py
        │          logs such a task)
        │
    dispatcher ── a free run slot ─► runner.py: revoked? claim key, call (loop / threads.py /
        │                                        processes.py), execution core → outcome
        ▼
    settler.py ── store lane: BatchWriteItem (25), DLQ copies ─► release lane:
                  DeleteMessageBatch / ChangeMessageVisibilityBatch (10 per queue)

Fetching, running and settling never wait on each other: they meet at the inbox
and the settler's lanes, each bounded. Shutdown is one deadline, the first signal
plus ``grace_s`` (engine.py): nothing new starts, prefetched messages are released
at once, open polls may return until the deadline, running tasks get what is left,
the rest is released, and the worker exits within ``grace_s`` + 2 s.
"""

from .engine import (
    EXIT_COLD_SHUTDOWN,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    SHUTDOWN_MARGIN_S,
    Worker,
)

__all__ = [
    "EXIT_COLD_SHUTDOWN",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "SHUTDOWN_MARGIN_S",
    "Worker",
]
