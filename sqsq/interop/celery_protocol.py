"""Celery's message protocol v2, as kombu's SQS transport writes it: in and out.

What kombu sends to SQS (``sqs_base64_encoding`` on, its default)::

    MessageBody = base64( JSON {
        "body": base64( JSON [args, kwargs, {"callbacks", "errbacks", "chain", "chord"}] ),
        "content-type": "application/json",        # or pickle / yaml / msgpack: refused
        "content-encoding": "utf-8",
        "headers": {"lang": "py", "task", "id", "eta", "expires", "retries", "timelimit",
                    "root_id", "parent_id", "group", "group_index", "argsrepr", ...},
        "properties": {"correlation_id": id, "body_encoding": "base64",
                       "delivery_info": {"exchange": "", "routing_key": routing_key}, ...},
    } )

In (:meth:`CeleryProtocol.translate`, asked by the execution core for a body that
is not an envelope)::

    kombu message? ── no ──────────────────────────────► None (the core goes on as before)
        │ content-type not application/json ──────────► DLQ, celery_serializer_refused
        │ body not [args, kwargs, embed] ──────────────► DLQ, undecodable_message
        │ headers.task not registered (nor an alias) ──► DLQ, unknown_task
        │ a link / link_error task not registered ─────► DLQ, unknown_task
        │ embed.chain / embed.chord ───────────────────► DLQ, undecodable_message
        └─► Envelope(id=headers.id, task, args, kwargs, eta, expires, retries,
                     root_id, parent_id, workflow={link, link_error})

The envelope then runs like any other: the Celery id is the task id (its result is
where ``AsyncResult(id)`` looks), ``eta`` holds it back (re-sent with DelaySeconds,
as a long ETA is), ``expires`` revokes it, ``retries`` counts as attempts already made.

Out (:func:`build`): the same shape, for ``app.send_task(..., protocol="celery")`` and
tasks declared with ``protocol="celery"``, so that a stock Celery worker runs it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..envelope import to_json
from ..errors import CelerySerializerRefused, UndecodableMessage, UnknownTask
from ..producer import OutgoingMessage, delay_seconds, expiry

if TYPE_CHECKING:
    from ..app import App
    from ..delivery import Delivery
    from ..envelope_model import Envelope

#: The one content type accepted (Celery's ``json`` serializer).
JSON_CONTENT_TYPE = "application/json"
#: Envelope header recording that a run came from a Celery message (value: "2").
PROTOCOL_HEADER = "sqsq-celery-protocol"
#: Envelope header with Celery's ``group`` id, when the message had one.
GROUP_HEADER = "sqsq-celery-group"
#: uuid5 namespace of the ids given to link callbacks without a frozen ``task_id``,
#: so that a redelivered message sends its callbacks under the same ids.
_CALLBACK_IDS = uuid.UUID("6d3c1c8e-3f38-4d4e-9a3b-2f0f3d1c9b57")


def kombu_message(body: str, raw: Any) -> dict[str, Any] | None:
    """The kombu message in an SQS body, or None when the body is not one.

    Args:
        body: the SQS message body.
        raw: its JSON value when it parsed (kombu with ``sqs_base64_encoding``
            off), else None (then ``body`` is tried as base64 of the JSON).
    """
    if raw is None:
        try:
            raw = json.loads(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError, RecursionError):
            return None
    if not isinstance(raw, dict) or not {"body", "headers", "properties"} <= raw.keys():
        return None
    headers = raw["headers"]
    if not isinstance(headers, dict) or not isinstance(headers.get("task"), str):
        return None  # protocol v1 (task in the body) or not Celery's
    return raw


class CeleryProtocol:
    """Translates Celery messages for one App (``App.celery``).

    Args:
        app: the App whose tasks run them.
        aliases: Celery task name → registered sqsq task name, for tasks that
            were renamed in the move (by default a Celery name runs the sqsq task
            registered under the same name).
        queues: sqsq logical queue → the Celery queue name that Celery workers
            know its SQS queue by (a key of kombu's ``predefined_queues``); by
            default the physical SQS queue name, which is the Celery queue name
            when kombu has no ``queue_name_prefix`` and no predefined queues.
    """

    def __init__(
        self,
        app: App,
        aliases: Mapping[str, str] | None = None,
        queues: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.aliases: dict[str, str] = dict(aliases or {})
        self.queues: dict[str, str] = dict(queues or {})

    def task_name(self, celery_name: str) -> str:
        """The registered sqsq task that runs Celery task ``celery_name``."""
        return self.aliases.get(celery_name, celery_name)

    def routing_key(self, queue: str) -> str:
        """The Celery queue name of sqsq logical queue ``queue``: what a Celery
        worker's kombu looks the SQS queue up by when it deletes the message."""
        return self.queues.get(queue) or self.app.queue_name(queue)

    def translate(self, delivery: Delivery, raw: Any) -> Envelope | None:
        """The envelope to run for a Celery message, or None when ``delivery`` is
        not one (see the module docstring).

        Args:
            delivery: the message as received.
            raw: the body's JSON value, or None when the body is not JSON.

        Raises:
            CelerySerializerRefused: not JSON (pickle, yaml, msgpack); the body is
                never decoded.
            UnknownTask: the task, or a link/link_error callback, is not registered.
            UndecodableMessage: a Celery message sqsq cannot run as sent.
        """
        message = kombu_message(delivery.body, raw)
        if message is None:
            return None
        headers: dict[str, Any] = message["headers"]
        task_id = headers.get("id") if isinstance(headers.get("id"), str) else None
        try:
            return self._envelope(delivery, message, headers, task_id)
        except (UndecodableMessage, UnknownTask, CelerySerializerRefused) as exc:
            exc.task_id = task_id  # its result is stored under the Celery id
            raise

    def _envelope(
        self,
        delivery: Delivery,
        message: dict[str, Any],
        headers: dict[str, Any],
        task_id: str | None,
    ) -> Envelope:
        content_type = message.get("content-type")
        if content_type != JSON_CONTENT_TYPE:
            raise CelerySerializerRefused(
                f"Celery message of task {headers['task']!r} serialized as {content_type!r}: "
                f"only {JSON_CONTENT_TYPE} is run (sqsq never unpickles a message)"
            )
        args, kwargs, embed = _payload(message)
        name = self.task_name(headers["task"])
        if name not in self.app.tasks:
            raise UnknownTask(
                f"Celery task {headers['task']!r}: no task named {name!r} is registered in "
                f"app {self.app.name!r} (register it, or alias it: sqsq.interop.use_celery)"
            )
        if embed.get("chain") or embed.get("chord"):
            raise UndecodableMessage(
                f"Celery message of task {headers['task']!r} carries a chain or chord: "
                "send canvases from sqsq (sqsq.workflows) or keep them on Celery workers"
            )
        workflow = {
            kind: self._callbacks(headers, embed.get(field) or [], kind)
            for kind, field in (("link", "callbacks"), ("link_error", "errbacks"))
            if embed.get(field)
        }
        from pydantic import ValidationError

        from ..envelope_model import Envelope

        extra = {PROTOCOL_HEADER: "2"}
        if isinstance(headers.get("group"), str):
            extra[GROUP_HEADER] = headers["group"]
        try:
            return Envelope.model_validate(
                {
                    "id": task_id or delivery.message_id,
                    "task": name,
                    "args": args,
                    "kwargs": kwargs,
                    "queue": delivery.queue,
                    "eta": headers.get("eta"),
                    "expires": headers.get("expires"),
                    "retries": headers.get("retries") or 0,
                    "parent_id": headers.get("parent_id"),
                    "root_id": headers.get("root_id"),
                    "workflow": workflow or None,
                    "headers": extra,
                }
            )
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UndecodableMessage(f"Celery message: {where}: {err['msg']}") from None

    def _callbacks(
        self, headers: dict[str, Any], signatures: Any, kind: str
    ) -> list[dict[str, Any]]:
        """Celery ``link`` / ``link_error`` signatures as sqsq's frozen JSON form."""
        if not isinstance(signatures, list):
            raise UndecodableMessage(f"Celery message: embed {kind} is not a list")
        out = []
        for index, sig in enumerate(signatures):
            if not isinstance(sig, dict) or not isinstance(sig.get("task"), str):
                raise UndecodableMessage(f"Celery message: {kind} {index} is not a signature")
            name = self.task_name(sig["task"])
            if name not in self.app.tasks:
                raise UnknownTask(
                    f"Celery task {headers['task']!r}: its {kind} callback {sig['task']!r} "
                    f"is not registered in app {self.app.name!r}; nothing was run"
                )
            options = sig.get("options")
            if not isinstance(options, dict):
                options = {}
            frozen = options.get("task_id")
            callback_id = (
                frozen
                if isinstance(frozen, str)
                else str(uuid.uuid5(_CALLBACK_IDS, f"{headers.get('id')}:{kind}:{index}"))
            )
            sqsq_options: dict[str, Any] = {"task_id": callback_id}
            if isinstance(options.get("queue"), str):
                sqsq_options["queue"] = options["queue"]
            out.append(
                {
                    "t": "task",
                    "task": name,
                    "args": list(sig.get("args") or []),
                    "kwargs": dict(sig.get("kwargs") or {}),
                    "options": sqsq_options,
                    **({"immutable": True} if sig.get("immutable") else {}),
                }
            )
        return out


def _payload(message: dict[str, Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """``(args, kwargs, embed)`` of a JSON Celery message's body.

    Raises:
        UndecodableMessage: not protocol v2's ``[args, kwargs, embed]``.
    """
    body = message["body"]
    properties = message.get("properties") or {}
    try:
        if isinstance(properties, dict) and properties.get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True)
        value = json.loads(body) if isinstance(body, str | bytes) else body
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise UndecodableMessage("Celery message body is not base64 JSON") from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], list)
        or not isinstance(value[1], dict)
        or not isinstance(value[2], dict | None)
    ):
        raise UndecodableMessage("Celery message body is not protocol v2's [args, kwargs, embed]")
    return value[0], value[1], value[2] or {}


