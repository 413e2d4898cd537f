"""Outcomes decided without running the function.

Everything the core concludes about a delivery other than by calling the task —
each a method of :class:`Decisions`, which the :class:`~sqsq.execution.Executor`
extends with preparing and calling::

    dead_letter()   cannot be run: DEAD_LETTER with the reason (``errors.DeadLetter``)
    revoked()       revoked, or past its ``expires``: REVOKED
    resend()        due later than SQS can delay it (hop mode): RESEND
    duplicate()     its idempotency key was COMPLETED (or failed for good): SUCCESS / FAILURE
    resume()        an earlier receive of this message stored its outcome: carried out again
    defer()         its key is IN_PROGRESS elsewhere: RESEND (standard) / DEFER (FIFO)
    key_unavailable() the signing key cannot be read: sent on, or returned
    release()       not run (shutdown, no time left): RELEASE

and the lease arithmetic they share: SQS's 12 h visibility cap
(:meth:`Decisions.lease_room_s`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import limits, signals
from .calling import request_of, type_name
from .detail import arguments_text, follows
from .envelope import Envelope, encode
from .errors import DeadLetter, IdempotencyConflict
from .listing import LISTED_STATES
from .outcome import REASON_TASK_FAILED, STEP_REASONS, Outcome, OutcomeKind, Prepared, give_up
from .result import ResultRecord, State
from .sqs import DeadLetterNote, is_fifo

if TYPE_CHECKING:
    from .app import App
    from .delivery import Delivery
    from .idempotency import Claim

logger = logging.getLogger(__name__)

#: Seconds kept free below SQS's 12 h lease cap for storing the outcome.
LEASE_CAP_MARGIN_S = 60.0


#: An ``eta`` this close (seconds) counts as due: clocks differ a little, and a
#: message is never sent on for less.
HOP_TOLERANCE_S = 1.0


def hop_delay_s(envelope: Envelope, now: datetime) -> int | None:
    """The DelaySeconds to send ``envelope`` on with when it is not due yet at ``now``
    (at most ``limits.SQS_MAX_DELAY_S``, 900 s), or None when it is due."""
    if envelope.eta is None:
        return None
    remaining = (envelope.eta - now).total_seconds()
    if remaining <= HOP_TOLERANCE_S:
        return None
    return min(math.ceil(remaining), limits.SQS_MAX_DELAY_S)


#: Envelope header counting how often a message was deferred (sent on unrun).
DEFERRALS_HEADER = "sqsq-deferrals"


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


#: DelaySeconds of a message sent on because the signing key could not be read.
KEY_UNAVAILABLE_DELAY_S = 60


class Decisions:
    """The outcomes one App's core decides without running the function.

    Args:
        app: the App whose task registry and settings apply.
        worker_id: recorded in results, e.g. ``"host:pid"`` or a Lambda request id.
    """

    def __init__(self, app: App, worker_id: str) -> None:
        self.app = app
        self.worker_id = worker_id

    def on_fifo(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` came from a FIFO queue (no per-message delay there)."""
        return is_fifo(self.app.queue_name(delivery.queue))

    @staticmethod
    def lease_room_s(delivery: Delivery) -> float:
        """Seconds this receive's visibility may still be extended (12 h cap)."""
        held = time.monotonic() - delivery.received_monotonic
        return max(0.0, limits.SQS_MAX_VISIBILITY_TIMEOUT_S - held - LEASE_CAP_MARGIN_S)

    def _record(self, delivery: Delivery, task_id: str, **fields: Any) -> ResultRecord:
        now = datetime.now(UTC)
        fields.setdefault("expires_at", int(now.timestamp() + self.app.settings.result_ttl_s))
        return ResultRecord(
            task_id=task_id,
            queue=delivery.queue,
            attempts=fields.pop("attempts", delivery.receive_count),
            worker=self.worker_id,
            message_id=delivery.message_id,
            enqueued_at=fields.pop("enqueued_at", delivery.sent_at),
            finished_at=now,
            **fields,
        )

    def dead_letter(
        self, delivery: Delivery, exc: DeadLetter, envelope: Envelope | None = None
    ) -> Outcome:
        """The DEAD_LETTER outcome for a message that cannot be run."""
        task_id = (
            envelope.task_id if envelope else getattr(exc, "task_id", None) or delivery.message_id
        )
        task = envelope.task if envelope else getattr(exc, "task", None)
        note = self._note(delivery, task_id, exc.reason, type_name(exc), str(exc))
        event = getattr(exc, "event", None)
        if event:
            note = replace(note, event=event)
        record = self._record(
            delivery,
            task_id,
            state=State.FAILURE,
            task=task,
            exc_type=note.error_type,
            exc_message=note.message,
            dead_letter_reason=note.reason,
            **self.detail(envelope, State.FAILURE),
        )
        logger.warning(
            "task %s (message %s) is a dead letter: %s: %s",
            task_id,
            delivery.message_id,
            note.reason,
            note.message,
            extra={
                "task_id": task_id,
                "message_id": delivery.message_id,
                "queue": delivery.queue,
                "reason": note.reason,
            },
        )
        return Outcome(delivery, OutcomeKind.DEAD_LETTER, task_id, record, note)

    def _task_record(self, prepared: Prepared, **fields: Any) -> ResultRecord:
        """A result of ``prepared``'s task: enqueued when its envelope (or message) was
        sent, kept for the task's ``result_ttl``."""
        envelope, delivery = prepared.envelope, prepared.delivery
        fields.setdefault("expires_at", int(time.time() + prepared.task.result_ttl_s))
        detail = self.detail(envelope, fields["state"], prepared.idempotency_pk)
        return self._record(
            delivery,
            envelope.task_id,
            task=envelope.task,
            enqueued_at=envelope.sent_at or delivery.sent_at,
            **{**detail, **fields},
        )

    def detail(
        self, envelope: Envelope | None, state: State, key_pk: str | None = None
    ) -> dict[str, Any]:
        """The record fields a task's page reads (``sqsq.detail``): the workflow ids and
        the key's ``pk`` always; the arguments when ``result_arguments`` keeps them for
        ``state`` (``"listed"``: FAILURE, RETRY, STARTED)."""
        if envelope is None:
            return {}
        fields: dict[str, Any] = {
            "parent_id": envelope.parent_id,
            "root_id": envelope.root_id,
            "workflow": follows(envelope.workflow),
            "idempotency_key": key_pk,
        }
        keep = self.app.settings.result_arguments
        if keep == "always" or (keep == "listed" and state in LISTED_STATES):
            text, cut = arguments_text(envelope.args, envelope.kwargs)
            fields.update(arguments=text, arguments_truncated=cut)
        return fields

    def started(self, prepared: Prepared) -> ResultRecord | None:
        """The STARTED record to write as ``prepared``'s body starts, or None when its
        task does not track it (``track_started``) or stores no result."""
        task = prepared.task
        if not (task.track_started and task.store_result):
            return None
        now = datetime.now(UTC)
        record = self._task_record(
            prepared,
            state=State.STARTED,
            attempts=prepared.envelope.retries + prepared.delivery.receive_count,
            started_at=now,
        )
        return replace(record, finished_at=None)

    def _note(
        self, delivery: Delivery, task_id: str, reason: str, error_type: str, message: str
    ) -> DeadLetterNote:
        return DeadLetterNote(
            reason=reason,
            error_type=error_type,
            message=message,
            task_id=task_id,
            source_queue=self.app.queue_name(delivery.queue),
            receive_count=delivery.receive_count,
        )

    def revoked(self, prepared: Prepared, *, expired: bool = False) -> Outcome:
        """REVOKED: revoked before it ran, or past its ``expires``."""
        envelope = prepared.envelope
        if expired:
            error, message = "sqsq.errors.TaskExpired", f"expired at {envelope.expires}"
        else:
            error, message = "sqsq.errors.TaskRevoked", "revoked before it ran"
        record = self._record(
            prepared.delivery,
            envelope.task_id,
            state=State.REVOKED,
            task=envelope.task,
            exc_type=error,
            exc_message=message,
            enqueued_at=envelope.sent_at or prepared.delivery.sent_at,
        )
        logger.info(
            "task %s[%s] %s",
            envelope.task,
            envelope.task_id,
            "expired" if expired else "revoked",
            extra={
                "task_id": envelope.task_id,
                "task": envelope.task,
                "queue": prepared.delivery.queue,
            },
        )
        if signals.task_revoked.receivers:
            signals.task_revoked.send(
                prepared.task,
                request=request_of(prepared),
                terminated=False,
                signum=None,
                expired=expired,
            )
        return Outcome(prepared.delivery, OutcomeKind.REVOKED, envelope.task_id, record)

    def resend(self, prepared: Prepared, delay_s: int) -> Outcome:
        """RESEND: due later than SQS could delay it (hop mode, see ``sqsq.schedules.eta``)."""
        envelope = prepared.envelope
        logger.debug(
            "task %s[%s] due at %s: sent on with a delay of %d s",
            envelope.task,
            envelope.task_id,
            envelope.eta,
            delay_s,
            extra={"task_id": envelope.task_id, "queue": prepared.delivery.queue},
        )
        return Outcome(
            prepared.delivery,
            OutcomeKind.RESEND,
            envelope.task_id,
            None,
            store=False,
            delay_s=delay_s,
        )

    def duplicate(self, prepared: Prepared, claim: Claim) -> Outcome:
        """SUCCESS without running: the key was COMPLETED by task ``claim.owner``
        (a DEAD_LETTER ``IdempotencyConflict`` when the arguments differ)."""
        envelope = prepared.envelope
        if claim.refused:
            refused = DeadLetter(
                f"{envelope.task}: idempotency key already completed by task {claim.owner}, "
                f"whose outcome DynamoDB refused ({claim.refused}); not run again"
            )
            refused.reason = claim.refused
            return self.dead_letter(prepared.delivery, refused, envelope)
        if claim.failed is not None and not claim.conflicts_with(prepared.payload_hash):
            return self._duplicate_failure(prepared, claim, claim.failed)
        if claim.conflicts_with(prepared.payload_hash):
            conflict = IdempotencyConflict(
                f"{envelope.task}: idempotency key already completed by task {claim.owner} "
                "with other arguments; not run (idempotency_validate=False accepts it)"
            )
            return self.dead_letter(prepared.delivery, conflict, envelope)
        record = self._task_record(
            prepared, state=State.SUCCESS, value=claim.value, extra={"duplicate_of": claim.owner}
        )
        logger.info(
            "task %s[%s] not run: idempotency key completed by %s",
            envelope.task,
            envelope.task_id,
            claim.owner,
            extra={
                "task_id": envelope.task_id,
                "task": envelope.task,
                "queue": prepared.delivery.queue,
            },
        )
        # the same task id (a message delivered twice): its result item already says so
        return Outcome(
            prepared.delivery,
            OutcomeKind.SUCCESS,
            envelope.task_id,
            record,
            store=claim.owner != envelope.task_id,
        )

    @staticmethod
    def finished(delivery: Delivery, record: ResultRecord) -> Outcome:
        """Let go without running or storing: a duplicate delivery of a message whose
        S3 payload (``sqsq.payloads``) its first run deleted (``payload_delete=True``)
        after storing ``record``, the task's final outcome (``Delivery.finished``).
        Its message is deleted; the stored result stays as it is."""
        logger.info(
            "message %s not run: a duplicate of task %s, whose %s outcome is stored and "
            "whose S3 payload its run deleted",
            delivery.message_id,
            record.task_id,
            record.state.value,
            extra={"task_id": record.task_id, "task": record.task, "queue": delivery.queue},
        )
        return Outcome(delivery, OutcomeKind.SUCCESS, record.task_id, record, store=False)

    def _duplicate_failure(
        self, prepared: Prepared, claim: Claim, failed: dict[str, Any]
    ) -> Outcome:
        """FAILURE without running: the key's run (task ``claim.owner``) failed for good.
        The duplicate resolves to that failure — same error type and message, its
        reason — and goes to the DLQ as the first one did (only sqsq's own retries run
        a body again; a redrive from the DLQ retakes the key). When it is the same
        task id (a chord's body sent twice), its stored result already says so."""
        envelope, delivery = prepared.envelope, prepared.delivery
        exc_type = str(failed.get("exc_type") or "sqsq.errors.TaskFailed")
        exc_message = str(failed.get("exc_message") or "")
        reason = str(failed.get("reason") or REASON_TASK_FAILED)
        note = self._note(
            delivery,
            envelope.task_id,
            reason,
            exc_type,
            f"idempotency key already failed for good by task {claim.owner}; not run again: "
            f"{exc_message}",
        )
        record = self._task_record(
            prepared,
            state=State.FAILURE,
            exc_type=exc_type,
            exc_message=exc_message,
            dead_letter_reason=reason,
            extra={"duplicate_of": claim.owner},
        )
        logger.warning(
            "task %s[%s] not run: its idempotency key's run %s failed for good (%s)",
            envelope.task,
            envelope.task_id,
            claim.owner,
            reason,
            extra={"task_id": envelope.task_id, "task": envelope.task, "queue": delivery.queue},
        )
        return Outcome(
            delivery,
            OutcomeKind.FAILURE,
            envelope.task_id,
            record,
            note,
            store=claim.owner != envelope.task_id,
        )

    def resume(self, prepared: Prepared, record: ResultRecord | None) -> Outcome | None:
        """The outcome an earlier receive of this very message stored, or None (run it).

        A redelivered message (``receive_count > 1``) whose result item is final
        (SUCCESS or FAILURE) and names this message id was run already: a later step
        (a follow-up, the Step Functions report, the DLQ copy, the delete) failed, or
        the worker died before it. The body is not run again: the stored outcome is
        carried out once more — stored again (with its idempotency key, unless it was
        itself a duplicate), copied to the DLQ if it is a FAILURE, its follow-ups and
        report made — and a step that gave up before (``dead_letter_reason``
        :data:`REASON_FOLLOWUP_FAILED` / :data:`REASON_REPORT_FAILED`) is not tried
        again. A RETRY record is sqsq's own retry: run."""
        delivery, envelope, task = prepared.delivery, prepared.envelope, prepared.task
        if (
            record is None
            or record.message_id != delivery.message_id
            or record.state not in (State.SUCCESS, State.FAILURE)
        ):
            return None
        key = None if "duplicate_of" in record.extra else prepared.idempotency_pk
        logger.warning(
            "task %s[%s] not run again: its %s outcome is stored (receive %d of its message); "
            "the steps after it are made again",
            envelope.task,
            envelope.task_id,
            record.state.value,
            delivery.receive_count,
            extra={"task_id": envelope.task_id, "task": envelope.task, "queue": delivery.queue},
        )
        if record.state is State.SUCCESS:
            outcome = Outcome(delivery, OutcomeKind.SUCCESS, envelope.task_id, record)
            outcome.completed_value = record.value
        else:
            note = self._note(
                delivery,
                envelope.task_id,
                record.dead_letter_reason or REASON_TASK_FAILED,
                record.exc_type or "",
                record.exc_message or "",
            )
            outcome = Outcome(delivery, OutcomeKind.FAILURE, envelope.task_id, record, note)
        outcome.idempotency_pk = key
        outcome.idempotency_ttl_s = task.idempotency_ttl_s
        outcome.payload_hash = prepared.payload_hash
        step = record.dead_letter_reason
        if step is not None and step in STEP_REASONS:
            give_up(outcome, step, self.app.queue_name(delivery.queue), "given up on before")
        return outcome

    def defer(
        self, prepared: Prepared, delay_s: float, why: str = "", *, routine: bool = False
    ) -> Outcome:
        """Not run now: its idempotency key is IN_PROGRESS under a live lease, or the
        key could not be claimed (DynamoDB unreachable); look again after ``delay_s``.

        A deferral must not use up the message's receives (SQS's redrive policy
        counts every receive, run or not, and would move it to the DLQ without a
        reason). So on a standard queue the message is **sent on** as a new one with
        DelaySeconds ``delay_s`` (≤ 900 s) and this one deleted (RESEND): its
        ApproximateReceiveCount starts again at 1, its envelope keeps its id (the
        MessageId of a foreign body becomes the ``id``) and counts the receives
        that came before it in ``retries`` and the deferral in ``headers``. On a
        FIFO queue (no per-message delay; the group's order) it is returned with
        its visibility set to ``delay_s`` (DEFER). ``routine``: an expected wait (a
        rate or concurrency limit holding it back), logged at DEBUG, not INFO — at a
        limit's pace it happens for most messages.
        """
        envelope, delivery = prepared.envelope, prepared.delivery
        logger.log(
            logging.DEBUG if routine else logging.INFO,
            "task %s[%s] waits %.0fs: %s",
            envelope.task,
            envelope.task_id,
            delay_s,
            why or "its idempotency key is in progress elsewhere",
            extra={"task_id": envelope.task_id, "queue": delivery.queue},
        )
        if not self.on_fifo(delivery):
            deferrals = _int(envelope.headers.get(DEFERRALS_HEADER)) + 1
            try:
                body = encode(
                    envelope.model_copy(
                        update={
                            "id": envelope.task_id,
                            "retries": envelope.retries + delivery.receive_count - 1,
                            "headers": {**envelope.headers, DEFERRALS_HEADER: str(deferrals)},
                        }
                    )
                )
            except Exception:  # e.g. now over 1 MiB: return it instead
                body = None
            if body is not None:
                return Outcome(
                    delivery,
                    OutcomeKind.RESEND,
                    envelope.task_id,
                    None,
                    store=False,
                    delay_s=min(max(1, math.ceil(delay_s)), limits.SQS_MAX_DELAY_S),
                    body=body,
                )
        return Outcome(
            delivery,
            OutcomeKind.DEFER,
            envelope.task_id,
            None,
            delay_s=min(delay_s, self.lease_room_s(delivery)),
        )

    def key_unavailable(self, delivery: Delivery, permanent: bool) -> Outcome:
        """Not checked: signing is on and its key cannot be read (Secrets Manager or
        SSM unreachable, or refusing). The message is not judged, nor run: on a
        standard queue it is **sent on** unchanged (its signature attribute with
        it) with DelaySeconds :data:`KEY_UNAVAILABLE_DELAY_S` — or the longest SQS
        allows when the error is one no retry fixes (a missing secret, access
        denied: fix the settings) — so its receives are not used; on a FIFO queue
        it is returned (DEFER)."""
        delay_s: float = limits.SQS_MAX_DELAY_S if permanent else KEY_UNAVAILABLE_DELAY_S
        if self.on_fifo(delivery):
            delay_s = min(delay_s, self.lease_room_s(delivery))
            return Outcome(delivery, OutcomeKind.DEFER, delivery.message_id, None, delay_s=delay_s)
        return Outcome(
            delivery, OutcomeKind.RESEND, delivery.message_id, None, store=False, delay_s=delay_s
        )

    @staticmethod
    def release(delivery: Delivery, task_id: str | None = None) -> Outcome:
        """RELEASE: give the message back at once (visibility 0)."""
        return Outcome(delivery, OutcomeKind.RELEASE, task_id or delivery.message_id, None)
