"""Large payloads through S3: a claim check in the SQS Extended Client's wire format.

With ``payload_bucket`` set, a body over its queue's ``MaximumMessageSize`` (SQS
allows up to 1 MiB; sqsq keeps ``claim_check.HEADROOM_BYTES`` for a dead-letter copy's
attributes) is put in S3 and the message carries a pointer instead (see
:mod:`sqsq.pointer`); a worker or Lambda function fetches it before the
execution core sees the delivery::

    producer ─ body > threshold ─► PutObject sqsq/<app>/<queue>/<date>/<task id>/<sha256>
             └ SendMessage(Batch): ExtendedPayloadSize=<bytes>, body = the pointer
    worker / Lambda ─ receive ─► GetObject ─► sha256 = key's? ─► the core runs the body
                                   │ NoSuchKey, the task's result final (BatchGetItem)
                                   │   ─► a duplicate: message deleted, not run
                                   │ NoSuchKey / other object ─► DLQ payload_missing
                                   └ S3 unreachable ─► message back in PAYLOAD_RETRY_S
    settle ─ outcome stored ─► message deleted ─► DeleteObjects (SUCCESS, REVOKED with
             a stored result; payload_delete=False: the lifecycle rule expires it)
             FAILURE / DEAD_LETTER: the DLQ copy keeps the pointer, the object stays
             (the Lambda handler deletes final outcomes' messages itself, then the
             objects; a message it leaves to its event source keeps its object)

The object is never deleted before its message: a crash between the two leaves an
object the lifecycle rule (``payload_retention_s``, longer than any queue's
retention) or ``sqsq gc`` removes, never a pointer without its object. With signing
on, the signature is over the body itself (the producer signs before offloading, the
worker checks what it fetched), and the key ends with the body's sha256: a forged or
swapped pointer is a dead letter (``bad_signature``, or ``payload_missing``).

The core never imports this package: the App installs it (:func:`install`) when a
bucket is set, or on a worker's first receive (``App.claim_check``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..pointer import Pointer
from .claim_check import ClaimCheck

if TYPE_CHECKING:
    from ..app import App

__all__ = ["ClaimCheck", "Pointer", "install"]


def install(app: App) -> ClaimCheck:
    """Give ``app`` its claim check (``App.payloads``), once; returns it."""
    if app.payloads is None:
        app.payloads = ClaimCheck(app)
    return app.payloads
