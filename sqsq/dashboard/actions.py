"""What the dashboard may change, with ``--allow-actions``: who may, and what is kept.

Off by default. With ``--allow-actions`` every page asks who is there (HTTP basic
against the app's ``dashboard_users``, or the ``dashboard_identity_header`` a trusted
proxy sets), every action is a POST that carries a CSRF token bound to the user and
the app (an HMAC under a secret drawn when the dashboard starts), and each action that
ran writes one audit item in the app's table::

    pk = audit#<app>   sk = <ISO time UTC>#<uuid>   who, action, detail (JSON), count,
                                                     expires_at (AUDIT_TTL_S later)

The actions, all through what sqsq already does:

* **retry** one failed task: its message is moved from the DLQ back to its queue
  (``dlq.redrive`` restricted to its task id), keys, signatures and all;
* **replay by filter**: the FAILURE results the listing index finds for a filter
  (task, exception type, time range; at most :data:`MAX_REPLAY`), their messages moved
  back from the DLQs; a dry run counts them first;
* **redrive by filter**: a queue's DLQ messages of a task and / or error type;
* **revoke** one task (``AsyncResult.revoke``).

Moves are paced at ``rate`` messages per second (:class:`Pace`). Idempotency keys
travel with the message, so a replayed task whose key completed meanwhile is not run
again (the idempotency record answers). Requests: a replay's dry run reads the index
(as the tasks page) and receives / releases each DLQ's messages; the replay itself
is ``dlq.redrive``'s (ReceiveMessage, SendMessageBatch, DeleteMessageBatch per 10).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import listing
from ..dlq import DeadLetterRow, describe, peek, redrive
from ..result import State
from ..sqs import dead_letter_name

if TYPE_CHECKING:
    from ..app import App

#: Audit items are kept this long, seconds (90 days).
AUDIT_TTL_S = 90 * 86_400
#: Most tasks one replay moves back.
MAX_REPLAY = 1000
#: Messages per second a move sends back, by default.
DEFAULT_RATE = 10.0
#: Audit items a page shows.
AUDIT_ROWS = 50


# --- who is there --------------------------------------------------------------------


def basic_user(authorization: str | None, users: Mapping[str, str]) -> str | None:
    """The user an ``Authorization: Basic …`` header proves, else None (the password
    is compared in constant time)."""
    if not authorization or not users:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    expected = users.get(name)
    if expected is None:
        hmac.compare_digest(password, password)  # the same work for an unknown name
        return None
    return name if hmac.compare_digest(password.encode(), expected.encode()) else None


def user_of(app: App, headers: Mapping[str, str]) -> str | None:
    """Who is there for ``app``: the trusted identity header's value, else the HTTP
    basic user, else None."""
    header = app.settings.dashboard_identity_header
    if header:
        identity = headers.get(header.lower(), "").strip()
        if identity:
            return identity[:256]
    return basic_user(headers.get("authorization"), app.settings.dashboard_users)


def csrf_token(secret: bytes, app_name: str, user: str) -> str:
    """The token an action form of ``user`` on ``app_name`` carries."""
    return hmac.new(secret, f"{app_name}\x00{user}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, app_name: str, user: str, token: str | None) -> bool:
    """Whether ``token`` is ``user``'s for ``app_name`` (constant-time)."""
    return bool(token) and hmac.compare_digest(csrf_token(secret, app_name, user), token or "")


# --- pacing and auditing -------------------------------------------------------------


