"""From a frozen canvas (its JSON form) to what must be sent: messages and chord
counter items. Pure, shared by the producer (:func:`send`) and the worker's
follow-ups (``continuation.py``), so a step is built the same way wherever it starts.

What travels in an envelope's ``workflow`` field::

    {"link": [sig, ...],          # applied with this task's result (success)
     "link_error": [sig, ...],    # applied with this task's id (failure)
     "chain": [sig, ...],         # the rest of the chain: chain[0] gets the result
     "chord": {"id": ..., "index": i}}   # this result is member i of a chord

A chord's two items (``pk = "chord#<id>"``), both with ``expires_at`` (N)::

    sk = "body"    results (L of S: the members' result ids, in order), body (S: JSON
                   of {"body": sig, "rest": [sig...], "member": {...} | None})
    sk = "chord"   the counter: size (N); done (N) and members (SS of indexes) counted
                   by members; failed / failed_by (the first failure); fired (set once
                   the body or the errbacks went out)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import producer
from ..calls import Call, Steps, arun, run
from ..dynamodb import Item

if TYPE_CHECKING:
    from ..app import App

#: A value marking "no parent result": the first step of a canvas sent by a producer.
NO_VALUE: Any = object()


@dataclass
class Plan:
    """What applying a canvas takes: chord items first, then the messages."""

    chords: list[Item] = field(default_factory=list)
    messages: list[producer.OutgoingMessage] = field(default_factory=list)

    def extend(self, other: Plan) -> None:
        self.chords += other.chords
        self.messages += other.messages


def chord_key(chord_id: str) -> Item:
    """The primary key of a chord's counter item."""
    return {"pk": {"S": f"chord#{chord_id}"}, "sk": {"S": "chord"}}


def chord_body_key(chord_id: str) -> Item:
    """The primary key of a chord's body item (read once, by the finisher)."""
    return {"pk": {"S": f"chord#{chord_id}"}, "sk": {"S": "body"}}


def result_id(sig: dict[str, Any]) -> str:
    """The id whose result stands for ``sig`` as a chord member.

    Raises:
        ValueError: a group directly inside a chord's header (flatten it instead).
    """
    kind = sig["t"]
    if kind == "task":
        return str(sig["options"]["task_id"])
    if kind == "chain":
        return result_id(sig["tasks"][-1])
    if kind == "chord":
        return result_id(sig["body"])
    raise ValueError("a group directly inside a chord's header is not supported; flatten it")


def leaves(sig: dict[str, Any]) -> list[tuple[str, str]]:
    """``(task_id, task)`` of every task in ``sig`` (to mark them when they will not run)."""
    kind = sig["t"]
    if kind == "task":
        return [(str(sig["options"]["task_id"]), str(sig["task"]))]
    parts = sig["tasks"] if kind in ("chain", "group") else [*sig["header"], sig["body"]]
    return [leaf for part in parts for leaf in leaves(part)]


def plan(
    app: App,
    sig: dict[str, Any],
    *,
    value: Any = NO_VALUE,
    rest: list[dict[str, Any]] | None = None,
    member: dict[str, Any] | None = None,
    parent_id: str | None = None,
    root_id: str | None = None,
    key_prefix: str | None = None,
    check: bool = False,
    errbacks: list[dict[str, Any]] | None = None,
) -> Plan:
    """Plan applying ``sig`` (frozen JSON form).

    Args:
        value: the parent's result, prepended to the first task(s) unless immutable.
        rest: chain steps that follow ``sig``.
        member: chord membership of ``sig``'s result.
        parent_id / root_id: the envelope's workflow ids.
        key_prefix: give messages without an idempotency key ``<prefix>:<task_id>``
            (a chord's body: sent at most once in effect, however often it is re-sent).
        check: check that arguments bind (producer side; the worker validates anyway).
        errbacks: inherited errbacks (a chain's ``link_error`` applies to every step).
    """
    rest = list(rest or [])
    errbacks = [*(errbacks or []), *sig.get("link_error", [])]
    kind = sig["t"]
    out = Plan()
    if kind == "task":
        workflow: dict[str, Any] = {}
        if sig.get("link"):
            workflow["link"] = sig["link"]
        if errbacks:
            workflow["link_error"] = errbacks
        if rest:
            workflow["chain"] = rest
        if member is not None:
            workflow["chord"] = member
        args = list(sig["args"])
        if value is not NO_VALUE and not sig.get("immutable"):
            args = [value, *args]
        out.messages.append(
            _message(app, sig, args, workflow, parent_id, root_id, key_prefix, check)
        )
    elif kind == "chain":
        steps = list(sig["tasks"])
        if sig.get("link"):  # a chain's callbacks follow its last step
            last = dict(steps[-1])
            last["link"] = [*last.get("link", []), *sig["link"]]
            steps[-1] = last
        if errbacks:
            steps = [_with_errbacks(s, errbacks) for s in steps]
        out.extend(
            plan(
                app,
                steps[0],
                value=value,
                rest=[*steps[1:], *rest],
                member=member,
                parent_id=parent_id,
                root_id=root_id,
                key_prefix=key_prefix,
                check=check,
            )
        )
    elif kind == "group":
        if rest or member is not None:
            raise ValueError("a group followed by a step is a chord (normalized by chain())")
        for m in sig["tasks"]:
            if errbacks:
                m = _with_errbacks(m, errbacks)
            if sig.get("link"):  # a group's callbacks follow each member (Celery)
                m = _with_links(m, sig["link"])
            out.extend(
                plan(
                    app,
                    m,
                    value=value,
                    parent_id=parent_id,
                    root_id=root_id,
                    key_prefix=key_prefix,
                    check=check,
                )
            )
    elif kind == "chord":
        chord_id = str(sig["options"]["chord_id"])
        body = sig["body"] if not errbacks else _with_errbacks(sig["body"], errbacks)
        if sig.get("link"):
            body = _with_links(body, sig["link"])
        header = sig["header"]
        if not header:  # nothing to wait for: the body gets [] at once (Celery)
            return plan(
                app, body, value=[], rest=rest, member=member, parent_id=parent_id,
                root_id=root_id, key_prefix=key_prefix, check=check,
            )  # fmt: skip
        out.chords += chord_items(app, chord_id, header, body, rest, member)
        for index, m in enumerate(header):
            out.extend(
                plan(
                    app,
                    m,
                    value=value,
                    member={"id": chord_id, "index": index},
                    parent_id=parent_id,
                    root_id=root_id,
                    key_prefix=key_prefix,
                    check=check,
                )
            )
    else:
        raise ValueError(f"unknown canvas kind {kind!r}")
    return out


