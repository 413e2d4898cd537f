"""Acting on outcomes: store them, dead-letter what must go, and only then let go.

This is the one place where invariant 1 of the design is written down::

    outcomes ─► BatchWriteItem: results, attempt history, idempotency keys (25 per call)
                   │ not stored ─► message kept (it comes back after its visibility timeout)
                   ▼
                SendMessageBatch to the DLQ (FAILURE and DEAD_LETTER, reason attached),
                and to the queue itself (RESEND: due later, sent on with a delay)
                   │ not sent ─► message kept
                   ▼
                follow-ups of envelopes with a ``workflow`` (the registered
                :class:`Continuation`: next chain step, callbacks, chord counting)
                   │ not done ─► message kept (redelivered, the follow-up is redone)
                   ▼
                Step Functions reports of final outcomes whose body has a task token
                (SendTaskSuccess / SendTaskFailure, ``task_tokens.py``)
                   │ not sent (throttled, 5xx, network) ─► message kept
                   │
                   │ A stored outcome is final for the body: a redelivery of a kept
                   │ message finds it (``Executor.resume``) and makes only the missing
                   │ steps; a step that spent its budget (:func:`missing_step`, then
                   │ ``outcome.give_up``) is given up on: the result records its
                   │ reason (followup_failed / task_token_report_failed) and the
                   │ message is copied to the DLQ with it
                   ▼
                DeleteMessageBatch (worker) / omitted from batchItemFailures (Lambda)
                   — for SUCCESS, FAILURE, DEAD_LETTER, REVOKED, RESEND
                ChangeMessageVisibilityBatch — RETRY (backoff), DEFER (lease), RELEASE (0)

:func:`plan_writes`, :func:`dead_letter_batches` and :func:`sqs_calls` are pure.
Two stages execute them — :func:`store` (writes and DLQ copies) and :func:`release`
(deletes and visibility changes). Each stage is one call sequence (:func:`storing`,
:func:`releasing`; see :mod:`sqsq.calls`) that boto3 runs for :func:`store` /
:func:`release` and aiobotocore for :func:`astore` / :func:`arelease`. :func:`settle`
runs both in order for the Lambda handler; the worker's settler (``worker/settler.py``)
runs them as a pipeline, batching across receives. Either way :func:`sqs_calls` refuses an outcome that :func:`may_let_go`
does not allow: invariant 1 is checked here and nowhere else, with a raised
:class:`~sqsq.errors.UnstoredOutcome` (not an ``assert``: ``python -O`` keeps it).
:func:`release` / :func:`arelease` keep such an outcome's message (:func:`held_back`,
logged as the bug it is) and still let the rest of the batch go.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from . import calling, limits, task_tokens
from .calls import Call, Gather, Steps, arun, run
from .dynamodb import Item, Write, attempt_item, delete, put, result_item
from .errors import UnstoredOutcome
from .idempotency import ANSWERS_KEY, Claim, completed_item, item_key
from .outcome import (
    FINAL_KINDS,
    REASON_FOLLOWUP_FAILED,
    REASON_INVALID_KEY,
    REASON_REPORT_FAILED,
    REASON_RESULT_TOO_LARGE,
    RETURNED_KINDS,
    Outcome,
    OutcomeKind,
)
from .result import State
from .signing import signature_attribute
from .sqs import (
    DeadLetterNote,
    chunks,
    dead_letter_entry,
    dead_letter_name,
    delete_entries,
    send_batches,
)

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)

_DEAD = (OutcomeKind.FAILURE, OutcomeKind.DEAD_LETTER)


# --- follow-ups (the hook a capability installs on the App: sqsq.workflows) -----------


class Continuation(Protocol):
    """Follow-ups of stored outcomes whose envelope carries a ``workflow``.

    ``sqsq.workflows`` installs one on the App (``App.continuation``); the store
    stage asks the App for it (``App.follow_ups()``, which installs it when nothing
    has yet), so this module never names that package. Called in the store stage after the outcomes' writes and copies, before any of
    their messages may be let go; so a follow-up is never sent before the outcome
    is stored, and never lost (a message whose follow-up failed is kept and comes
    back). Follow-ups must therefore be idempotent. ``follow_up`` yields its AWS
    calls (:mod:`sqsq.calls`) and returns the outcomes whose follow-ups failed; AWS
    errors are absorbed, not raised.
    """

    def follow_up(self, app: App, outcomes: Sequence[Outcome]) -> Steps[list[Outcome]]: ...


#: Outcomes that have follow-ups: the task ended (a value, or a failure for good).
FOLLOWED_KINDS = frozenset({OutcomeKind.SUCCESS, OutcomeKind.FAILURE, OutcomeKind.DEAD_LETTER})


def workflow_of(outcome: Outcome) -> dict[str, Any] | None:
    """The ``workflow`` field of the outcome's envelope (read from the body), or None.

    Only an envelope (a body with ``task``) has one: a foreign event routed to a task
    (``sqsq.events``) never has follow-ups, whatever fields it carries."""
    body = outcome.delivery.body
    if '"workflow"' not in body or outcome.untrusted:  # untrusted: refused by signing
        return None
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    if not isinstance(raw, dict) or "task" not in raw:
        return None
    workflow = raw.get("workflow")
    return workflow if isinstance(workflow, dict) and workflow else None


def needs_follow_up(outcome: Outcome) -> bool:
    """Whether ``outcome`` still has follow-ups to make before its message may go."""
    return (
        outcome.kind in FOLLOWED_KINDS and not outcome.followed and workflow_of(outcome) is not None
    )


@dataclass
class Settlement:
    """What happened to a group of outcomes.

    Attributes:
        done: outcomes carried out: stored, dead letters copied, and deleted /
            made visible again (unless listed in ``sqs_failed``).
        kept: outcomes that could not be stored or dead-lettered; their messages
            come back after the visibility timeout.
        sqs_failed: done outcomes whose delete or visibility change failed; what
            was stored stays, and settling them again repeats only the SQS call.
    """

    done: list[Outcome] = field(default_factory=list)
    kept: list[Outcome] = field(default_factory=list)
    sqs_failed: list[Outcome] = field(default_factory=list)


def _warn(message: str, args: object, exc: BaseException) -> None:
    """AWS errors here are expected (throttling, outages): one line, traceback at DEBUG."""
    values = args if isinstance(args, tuple) else (args,)
    logger.warning(message + " (%s: %s)", *values, type(exc).__name__, exc)
    logger.debug("details", exc_info=exc)


def _token(index: int) -> str:
    return str(index)


def plan_writes(outcomes: Sequence[Outcome]) -> list[Write]:
    """Every DynamoDB write the outcomes need, tokened by their index."""
    writes: list[Write] = []
    for index, outcome in enumerate(outcomes):
        if outcome.stored:
            continue
        token = _token(index)
        answered = _answers_the_key(outcome)
        if outcome.record is not None and outcome.store:
            item = result_item(outcome.record)
            if answered:  # it completes the key: kept as long as the key is
                _keep_until(item, time.time() + outcome.idempotency_ttl_s)
                item[ANSWERS_KEY] = {"S": str(outcome.idempotency_pk)}
            writes.append(put(token, item))
        if outcome.history and outcome.record is not None:
            delay = outcome.delay_s if outcome.kind is OutcomeKind.RETRY else None
            writes.append(put(token, attempt_item(outcome.record, delay)))
        if outcome.idempotency_pk is None or answered:
            continue
        if outcome.kind is OutcomeKind.SUCCESS or outcome.completed_refused:
            item = completed_item(
                outcome.idempotency_pk,
                outcome.task_id,
                outcome.completed_value,
                outcome.idempotency_ttl_s,
                payload=outcome.payload_hash,
                refused=outcome.completed_refused,
            )
            writes.append(put(token, item))
        elif outcome.kind is OutcomeKind.FAILURE:  # failed for good: a duplicate gets it
            item = completed_item(
                outcome.idempotency_pk,
                outcome.task_id,
                None,
                outcome.idempotency_ttl_s,
                payload=outcome.payload_hash,
                failed=_failure_of(outcome),
            )
            writes.append(put(token, item))
        else:  # retrying (sqsq's own retry), or sqsq failed on it: free the key
            writes.append(delete(token, item_key(outcome.idempotency_pk)))
    return writes


def _answers_the_key(outcome: Outcome) -> bool:
    """Whether ``outcome``'s result item completes its idempotency key, so that the
    key item is not written again (``idempotency``: the key points to its owner's
    result): a SUCCESS or final FAILURE whose record is stored, not refused."""
    return (
        outcome.idempotency_pk is not None
        and outcome.kind in (OutcomeKind.SUCCESS, OutcomeKind.FAILURE)
        and outcome.record is not None
        and outcome.store
        and outcome.record.state in (State.SUCCESS, State.FAILURE)
        and not outcome.completed_refused
    )


def _keep_until(item: Item, expires_at: float) -> None:
    """Raise ``item``'s ``expires_at`` (TTL) to at least ``expires_at``."""
    current = int(item["expires_at"]["N"]) if "expires_at" in item else None
    if current is not None and current < int(expires_at):
        item["expires_at"] = {"N": str(int(expires_at))}


