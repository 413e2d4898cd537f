"""Acting on outcomes: store them, dead-letter what must go, and only then let go.

This is the one place where invariant 1 of the design is written down::

    outcomes ─► BatchWriteItem (results, 25 per call)
                   │ not stored ─► message kept (it comes back after its visibility timeout)
                   ▼
                SendMessageBatch to the DLQ (dead letters, with the reason attached)
                   │ not sent ─► message kept
                   ▼
                DeleteMessageBatch (worker) / omitted from batchItemFailures (Lambda)

:func:`plan` is pure; :func:`settle` (boto3, Lambda) and :func:`asettle`
(aiobotocore, worker) execute it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .dynamodb import Item, result_item
from .execution import Outcome, OutcomeKind
from .sqs import chunks, dead_letter_entry, dead_letter_name, delete_entries, send_batches

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)


@dataclass
class Settlement:
    """What happened to a group of outcomes.

    Attributes:
        done: outcomes whose result is stored (and dead letters copied); their
            messages may go (and, in the worker, were deleted unless listed in
            ``delete_failed``).
        kept: outcomes that could not be settled; their messages must come back.
        delete_failed: done outcomes whose DeleteMessageBatch entry failed (the
            message will be delivered again; the stored outcome stays).
    """

    done: list[Outcome] = field(default_factory=list)
    kept: list[Outcome] = field(default_factory=list)
    delete_failed: list[Outcome] = field(default_factory=list)


def result_writes(outcomes: Sequence[Outcome]) -> list[tuple[str, Item]]:
    """The result items to write, as ``(task_id, item)`` pairs."""
    return [(o.task_id, result_item(o.record)) for o in outcomes if o.store]


def dead_letter_batches(
    app: App, outcomes: Sequence[Outcome]
) -> list[tuple[str, dict[str, Outcome], list[dict[str, Any]]]]:
    """``(dlq_name, {entry_id: outcome}, entries)`` per SendMessageBatch call."""
    by_dlq: dict[str, list[tuple[Outcome, dict[str, Any]]]] = {}
    for index, outcome in enumerate(o for o in outcomes if o.kind is OutcomeKind.DEAD_LETTER):
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


def _after_writes(outcomes: Sequence[Outcome], not_stored: set[str]) -> Settlement:
    settlement = Settlement()
    for outcome in outcomes:
        if outcome.store and outcome.task_id in not_stored:
            settlement.kept.append(outcome)
        else:
            settlement.done.append(outcome)
    return settlement


def _drop_failed_sends(settlement: Settlement, failed: list[Outcome]) -> None:
    for outcome in failed:
        settlement.done.remove(outcome)
        settlement.kept.append(outcome)


def _deletable(settlement: Settlement) -> dict[str, list[Outcome]]:
    by_url: dict[str, list[Outcome]] = {}
    for outcome in settlement.done:
        by_url.setdefault(outcome.delivery.queue_url, []).append(outcome)
    return by_url


def settle(app: App, outcomes: Sequence[Outcome], *, delete: bool = True) -> Settlement:
    """Store, dead-letter and (if ``delete``) delete, with boto3.

    AWS errors (after botocore's retries) do not propagate: the affected
    outcomes are returned in ``kept`` and logged.
    """
    writes = result_writes(outcomes)
    try:
        not_stored = app.results.put_results(writes) if writes else set()
    except Exception:
        logger.exception("storing %d results failed; their messages are kept", len(writes))
        not_stored = {task_id for task_id, _ in writes}
    settlement = _after_writes(outcomes, not_stored)
    client = app.clients.sync("sqs")
    for dlq, by_id, entries in dead_letter_batches(app, settlement.done):
        try:
            response = client.send_message_batch(QueueUrl=app.directory.url(dlq), Entries=entries)
            failed = [by_id[f["Id"]] for f in response.get("Failed", [])]
        except Exception:
            logger.exception("sending %d messages to %s failed; they are kept", len(entries), dlq)
            failed = list(by_id.values())
        _drop_failed_sends(settlement, failed)
    if delete:
        for url, group in _deletable(settlement).items():
            for chunk in chunks(group):
                try:
                    response = client.delete_message_batch(
                        QueueUrl=url, Entries=delete_entries(o.delivery.receipt_handle for o in chunk)
                    )
                    settlement.delete_failed += [chunk[int(f["Id"])] for f in response.get("Failed", [])]
                except Exception:
                    logger.exception("deleting %d messages failed", len(chunk))
                    settlement.delete_failed += list(chunk)
    return settlement


async def asettle(app: App, outcomes: Sequence[Outcome], *, delete: bool = True) -> Settlement:
    """Asyncio twin of :func:`settle` (aiobotocore)."""
    writes = result_writes(outcomes)
    try:
        not_stored = await app.results.aput_results(writes) if writes else set()
    except Exception:
        logger.exception("storing %d results failed; their messages are kept", len(writes))
        not_stored = {task_id for task_id, _ in writes}
    settlement = _after_writes(outcomes, not_stored)
    client = await app.clients.aclient("sqs")
    for dlq, by_id, entries in dead_letter_batches(app, settlement.done):
        try:
            url = await app.directory.aurl(dlq)
            response = await client.send_message_batch(QueueUrl=url, Entries=entries)
            failed = [by_id[f["Id"]] for f in response.get("Failed", [])]
        except Exception:
            logger.exception("sending %d messages to %s failed; they are kept", len(entries), dlq)
            failed = list(by_id.values())
        _drop_failed_sends(settlement, failed)
    if delete:
        for url, group in _deletable(settlement).items():
            for chunk in chunks(group):
                try:
                    response = await client.delete_message_batch(
                        QueueUrl=url, Entries=delete_entries(o.delivery.receipt_handle for o in chunk)
                    )
                    settlement.delete_failed += [chunk[int(f["Id"])] for f in response.get("Failed", [])]
                except Exception:
                    logger.exception("deleting %d messages failed", len(chunk))
                    settlement.delete_failed += list(chunk)
    return settlement
