"""Queue priorities of one worker: which queue's receiver gets the room that frees up.

::

    sqsq worker APP -Q high:5,default:1                    weighted (the default mode)
    sqsq worker APP -Q high,default --priority strict      strict, in the order given

Every queue has its own receive loop (``engine.py``), and each waits in
``Inbox.reserve`` for room before its ReceiveMessage. Without priorities the first
loop to wake takes the room. With them, the room goes to one of the *waiting* loops:

- **weighted** — smooth weighted round robin (nginx's): each grant adds every
  waiting queue's weight to its credit and takes the sum from the chosen one, the
  queue with the most credit. With weights 5:1 and both queues backlogged, 5 of
  every 6 receives (so of the messages run) are the high queue's, spread out
  (``H H H L H H``), and the low queue gets one in every 6: it never starves. A
  queue whose receive is open (an empty queue long-polling) is not waiting, so
  the others share its part: no room idles behind an empty queue.
- **strict** — a queue is received from only while every higher queue's last
  receive came back empty (unknown at start counts as not empty), and the
  dispatcher starts the highest queue's ready work first. A lower queue can
  starve, by design.

Higher means a larger weight; equal weights keep the order listed. Pure
bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Literal, get_args

from ..settings import check_queue_name, check_weight

Mode = Literal["weighted", "strict"]
#: The modes ``--priority`` and the ``queue_priority`` setting take.
MODES: tuple[Mode, ...] = get_args(Mode)


def parse_queues(text: str) -> tuple[list[str], dict[str, int]]:
    """``-Q``'s value: ``"high:5,default:1"`` → ``(["high", "default"], {"high": 5,
    "default": 1})``; a queue without ``:weight`` is left out of the weights.

    Raises:
        ValueError: an empty or invalid queue name, a repeated queue, or a weight
            that is not a whole number ≥ 1.
    """
    queues: list[str] = []
    weights: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, colon, weight = (s.strip() for s in part.partition(":"))
        name = check_queue_name(name)
        if name in queues:
            raise ValueError(f"queue {name!r} is listed twice")
        queues.append(name)
        if colon:
            weights[name] = check_weight(name, weight)
    return queues, weights


class Priorities:
    """Who gets the next receive (see the module docstring).

    Args:
        queues: the worker's logical queues, in the order listed.
        weights: queue → weight ≥ 1 (missing: 1).
        mode: ``"weighted"`` or ``"strict"``.

    Raises:
        ValueError: a bad weight or mode.
    """

    def __init__(
        self, queues: Iterable[str], weights: Mapping[str, int], mode: Mode = "weighted"
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"priority mode must be one of {', '.join(MODES)}, not {mode!r}")
        listed = list(queues)
        self.mode = mode
        self.weights = {q: check_weight(q, weights.get(q, 1)) for q in listed}
        #: Highest first: larger weight, then the order listed.
        self.order = sorted(listed, key=lambda q: -self.weights[q])
        self.rank = {q: i for i, q in enumerate(self.order)}
        self._credit = dict.fromkeys(listed, 0)

    def pick(self, waiting: Collection[str], empty: Mapping[str, bool]) -> str | None:
        """The waiting queue whose turn it is, or None (strict: a higher queue that
        may have messages is not waiting). ``empty``: queue → its last receive came
        back empty."""
        if self.mode == "strict":
            for queue in self.order:
                if queue in waiting:
                    return queue
                if not empty.get(queue, False):
                    return None
            return None
        candidates = [q for q in self.order if q in waiting]
        if not candidates:
            return None
        return max(candidates, key=lambda q: self._credit[q] + self.weights[q])

    def granted(self, queue: str, waiting: Collection[str]) -> None:
        """``queue`` got a receive while ``waiting`` (which includes it) waited."""
        if self.mode == "strict":
            return
        for q in waiting:
            self._credit[q] += self.weights[q]
        self._credit[queue] -= sum(self.weights[q] for q in waiting)

    def describe(self) -> str:
        """For the worker's start line: ``"weighted high:5, default:1"``."""
        return f"{self.mode} " + ", ".join(f"{q}:{self.weights[q]}" for q in self.order)
