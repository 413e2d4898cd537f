"""Message signing: an HMAC over everything sqsq sends, checked before a body is acted on.

With ``Settings.signing_key`` (``SQSQ_SIGNING_KEY``) set, every message sqsq sends is
signed with it, and workers (and the Lambda handler) verify it with any of the
accepted keys — the current one and ``Settings.signing_previous_keys`` (rotation) —
before any field of the body counts for anything. A signature travels one of two ways:

* **the message attribute** ``sqsq-signature`` = ``v1:`` + HMAC-SHA256(key, body text)
  in hex, on everything sqsq sends through SQS itself: ``delay``/``send_task``, canvas
  steps and their follow-ups (chain steps, callbacks, errbacks, chord members and
  bodies), retries and re-sent messages, long countdowns in hop mode, and redriven
  dead letters (``sqsq dlq redrive`` re-signs with the current key what an accepted
  older key signed; it never signs what no accepted key signed);
* **a body member** ``"sqsq-signature"`` (the body's last top-level member) where
  EventBridge Scheduler sends the message, since its SQS target cannot set message
  attributes: the one-time schedules of countdowns over 900 s (``v2:``) and the
  periodic tasks' schedules (``v2t:``). The HMAC is over ``version`` followed by the
  body's canonical text without that member (``envelope.dumps`` of the parsed
  object: the producer wrote it with the same function, so it is that very text).
  A periodic schedule's ``Input`` is a *template*: Scheduler fills in its context
  attributes (``<aws.scheduler.execution-id>``, ``…scheduled-time>``,
  ``…schedule-arn>``, ``…attempt-number>``) at each fire, after the template was
  signed. So a ``v2t:`` signature is over the template with its placeholders, and
  the verifier puts them back: only in the fields the template holds them in
  (:data:`TEMPLATE_SLOTS`: ``id``, ``scheduled_at``, the ``@<time>`` end of
  ``idempotency_key``, the ``sqsq-schedule-arn`` and ``sqsq-attempt`` headers), only
  when the filled value matches the attribute's pattern (:data:`CONTEXT`), and only
  when every fill of one attribute is the same value; anything else fails the HMAC.

The verdict (:func:`verify`), taken on the body's text before it is decoded::

    attribute present ─ an accepted key matches ─────────────────► decode, run
                      └ none does ──────────────────────────────► DLQ bad_signature
    body member ─ (bounded parse) an accepted key matches ───────► decode, run
                └ none does, or a placeholder fill that is not ─► DLQ bad_signature
    neither ─ body is the minimal foreign form {"task", "args",
              "kwargs"}, plus a Step Functions "task_token" and
              fields sqsq does not know (kept as headers) ─────► run *unsigned*
            └ anything else (a version, an id, an idempotency
              key, a workflow, headers...) ────────────────────► DLQ unsigned_message

A message that is not signed by an accepted key — refused, or run in the minimal
form — is never taken at its word: its result and its dead letter are under its
SQS MessageId (also when it does not decode, however deep), its ``workflow`` is not
followed and its task token is not reported when it is refused, and the
idempotency key its arguments render for a task that declares one lives in a
namespace of its own (``unsigned#idem#<task>#<key>``), where it can neither claim,
nor read, nor collide with the key of a signed call: a producer without the key (an
EventBridge rule, a shell) can still enqueue a plain call, and deduplicate its own
calls, but cannot name another task's id (to overwrite its result), pre-claim a
key, or make sqsq act on a chain or chord.

``task_token`` is allowed unsigned because its producer cannot sign: a Step
Functions ``sqs:sendMessage.waitForTaskToken`` task builds the body itself and has
no HMAC. It opens none of the doors signing closes: the task id is still the
MessageId (no result is overwritten), no key is claimed. The token only says where
the outcome is *reported*, and it is a secret of the one execution that issued it
(in its own message and execution history): an unsigned sender who somehow holds
one can make the worker report to that execution the outcome of a task it could
enqueue anyway; without one it can only make the report fail (InvalidToken,
logged, the outcome stored as usual).

A signed template is a capability: whoever can read it (``scheduler:GetSchedule``)
can send fires of that schedule with execution ids and times of their choosing. Keep
reading schedules as private as the key.

Each key is text, or a reference resolved once per process: ``secretsmanager:<secret
id or ARN>`` (AWS Secrets Manager, the SecretString) or ``ssm:<parameter name>``
(SSM Parameter Store, decrypted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: The message attribute that carries the signature of what sqsq sends through SQS.
SIGNATURE_ATTRIBUTE = "sqsq-signature"
#: The top-level body member that carries the signature of what EventBridge Scheduler
#: sends (its SQS target cannot set message attributes).
BODY_FIELD = "sqsq-signature"
#: Fields of the minimal foreign form accepted unsigned when signing is on (the
#: Step Functions task token included: see the module docstring).
FOREIGN_FIELDS = frozenset({"task", "args", "kwargs", "task_token"})
#: Signature versions: over the body's text (attribute), over the body without its
#: signature member (in the body), over a Scheduler template (placeholders put back).
ATTRIBUTE_VERSION = "v1:"
BODY_VERSION = "v2:"
TEMPLATE_VERSION = "v2t:"
_PREFIX = ATTRIBUTE_VERSION

#: Dead-letter reasons.
BAD_SIGNATURE = "bad_signature"
UNSIGNED = "unsigned_message"

#: The header sqsq adds to an unsigned call it accepted, so that its own signed
#: re-sends of it (a deferral, a retry) are still known as an unsigned call.
UNSIGNED_HEADER = "sqsq-unsigned"
#: The idempotency items of unsigned calls: ``unsigned#`` + the usual partition key,
#: a namespace no signed call's key reaches (``idem#…``).
UNSIGNED_KEY_PREFIX = "unsigned#"

#: What EventBridge Scheduler fills in at fire time ("Adding context attributes"):
#: name → (placeholder, the pattern a filled value must match to be put back).
CONTEXT = {
    "execution_id": ("<aws.scheduler.execution-id>", r"[0-9A-Za-z-]{1,64}"),
    "scheduled_time": (
        "<aws.scheduler.scheduled-time>",
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
    ),
    "schedule_arn": (
        "<aws.scheduler.schedule-arn>",
        r"arn:aws[a-z-]{0,16}:scheduler:[a-z0-9-]{0,32}:[0-9]{0,12}:schedule/[0-9A-Za-z_.-]{1,64}"
        r"/[0-9A-Za-z_.-]{1,64}",
    ),
    "attempt_number": ("<aws.scheduler.attempt-number>", r"[0-9]{1,3}"),
}


def _slot(pattern: str) -> re.Pattern[str]:
    for name, (_, value) in CONTEXT.items():
        pattern = pattern.replace("{" + name + "}", f"(?P<{name}>{value})")
    return re.compile(pattern)


#: Where a signed template may hold placeholders: a path in the body, and the
#: pattern of the whole filled value (the fields of ``scheduler.input_template``).
#: Nothing is put back anywhere else.
TEMPLATE_SLOTS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (("id",), _slot("{execution_id}")),
    (("scheduled_at",), _slot("{scheduled_time}")),
    (("idempotency_key",), _slot(r"schedule:[^@]{1,256}@{scheduled_time}")),
    (("headers", "sqsq-schedule-arn"), _slot("{schedule_arn}")),
    (("headers", "sqsq-attempt"), _slot("{attempt_number}")),
)

_lock = threading.Lock()
_resolved: dict[str, bytes] = {}


def resolve_key(spec: str, clients: Any = None) -> bytes:
    """The key bytes of ``spec`` (text, ``secretsmanager:…`` or ``ssm:…``), cached.

    Raises:
        Exception: what boto3 raises when the secret or parameter cannot be read.
    """
    with _lock:
        if spec in _resolved:
            return _resolved[spec]
    if spec.startswith("secretsmanager:"):
        import boto3

        client = clients.sync("secretsmanager") if clients else boto3.client("secretsmanager")
        value = client.get_secret_value(SecretId=spec.removeprefix("secretsmanager:"))
        text = str(value["SecretString"])
    elif spec.startswith("ssm:"):
        import boto3

        client = clients.sync("ssm") if clients else boto3.client("ssm")
        value = client.get_parameter(Name=spec.removeprefix("ssm:"), WithDecryption=True)
        text = str(value["Parameter"]["Value"])
    else:
        text = spec
    key = text.encode("utf-8")
    with _lock:
        _resolved[spec] = key
    return key


# --- signing -----------------------------------------------------------------------------


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(body: str, key: bytes) -> str:
    """The attribute signature of ``body``."""
    return ATTRIBUTE_VERSION + _mac(key, body)


def signature_attribute(body: str, key: bytes) -> dict[str, dict[str, str]]:
    """``{"sqsq-signature": …}`` in SendMessage's MessageAttributes shape."""
    return {SIGNATURE_ATTRIBUTE: {"DataType": "String", "StringValue": sign(body, key)}}


