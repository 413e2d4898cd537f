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
could use. Its delay is its bucket's refill, spread over the messages this process
put back already (one slot of the rate each), so put-back messages do not all
return at the same moment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..calls import Steps
from ..idempotency import render_key
from .bucket import TokenBucket, bucket_pk
from .overrides import LIMIT_PREFIX, rates_of
from .rates import Rate, parse_rate

if TYPE_CHECKING:
    from ..app import App
    from ..outcome import Prepared

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hold:
    """Not now: put the message back for ``delay_s`` seconds, because ``why``."""

    delay_s: float
    why: str


class FlowControl:
    """An app's rate limits, for one process (its buckets' local tokens).

    Args:
        app: the App whose limits these are (installed as ``app.flow``).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.buckets: dict[str, TokenBucket] = {}
        self._queue_rates = {q: parse_rate(r) for q, r in app.settings.queue_rate_limits.items()}
        self._returns: dict[str, float] = {}  # bucket -> epoch s of its last put-back slot

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
        return (yield from self._bucket(f"queue#{queue}", rate).taking(want))

    def unadmit(self, queue: str, count: int) -> None:
        """Tokens :meth:`admitting` granted that a receive did not use."""
        bucket = self.buckets.get(f"queue#{queue}")
        if bucket is not None:
            bucket.put_back(count)

    # --- the runner / the Lambda handler --------------------------------------------

    def bucket_name(self, prepared: Prepared) -> str:
        """The bucket of a task's message: ``task#<name>`` or ``task#<name>#<key>``."""
        task = prepared.task
        name = f"task#{task.name}"
        if task.rate_key is None:
            return name
        try:
            bound = task.signature.signature.bind(*prepared.args, **prepared.kwargs)
            bound.apply_defaults()
            key = render_key(task.rate_key, dict(bound.arguments), prepared.args, prepared.kwargs)
        except Exception as exc:  # a key that cannot be rendered: the task-wide bucket
            logger.warning(
                "%s: rate_key cannot be rendered (%s); the task's bucket is used", task.name, exc
            )
            return name
        return f"{name}#{key}"

    def gating(self, prepared: Prepared) -> Steps[Hold | None]:
        """None: the task may run now (a token is spent); else a :class:`Hold`."""
        rate = self.task_rate(prepared.task)
        if rate is None:
            return None
        name = self.bucket_name(prepared)
        granted, wait_s = yield from self._bucket(name, rate).taking(1)
        if granted:
            return None
        now = time.time()
        slot = max(now + wait_s, self._returns.get(name, 0.0) + 1.0 / rate.per_s)
        self._returns[name] = slot
        return Hold(slot - now, f"rate limit {rate} of {name.removeprefix('task#')}")


def install(app: App) -> FlowControl:
    """The app's :class:`FlowControl`, installed as ``app.flow`` on first use."""
    if app.flow is None:
        app.flow = FlowControl(app)
    flow: FlowControl = app.flow
    return flow
