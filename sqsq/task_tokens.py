"""Step Functions callbacks: the outcome of a task goes back to the state machine waiting on it.

A state machine's ``arn:aws:states:::sqs:sendMessage.waitForTaskToken`` task sends
the envelope with ``"task_token.$": "$$.Task.Token"`` and waits. sqsq answers once
the task's outcome is final, as one more step of the store stage (``settle.py``)::

    outcome stored (DynamoDB), DLQ copy made, follow-ups made
        │ final (SUCCESS, FAILURE, DEAD_LETTER for any reason, REVOKED) and the body
        │ has a "task_token"
        ▼
    SUCCESS ─► SendTaskSuccess(taskToken, output = the result as JSON, ≤ 256 KiB)
               (a larger result: SendTaskFailure, error sqsq.errors.ResultNotSerializable)
    others  ─► SendTaskFailure(taskToken, error = the exception type (≤ 256 chars),
                               cause = JSON {task_id, task, state, error_type, message,
                                             reason} (≤ 32,768 chars))
        │ throttled, 5xx, network (after botocore's retries) ─► retried; the message is
        │     kept until the report went through (its outcome stays stored)
        │ TaskTimedOut, InvalidToken, TaskDoesNotExist (the token expired or the
        │     execution ended), InvalidOutput, ValidationException ─► logged; done:
        │     no retry can help
        ▼
    Outcome.reported = True; the message may be let go (``settle.may_let_go``)

Step Functions has no batch form of these calls ("AWS Step Functions API
reference": SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat take one token
each), so each report is one request; the asyncio path sends a group's reports
concurrently. The boto3 path (the Lambda handler) retries a failed group up to
:data:`REPORT_ATTEMPTS` times with full jitter (``retry.full_jitter_s``) before it
keeps the messages; the worker's settler retries the store stage itself, with the
same backoff.

While a task runs, each extension of its message's lease (the worker's leaser, the
Lambda handler's heartbeat thread) also sends SendTaskHeartbeat (:class:`Heartbeats`);
a failed heartbeat is logged, never fatal, and a token Step Functions gave up on is
not sent again.

The token is read from the message body, as ``settle.workflow_of`` reads the
workflow: the outcome of a body that never became an envelope (an unknown task,
invalid arguments) is reported too, so the execution fails at once instead of
waiting for its timeout. Reports go to the app's region (a token does not name its
own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import calling, limits
from .calls import Call, Gather, Sleep, Steps, arun, run
from .envelope import dumps, unencodable
from .outcome import Outcome, OutcomeKind
from .retry import error_code, full_jitter_s

if TYPE_CHECKING:
    from .app import App
    from .delivery import Delivery

logger = logging.getLogger(__name__)

#: The AWS service name of Step Functions' clients.
SERVICE = "stepfunctions"
#: The envelope field that carries the token.
FIELD = "task_token"
#: Outcomes reported: the task's outcome is final.
REPORTED_KINDS = frozenset(
    {OutcomeKind.SUCCESS, OutcomeKind.FAILURE, OutcomeKind.DEAD_LETTER, OutcomeKind.REVOKED}
)
#: Answers meaning Step Functions waits on the token no more: the report is done.
GONE = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
#: Answers refusing the request itself: sent again unchanged, it is refused again.
REFUSED = frozenset({"InvalidOutput", "ValidationException"})
#: Rounds of reports in the boto3 path before the messages are kept.
REPORT_ATTEMPTS = 3
#: Reports in flight at once in the asyncio path.
CONCURRENCY = 16
#: Tokens :class:`Heartbeats` remembers as gone (the oldest are forgotten first).
MAX_GONE = 10_000


def token_of(body: str) -> str | None:
    """The task token of a message body, or None (no token, or not a usable one:
    not a str of 1-2048 characters, ``limits.STEPFUNCTIONS_MAX_TASK_TOKEN_CHARS``)."""
    if f'"{FIELD}"' not in body:  # cheap pre-check: most bodies have none
        return None
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None
    token = raw.get(FIELD) if isinstance(raw, dict) else None
    if (
        not isinstance(token, str)
        or not 0 < len(token) <= limits.STEPFUNCTIONS_MAX_TASK_TOKEN_CHARS
    ):
        return None
    return None if unencodable(token) else token


def needs_report(outcome: Outcome) -> bool:
    """Whether ``outcome`` still has a Step Functions report to make before its
    message may go."""
    return (
        outcome.kind in REPORTED_KINDS
        and not outcome.reported
        and not outcome.untrusted  # refused by signing: its token is not taken
        and token_of(outcome.delivery.body) is not None
    )


@dataclass(frozen=True)
class Report:
    """One SendTaskSuccess / SendTaskFailure call (``method`` is the client method)."""

    outcome: Outcome
    method: str
    kwargs: dict[str, Any]


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _failure(
    outcome: Outcome, token: str, error_type: str, message: str, reason: str | None
) -> Report:
    record, note = outcome.record, outcome.note
    cause: dict[str, Any] = {
        "task_id": outcome.task_id,
        "task": record.task if record is not None else None,
        "state": "REVOKED" if outcome.kind is OutcomeKind.REVOKED else "FAILURE",
        "error_type": error_type,
        "message": "",
        "reason": reason or (note.reason if note is not None else None),
    }
    room = limits.STEPFUNCTIONS_MAX_CAUSE_CHARS - len(dumps(cause))
    cause["message"] = _cut(message, max(0, room - 16))  # escapes may grow it: checked below
    text = dumps(cause)
    while len(text) > limits.STEPFUNCTIONS_MAX_CAUSE_CHARS:  # many escaped characters
        cause["message"] = cause["message"][: len(cause["message"]) // 2]
        text = dumps(cause)
    kwargs = {
        "taskToken": token,
        "error": _cut(error_type, limits.STEPFUNCTIONS_MAX_ERROR_CHARS),
        "cause": text,
    }
    return Report(outcome, "send_task_failure", kwargs)


def report_of(outcome: Outcome, token: str) -> Report:
    """The call that reports ``outcome`` (pure).

    SUCCESS: SendTaskSuccess with the result as JSON — over
    ``limits.STEPFUNCTIONS_MAX_OUTPUT_BYTES`` (256 KiB) SendTaskFailure instead,
    error ``sqsq.errors.ResultNotSerializable``, reason ``result_too_large`` (the
    result itself is stored as usual). Others: SendTaskFailure whose ``error`` is the
    exception type as stored in the result (``builtins.ValueError``,
    ``sqsq.errors.UnknownTask``, ``sqsq.errors.TaskRevoked``…) and whose ``cause``
    is a JSON object (see the module docstring).
    """
    record, note = outcome.record, outcome.note
    if outcome.kind is OutcomeKind.SUCCESS:
        output = dumps(record.value if record is not None else None)
        size = len(output)  # dumps() is ASCII-only: characters are bytes
        if size <= limits.STEPFUNCTIONS_MAX_OUTPUT_BYTES:
            return Report(outcome, "send_task_success", {"taskToken": token, "output": output})
        message = (
            f"the result is {size} bytes, over STEPFUNCTIONS_MAX_OUTPUT_BYTES="
            f"{limits.STEPFUNCTIONS_MAX_OUTPUT_BYTES} (SendTaskSuccess output); "
            f"read it with: sqsq result {outcome.task_id}"
        )
        return _failure(
            outcome, token, "sqsq.errors.ResultNotSerializable", message, "result_too_large"
        )
    error_type = (record.exc_type if record is not None else None) or (
        note.error_type if note is not None else "sqsq.errors.TaskFailed"
    )
    message = (record.exc_message if record is not None else None) or (
        note.message if note is not None else ""
    )
    reason = record.dead_letter_reason if record is not None else None
    return _failure(outcome, token, error_type, message, reason)


def reports(outcomes: Iterable[Outcome]) -> list[Report]:
    """The calls the outcomes still need (pure)."""
    calls = []
    for outcome in outcomes:
        reported = outcome.kind in REPORTED_KINDS and not outcome.untrusted
        token = token_of(outcome.delivery.body) if reported else None
        if token is not None and not outcome.reported:
            calls.append(report_of(outcome, token))
    return calls


def _settled(call: Report, exc: BaseException | None) -> bool:
    """Whether ``call`` is done: it went through, or Step Functions refused it for good."""
    if exc is None:
        call.outcome.reported = True
        return True
    code = error_code(exc)
    if code in GONE or code in REFUSED:
        logger.warning(
            "task %s: Step Functions refused its %s (%s: %s); the outcome is stored, not reported",
            call.outcome.task_id,
            call.method,
            code,
            exc,
        )
        call.outcome.reported = True
        return True
    return False


def _warn(calls: Sequence[Report], exc: BaseException) -> None:
    logger.warning(
        "reporting %d outcomes to Step Functions failed; their messages are kept (%s: %s)",
        len(calls),
        type(exc).__name__,
        exc,
    )
    logger.debug("details", exc_info=exc)


def report(app: App, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Report the final outcomes whose body has a task token (boto3).

    Returns the outcomes whose report failed after :data:`REPORT_ATTEMPTS` rounds
    (their messages must be kept); AWS errors are logged, not raised.
    """
    return run(reporting(outcomes, REPORT_ATTEMPTS), app.clients)


