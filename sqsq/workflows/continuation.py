"""Follow-ups of finished tasks, run in settle's store stage (``settle.Continuation``):
after the outcome is stored, before its message is deleted.

Per outcome whose envelope has a ``workflow``::

    SUCCESS ─► links (value first) · next chain step (value first)
            └► chord member: UpdateItem ADD done 1, members {i}
                   IF attribute_exists(pk) AND NOT contains(members, i)  ── counted once
                   │ done == size, no failure, not fired ─► GetItem of the body item,
                   │     BatchGetItem of the results (100 keys a call, in order)
                   │     ─► send the body with them, id frozen and an
                   │     idempotency key "chord:<id>:<task_id>" ─► SET fired
                   │     (a body too large for one message with them: the chord
                   │     fails, reason chord_body_too_large, as below)
                   └ condition failed (a duplicate or a re-run): read the item
                       (ALL_OLD); if done == size and not fired, send again (the key
                       makes a second send run nothing)
    FAILURE ─► errbacks (task id first) · remaining chain steps marked FAILURE
            └► chord member: the same UpdateItem, also SET failed/failed_by IF absent;
                   the first failure marks the body FAILURE (ChordError naming the
                   member) and sends the body's errbacks with the body's id, then SET fired

A crash anywhere before the message is deleted redelivers it; every step above
is safe to repeat, and the redelivery does not run the member's body again (its
stored outcome is found: ``Executor.resume``). The body's key makes a second send
run nothing — also when the body failed (a failure is recorded under its key).
Follow-ups that fail past their budget are given up on: the member's message goes
to the DLQ with reason ``followup_failed``. The AWS calls are yielded by generators
(:func:`follow_up`, :mod:`sqsq.calls`) inside settle's store sequence, so the boto3
(Lambda) and aiobotocore (worker) drivers share all the logic.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import limits
from ..calling import type_name
from ..calls import Call, Steps
from ..dynamodb import result_item, with_value
from ..errors import ChordBodyTooLarge, MessageTooLarge
from ..outcome import Outcome, OutcomeKind
from ..producer import OutgoingMessage, claim_checked, follows, published, publishing
from ..result import ResultRecord, State
from ..settle import workflow_of
from ..sqs import send_batches
from .plan import (
    Plan,
    chord_body_key,
    chord_key,
    leaves,
    plan,
    putting_chord,
    result_id,
)

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger(__name__)

#: The exception type stored for chain steps that will not run.
CHAIN_ERROR = "sqsq.workflows.ChainError"
#: The exception type stored for a chord whose member failed.
CHORD_ERROR = "sqsq.workflows.ChordError"


@dataclass
class _Work:
    """What one outcome's follow-ups add up to."""

    plan: Plan = field(default_factory=Plan)
    marks: list[ResultRecord] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)  # chord ids to mark fired after sending


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


# --- per outcome -------------------------------------------------------------------


#: Chord members below this index add their ``traceparent`` to the chord's counter
#: item (in the UpdateItem that counts them: no extra request; ~55 bytes each), for
#: the callback's send span to link to (``sqsq.producer.follows``).
TRACED_MEMBERS = 128


def _trace_of(outcome: Outcome) -> tuple[str, ...]:
    """The ``traceparent`` of the envelope of ``outcome``, if it has one."""
    try:
        headers = json.loads(outcome.delivery.body).get("headers") or {}
    except (ValueError, AttributeError):
        return ()
    value = headers.get("traceparent") if isinstance(headers, dict) else None
    return (value,) if isinstance(value, str) else ()


