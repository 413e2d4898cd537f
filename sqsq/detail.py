"""What a result item keeps for a task's page (``sqsq dashboard``): the call's
arguments, its place in a workflow, the idempotency key it claimed.

Built from the envelope when the outcome's record is (``decisions.py``) and written
as optional attributes of the result item (``dynamodb.py``):

============  =====  ===============================================================
attribute     type   what
============  =====  ===============================================================
``args``      S      ``{"args": [...], "kwargs": {...}}`` as JSON text, cut at
                     :data:`MAX_ARGUMENTS_BYTES` (then no longer valid JSON)
``args_cut``  BOOL   true when ``args`` was cut
``parent_id`` S      the task whose outcome sent this one (a chain's previous step,
                     the chord member that completed the header, a link's task)
``root_id``   S      the first task of the workflow
``workflow``  S      what follows this task (:func:`follows`), as JSON text
``key_pk``    S      the ``pk`` of the idempotency key item it claimed
                     (``idem#<task>#<key>``, see ``idempotency.py``)
============  =====  ===============================================================

Arguments are kept where a task's page is worth opening — FAILURE (dead letters
too), RETRY and STARTED — and on every outcome with ``result_arguments="always"``,
never with ``"never"``. The other attributes are a few dozen bytes each and only
present when the envelope has them (a workflow step, a task with a key). Cost: no
extra request; the item grows by at most ~4.3 KB (one more write request unit per
KB of item, so a failure with 4 KB of arguments costs up to 5 WCU instead of 1).
"""

from __future__ import annotations

from typing import Any, Literal

from .envelope import dumps

#: Most UTF-8 bytes of arguments kept in a result item (4 KB; DynamoDB's item limit
#: is 400 KB, ``limits.DYNAMODB_MAX_ITEM_BYTES``).
MAX_ARGUMENTS_BYTES = 4096

#: The ``result_arguments`` setting: which outcomes keep their arguments.
ArgumentsPolicy = Literal["listed", "always", "never"]


def arguments_text(args: list[Any], kwargs: dict[str, Any]) -> tuple[str, bool]:
    """``({"args": …, "kwargs": …} as JSON text, whether it was cut)``: the text is cut
    at :data:`MAX_ARGUMENTS_BYTES` (ASCII JSON, so bytes are characters)."""
    text = dumps({"args": args, "kwargs": kwargs})
    if len(text) <= MAX_ARGUMENTS_BYTES:
        return text, False
    return text[:MAX_ARGUMENTS_BYTES], True


def first_ids(sig: Any) -> list[str]:
    """The ids of the tasks that run first when the canvas ``sig`` (frozen JSON form,
    ``sqsq.workflows``) is applied."""
    if not isinstance(sig, dict):
        return []
    kind = sig.get("t")
    if kind == "task":
        task_id = (sig.get("options") or {}).get("task_id")
        return [str(task_id)] if task_id else []
    if kind == "chain":
        return first_ids((sig.get("tasks") or [None])[0])
    if kind == "group":
        return [i for member in sig.get("tasks") or [] for i in first_ids(member)]
    if kind == "chord":
        header = sig.get("header") or []
        return [i for m in header for i in first_ids(m)] or first_ids(sig.get("body"))
    return []


def follows(workflow: dict[str, Any] | None) -> dict[str, Any]:
    """What follows a task, from its envelope's ``workflow`` field: ``{"next": [ids]}``
    (a chain's next step), ``"links"`` / ``"errbacks"`` (the tasks its success / its
    failure sends), ``"chord": {"id": …, "index": i}`` (it is member *i* of that
    chord's header). Empty for a task outside a workflow."""
    if not workflow:
        return {}
    out: dict[str, Any] = {}
    rest = workflow.get("chain") or []
    if rest:
        out["next"] = first_ids(rest[0])
    for name, field in (("links", "link"), ("errbacks", "link_error")):
        ids = [i for sig in workflow.get(field) or [] for i in first_ids(sig)]
        if ids:
            out[name] = ids
    chord = workflow.get("chord")
    if isinstance(chord, dict) and "id" in chord:
        out["chord"] = {"id": str(chord["id"]), "index": chord.get("index")}
    return out