def completed_claim(outcome: Outcome) -> Claim | None:
    """What a claim of ``outcome``'s idempotency key finds once :func:`plan_writes` has
    stored it — the value (SUCCESS), the final failure, or the refusal — or None when
    the key is freed (a retry, or sqsq failed on it). The Lambda handler resolves a
    duplicate of the same batch with it, before the outcome is stored."""
    owner = outcome.task_id
    if outcome.kind is OutcomeKind.SUCCESS or outcome.completed_refused:
        return Claim(
            "COMPLETED",
            owner,
            outcome.completed_value,
            payload_hash=outcome.payload_hash,
            refused=outcome.completed_refused,
        )
    if outcome.kind is OutcomeKind.FAILURE:
        return Claim(
            "COMPLETED", owner, payload_hash=outcome.payload_hash, failed=_failure_of(outcome)
        )
    return None


def _failure_of(outcome: Outcome) -> dict[str, str | None]:
    """What a key whose run failed for good keeps (``idempotency.completed_item``)."""
    record, note = outcome.record, outcome.note
    return {
        "exc_type": (record.exc_type if record else None) or (note.error_type if note else None),
        "exc_message": (record.exc_message if record else None) or (note.message if note else ""),
        "reason": (record.dead_letter_reason if record else None)
        or (note.reason if note else None),
    }