def _one(app: App, outcome: Outcome, workflow: dict[str, Any]) -> Steps[_Work]:
    """The follow-ups of one outcome; returns its :class:`_Work`."""
    envelope = json.loads(outcome.delivery.body)
    task_id = outcome.task_id
    ids: dict[str, Any] = {"parent_id": task_id, "root_id": envelope.get("root_id") or task_id}
    work = _Work()
    member = workflow.get("chord")
    rest = list(workflow.get("chain", []))
    if outcome.kind is OutcomeKind.SUCCESS:
        value = outcome.record.value if outcome.record is not None else None
        for link in workflow.get("link", []):
            work.plan.extend(plan(app, link, value=value, **ids))
        if rest:
            work.plan.extend(plan(app, rest[0], value=value, rest=rest[1:], member=member, **ids))
        elif member is not None:
            yield from _count(app, member, None, work, ids)
        return work
    # FAILURE / DEAD_LETTER: the task will not produce a value
    for errback in workflow.get("link_error", []):
        work.plan.extend(plan(app, errback, value=task_id, **ids))
    record = outcome.record
    reason = f"{envelope.get('task')}[{task_id}] failed"
    if record is not None and record.exc_type:
        reason += f": {record.exc_type}: {record.exc_message}"
    for step in rest:
        for leaf_id, name in leaves(step):
            work.marks.append(_failure(app, leaf_id, name, CHAIN_ERROR, f"chain step {reason}"))
    if member is not None:
        failure = f"member {member['index']} of chord {member['id']}: {reason}"
        yield from _count(app, member, failure, work, ids)
    return work


