"""Message signing, in the manner of Celery's ``setup_security``: an HMAC over the body.

With ``Settings.signing_key`` (``SQSQ_SIGNING_KEY``) set, producers add the message
attribute ``sqsq-signature`` = ``v1:`` + HMAC-SHA256(key, body) in hex, and workers
(and the Lambda handler) verify it before decoding::

    attribute present ─ matches ──────────────────────────────► decode, run
                      └ does not match ───────────────────────► DLQ, reason bad_signature
    attribute absent ─ body is the minimal foreign form
                       {"task", "args", "kwargs"}, plus a Step
                       Functions "task_token" and fields sqsq
                       does not know (kept as headers) ──────► run; its id is the MessageId
                     └ anything else (a version, an id, an
                       idempotency key, headers...) ──────────► DLQ, reason unsigned_message

So a producer without the key (an EventBridge rule, a shell) can still enqueue a
plain call, but cannot choose another task's ``id`` (to overwrite its result) or its
``idempotency_key`` (to pre-claim it).

``task_token`` is allowed unsigned because its producer cannot sign: a Step
Functions ``sqs:sendMessage.waitForTaskToken`` task builds the body itself and has
no HMAC. It opens none of the doors signing closes: the task id is still the
MessageId (no result is overwritten), no key is claimed. The token only says where
the outcome is *reported*, and it is a secret of the one execution that issued it
(in its own message and execution history): an unsigned sender who somehow holds
one can make the worker report to that execution the outcome of a task it could
enqueue anyway; without one it can only make the report fail (InvalidToken,
logged, the outcome stored as usual).

The key is text, or a reference resolved once per process: ``secretsmanager:<secret
id or ARN>`` (AWS Secrets Manager, the SecretString) or ``ssm:<parameter name>``
(SSM Parameter Store, decrypted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any

#: The message attribute that carries the signature.
SIGNATURE_ATTRIBUTE = "sqsq-signature"
#: Fields of the minimal foreign form accepted unsigned when signing is on (the
#: Step Functions task token included: see the module docstring).
FOREIGN_FIELDS = frozenset({"task", "args", "kwargs", "task_token"})
_PREFIX = "v1:"

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


def sign(body: str, key: bytes) -> str:
    """The signature of ``body``."""
    return _PREFIX + hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_attribute(body: str, key: bytes) -> dict[str, dict[str, str]]:
    """``{"sqsq-signature": …}`` in SendMessage's MessageAttributes shape."""
    return {SIGNATURE_ATTRIBUTE: {"DataType": "String", "StringValue": sign(body, key)}}


def check(body: str, attributes: dict[str, Any], key: bytes) -> str | None:
    """None when ``body`` may be decoded, else the dead-letter reason
    (``bad_signature`` / ``unsigned_message``); see the module docstring."""
    attribute = attributes.get(SIGNATURE_ATTRIBUTE)
    if attribute is not None:
        given = attribute.get("StringValue") if isinstance(attribute, dict) else None
        if isinstance(given, str) and hmac.compare_digest(given, sign(body, key)):
            return None
        return "bad_signature"
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON: decoding dead-letters it with its own reason
    if isinstance(raw, dict) and not (set(raw) & _reserved_fields()):
        return None
    return "unsigned_message"


def _reserved_fields() -> frozenset[str]:
    """The envelope's fields an unsigned body may not set: all but :data:`FOREIGN_FIELDS`."""
    from .envelope_model import Envelope

    return frozenset(Envelope.model_fields) - FOREIGN_FIELDS
