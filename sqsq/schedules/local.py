"""Firing schedules without EventBridge Scheduler: ``sqsq schedule serve`` and ``sqsq dev``.

moto and LocalStack store schedules but never fire them, and some accounts have
no Scheduler. A :class:`LocalScheduler` fires the app's periodic tasks into their
queues on time, with the same input as Scheduler would send (``scheduler.render``)
and the fire times of ``schedule ls`` (``expressions.py``). It also fires the
one-time ``at()`` schedules of long countdowns (``eta.py``) and deletes them.

Any number may run against one endpoint; one leads, through a lease in the app's
DynamoDB table, and only the leader fires::

    item  pk "scheduler#<app>"  sk "leader"   owner, lease_until (epoch s)

    tick at now:  PutItem  owner=me, lease_until=now+lease_s
                  IF  attribute_not_exists(pk)      -- nobody leads
                  OR  lease_until < :now             -- the leader stopped renewing
                  OR  owner = :me                    -- I lead: renew
                  fails ─► not the leader this tick

    ──me──[renew]──[renew]──[renew]──╳ (killed)
    ──other──[no]────[no]────[no]──────────[lease_until passed: leads]──

A leader that stops cleanly deletes the lease, so another takes over at once.
Each schedule has a cursor, the last fire time SQS accepted; a fire is sent in
three steps::

    item  pk "scheduler#<app>#<schedule>"  sk "cursor"   last, [sending, claim_owner, claim_until]

    claim   UpdateItem IF last < fire AND (no claim OR claim_owner = me
                                           OR claim_until < now)
    send    SendMessage ── fails (SQS down) ─► the claim stays; the next tick sends
                                               it again, while it is younger than
                                               the schedule's max_event_age_s
    sent    UpdateItem last = fire, claim removed  IF claim_owner = me

so a fire is recorded only once SQS has it, and even two leaders at once (a paused
process whose lease ran out) do not both send it while a claim lives. A process
that dies between the send and the record leaves a claim that expires after
``lease_s``: that fire may be sent twice, and every fire carries the idempotency
key of (schedule, scheduled time) for that. One schedule failing (its queue gone,
an error) is logged with its name; the others fire.

The clock is injectable (``clock=``), so tests drive time by hand.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..aws_errors import aws_boundary
from ..sqs import is_fifo
from . import scheduler

if TYPE_CHECKING:
    from ..app import App
    from .declare import PeriodicTask

logger = logging.getLogger(__name__)

#: Default lease of the leader, seconds: a dead leader is replaced after this long.
DEFAULT_LEASE_S = 30.0
#: Default time between ticks, seconds.
DEFAULT_INTERVAL_S = 1.0
#: Most fires of one schedule sent in one tick (catching up after a gap).
MAX_FIRES_PER_TICK = 100

_LEASE_FREE = "attribute_not_exists(pk) OR lease_until < :now OR #owner = :me"
#: The cursor item's attributes named in the claim and record updates.
_CURSOR_NAMES = {"#last": "last", "#claim": "claim_owner", "#sending": "sending"}
_CLAIMABLE = (
    "#last < :fire AND (attribute_not_exists(#claim) OR #claim = :me OR claim_until < :now)"
)


@dataclass(frozen=True)
class Fire:
    """One fire sent: schedule name, scheduled time, task id."""

    schedule: str
    scheduled_at: datetime
    task_id: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


@aws_boundary(lambda app, periodic, *_, **__: app.queue_name(periodic.queue))
def send_fire(
    app: App, periodic: PeriodicTask, scheduled_at: datetime, arns: scheduler.Arns | None = None
) -> Fire:
    """Send one fire of ``periodic`` to its queue now (the body Scheduler would send).

    Args:
        arns: where the account is cached (one STS call otherwise).

    Raises:
        ConfigurationError: the queue does not exist.
    """
    execution_id = str(uuid.uuid4())
    arns = arns or scheduler.Arns(app)
    body = scheduler.render(
        scheduler.input_template(periodic, app.signing_key),
        scheduled_at=scheduled_at,
        execution_id=execution_id,
        schedule_arn=arns.schedule(scheduler.group_name(app), periodic.name),
    )
    physical = app.queue_name(periodic.queue)
    kwargs: dict[str, Any] = {"QueueUrl": app.directory.url(physical), "MessageBody": body}
    if is_fifo(physical):
        kwargs["MessageGroupId"] = scheduler.FIFO_GROUP
        kwargs["MessageDeduplicationId"] = execution_id
    app.clients.sync("sqs").send_message(**kwargs)
    return Fire(periodic.name, scheduled_at, execution_id)


class LocalScheduler:
    """Fires an app's schedules where EventBridge Scheduler does not.

    Args:
        app: the App whose periodic tasks (and long-countdown ``at()`` schedules) fire.
        owner: this scheduler's name in the lease (default ``host:pid:random``).
        lease_s: how long a lease lasts without renewal, seconds.
        clock: returns the current aware datetime (tests pass a fake one).
        fire_eta: also fire the one-time schedules of long countdowns.
    """

    def __init__(
        self,
        app: App,
        *,
        owner: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], datetime] = _utcnow,
        fire_eta: bool = True,
    ) -> None:
        self.app = app
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s = lease_s
        self.clock = clock
        self.fire_eta = fire_eta
        self.leader = False
        self._standing_by = False  # the "stands by" line is logged once per wait
        self._table = app.table_name
        self._pk = f"scheduler#{app.name}"
        self._arns = scheduler.Arns(app)
        self._cursors: dict[str, datetime] = {}

    # --- the lease ---------------------------------------------------------------

    def acquire(self, now: datetime) -> bool:
        """Take or renew the lease (one conditional PutItem); True if this one leads."""
        client = self.app.clients.sync("dynamodb")
        stamp = now.timestamp()
        try:
            client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": self._pk},
                    "sk": {"S": "leader"},
                    "owner": {"S": self.owner},
                    "lease_until": {"N": repr(stamp + self.lease_s)},
                    "expires_at": {"N": str(int(stamp + 86_400))},
                },
                ConditionExpression=_LEASE_FREE,
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":now": {"N": repr(stamp)},
                    ":me": {"S": self.owner},
                },
            )
        except client.exceptions.ConditionalCheckFailedException:
            if self.leader:
                logger.warning("scheduler %s lost the leader lease", self.owner)
            elif not self._standing_by:
                logger.info(
                    "scheduler %s stands by: another scheduler leads app %s",
                    self.owner,
                    self.app.name,
                )
            self.leader, self._standing_by = False, True
            return False
        if not self.leader:
            logger.info("scheduler %s leads app %s", self.owner, self.app.name)
            self._cursors.clear()  # another may have fired meanwhile: read them again
        self.leader, self._standing_by = True, False
        return True

    def release(self) -> None:
        """Give the lease up (a clean stop), so another scheduler leads at once."""
        if not self.leader:
            return
        client = self.app.clients.sync("dynamodb")
        with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
            client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": self._pk}, "sk": {"S": "leader"}},
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )
        self.leader = False

    # --- cursors -----------------------------------------------------------------

    def _cursor_key(self, name: str) -> dict[str, Any]:
        return {"pk": {"S": f"{self._pk}#{name}"}, "sk": {"S": "cursor"}}

    def _cursor(self, name: str, now: datetime) -> datetime:
        """The last fire time sent for ``name`` (read once per leadership, then kept);
        a schedule seen for the first time starts from now (nothing before it fires)."""
        cached = self._cursors.get(name)
        if cached is not None:
            return cached
        client = self.app.clients.sync("dynamodb")
        item = client.get_item(
            TableName=self._table, Key=self._cursor_key(name), ConsistentRead=True
        ).get("Item")
        if item and "last" in item:
            self._cursors[name] = datetime.fromtimestamp(float(item["last"]["N"]), UTC)
            return self._cursors[name]
        try:
            client.put_item(
                TableName=self._table,
                Item={**self._cursor_key(name), "last": {"N": repr(now.timestamp())}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except client.exceptions.ConditionalCheckFailedException:
            return self._cursor(name, now)  # another scheduler made it meanwhile
        self._cursors[name] = now
        return now

    def _claim(self, name: str, fire: datetime, now: datetime) -> bool:
        """Claim the sending of ``fire`` (conditional write): its cursor is behind it
        and no other scheduler holds a live claim. A claim that is not marked sent
        (the send failed, the process died) is taken again by its owner at the next
        tick, or by another scheduler once ``lease_s`` has passed."""
        client = self.app.clients.sync("dynamodb")
        try:
            client.update_item(
                TableName=self._table,
                Key=self._cursor_key(name),
                UpdateExpression="SET #sending = :fire, #claim = :me, claim_until = :until",
                ConditionExpression=_CLAIMABLE,
                ExpressionAttributeNames=_CURSOR_NAMES,
                ExpressionAttributeValues={
                    ":fire": {"N": repr(fire.timestamp())},
                    ":me": {"S": self.owner},
                    ":now": {"N": repr(now.timestamp())},
                    ":until": {"N": repr(now.timestamp() + self.lease_s)},
                },
            )
        except client.exceptions.ConditionalCheckFailedException:
            self._cursors.pop(name, None)
            return False
        return True

    def _sent(self, name: str, fire: datetime) -> bool:
        """Record ``fire`` as sent (SQS accepted it): the cursor moves to it and the
        claim goes. False when another scheduler took the claim over meanwhile."""
        client = self.app.clients.sync("dynamodb")
        try:
            client.update_item(
                TableName=self._table,
                Key=self._cursor_key(name),
                UpdateExpression="SET #last = :fire REMOVE #sending, #claim, claim_until",
                ConditionExpression="#claim = :me AND #last < :fire",
                ExpressionAttributeNames=_CURSOR_NAMES,
                ExpressionAttributeValues={
                    ":fire": {"N": repr(fire.timestamp())},
                    ":me": {"S": self.owner},
                },
            )
        except client.exceptions.ConditionalCheckFailedException:
            self._cursors.pop(name, None)
            return False
        self._cursors[name] = fire
        return True

    # --- firing ------------------------------------------------------------------

    def due(self, periodic: PeriodicTask, now: datetime) -> list[datetime]:
        """Fire times of ``periodic`` after its cursor and not after ``now``; those
        older than its RetryPolicy's MaximumEventAgeInSeconds are dropped, as
        Scheduler drops them."""
        cursor = self._cursor(periodic.name, now)
        oldest = now - timedelta(seconds=periodic.max_event_age_s)
        after = max(cursor, oldest - timedelta(microseconds=1))  # never walk dropped ones
        times: list[datetime] = []
        for fire in periodic.expression.fire_times(
            after, periodic.timezone, start=periodic.start, end=periodic.end
        ):
            if fire > now or len(times) == MAX_FIRES_PER_TICK:
                break
            times.append(fire)
        return times

    def fire(self, periodic: PeriodicTask, now: datetime) -> list[Fire]:
        """Send the due fires of one schedule, in order: each is claimed, sent, then
        recorded as sent. A fire SQS did not take stops the schedule for this tick and
        is sent again at the next one, as long as it is younger than the schedule's
        ``max_event_age_s`` (Scheduler's retry window).

        Raises:
            Exception: an AWS error of DynamoDB, or a fire time that cannot be
                computed (the caller logs it, naming the schedule).
        """
        fires: list[Fire] = []
        for when in self.due(periodic, now):
            if not self._claim(periodic.name, when, now):
                break  # another scheduler sent it, or is sending it
            try:
                fire = send_fire(self.app, periodic, when, self._arns)
            except Exception as exc:
                logger.warning(
                    "schedule %s: the fire of %s was not sent (%s: %s); it is sent again "
                    "at the next tick while younger than %d s (max_event_age)",
                    periodic.name,
                    when.isoformat(),
                    type(exc).__name__,
                    exc,
                    periodic.max_event_age_s,
                    extra={"schedule": periodic.name},
                )
                break
            logger.info(
                "fired %s for %s (task %s)",
                periodic.name,
                when.isoformat(),
                fire.task_id,
                extra={"task_id": fire.task_id, "schedule": periodic.name},
            )
            fires.append(fire)
            if not self._sent(periodic.name, when):
                logger.warning(
                    "schedule %s: the fire of %s was sent, but another scheduler took it "
                    "over meanwhile (its idempotency key runs the task once)",
                    periodic.name,
                    when.isoformat(),
                    extra={"schedule": periodic.name},
                )
                break
        return fires

    def tick(self) -> list[Fire]:
        """Renew or take the lease; if leading, send every fire that is due.

        Each schedule is fired on its own: one that fails (its queue is gone, its
        fire times cannot be computed, an AWS error) is logged with its name, and the
        others still fire.

        Returns:
            The fires sent in this tick.
        """
        now = self.clock()
        if not self.acquire(now):
            return []
        fires: list[Fire] = []
        for periodic in list(self.app.periodic_tasks.values()):
            if not periodic.enabled:
                continue
            try:
                fires += self.fire(periodic, now)
            except Exception as exc:
                logger.warning(
                    "schedule %s: tick failed: %s: %s",
                    periodic.name,
                    type(exc).__name__,
                    exc,
                    extra={"schedule": periodic.name},
                )
        if self.fire_eta:
            from .eta import fire_due

            try:
                fires += fire_due(self.app, now)
            except Exception as exc:
                logger.warning(
                    "long countdowns (at() schedules): tick failed: %s: %s",
                    type(exc).__name__,
                    exc,
                )
        return fires

    def serve(self, stop: threading.Event, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        """Tick every ``interval_s`` seconds until ``stop`` is set; then release the lease.
        An AWS error in one tick is logged and the next tick tries again."""
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception as exc:
                    logger.warning("scheduler tick failed: %s: %s", type(exc).__name__, exc)
                stop.wait(interval_s)
        finally:
            try:
                self.release()
            except Exception as exc:
                logger.warning("releasing the scheduler lease failed: %s", exc)