def signed_body(body: str, key: bytes, *, template: bool = False) -> str:
    """``body`` (an envelope as ``envelope.dumps`` writes it) with its signature as
    its last member, for a sender that cannot set message attributes (EventBridge
    Scheduler). ``template``: ``body`` is a Scheduler ``Input`` whose context
    attributes stand in the :data:`TEMPLATE_SLOTS` (a periodic task's).

    Raises:
        ValueError: ``body`` is not a JSON object, or (``template``) holds a
            placeholder outside the slots (Scheduler would fill it where the
            verifier cannot put it back).
    """
    from .envelope import dumps

    raw = json.loads(body)
    if not isinstance(raw, dict):
        raise ValueError("only a JSON object body can carry its signature")
    raw.pop(BODY_FIELD, None)
    text = dumps(raw)
    version = TEMPLATE_VERSION if template else BODY_VERSION
    if template:
        masked = dumps(_masked(raw))
        if any(placeholder in masked for placeholder, _ in CONTEXT.values()):
            raise ValueError(
                "a Scheduler placeholder outside the fields sqsq fills (id, scheduled_at, "
                "idempotency_key, the schedule headers) cannot be signed"
            )
    return dumps({**raw, BODY_FIELD: version + _mac(key, version + text)})


def _slot_holder(out: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    """The object holding a slot's last field in ``out``, each object on the way
    copied first (``out`` is a shallow copy of a parsed body: the body itself is
    never changed); None when the way is not objects."""
    holder: dict[str, Any] = out
    for name in path[:-1]:
        inner = holder.get(name)
        if not isinstance(inner, dict):
            return None
        holder[name] = holder = dict(inner)
    return holder


def _masked(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its slot fields blanked (to find placeholders elsewhere)."""
    out = dict(raw)
    for path, _ in TEMPLATE_SLOTS:
        holder = _slot_holder(out, path)
        if holder is not None and path[-1] in holder:
            holder[path[-1]] = ""
    return out


# --- verifying ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found.

    Attributes:
        reason: None when the body may be decoded, else the dead-letter reason
            (:data:`BAD_SIGNATURE`, :data:`UNSIGNED`).
        key: the index, among the accepted keys, of the key that signed it (0: the
            current one); None when no accepted key did.
    """

    reason: str | None
    key: int | None = None

    @property
    def signed(self) -> bool:
        """Signed by an accepted key: its fields may be taken at their word."""
        return self.key is not None


def _keys(keys: bytes | Sequence[bytes]) -> list[bytes]:
    return [keys] if isinstance(keys, bytes) else list(keys)


def verify(body: str, attributes: dict[str, Any], keys: bytes | Sequence[bytes]) -> Verdict:
    """The signature verdict on a message (see the module docstring), before
    anything of the body is used. ``keys``: the accepted keys, the current one first.
    Never raises: the body is parsed bounded (``limits.MAX_JSON_DEPTH``)."""
    accepted = _keys(keys)
    attribute = attributes.get(SIGNATURE_ATTRIBUTE)
    if attribute is not None:
        given = attribute.get("StringValue") if isinstance(attribute, dict) else None
        if isinstance(given, str):
            for index, key in enumerate(accepted):
                if hmac.compare_digest(given, sign(body, key)):
                    return Verdict(None, index)
        return Verdict(BAD_SIGNATURE)
    raw = _bounded(body)
    if not isinstance(raw, dict):
        return Verdict(None)  # unsigned, and it does not decode: it fails as such
    if BODY_FIELD in raw:
        signer = _body_key(raw, accepted)
        return Verdict(BAD_SIGNATURE) if signer is None else Verdict(None, signer)
    return Verdict(UNSIGNED) if set(raw) & _reserved_fields() else Verdict(None)


def check(body: str, attributes: dict[str, Any], keys: bytes | Sequence[bytes]) -> str | None:
    """None when ``body`` may be decoded, else the dead-letter reason
    (``bad_signature`` / ``unsigned_message``); see :func:`verify`."""
    return verify(body, attributes, keys).reason


def _bounded(body: str) -> Any:
    """The JSON value of ``body``, or None when it is not JSON or nests deeper than
    ``limits.MAX_JSON_DEPTH``: ``envelope.parse`` itself, so that the verdict and the
    decoding read the same value (its error, which names the body's id, is dropped)."""
    from .envelope import parse
    from .errors import UndecodableMessage

    try:
        return parse(body)
    except UndecodableMessage:
        return None


def _body_key(raw: dict[str, Any], keys: list[bytes]) -> int | None:
    """The index of the key that signed ``raw``'s body member, or None."""
    from .envelope import dumps

    given = raw[BODY_FIELD]
    if not isinstance(given, str):
        return None
    rest = {name: value for name, value in raw.items() if name != BODY_FIELD}
    version = given[: given.find(":") + 1]
    if version == TEMPLATE_VERSION:
        restored = _restore(rest)
        if restored is None:
            return None
        rest = restored
    elif version != BODY_VERSION:
        return None
    try:
        text = dumps(rest)
    except ValueError:  # e.g. 1e999 read as infinity: not what sqsq wrote
        return None
    for index, key in enumerate(keys):
        if hmac.compare_digest(given, version + _mac(key, version + text)):
            return index
    return None


def _restore(raw: dict[str, Any]) -> dict[str, Any] | None:
    """``raw`` with Scheduler's fills put back as placeholders in the template's
    slots; None when a fill does not match its pattern, or one attribute was
    filled with different values."""
    out = dict(raw)
    fills: dict[str, str] = {}
    for path, pattern in TEMPLATE_SLOTS:
        holder = _slot_holder(out, path)
        if holder is None or path[-1] not in holder:
            continue  # absent: the HMAC decides
        value = holder[path[-1]]
        match = pattern.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            return None
        restored, end = "", 0
        for name, filled in match.groupdict().items():
            if fills.setdefault(name, filled) != filled:
                return None
            start, stop = match.span(name)
            restored += value[end:start] + CONTEXT[name][0]
            end = stop
        holder[path[-1]] = restored + value[end:]
    return out


def _reserved_fields() -> frozenset[str]:
    """The envelope's fields an unsigned body may not set: all but :data:`FOREIGN_FIELDS`."""
    from .envelope_model import Envelope

    return frozenset(Envelope.model_fields) - FOREIGN_FIELDS