def dead_letter_batches(
    app: App, outcomes: Sequence[Outcome]
) -> list[tuple[str, dict[str, Outcome], list[dict[str, Any]]]]:
    """``(dlq_name, {entry_id: outcome}, entries)`` per SendMessageBatch call."""
    by_dlq: dict[str, list[tuple[Outcome, dict[str, Any]]]] = {}
    for index, outcome in enumerate(o for o in outcomes if dead(o) and not o.copied):
        assert outcome.note is not None
        delivery = outcome.delivery
        dlq = dead_letter_name(app.queue_name(delivery.queue))
        group = delivery.message_group_id
        if group is None and dlq.endswith(".fifo"):
            group = "sqsq-dead-letters"
        entry = dead_letter_entry(
            str(index),
            delivery.sent_body,
            delivery.message_attributes,
            outcome.note,
            message_group_id=group,
            deduplication_id=delivery.message_id,
            trace_header=delivery.trace_header,
        )
        by_dlq.setdefault(dlq, []).append((outcome, entry))
    return _send_batches_by_queue(by_dlq)


def resend_batches(
    app: App, outcomes: Sequence[Outcome]
) -> list[tuple[str, dict[str, Outcome], list[dict[str, Any]]]]:
    """``(queue_name, {entry_id: outcome}, entries)`` per SendMessageBatch call that
    sends RESEND outcomes' messages on to their own queue with their delay."""
    by_queue: dict[str, list[tuple[Outcome, dict[str, Any]]]] = {}
    for index, outcome in enumerate(
        o for o in outcomes if o.kind is OutcomeKind.RESEND and not o.copied
    ):
        delivery = outcome.delivery
        bodies = [outcome.body] if outcome.bodies is None else outcome.bodies
        for part, body in enumerate(bodies):  # several: a foreign message split (sqsq.events)
            entry: dict[str, Any] = {
                "Id": str(index) if outcome.bodies is None else f"{index}-{part}",
                "MessageBody": body or delivery.sent_body,
                "DelaySeconds": int(min(max(0.0, outcome.delay_s), limits.SQS_MAX_DELAY_S)),
            }
            attributes = dict(delivery.message_attributes)
            # a new body is signed anew; the delivery's own keeps its signature (and
            # needs no key: see Executor.key_unavailable)
            if body is not None and (key := app.signing_key) is not None:
                attributes.update(signature_attribute(body, key))
            if attributes:
                entry["MessageAttributes"] = attributes
            by_queue.setdefault(app.queue_name(delivery.queue), []).append((outcome, entry))
    return _send_batches_by_queue(by_queue)