async def areport(app: App, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Asyncio twin of :func:`report` (aiobotocore): the reports run concurrently,
    :data:`CONCURRENCY` at a time, one round (the worker's settler retries)."""
    return await arun(reporting(outcomes, 1), app.clients)


def reporting(outcomes: Sequence[Outcome], rounds: int) -> Steps[list[Outcome]]:
    """The calls of :func:`report` (see :mod:`sqsq.calls`), in ``rounds`` rounds
    with backoff between them; returns the outcomes whose report failed."""
    pending = reports(outcomes)
    for attempt in range(rounds):
        if not pending:
            break
        if attempt:
            yield Sleep(full_jitter_s(attempt, base_s=0.2, cap_s=2.0))
        calls = tuple(Call(SERVICE, c.method, c.kwargs) for c in pending)
        started_ns = time.time_ns()  # the callback spans' start (sqsq.tracing)
        answers = yield Gather(calls, concurrency=CONCURRENCY)
        if calling.tracing is not None:
            calling.tracing.reported(pending, answers, started_ns)
        errors = [a if isinstance(a, Exception) else None for a in answers]
        failed = [(c, e) for c, e in zip(pending, errors, strict=True) if not _settled(c, e)]
        if failed:
            error = failed[-1][1]
            assert error is not None
            _warn([c for c, _ in failed], error)
        pending = [c for c, _ in failed]
    return [call.outcome for call in pending]


class Heartbeats:
    """SendTaskHeartbeat for messages whose lease was just extended.

    One per worker (or Lambda invocation). Failures are logged, never raised; a
    token Step Functions answers TaskTimedOut / InvalidToken / TaskDoesNotExist
    for is logged once and not sent again.
    """

    def __init__(self) -> None:
        self._gone: dict[str, None] = {}  # insertion-ordered: the oldest go first
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[int] | None = None

    def tokens(self, deliveries: Iterable[Delivery]) -> list[tuple[Delivery, str]]:
        """The deliveries with a token still worth a heartbeat (pure but for the
        memory of gone tokens)."""
        found = []
        for delivery in deliveries:
            token = token_of(delivery.body)
            if token is not None and token not in self._gone:
                found.append((delivery, token))
        return found

    def _failed(self, delivery: Delivery, token: str, exc: BaseException) -> None:
        code = error_code(exc)
        if code in GONE:
            self._gone[token] = None
            while len(self._gone) > MAX_GONE:
                del self._gone[next(iter(self._gone))]
            logger.warning(
                "message %s: Step Functions no longer waits on its task token (%s); "
                "no more heartbeats",
                delivery.message_id,
                code,
            )
        else:
            logger.warning("heartbeat of message %s failed: %s", delivery.message_id, exc)

    def beat(self, app: App, deliveries: Iterable[Delivery]) -> int:
        """Send the heartbeats (boto3); returns how many went through."""
        return run(self.beating(deliveries), app.clients)

    async def abeat(self, app: App, deliveries: Iterable[Delivery]) -> int:
        """Send the heartbeats concurrently (aiobotocore); returns how many went through."""
        return await arun(self.beating(deliveries), app.clients)

    def beating(self, deliveries: Iterable[Delivery]) -> Steps[int]:
        """The calls of :meth:`beat` (see :mod:`sqsq.calls`)."""
        found = self.tokens(deliveries)
        if not found:
            return 0
        calls = (Call(SERVICE, "send_task_heartbeat", {"taskToken": t}) for _, t in found)
        answers = yield Gather(tuple(calls))
        sent = 0
        for (delivery, token), answer in zip(found, answers, strict=True):
            if isinstance(answer, Exception):
                self._failed(delivery, token, answer)
            else:
                sent += 1
        return sent

    # A slow or unreachable Step Functions endpoint must never hold up the lease
    # extensions that come next: heartbeats go out beside them, one round at a time
    # (a round still under way when the next is due: the next is skipped).

    def start(self, app: App, deliveries: Iterable[Delivery]) -> None:
        """:meth:`beat` in a daemon thread, unless the previous round still runs."""
        found = [d for d, _ in self.tokens(deliveries)]
        if not found or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(
            target=self.beat, args=(app, found), name="sqsq-task-heartbeats", daemon=True
        )
        self._thread.start()

    def astart(self, app: App, deliveries: Iterable[Delivery]) -> None:
        """:meth:`abeat` in a task of the running loop, unless the previous round still runs."""
        found = [d for d, _ in self.tokens(deliveries)]
        if not found or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(
            self.abeat(app, found), name="sqsq-task-heartbeats"
        )

    async def aclose(self) -> None:
        """Cancel a round under way (the worker is stopping)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
