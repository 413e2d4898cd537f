"""FlowControl: what the poller, the runner and the Lambda handler ask before work.

::

    poller, before ReceiveMessage ─► admitting(queue, want) ─► (n ≤ want, 0) │ (0, wait_s)
        a queue's limit (``queue_rate_limits`` or ``sqsq limits set --queue``): take
        tokens, then receive at most that many; none: wait for the refill, no receive
    runner / Lambda, before the idempotency claim ─► gating(prepared) ─► None │ Hold
        a task's limit (``rate_limit``, per ``rate_key``): a token, or the message is
        put back (``Executor.defer``) for when its bucket refills

The limits in force: a runtime override (``sqsq limits set``; ``overrides.py``)
wins over the declared one. Overrides are read from the revocation view's
``controls`` (the revocation Query returns them; no request of their own); the
poller refreshes the view when it is stale, as the runner does before a task.

Put back, not waited for: a limited message never holds a run slot another task
could use. It is put back for a slot of the bucket booked for it (``bucket.py``)
and carries that slot in its envelope's headers, so it runs when it comes back —
one put-back per message over the rate, and put-back messages return spread over
the rate's slots, not all at once.

A producer that can write to the queue can also write that header (as it can
send any task): a rate limit is a courtesy to downstream services, not a security
boundary; sign messages (``signing_key``) where producers are not trusted.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..calls import Steps
from ..idempotency import render_key
from .bucket import TokenBucket, bucket_pk
from .concurrency import SlotLease, acquiring, slots_pk
from .overrides import LIMIT_PREFIX, rates_of
from .rates import Rate, parse_rate

if TYPE_CHECKING:
    from ..app import App
    from ..outcome import Prepared

logger = logging.getLogger(__name__)

#: The envelope header of a message put back for a booked slot: ``<bucket>@<epoch s>``.
SLOT_HEADER = "sqsq-rate-slot"
#: A booked slot a message comes back to more than this late is not used, seconds.
PREPAID_LATE_S = 10.0


@dataclass(frozen=True)
class Hold:
    """Not now: put the message back for ``delay_s`` seconds, because ``why``."""

    delay_s: float
    why: str


@dataclass(frozen=True)
class Entry:
    """The answer of :meth:`FlowControl.entering`: ``hold`` (not now), or run —
    holding ``slot`` (a concurrency slot to release when the body ends) if any."""

    hold: Hold | None = None
    slot: SlotLease | None = None


class FlowControl:
    """An app's rate limits, for one process (its buckets' local tokens).

    Args:
        app: the App whose limits these are (installed as ``app.flow``).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.buckets: dict[str, TokenBucket] = {}
        self._queue_rates = {q: parse_rate(r) for q, r in app.settings.queue_rate_limits.items()}
        self._admitted: dict[str, list[float]] = {}  # queue -> the slots of its last admission
        self._idle: set[str] = set()  # queues whose last receive was empty
        self._nonce = uuid.uuid4().hex[:8]  # tells this process's slot holders apart

    # --- the limits in force ------------------------------------------------------

    def _overrides(self) -> dict[str, Rate]:
        view = self.app._revocations
        return rates_of(view.controls) if view is not None else {}

    def task_rate(self, task: Any) -> Rate | None:
        """The rate in force for a task (an override, else its ``rate_limit``)."""
        override = self._overrides().get(f"{LIMIT_PREFIX}task#{task.name}")
        return override or task.rate_limit

    def queue_rate(self, queue: str) -> Rate | None:
        """The rate in force for a logical queue (an override, else the setting)."""
        override = self._overrides().get(f"{LIMIT_PREFIX}queue#{queue}")
        return override or self._queue_rates.get(queue)

    def _bucket(self, name: str, rate: Rate) -> TokenBucket:
        bucket = self.buckets.get(name)
        if bucket is None or bucket.rate != rate:
            pk = bucket_pk(self.app.name, name)
            bucket = self.buckets[name] = TokenBucket(self.app.table_name, pk, rate)
        return bucket

    # --- the poller -----------------------------------------------------------------

    def admitting(self, queue: str, want: int) -> Steps[tuple[int, float]]:
        """How many messages the poller may receive from ``queue`` now:
        ``(n, 0)`` with 1 ≤ n ≤ ``want``, or ``(0, wait_s)``."""
        view = self.app._revocations
        if self.app.settings.check_revocations and view is not None and not view.fresh():
            try:
                yield from view.refreshing()
            except Exception as exc:
                view._failed(exc)
        rate = self.queue_rate(queue)
        if rate is None:
            return want, 0.0
        bucket = self._bucket(f"queue#{queue}", rate)
        slots, wait_s = yield from bucket.admitting(want, idle=queue in self._idle)
        self._admitted[queue] = slots
        self._idle.discard(queue)  # until a receive brings nothing (:meth:`unadmit`)
        return len(slots), wait_s

    def unadmit(self, queue: str, count: int) -> None:
        """Slots :meth:`admitting` granted that a receive did not use (its last ``count``)."""
        bucket, slots = self.buckets.get(f"queue#{queue}"), self._admitted.pop(queue, [])
        if count >= len(slots):
            self._idle.add(queue)
        if bucket is not None and count > 0:
            bucket.put_back(slots[-count:])

    # --- the runner / the Lambda handler --------------------------------------------

    @staticmethod
    def _key(prepared: Prepared, spec: Any, option: str) -> str | None:
        """The rendered ``rate_key`` / ``concurrency_key`` of a message (None: no key,
        or one that cannot be rendered: the task-wide limit applies)."""
        if spec is None:
            return None
        task = prepared.task
        try:
            bound = task.signature.signature.bind(*prepared.args, **prepared.kwargs)
            bound.apply_defaults()
            return render_key(spec, dict(bound.arguments), prepared.args, prepared.kwargs)
        except Exception as exc:
            logger.warning(
                "%s: %s cannot be rendered (%s); the task-wide limit applies",
                task.name,
                option,
                exc,
            )
            return None

    def bucket_name(self, prepared: Prepared) -> str:
        """The bucket of a task's message: ``task#<name>`` or ``task#<name>#<key>``."""
        name = f"task#{prepared.task.name}"
        key = self._key(prepared, prepared.task.rate_key, "rate_key")
        return name if key is None else f"{name}#{key}"

    def entering(self, prepared: Prepared, lease_s: float) -> Steps[Entry]:
        """What a message may do now, in the order rate limit → concurrency slot:
        wait (``Entry.hold``), or run — holding ``Entry.slot`` when the task has a
        concurrency limit (the caller releases it when the body ends)."""
        hold = yield from self.gating(prepared)
        if hold is not None:
            return Entry(hold=hold)
        task = prepared.task
        if task.concurrency_limit is None:
            return Entry()
        key = self._key(prepared, task.concurrency_key, "concurrency_key")
        pk = slots_pk(self.app.name, task.name, key)
        holder = f"{prepared.envelope.task_id}#{self._nonce}"
        taken = yield from acquiring(
            self.app.table_name, pk, task.concurrency_limit, holder, lease_s, self.app.clients
        )
        if isinstance(taken, SlotLease):
            return Entry(slot=taken)
        limit = f"concurrency limit {task.concurrency_limit} of {pk.split('#', 2)[2]}"
        return Entry(hold=Hold(taken, limit))

    def gating(self, prepared: Prepared, now: float | None = None) -> Steps[Hold | None]:
        """None: the task may run now (its slot is due); else a :class:`Hold`.

        A message put back for a booked slot carries it in the header
        :data:`SLOT_HEADER` (``<bucket>@<epoch s>``): when it comes back it runs on
        that slot — if the slot is due, and not more than :data:`PREPAID_LATE_S`
        past (a later one books a new slot: an old slot spent late would bunch up
        with the current ones).
        """
        rate = self.task_rate(prepared.task)
        if rate is None:
            return None
        now = time.time() if now is None else now
        name = self.bucket_name(prepared)
        bucket = self._bucket(name, rate)
        booked = _booked(prepared.envelope.headers.get(SLOT_HEADER), name)
        slot = booked if booked is not None and booked >= now - PREPAID_LATE_S else None
        if slot is None:
            slot, wait_s = yield from bucket.booking(now)
            if slot is None:
                why = f"rate limit {rate} of {name[5:]}: booked {wait_s:.0f}s ahead"
                return Hold(wait_s, why)
        if slot <= now + bucket.window_s:
            return None
        if booked != slot:
            headers = {**prepared.envelope.headers, SLOT_HEADER: f"{name}@{slot:.6f}"}
            prepared.envelope = prepared.envelope.model_copy(update={"headers": headers})
        # SQS rounds a delay up to whole seconds: aim half a window early, so that the
        # message comes back within the early allowance rather than late
        delay_s = slot - now - min(0.5, bucket.window_s / 2)
        return Hold(delay_s, f"rate limit {rate} of {name[5:]}: its slot is in {slot - now:.1f}s")


def _booked(header: str | None, bucket: str) -> float | None:
    """The slot a put-back message carries for ``bucket``, or None."""
    name, _, slot = (header or "").rpartition("@")
    if name != bucket:
        return None
    try:
        return float(slot)
    except ValueError:
        return None


def install(app: App) -> FlowControl:
    """The app's :class:`FlowControl`, installed as ``app.flow`` on first use."""
    if app.flow is None:
        app.flow = FlowControl(app)
    flow: FlowControl = app.flow
    return flow
