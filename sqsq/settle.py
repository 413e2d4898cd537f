"""Acting on outcomes: store them, dead-letter what must go, and only then let go.

This is the one place where invariant 1 of the design is written down::

    outcomes ─► BatchWriteItem: results, attempt history, idempotency keys (25 per call)
                   │ not stored ─► message kept (it comes back after its visibility timeout)
                   ▼
                SendMessageBatch to the DLQ (FAILURE and DEAD_LETTER, reason attached)
                   │ not sent ─► message kept
                   ▼
                DeleteMessageBatch (worker) / omitted from batchItemFailures (Lambda)
                   — for SUCCESS, FAILURE, DEAD_LETTER, REVOKED
                ChangeMessageVisibilityBatch — RETRY (backoff), DEFER (lease), RELEASE (0)

:func:`plan_writes` and :func:`dead_letter_batches` are pure; :func:`settle`
(boto3, Lambda) and :func:`asettle` (aiobotocore, worker) execute them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import limits
from .dynamodb import Write, attempt_item, delete, put, result_item
from .execution import FINAL_KINDS, RETURNED_KINDS, Outcome, OutcomeKind
from .idempotency import completed_item, item_key
from .sqs import chunks, dead_letter_entry, dead_letter_name, delete_entries, send_batches

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)

_DEAD = (OutcomeKind.FAILURE, OutcomeKind.DEAD_LETTER)


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
        if outcome.record is not None and outcome.store:
            writes.append(put(token, result_item(outcome.record)))
        if outcome.history and outcome.record is not None:
            delay = outcome.delay_s if outcome.kind is OutcomeKind.RETRY else None
            writes.append(put(token, attempt_item(outcome.record, delay)))
        if outcome.idempotency_pk is not None:
            if outcome.kind is OutcomeKind.SUCCESS:
                item = completed_item(
                    outcome.idempotency_pk,
                    outcome.task_id,
                    outcome.completed_value,
                    outcome.idempotency_ttl_s,
                    payload=outcome.payload_hash,
                )
                writes.append(put(token, item))
            else:  # failed or retrying: free the key for the next attempt
                writes.append(delete(token, item_key(outcome.idempotency_pk)))
    return writes


def dead_letter_batches(
    app: App, outcomes: Sequence[Outcome]
) -> list[tuple[str, dict[str, Outcome], list[dict[str, Any]]]]:
    """``(dlq_name, {entry_id: outcome}, entries)`` per SendMessageBatch call."""
    by_dlq: dict[str, list[tuple[Outcome, dict[str, Any]]]] = {}
    for index, outcome in enumerate(o for o in outcomes if o.kind in _DEAD and not o.copied):
        assert outcome.note is not None
        delivery = outcome.delivery
        dlq = dead_letter_name(app.queue_name(delivery.queue))
        group = delivery.message_group_id
        if group is None and dlq.endswith(".fifo"):
            group = "sqsq-dead-letters"
        entry = dead_letter_entry(
            str(index),
            delivery.body,
            delivery.message_attributes,
            outcome.note,
            message_group_id=group,
            deduplication_id=delivery.message_id,
        )
        by_dlq.setdefault(dlq, []).append((outcome, entry))
    batches = []
    for dlq, pairs in by_dlq.items():
        by_id = {entry["Id"]: outcome for outcome, entry in pairs}
        for batch in send_batches([entry for _, entry in pairs]):
            batches.append((dlq, {e["Id"]: by_id[e["Id"]] for e in batch}, batch))
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


def _split(outcomes: Sequence[Outcome], not_written: set[str]) -> Settlement:
    settlement = Settlement()
    for index, outcome in enumerate(outcomes):
        if _token(index) in not_written:
            settlement.kept.append(outcome)
        else:
            outcome.stored = True
            settlement.done.append(outcome)
    return settlement


def _keep(settlement: Settlement, by_id: dict[str, Outcome], failed: list[Outcome]) -> None:
    for outcome in failed:
        settlement.done.remove(outcome)
        settlement.kept.append(outcome)
    for outcome in by_id.values():
        outcome.copied = outcome not in failed


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
    """One DeleteMessageBatch or ChangeMessageVisibilityBatch call of a settlement."""

    method: str  # the client method: "delete_message_batch" / "change_message_visibility_batch"
    url: str
    chunk: Sequence[Outcome]

    def kwargs(self) -> dict[str, Any]:
        if self.method == "delete_message_batch":
            entries = delete_entries(o.delivery.receipt_handle for o in self.chunk)
        else:
            entries = visibility_entries(self.chunk)
        return {"QueueUrl": self.url, "Entries": entries}


def sqs_calls(settlement: Settlement, *, delete: bool) -> list[SqsCall]:
    """The calls that let messages go: deletes of final outcomes (unless ``delete``
    is False: Lambda deletes them itself), visibility changes of the others."""
    groups = [("change_message_visibility_batch", _by_url(settlement.done, RETURNED_KINDS))]
    if delete:
        groups.insert(0, ("delete_message_batch", _by_url(settlement.done, FINAL_KINDS)))
    return [
        SqsCall(method, url, chunk)
        for method, by_url in groups
        for url, group in by_url.items()
        for chunk in chunks(group)
    ]


def _sqs_done(
    settlement: Settlement, call: SqsCall, response: dict[str, Any] | None, exc: Exception | None
) -> None:
    if exc is not None:
        _warn("%s of %d messages failed", (call.method, len(call.chunk)), exc)
        settlement.sqs_failed += list(call.chunk)
    elif response is not None:
        settlement.sqs_failed += [call.chunk[int(f["Id"])] for f in response.get("Failed", [])]


def settle(app: App, outcomes: Sequence[Outcome], *, delete: bool = True) -> Settlement:
    """Store, dead-letter, then delete (if ``delete``) or change visibility, with boto3.

    AWS errors (after botocore's retries) do not propagate: the affected
    outcomes are returned in ``kept`` / ``sqs_failed`` and logged.
    """
    writes = plan_writes(outcomes)
    try:
        not_written = app.results.write(writes) if writes else set()
    except Exception as exc:
        _warn("storing %d outcomes failed; their messages are kept", len(outcomes), exc)
        not_written = {token for token, _ in writes}
    settlement = _split(outcomes, not_written)
    client = app.clients.sync("sqs")
    for dlq, by_id, entries in dead_letter_batches(app, settlement.done):
        try:
            response = client.send_message_batch(QueueUrl=app.directory.url(dlq), Entries=entries)
            failed = [by_id[f["Id"]] for f in response.get("Failed", [])]
        except Exception as exc:
            _warn("sending %d messages to %s failed; they are kept", (len(entries), dlq), exc)
            failed = list(by_id.values())
        _keep(settlement, by_id, failed)
    for call in sqs_calls(settlement, delete=delete):
        try:
            response = getattr(client, call.method)(**call.kwargs())
        except Exception as exc:
            _sqs_done(settlement, call, None, exc)
        else:
            _sqs_done(settlement, call, response, None)
    return settlement


async def asettle(app: App, outcomes: Sequence[Outcome], *, delete: bool = True) -> Settlement:
    """Asyncio twin of :func:`settle` (aiobotocore)."""
    writes = plan_writes(outcomes)
    try:
        not_written = await app.results.awrite(writes) if writes else set()
    except Exception as exc:
        _warn("storing %d outcomes failed; their messages are kept", len(outcomes), exc)
        not_written = {token for token, _ in writes}
    settlement = _split(outcomes, not_written)
    client = await app.clients.aclient("sqs")
    for dlq, by_id, entries in dead_letter_batches(app, settlement.done):
        try:
            url = await app.directory.aurl(dlq)
            response = await client.send_message_batch(QueueUrl=url, Entries=entries)
            failed = [by_id[f["Id"]] for f in response.get("Failed", [])]
        except Exception as exc:
            _warn("sending %d messages to %s failed; they are kept", (len(entries), dlq), exc)
            failed = list(by_id.values())
        _keep(settlement, by_id, failed)
    for call in sqs_calls(settlement, delete=delete):
        try:
            response = await getattr(client, call.method)(**call.kwargs())
        except Exception as exc:
            _sqs_done(settlement, call, None, exc)
        else:
            _sqs_done(settlement, call, response, None)
    return settlement