def _send_batches_by_queue(
    pairs_by_queue: dict[str, list[tuple[Outcome, dict[str, Any]]]],
) -> list[tuple[str, dict[str, Outcome], list[dict[str, Any]]]]:
    """``(queue_name, {entry_id: outcome}, entries)`` per SendMessageBatch call."""
    batches = []
    for queue, pairs in pairs_by_queue.items():
        by_id = {entry["Id"]: outcome for outcome, entry in pairs}
        for batch in send_batches([entry for _, entry in pairs]):
            batches.append((queue, {e["Id"]: by_id[e["Id"]] for e in batch}, batch))
    return batches


def visibility_entries(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """ChangeMessageVisibilityBatch entries (ids are positions in ``outcomes``)."""
    return [
        {
            "Id": str(i),
            "ReceiptHandle": o.delivery.receipt_handle,
            "VisibilityTimeout": int(min(max(0.0, o.delay_s), limits.SQS_MAX_VISIBILITY_TIMEOUT_S)),
        }
        for i, o in enumerate(outcomes)
    ]


def copies(
    app: App, outcomes: Sequence[Outcome]
) -> list[tuple[str, dict[str, Outcome], list[dict[str, Any]]]]:
    """Every SendMessageBatch a group of stored outcomes needs before its messages
    may go: DLQ copies (FAILURE, DEAD_LETTER) and RESEND copies due later."""
    return [*dead_letter_batches(app, outcomes), *resend_batches(app, outcomes)]


_COPIED = (*_DEAD, OutcomeKind.RESEND)


def dead(outcome: Outcome) -> bool:
    """Whether ``outcome``'s message goes to the DLQ: a FAILURE, a DEAD_LETTER, or an
    outcome a later step gave up on (``outcome.give_up``)."""
    return outcome.kind in _DEAD or outcome.gave_up is not None


def needs_store(outcome: Outcome) -> bool:
    """Whether ``outcome`` has DynamoDB writes, a copy (DLQ, RESEND), follow-ups or
    a Step Functions report to make before its message may be let go."""
    return (
        bool(plan_writes([outcome]))
        or ((outcome.kind in _COPIED or outcome.gave_up is not None) and not outcome.copied)
        or needs_follow_up(outcome)
        or task_tokens.needs_report(outcome)
    )


def missing_step(outcome: Outcome) -> str | None:
    """The dead-letter reason naming the step after storing that ``outcome`` still
    misses — ``followup_failed`` (its follow-ups) or ``task_token_report_failed`` (its
    Step Functions report) — or None: nothing stored yet (storing is retried for as
    long as the lease holds), its DLQ / RESEND copy missing, or given up already.
    Once a runner has spent the step's budget it calls ``outcome.give_up`` with it."""
    if not outcome.stored or outcome.gave_up is not None:
        return None
    if (dead(outcome) or outcome.kind is OutcomeKind.RESEND) and not outcome.copied:
        return None
    if needs_follow_up(outcome):
        return REASON_FOLLOWUP_FAILED
    if task_tokens.needs_report(outcome):
        return REASON_REPORT_FAILED
    return None


def may_let_go(outcome: Outcome) -> bool:
    """The invariant, checked in one place: a message is deleted (or made visible
    again) only once what its outcome must store is stored, for FAILURE and
    DEAD_LETTER it is copied to the DLQ, its follow-ups are made and, for a body
    with a task token, its outcome is reported to Step Functions."""
    return not needs_store(outcome)


def _by_url(
    outcomes: Sequence[Outcome], kinds: Sequence[OutcomeKind] | frozenset[OutcomeKind]
) -> dict[str, list[Outcome]]:
    grouped: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.kind in kinds:
            grouped.setdefault(outcome.delivery.queue_url, []).append(outcome)
    return grouped


@dataclass(frozen=True)
class SqsCall:
    """One DeleteMessageBatch or ChangeMessageVisibilityBatch call."""

    method: str  # the client method: "delete_message_batch" / "change_message_visibility_batch"
    url: str
    chunk: Sequence[Outcome]

    def kwargs(self) -> dict[str, Any]:
        if self.method == "delete_message_batch":
            entries = delete_entries(o.delivery.receipt_handle for o in self.chunk)
        else:
            entries = visibility_entries(self.chunk)
        return {"QueueUrl": self.url, "Entries": entries}


def held_back(outcomes: Sequence[Outcome]) -> tuple[list[Outcome], list[Outcome]]:
    """``(may_go, kept)``: the outcomes :func:`may_let_go` allows, and those it
    refuses — a bug in sqsq, logged as one (:class:`~sqsq.errors.UnstoredOutcome`):
    their messages are kept (they come back after their visibility timeout and the
    stored outcome is resumed, or the body run again), the rest still go."""
    may_go: list[Outcome] = []
    kept: list[Outcome] = []
    for outcome in outcomes:
        (may_go if may_let_go(outcome) else kept).append(outcome)
    if kept:
        logger.error("%s; their messages are kept", UnstoredOutcome([o.task_id for o in kept]))
    return may_go, kept


def sqs_calls(outcomes: Sequence[Outcome], *, delete: bool) -> list[SqsCall]:
    """The calls that let messages go: deletes of final outcomes (unless ``delete``
    is False: Lambda deletes them itself), visibility changes of the others.

    Raises:
        UnstoredOutcome: an outcome is not yet stored (see :func:`may_let_go`); no
            call is built. Raised, never asserted, so ``python -O`` keeps the check.
    """
    unstored = [o.task_id for o in outcomes if not may_let_go(o)]
    if unstored:
        raise UnstoredOutcome(unstored)
    groups = [("change_message_visibility_batch", _by_url(outcomes, RETURNED_KINDS))]
    if delete:
        groups.insert(0, ("delete_message_batch", _by_url(outcomes, FINAL_KINDS)))
    return [
        SqsCall(method, url, chunk)
        for method, by_url in groups
        for url, group in by_url.items()
        for chunk in chunks(group)
    ]


def _failed_entries(call: SqsCall, response: dict[str, Any]) -> list[Outcome]:
    return [call.chunk[int(f["Id"])] for f in response.get("Failed", [])]


def _stored(outcomes: Sequence[Outcome], not_written: set[str]) -> list[Outcome]:
    """Mark what was written; returns the outcomes whose writes failed."""
    kept = []
    for index, outcome in enumerate(outcomes):
        if _token(index) in not_written:
            kept.append(outcome)
        else:
            outcome.stored = True
    return kept


def _copied(by_id: dict[str, Outcome], failed: list[Outcome]) -> None:
    for outcome in by_id.values():
        outcome.copied = outcome not in failed


# --- the stages: one call sequence each, run by boto3 (Lambda) or aiobotocore (worker) ---


def store(app: App, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Stage 1 (boto3): BatchWriteItem, then DLQ copies of FAILURE / DEAD_LETTER,
    then the follow-ups of workflow envelopes (:class:`Continuation`), then the
    Step Functions reports of bodies with a task token (``task_tokens.report``).

    Returns the outcomes that could not be stored or copied (their messages must be
    kept). AWS errors (after botocore's retries) are logged, not raised. A write
    DynamoDB refuses (ValidationException) is isolated from its batch and its
    outcome becomes a dead letter (:func:`refused`), stored and copied at once.
    """
    return run(storing(app, outcomes, task_tokens.REPORT_ATTEMPTS), app.clients, app.directory)


async def astore(app: App, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Asyncio twin of :func:`store` (aiobotocore); Step Functions reports get one
    round (the worker's settler retries)."""
    return await arun(storing(app, outcomes, 1), app.clients, app.directory)


def storing(app: App, outcomes: Sequence[Outcome], report_rounds: int) -> Steps[list[Outcome]]:
    """The calls of :func:`store` (see :mod:`sqsq.calls`); returns the outcomes kept."""
    kept = yield from _store_once(app, outcomes, report_rounds)
    again = [o for o in kept if o.refused]
    if again:
        kept = [o for o in kept if not o.refused] + (
            yield from _store_once(app, again, report_rounds)
        )
    return kept


def _store_once(app: App, outcomes: Sequence[Outcome], report_rounds: int) -> Steps[list[Outcome]]:
    if app.payloads is not None:
        try:  # large values, and re-sent bodies of offloaded messages, to S3 (sqsq.payloads)
            yield from app.payloads.offloading_results(outcomes)
            yield from app.payloads.offloading_resends(outcomes)
        except Exception as exc:
            _warn("putting %d bodies in S3 failed; their messages are kept", len(outcomes), exc)
            return list(outcomes)
    writes = plan_writes(outcomes)
    rejected: dict[str, str] = {}
    try:
        not_written = (yield from app.results.writing(writes, rejected)) if writes else set()
    except Exception as exc:
        _warn("storing %d outcomes failed; their messages are kept", len(outcomes), exc)
        not_written = {token for token, _ in writes}
    _refuse(app, outcomes, rejected)
    kept = _stored(outcomes, not_written)
    stored = [o for o in outcomes if o not in kept]
    for dlq, by_id, entries in copies(app, stored):
        try:
            response = yield Call("sqs", "send_message_batch", {"Entries": entries}, queue=dlq)
            failed = [by_id[f["Id"]] for f in response.get("Failed", [])]
        except Exception as exc:
            _warn("sending %d messages to %s failed; they are kept", (len(entries), dlq), exc)
            failed = list(by_id.values())
        _copied(by_id, failed)
        kept += failed
    for outcome in kept:  # one of several copies failed: all are sent again
        outcome.copied = False
    pending = [o for o in outcomes if o not in kept and needs_follow_up(o)]
    if pending:
        kept += _followed(pending, (yield from app.follow_ups().follow_up(app, pending)))
    reported = [o for o in outcomes if o not in kept and task_tokens.needs_report(o)]
    if reported:
        kept += yield from task_tokens.reporting(reported, report_rounds)
    return kept


def _followed(pending: list[Outcome], failed: list[Outcome]) -> list[Outcome]:
    for outcome in pending:
        outcome.followed = outcome not in failed
    return failed


def _refuse(app: App, outcomes: Sequence[Outcome], rejected: dict[str, str]) -> None:
    for index, outcome in enumerate(outcomes):
        message = rejected.get(_token(index))
        if message is not None:
            refused(app, outcome, message)


def refused(app: App, outcome: Outcome, message: str) -> None:
    """DynamoDB refused a write of ``outcome`` (ValidationException: an item over
    its size, a key it cannot take): no retry can fix it. The outcome becomes a
    dead letter with reason ``result_too_large`` or ``invalid_key``: a small
    FAILURE record (no value, no traceback) — or, if that too is refused, no record
    at all (the DLQ copy carries the reason). Its idempotency key is kept COMPLETED:
    with the reason and without a value if the body succeeded (its effect happened,
    and a redrive of the dead letter must not repeat it), with the failure if it
    failed (a duplicate resolves to it)."""
    record = outcome.record
    reason = REASON_RESULT_TOO_LARGE if "size" in message.lower() else REASON_INVALID_KEY
    if "key" in message.lower() and "item size" not in message.lower():
        reason = REASON_INVALID_KEY
    error_type = (
        "sqsq.errors.ResultNotSerializable"
        if reason == REASON_RESULT_TOO_LARGE
        else "sqsq.errors.InvalidKey"
    )
    text = f"DynamoDB refused the outcome: {message}"[:1024]
    logger.error(
        "outcome of %s refused by DynamoDB (%s): %s", outcome.task_id, reason, message[:300]
    )
    if outcome.refused:  # the small record was refused too: the DLQ copy alone
        outcome.store, outcome.history, outcome.idempotency_pk = False, False, None
        outcome.record = None
        return
    outcome.refused = True
    if outcome.kind is OutcomeKind.SUCCESS and outcome.idempotency_pk is not None:
        outcome.completed_refused = reason
    if outcome.kind not in _DEAD:
        outcome.kind = OutcomeKind.FAILURE
    outcome.history = False
    outcome.store = True
    outcome.completed_value = None
    outcome.copied = False
    outcome.note = DeadLetterNote(
        reason=reason,
        error_type=error_type,
        message=text,
        task_id=outcome.task_id,
        source_queue=app.queue_name(outcome.delivery.queue),
        receive_count=outcome.delivery.receive_count,
    )
    if record is not None:
        outcome.record = replace(
            record,
            state=State.FAILURE,
            value=None,
            traceback=None,
            exc_type=error_type,
            exc_message=text,
            dead_letter_reason=reason,
            extra={},
        )


def release(app: App, outcomes: Sequence[Outcome], *, delete: bool = True) -> list[Outcome]:
    """Stage 2 (boto3): DeleteMessageBatch / ChangeMessageVisibilityBatch of stored
    outcomes. Returns the outcomes whose call failed (to be released again) — and
    any that is not stored yet, kept (a bug in sqsq, :func:`held_back`)."""
    return run(letting_go(app, outcomes, delete=delete), app.clients)


async def arelease(app: App, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Asyncio twin of :func:`release` (always deletes): the calls run concurrently."""
    return await arun(letting_go(app, outcomes, delete=True), app.clients)


def letting_go(app: App, outcomes: Sequence[Outcome], *, delete: bool) -> Steps[list[Outcome]]:
    """:func:`releasing`, then — the messages deleted — the S3 payloads they
    pointed to (``App.payloads``: never before, so a crash leaves an object for the
    lifecycle rule, never a pointer without its object)."""
    failed = yield from releasing(outcomes, delete=delete)
    if delete and app.payloads is not None:
        kept = {id(o) for o in failed}
        yield from app.payloads.discarding([o for o in outcomes if id(o) not in kept])
    return failed


def releasing(outcomes: Sequence[Outcome], *, delete: bool) -> Steps[list[Outcome]]:
    """The calls of :func:`release`, gathered (see :mod:`sqsq.calls`); returns the
    outcomes whose call failed, and those :func:`held_back` kept."""
    outcomes, failed = held_back(outcomes)
    calls = sqs_calls(outcomes, delete=delete)
    started_ns = time.time_ns()  # the settle spans' start (sqsq.tracing)
    answers = yield Gather(tuple(Call("sqs", call.method, call.kwargs()) for call in calls))
    if calling.tracing is not None and calls:
        calling.tracing.released(calls, answers, started_ns)
    for call, answer in zip(calls, answers, strict=True):
        if isinstance(answer, Exception):
            _warn("%s of %d messages failed", (call.method, len(call.chunk)), answer)
            failed += list(call.chunk)
        else:
            failed += _failed_entries(call, answer)
    return failed


def settle(app: App, outcomes: Sequence[Outcome], *, delete: bool = True) -> Settlement:
    """Store, dead-letter, then delete (if ``delete``) or change visibility, with boto3.

    AWS errors (after botocore's retries) do not propagate: the affected
    outcomes are returned in ``kept`` / ``sqs_failed`` and logged.
    """
    kept = store(app, outcomes)
    done = [o for o in outcomes if o not in kept]
    return Settlement(done=done, kept=kept, sqs_failed=release(app, done, delete=delete))