class Pace:
    """A ``progress`` callback for ``dlq.redrive`` that sleeps to keep the moves at
    ``rate`` messages per second on average (one batch of up to 10 at a time)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.done = 0

    def __call__(self, moved: int) -> None:
        self.done += moved
        ahead = self.done / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)


def audit(app: App, who: str, action: str, detail: dict[str, Any], count: int) -> None:
    """Write the audit item of an action that ran (one PutItem)."""
    now = datetime.now(UTC)
    item = {
        "pk": {"S": f"audit#{app.name}"},
        "sk": {"S": f"{now.isoformat(timespec='microseconds')}#{uuid.uuid4()}"},
        "who": {"S": who},
        "action": {"S": action},
        "detail": {"S": json.dumps(detail, sort_keys=True, default=str)},
        "count": {"N": str(count)},
        "expires_at": {"N": str(int(now.timestamp()) + AUDIT_TTL_S)},
    }
    app.clients.sync("dynamodb").put_item(TableName=app.table_name, Item=item)


@dataclass(frozen=True)
class AuditRow:
    """One audit item: when, who, what, with what and how many."""

    when: datetime
    who: str
    action: str
    detail: dict[str, Any]
    count: int


def audit_log(app: App, limit: int = AUDIT_ROWS) -> list[AuditRow]:
    """The newest audit items (one Query, newest first)."""
    response = app.clients.sync("dynamodb").query(
        TableName=app.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"audit#{app.name}"}},
        ScanIndexForward=False,
        Limit=limit,
    )
    return [
        AuditRow(
            when=datetime.fromisoformat(item["sk"]["S"].split("#", 1)[0]),
            who=item["who"]["S"],
            action=item["action"]["S"],
            detail=json.loads(item["detail"]["S"]),
            count=int(item["count"]["N"]),
        )
        for item in response.get("Items", [])
    ]


# --- the actions ---------------------------------------------------------------------


@dataclass
class ReplayPlan:
    """What a replay would move: the failed tasks the index lists for the filter, and
    how many of their messages each DLQ holds now (the dry-run count).

    Attributes:
        task_ids: the FAILURE results listed (at most :data:`MAX_REPLAY`).
        in_dlqs: DLQ name -> messages of those tasks found in it.
        more: the listing had more than :data:`MAX_REPLAY` rows (the rest is not moved).
    """

    task_ids: list[str]
    in_dlqs: dict[str, int] = field(default_factory=dict)
    more: bool = False

    @property
    def count(self) -> int:
        """Messages the replay would move."""
        return sum(self.in_dlqs.values())


def _dlqs(app: App) -> list[tuple[str, str, str]]:
    """``(dlq name, dlq url, source url)`` of each queue of the app."""
    pairs = []
    for logical in app.queues():
        name = app.queue_name(logical)
        dlq = dead_letter_name(name)
        pairs.append((dlq, app.directory.url(dlq), app.directory.url(name)))
    return pairs


def _matching(rows: list[DeadLetterRow], ids: set[str]) -> int:
    return sum(1 for row in rows if row.task_id in ids)


def plan_replay(app: App, wanted: listing.Filter) -> ReplayPlan:
    """The dry run of :func:`replay`: list the filter's FAILURE results, count their
    messages in the DLQs (received and released at once; nothing is consumed)."""
    wanted = listing.Filter(
        states=(State.FAILURE,),
        task=wanted.task,
        queue=wanted.queue,
        exc_type=wanted.exc_type,
        since=wanted.since,
        until=wanted.until,
    )
    client = app.clients.sync("dynamodb")
    ids: list[str] = []
    before: str | None = None
    while True:
        page = listing.list_results(client, app.table_name, wanted, before=before, limit=100)
        ids += [row.task_id for row in page.rows]
        before = page.next_before
        if before is None or len(ids) >= MAX_REPLAY:
            break
    plan = ReplayPlan(ids[:MAX_REPLAY], more=len(ids) > MAX_REPLAY or before is not None)
    sqs = app.clients.sync("sqs")
    chosen = set(plan.task_ids)
    for dlq, url, _ in _dlqs(app):
        rows = [describe(m) for m in peek(sqs, url, MAX_REPLAY)] if chosen else []
        plan.in_dlqs[dlq] = _matching(rows, chosen)
    return plan


def replay(app: App, task_ids: list[str], rate: float = DEFAULT_RATE) -> int:
    """Move the DLQ messages of ``task_ids`` back to their queues, at most ``rate``
    messages per second; returns how many moved."""
    sqs = app.clients.sync("sqs")
    chosen = set(task_ids)
    pace = Pace(rate)
    moved = 0
    for _, dlq_url, source_url in _dlqs(app):
        report = redrive(
            sqs,
            dlq_url,
            source_url,
            task_ids=chosen,
            progress=pace,
            keys=app.verification_keys,
        )
        moved += report.moved
    return moved


def redrive_filter(
    app: App, queue: str, task: str | None, error: str | None, rate: float = DEFAULT_RATE
) -> int:
    """Move ``queue``'s DLQ messages of ``task`` and / or ``error`` back, at most
    ``rate`` messages per second; returns how many moved."""
    name = app.queue_name(queue)
    dlq = dead_letter_name(name)
    sqs = app.clients.sync("sqs")
    report = redrive(
        sqs,
        app.directory.url(dlq),
        app.directory.url(name),
        task=task,
        error=error,
        progress=Pace(rate),
        keys=app.verification_keys,
    )
    return report.moved