def _with_links(sig: dict[str, Any], links: list[dict[str, Any]]) -> dict[str, Any]:
    return {**sig, "link": [*sig.get("link", []), *links]}


def _with_errbacks(sig: dict[str, Any], errbacks: list[dict[str, Any]]) -> dict[str, Any]:
    return {**sig, "link_error": [*errbacks, *sig.get("link_error", [])]}


def chord_items(
    app: App,
    chord_id: str,
    header: list[dict[str, Any]],
    body: dict[str, Any],
    rest: list[dict[str, Any]],
    member: dict[str, Any] | None,
) -> list[Item]:
    """The chord's body item and counter item, written (if absent) before any member
    is sent. They are apart so that the item every member updates stays small: an
    UpdateItem costs one write unit per KB of the item, so the members' result ids
    and the body are not rewritten by each count."""
    from ..envelope import dumps

    expires = {"N": str(int(time.time() + app.settings.result_ttl_s))}
    return [
        {
            **chord_body_key(chord_id),
            "results": {"L": [{"S": result_id(m)} for m in header]},
            "body": {"S": dumps({"body": body, "rest": rest, "member": member})},
            "expires_at": expires,
        },
        {**chord_key(chord_id), "size": {"N": str(len(header))}, "expires_at": expires},
    ]


def _message(
    app: App,
    sig: dict[str, Any],
    args: list[Any],
    workflow: dict[str, Any],
    parent_id: str | None,
    root_id: str | None,
    key_prefix: str | None,
    check: bool,
) -> producer.OutgoingMessage:
    name = str(sig["task"])
    options = sig.get("options", {})
    task = app.tasks.get(name)
    queue = options.get("queue") or (task.queue if task else app.settings.default_queue)
    task_id = str(options["task_id"])
    kwargs = dict(sig.get("kwargs", {}))
    key = options.get("idempotency_key")
    if key is None and task is not None and task.idempotency_key is not None:
        try:
            key = task.key_for(args, kwargs)
        except (ValueError, TypeError):
            key = None  # arguments that do not bind: the worker dead-letters the message
    if key is None and key_prefix is not None:
        key = f"{key_prefix}:{task_id}"
    group = None  # the task's fair_key: MessageGroupId (SQS fair queues; FIFO's group)
    if task is not None and task.fair_key is not None:
        try:
            group = task.fair_group_for(args, kwargs)
        except (ValueError, TypeError):
            group = None  # as for the key: the worker dead-letters what does not bind
    message = producer.build(
        name,
        args,
        kwargs,
        queue=queue,
        queue_name=app.queue_name(queue),
        countdown=options.get("countdown"),
        expires=options.get("expires"),
        task_id=task_id,
        signature=task.signature if task is not None and check else None,
        idempotency_key=key,
        message_group_id=group,
        parent_id=parent_id,
        root_id=root_id,
        workflow=workflow or None,
        signing_key=app.signing_key,
        claim_check=app.payloads,
    )
    return message


def send(app: App, sig: dict[str, Any]) -> None:
    """Producer side (boto3): write the chord items (PutItem, only if absent), then
    send every first message (SendMessageBatch).

    Raises:
        The errors of ``Task.apply_async``.
    """
    run(sending(app, sig), app.clients, app.directory)


async def asend(app: App, sig: dict[str, Any]) -> None:
    """Asyncio twin of :func:`send` (aiobotocore)."""
    await arun(sending(app, sig), app.clients, app.directory)


def sending(app: App, sig: dict[str, Any]) -> Steps[None]:
    """The calls of :func:`send` (see :mod:`sqsq.calls`)."""
    first = plan(app, sig, check=True)
    for item in first.chords:
        yield from putting_chord(app, item)
    yield from producer.sending(app.directory, first.messages)


def putting_chord(app: App, item: Item) -> Steps[None]:
    """PutItem of a chord's counter item (:func:`put_chord_request`); one already
    there (an earlier run wrote it) is left as it is."""
    from botocore.exceptions import ClientError

    try:
        yield Call("dynamodb", "put_item", put_chord_request(app, item))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise


def put_chord_request(app: App, item: Item) -> dict[str, Any]:
    """PutItem arguments that write a chord's counter item only if it is absent (a
    re-run must not reset the count)."""
    return {
        "TableName": app.table_name,
        "Item": item,
        "ConditionExpression": "attribute_not_exists(pk)",
    }