def _count(
    app: App,
    member: dict[str, Any],
    failure: str | None,
    work: _Work,
    ids: dict[str, Any],
) -> Steps[None]:
    """Count one chord member (once), and fire or fail the chord when due."""
    from botocore.exceptions import ClientError

    chord_id = str(member["id"])
    index = str(member["index"])
    update = "ADD #done :one, #members :index"
    values: dict[str, Any] = {":one": {"N": "1"}, ":index": {"SS": [index]}, ":i": {"S": index}}
    names = {"#done": "done", "#members": "members"}
    own = follows.get()
    if own and int(index) < TRACED_MEMBERS:  # for the callback's links (sqsq.tracing)
        update += ", #traces :trace"
        values[":trace"] = {"SS": list(own)}
        names["#traces"] = "traces"
    if failure is not None:
        update += " SET #failed = if_not_exists(#failed, :f), #by = if_not_exists(#by, :i)"
        values[":f"] = {"S": failure}
        names.update({"#failed": "failed", "#by": "failed_by"})
    try:
        response = yield Call(
            "dynamodb",
            "update_item",
            {
                "TableName": app.table_name,
                "Key": chord_key(chord_id),
                "UpdateExpression": update,
                "ConditionExpression": "attribute_exists(pk) AND NOT contains(#members, :i)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ReturnValues": "ALL_NEW",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
        )
        item = response["Attributes"]
    except ClientError as exc:
        if _code(exc) != "ConditionalCheckFailedException":
            raise
        item = exc.response.get("Item") or (
            yield Call(
                "dynamodb",
                "get_item",
                {"TableName": app.table_name, "Key": chord_key(chord_id), "ConsistentRead": True},
            )
        ).get("Item")
        if not item:
            raise LookupError(
                f"chord {chord_id} has no counter item (expired, or never created)"
            ) from None
        if index not in item.get("members", {}).get("SS", []):
            raise  # not a duplicate: something else failed the condition
    if "fired" in item:
        return
    done, size = int(item["done"]["N"]), int(item["size"]["N"])
    failed_by = item.get("failed_by", {}).get("S")
    if (failed_by is not None and failed_by != index) or (failed_by is None and done < size):
        return  # not complete yet, or another member failed it (and sends the errbacks)
    response = yield Call(
        "dynamodb",
        "get_item",
        {"TableName": app.table_name, "Key": chord_body_key(chord_id), "ConsistentRead": True},
    )
    if "Item" not in response:
        raise LookupError(f"chord {chord_id} has no body item (expired, or never created)")
    saved_item = response["Item"]
    saved = json.loads(saved_item["body"]["S"])
    body, rest, outer = saved["body"], saved.get("rest", []), saved.get("member")
    if failed_by is not None:
        yield from _fail(app, chord_id, saved, item["failed"]["S"], CHORD_ERROR, None, work, ids)
        return
    result_ids = [r["S"] for r in saved_item["results"]["L"]]
    values_in_order = yield from _results(app, result_ids)
    members = sorted(set(item.get("traces", {}).get("SS", [])) - set(own))
    linked = follows.set((*own, *members))  # the callback links to the members' sends
    try:
        body_plan = plan(
            app,
            body,
            value=values_in_order,
            rest=rest,
            member=outer,
            key_prefix=f"chord:{chord_id}",
            **ids,
        )
    except MessageTooLarge as exc:  # no retry makes it smaller (no payload_bucket set)
        reason = f"chord {chord_id}: its body with the members' results cannot be sent: {exc}"
        logger.error("%s; the chord fails (%s)", reason, ChordBodyTooLarge.reason)
        too_large = type_name(ChordBodyTooLarge())
        yield from _fail(
            app, chord_id, saved, reason, too_large, ChordBodyTooLarge.reason, work, ids
        )
        return
    finally:
        follows.reset(linked)
    work.plan.extend(body_plan)
    work.fired.append(chord_id)


def _fail(
    app: App,
    chord_id: str,
    saved: dict[str, Any],
    reason: str,
    exc_type: str,
    dead_letter_reason: str | None,
    work: _Work,
    ids: dict[str, Any],
) -> Steps[None]:
    """The chord fails: its body (and the chain steps after it) marked FAILURE with
    ``reason``, the body's errbacks sent, the chord marked fired; a chord inside an
    outer chord's header fails the outer one too."""
    body, rest, outer = saved["body"], saved.get("rest", []), saved.get("member")
    for leaf_id, name in [leaf for step in (body, *rest) for leaf in leaves(step)]:
        work.marks.append(_failure(app, leaf_id, name, exc_type, reason, dead_letter_reason))
    chord_result = result_id(body) if body["t"] != "group" else chord_id
    for errback in body.get("link_error", []):
        work.plan.extend(plan(app, errback, value=chord_result, **ids))
    work.fired.append(chord_id)
    if outer is not None:  # a chord inside a chord's header: the outer one fails too
        outer_reason = f"member {outer['index']} of chord {outer['id']}: chord {reason}"
        yield from _count(app, outer, outer_reason, work, ids)


def _results(app: App, result_ids: list[str]) -> Steps[list[Any]]:
    """The members' values in order: BatchGetItem, 100 keys a call, consistent reads."""
    found = yield from app.results.records_getting(result_ids)
    values = []
    for rid in result_ids:
        record = found.get(rid)
        if record is None or record.state is not State.SUCCESS:
            raise LookupError(
                f"chord member result {rid} is not stored as SUCCESS (chord members "
                "need store_result=True)"
            )
        values.append((yield from with_value(record)).value)  # an S3 value: GetObject
    return values


def _failure(
    app: App,
    task_id: str,
    name: str,
    exc_type: str,
    message: str,
    dead_letter_reason: str | None = None,
) -> ResultRecord:
    now = datetime.now(UTC)
    return ResultRecord(
        task_id=task_id,
        state=State.FAILURE,
        task=name,
        exc_type=exc_type,
        exc_message=message,
        dead_letter_reason=dead_letter_reason,
        finished_at=now,
        expires_at=int(time.time() + app.settings.result_ttl_s),
    )


# --- a batch of outcomes -------------------------------------------------------------


def follow_up(app: App, outcomes: Sequence[Outcome]) -> Steps[list[Outcome]]:
    """All follow-ups of ``outcomes``; returns the outcomes whose follow-ups failed.

    Order: each outcome's DynamoDB steps (chord counting), then the chord items of
    newly started chords (PutItem if absent), the FAILURE marks (BatchWriteItem),
    every message (SendMessageBatch, grouped by queue across outcomes), and last
    the ``fired`` flags.
    """
    failed: list[Outcome] = []
    works: list[tuple[Outcome, _Work]] = []
    for outcome in outcomes:
        workflow = workflow_of(outcome)
        if workflow is None:
            continue
        following = follows.set(_trace_of(outcome))  # the follow-ups continue its trace
        try:
            work = yield from _one(app, outcome, workflow)
            for chord in work.plan.chords:
                yield from putting_chord(app, chord)
            for start in range(0, len(work.marks), limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS):
                yield from _write(
                    app, work.marks[start : start + limits.DYNAMODB_MAX_BATCH_WRITE_ITEMS]
                )
        except Exception as exc:
            _warn(outcome, exc)
            failed.append(outcome)
            continue
        finally:
            follows.reset(following)
        works.append((outcome, work))
    # messages of all outcomes, batched per queue, between their publish signals
    owners: dict[str, Outcome] = {}
    messages: dict[str, OutgoingMessage] = {}
    by_queue: dict[str, list[dict[str, Any]]] = {}
    for number, (outcome, work) in enumerate(works):
        for k, message in enumerate(work.plan.messages):
            entry_id = f"{number}-{k}"
            owners[entry_id], messages[entry_id] = outcome, message
    publishing(list(messages.values()))
    refused: set[str] = set()
    try:  # bodies over the queue's size go to S3 first (App.payloads)
        wire = yield from claim_checked(list(messages.values()))
    except Exception as exc:
        for owner in set(owners.values()):
            _warn(owner, exc)
        wire, refused = [], set(messages)
    for entry_id, message in zip(messages, wire, strict=False):  # none sent: wire is []
        by_queue.setdefault(message.queue_name, []).append(message.entry(entry_id))
    for queue, entries in by_queue.items():
        for batch in send_batches(entries):
            try:
                response = yield Call("sqs", "send_message_batch", {"Entries": batch}, queue=queue)
                refused.update(f["Id"] for f in response.get("Failed", []))
            except Exception as exc:
                _warn(owners[batch[0]["Id"]], exc)
                refused.update(e["Id"] for e in batch)
    failed += [o for i, o in owners.items() if i in refused and o not in failed]
    published([m for i, m in messages.items() if i not in refused])
    for outcome, work in works:
        if outcome in failed:
            continue
        for chord_id in work.fired:
            try:
                yield Call(
                    "dynamodb",
                    "update_item",
                    {
                        "TableName": app.table_name,
                        "Key": chord_key(chord_id),
                        "UpdateExpression": "SET fired = :t",
                        "ExpressionAttributeValues": {":t": {"BOOL": True}},
                    },
                )
            except Exception as exc:  # only an optimization: a re-send runs nothing twice
                _warn(outcome, exc)
    return failed


def _write(app: App, records: list[ResultRecord]) -> Steps[None]:
    request: dict[str, Any] = {
        app.table_name: [{"PutRequest": {"Item": result_item(r)}} for r in records]
    }
    for _ in range(10):
        response = yield Call("dynamodb", "batch_write_item", {"RequestItems": request})
        request = response.get("UnprocessedItems") or {}
        if not request:
            return
    raise RuntimeError(f"{len(request[app.table_name])} FAILURE marks left unprocessed")


def _warn(outcome: Outcome, exc: Exception) -> None:
    logger.warning(
        "follow-ups of task %s failed; its message is kept and they are redone (%s: %s)",
        outcome.task_id,
        type(exc).__name__,
        exc,
    )
    logger.debug("details", exc_info=exc)


class Continuation:
    """The :class:`sqsq.settle.Continuation` this package installs on the App
    (:func:`sqsq.workflows.install`)."""

    def follow_up(self, app: App, outcomes: Sequence[Outcome]) -> Steps[list[Outcome]]:
        """:func:`follow_up`, absorbing a bug's exception: the messages are kept
        (they come back)."""
        try:
            return list((yield from follow_up(app, outcomes)))
        except Exception as exc:
            logger.exception("follow-ups failed unexpectedly: %s", exc)
            return list(outcomes)