# --- out: messages a stock Celery worker runs ------------------------------------------


def build(
    task_name: str,
    args: Sequence[Any] | None,
    kwargs: dict[str, Any] | None,
    *,
    routing_key: str,
    queue_name: str,
    countdown: float | timedelta | None = None,
    eta: datetime | None = None,
    expires: float | timedelta | datetime | None = None,
    task_id: str | None = None,
) -> OutgoingMessage:
    """One task call as kombu's SQS transport writes it (Celery protocol v2, JSON).

    Celery holds a message with an ``eta`` in the worker until it is due; the
    message's DelaySeconds is set as well (up to 900 s), so that no worker even
    receives it before then.

    Args:
        task_name: the Celery task's name.
        routing_key: the Celery queue name (``delivery_info.routing_key``, see
            :meth:`CeleryProtocol.routing_key`); queue_name: the physical SQS
            queue name it is sent to.
        countdown / eta / expires / task_id: as for ``Task.apply_async``.

    Raises:
        NotSerializable: an argument is not JSON.
        EnqueueError: a countdown or eta that SQS cannot delay by.
    """
    now = datetime.now(UTC)
    task_id = task_id or str(uuid.uuid4())
    args = to_json(list(args or ()), "args")
    kwargs = to_json(dict(kwargs or {}), "kwargs")
    delay = delay_seconds(countdown, eta)
    due = eta or (now + timedelta(seconds=delay) if delay else None)
    expires_at = expiry(expires, now)
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    payload = json.dumps([args, kwargs, embed])
    message = {
        "body": base64.b64encode(payload.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": JSON_CONTENT_TYPE,
        "headers": {
            "lang": "py",
            "task": task_name,
            "id": task_id,
            "shadow": None,
            "eta": due.isoformat() if due else None,
            "expires": expires_at.isoformat() if expires_at else None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": repr(tuple(args)),
            "kwargsrepr": repr(kwargs),
            "origin": f"sqsq@{socket.gethostname()}:{os.getpid()}",
            "ignore_result": False,
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    body = base64.b64encode(json.dumps(message).encode()).decode()
    return OutgoingMessage(task_id, task_name, body, queue_name, delay)
