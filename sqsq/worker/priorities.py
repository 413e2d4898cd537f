"""Queue priorities of one worker: which queue's receiver gets the room that frees up.

::

    sqsq worker APP -Q high:5,default:1                    weighted (the default mode)
    sqsq worker APP -Q high,default --priority strict      strict, in the order given

Every queue has its own receive loop (``engine.py``), and each waits in
``Inbox.reserve`` for room before its ReceiveMessage. Without priorities the first
loop to wake takes the room. With them, the room goes to one of the *waiting* loops:

- **weighted** — smooth weighted round robin (nginx's): each grant adds every
  contending queue's weight to its credit and takes the sum from the chosen one,
  the queue with the most credit, each times the messages granted. With weights
  5:1 and both queues backlogged, 5 of every 6 messages received (so run) are the
  high queue's, spread out, and the low queue gets its sixth: it never starves. The
  contenders are the waiting receivers and a backlogged queue whose receive has
  been open for less than ``Inbox.TURN_HOLD_S`` (1 s: a receive from a backlog is
  back in milliseconds); a queue that is drained (its long poll open) or failing
  does not contend, so no room idles behind it for longer than that. While another
  queue is backlogged, a drained queue's receive asks for one message: its long
  poll (up to 20 s) holds one slot, not a batch, and a message arriving there is
  still noticed at once.
- **strict** — a queue is received from only while every higher queue is not
  backlogged (its last receive brought fewer messages than asked, or its receive
  has been open for over ``Inbox.TURN_HOLD_S``: drained at that moment; before the
  first receive it counts as backlogged), and the dispatcher
  starts the highest queue's ready work first; a drained higher queue keeps a
  one-message long poll open, so its next message stops the lower ones. While no
  queue is backlogged, the waiting receivers take turns. A lower queue can starve,
  by design.

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

    A queue is *backlogged* while its last receive brought as many messages as it
    asked for (and before its first receive): more are probably waiting. One whose
    last receive brought fewer, none, or failed is not.

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
        self.backlogged = dict.fromkeys(listed, True)
        self._credit = dict.fromkeys(listed, 0)
        self._turns = 0

    def received(self, queue: str, full: bool) -> None:
        """``queue``'s receive came back: ``full`` (as many as asked) or not."""
        self.backlogged[queue] = full

    def pick(
        self, waiting: Collection[str], receiving: Collection[str], polling: Collection[str]
    ) -> str | None:
        """The waiting queue whose turn it is, or None (the turn is a backlogged
        queue's whose receive is open: it is back in a moment). ``waiting``: queues
        whose receiver waits for room; ``receiving``: queues with a receive open for
        less than the hold; ``polling``: open for longer (a long poll: drained)."""
        if self.mode == "strict":
            for queue in self.order:
                if self.backlogged[queue] and queue not in polling:
                    return queue if queue in waiting else None
                if queue in waiting and self._competing(queue):
                    return queue  # drained, above a backlog: one small poll (size 1)
            # none backlogged: the waiting ones take turns, least recent first
            idle = [q for q in self.order if q in waiting]
            return min(idle, key=lambda q: self._credit[q]) if idle else None
        contenders = self._contenders(waiting, receiving)
        if not contenders:
            return None
        turn = max(contenders, key=lambda q: self._credit[q] + self.weights[q])
        return turn if turn in waiting else None

    def granted(
        self, queue: str, messages: int, waiting: Collection[str], receiving: Collection[str]
    ) -> None:
        """``queue`` got the receive that :meth:`pick` chose, for up to ``messages``
        (credit is per message: a receive of 1 counts a tenth of one of 10)."""
        if self.mode == "strict":  # credit: when it last got a turn
            self._turns += 1
            self._credit[queue] = self._turns
            return
        contenders = self._contenders(waiting, receiving)
        for q in contenders:
            self._credit[q] += self.weights[q] * messages
        self._credit[queue] -= sum(self.weights[q] for q in contenders) * messages

    def size(self, queue: str, want: int) -> int:
        """How many messages ``queue``'s receive may ask for: ``want``, or 1 while it
        is drained and another queue is backlogged — its long poll (up to 20 s)
        then holds one slot, not a batch the backlogged queue could use."""
        return 1 if self._competing(queue) else want

    def _competing(self, queue: str) -> bool:
        """``queue`` is drained while another is backlogged."""
        return not self.backlogged[queue] and any(
            self.backlogged[q] for q in self.order if q != queue
        )

    def _contenders(self, waiting: Collection[str], receiving: Collection[str]) -> list[str]:
        """Weighted: the queues in the draw, highest first — every waiting one, and
        a backlogged one whose receive is open."""
        return [q for q in self.order if q in waiting or (q in receiving and self.backlogged[q])]

    def describe(self) -> str:
        """For the worker's start line: ``"weighted high:5, default:1"``."""
        return f"{self.mode} " + ", ".join(f"{q}:{self.weights[q]}" for q in self.order)
