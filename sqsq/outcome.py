"""What executing one delivery comes to: the data the core hands to its runners.

:class:`Prepared` is a delivery the core may run; :class:`Outcome` is what a runner
must do with its message (:class:`OutcomeKind`), carried out by ``settle.py``:
store, copy to the DLQ or send on, then let go. The dead-letter reasons of task
failures (``DeadLetterNote.reason``) and :func:`give_up` — a step after storing
that spent its budget — live here beside them, since settle, the worker's settler
and the Lambda handler all act on them.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .calling import type_name
from .errors import DeadLetter, FollowUpFailed, TaskTokenReportFailed
from .sqs import DeadLetterNote

if TYPE_CHECKING:
    from .delivery import Delivery
    from .envelope import Envelope
    from .result import ResultRecord
    from .task import Task

logger = logging.getLogger(__name__)


class OutcomeKind(enum.StrEnum):
    """What the runner must do with the message."""

    #: Store the SUCCESS result, then delete the message.
    SUCCESS = "SUCCESS"
    #: The task failed for good: store FAILURE, copy the message to the DLQ with the reason, delete it.
    FAILURE = "FAILURE"
    #: The message cannot be run: store FAILURE with the reason, copy it to the DLQ, delete it.
    DEAD_LETTER = "DEAD_LETTER"
    #: Store RETRY with the error, make the message visible again after ``delay_s``.
    RETRY = "RETRY"
    #: Store REVOKED (revoked or expired), then delete the message.
    REVOKED = "REVOKED"
    #: Not run: another run holds the idempotency key; make it visible after ``delay_s``.
    DEFER = "DEFER"
    #: Not run (shutdown, no time left): make it visible again now.
    RELEASE = "RELEASE"
    #: Not run, due later (an ``eta`` beyond SQS's 900 s, hop mode): send a copy of the
    #: message with DelaySeconds ``delay_s``, then delete this one. No attempt is counted.
    RESEND = "RESEND"


#: Outcomes whose message is deleted (after storing / copying) — or, in Lambda, not listed.
FINAL_KINDS = frozenset(
    {
        OutcomeKind.SUCCESS,
        OutcomeKind.FAILURE,
        OutcomeKind.DEAD_LETTER,
        OutcomeKind.REVOKED,
        OutcomeKind.RESEND,
    }
)
#: Outcomes copied to the DLQ (with their reason) before their message is deleted.
DEAD_KINDS = frozenset({OutcomeKind.FAILURE, OutcomeKind.DEAD_LETTER})
#: Outcomes whose message comes back (its visibility is set to ``delay_s``) — in
#: Lambda, listed in batchItemFailures.
RETURNED_KINDS = frozenset({OutcomeKind.RETRY, OutcomeKind.DEFER, OutcomeKind.RELEASE})


@dataclass
class Outcome:
    """The result of executing one delivery.

    Attributes:
        delivery: the message it came from.
        kind: what the runner must do.
        task_id: the task's id (the MessageId when the body had none).
        record: the result (always set for stored kinds, so ``apply()`` can report it).
        note: the dead-letter reason (FAILURE and DEAD_LETTER).
        duration_s: wall time of the function call, seconds.
        store: whether the runner stores ``record`` (False for ``store_result=False``
            successes; failures, retries and dead letters are always stored).
        delay_s: visibility timeout to set (RETRY, DEFER, RELEASE), seconds.
        idempotency_pk: the claimed key: COMPLETED on SUCCESS, deleted otherwise.
        completed_value: the value to keep under the key (SUCCESS).
        idempotency_ttl_s: how long the key is remembered.
        history: also write an attempt item (retries and final failures).
        stored / copied / followed / reported: set by ``settle`` once the writes / the
            DLQ copy / the follow-ups (``settle.Continuation``) / the Step Functions
            report (``task_tokens``) succeeded, so that retrying a failed delete does
            not repeat them.
        body: RESEND only: the body to send on (None: the delivery's own).
        bodies: RESEND only: send these bodies on instead (a foreign message split
            into one message per event, see ``sqsq.events``); None: ``body``.
        refused: DynamoDB refused its writes once; it was made a dead letter
            (``settle.refused``).
        completed_refused: the body ran to SUCCESS but DynamoDB refused its outcome
            (this reason): its idempotency key is kept COMPLETED without a value, not
            freed, so the dead letter's redrive does not run the body again.
        untrusted: signing refused its body (``signing.py``): nothing of the body is
            acted on — no workflow follow-up, no task token report.
        gave_up: a step after storing (follow-ups, the Step Functions report) spent its
            budget (this reason, :func:`give_up`): the outcome stays what the body
            ended with, the result records the reason, and the message goes to the
            DLQ with it.
    """

    delivery: Delivery
    kind: OutcomeKind
    task_id: str
    record: ResultRecord | None
    note: DeadLetterNote | None = None
    duration_s: float = 0.0
    store: bool = True
    delay_s: float = 0.0
    idempotency_pk: str | None = None
    completed_value: Any = None
    idempotency_ttl_s: float = 0.0
    payload_hash: str | None = None
    history: bool = False
    stored: bool = False
    copied: bool = False
    followed: bool = False
    reported: bool = False
    body: str | None = None
    refused: bool = False
    bodies: tuple[str, ...] | None = None
    completed_refused: str | None = None
    untrusted: bool = False
    gave_up: str | None = None


@dataclass
class Prepared:
    """A delivery whose envelope decoded and whose arguments validated.

    ``idempotency_pk`` is the key's item, set when the task has a key;
    ``claimed`` is set by the runner once its claim succeeded; ``given_up`` once
    the runner reported the run's failure itself (its thread passed the time
    limit and was abandoned: the body's late outcome signals are not sent).
    """

    delivery: Delivery
    envelope: Envelope
    task: Task[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    idempotency_pk: str | None = None
    payload_hash: str | None = None
    claimed: bool = False
    given_up: bool = False


#: Dead-letter reasons of task failures (``DeadLetterNote.reason``).
REASON_TASK_FAILED = "task_failed"
REASON_MAX_RETRIES = "max_retries_exceeded"
REASON_TIME_LIMIT = "time_limit_exceeded"
REASON_REJECTED = "rejected"
REASON_RESULT = "result_not_serializable"
#: A result item DynamoDB refused (ValidationException: over its item size).
REASON_RESULT_TOO_LARGE = "result_too_large"
#: A key DynamoDB refused (ValidationException: too long, not encodable).
REASON_INVALID_KEY = "invalid_key"
#: A step after the outcome was stored spent its budget (see :func:`give_up`).
REASON_FOLLOWUP_FAILED = FollowUpFailed.reason
REASON_REPORT_FAILED = TaskTokenReportFailed.reason
_STEP_ERRORS: dict[str, type[DeadLetter]] = {
    REASON_FOLLOWUP_FAILED: FollowUpFailed,
    REASON_REPORT_FAILED: TaskTokenReportFailed,
}
#: The reasons of steps after storing that :func:`give_up` gives up on.
STEP_REASONS = frozenset(_STEP_ERRORS)
_STEP_WHAT = {
    REASON_FOLLOWUP_FAILED: "its follow-ups (next chain step, callbacks, chord counting)",
    REASON_REPORT_FAILED: "its Step Functions report (SendTaskSuccess / SendTaskFailure)",
}


def give_up(outcome: Outcome, reason: str, source_queue: str, detail: str = "") -> None:
    """A step after ``outcome`` was stored (``reason``: :data:`REASON_FOLLOWUP_FAILED`,
    :data:`REASON_REPORT_FAILED`) spent its budget: it is not tried again. The body is
    never run again for it: the outcome keeps its kind and value, its result is
    stored again with ``dead_letter_reason = reason``, and its message is copied to
    the DLQ with that reason (``settle``), then deleted."""
    error = _STEP_ERRORS[reason]
    what = _STEP_WHAT[reason]
    state = outcome.record.state.value if outcome.record is not None else outcome.kind.value
    message = (
        f"{what} could not be made; the outcome ({state}) is stored, the body is not run again"
    )
    if detail:
        message += f": {detail}"
    outcome.gave_up = reason
    outcome.followed = True  # given up (a report may still go out after follow-ups)
    if reason == REASON_REPORT_FAILED:
        outcome.reported = True
    if outcome.record is not None:
        outcome.record = replace(outcome.record, dead_letter_reason=reason)
        outcome.stored, outcome.store = False, True
    outcome.note = DeadLetterNote(
        reason=reason,
        error_type=type_name(error()),
        message=message,
        task_id=outcome.task_id,
        source_queue=source_queue,
        receive_count=outcome.delivery.receive_count,
    )
    outcome.copied = False
    logger.error(
        "task %s: %s; its message goes to the DLQ (%s)",
        outcome.task_id,
        message,
        reason,
        extra={"task_id": outcome.task_id, "queue": outcome.delivery.queue, "reason": reason},
    )
