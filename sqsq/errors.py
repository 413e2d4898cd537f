"""Every error sqsq raises, grouped by who must act.

::

    SqsqError
    ├── ConfigurationError        the developer: a bad App/task option, an unknown app path
    │   ├── InvalidScheduleExpression  an expression or time zone EventBridge would refuse
    │   └── MissingExtra          the install lacks an extra (``pip install 'sqsq[worker]'``)
    ├── EnqueueError              the producer: nothing was sent (or only part, see .sent)
    │   ├── ArgumentError         the arguments do not bind to the task's signature
    │   ├── NotSerializable       an argument the envelope's JSON rules cannot encode
    │   └── MessageTooLarge       the envelope is over SQS's 1 MiB message limit
    ├── DeadLetter                a delivered message that cannot be run; it goes to the DLQ
    │   ├── UndecodableMessage    body is not JSON, or not an envelope
    │   ├── UnknownTask           no task of that name is registered in this app
    │   ├── InvalidArguments      the arguments do not fit the function's signature/types
    │   ├── InvalidKey            a key DynamoDB cannot take (too long, not UTF-8)
    │   ├── InternalError         sqsq failed on this one message (its neighbours are unaffected)
    │   ├── IdempotencyConflict   a duplicate key whose arguments differ from the first call's
    │   ├── DoesNotFitFunction    its time_limit is longer than the Lambda function can give it
    │   ├── NoRoute               a foreign event (EventBridge, S3, SNS, ...) no declared route matches
    │   ├── FollowUpFailed        its outcome is stored, its follow-ups (chain, callbacks, chord) never went out
    │   ├── TaskTokenReportFailed its outcome is stored, Step Functions never took its report
    │   ├── DeferralsExhausted    Lambda on FIFO: deferred on every receive its queue allows
    │   ├── ChordBodyTooLarge     a chord's body with its members' results is over SQS's message size
    │   ├── CelerySerializerRefused  a Celery message that is not JSON (pickle, yaml, msgpack)
    │   └── PayloadMissing        its body's S3 object (claim check) is gone, or not the one sent
    ├── ResultError               the reader of a result
    │   ├── ResultTimeout         not ready within ``get(timeout=...)`` (also a TimeoutError)
    │   ├── TaskFailed            the task raised; carries remote type, message, traceback
    │   │   ├── TaskRevoked       the task was revoked before it ran
    │   │   │   └── TaskExpired   its ``expires`` time passed before it ran
    │   │   ├── ChainError        a chain step that never ran: an earlier step failed
    │   │   └── ChordError        a chord's body that never ran: a member failed
    │   └── ResultNotSerializable the return value cannot be stored as JSON / is too large
    ├── TimeLimitExceeded         a task ran past its ``time_limit`` (or SQS's 12 h lease)
    ├── SoftTimeLimitExceeded     raised inside a task's body at its ``soft_time_limit``
    ├── AWSError                  an AWS call failed after botocore's own retries
    │   ├── AWSConnectionError    the endpoint could not be reached, or did not answer in time
    │   ├── AWSThrottled          AWS still throttled the call after botocore's retries
    │   ├── AWSAccessDenied       no credentials, or IAM refused (also a ConfigurationError)
    │   └── AWSResourceNotFound   the queue, table or schedule does not exist (also a ConfigurationError)
    ├── UnstoredOutcome           a bug in sqsq: a message about to be let go before its outcome was stored (it is kept)
    ├── Retry                     control flow: raised by a task (or ``self.retry()``) to be retried
    └── Reject                    control flow: raised by a task to send its message to the DLQ now

``Retry`` and ``Reject`` are control flow, never logged as errors. Every class drawn
here is exported from ``sqsq``; ``ChainError`` and ``ChordError`` also from
``sqsq.workflows``, whose stored type names (``"sqsq.workflows.ChordError"``) they
carry.

What to catch, by who acts:

- around ``delay()``/``apply_async()``: :class:`EnqueueError` (nothing, or only part,
  was sent), :class:`AWSError` (SQS failed; the message was not sent);
- around ``AsyncResult.get()``: :class:`TaskFailed` (the task's own failure, its
  remote type and traceback attached), :class:`ResultTimeout`, :class:`AWSError`
  (DynamoDB failed: the task's fate is unknown, not failed);
- at start-up: :class:`ConfigurationError`, which also catches a missing queue or
  table (:class:`AWSResourceNotFound`) and missing credentials or permissions
  (:class:`AWSAccessDenied`) — no retry fixes those.

Every AWS failure that reaches a caller of sqsq's API (``delay``, ``get``, the canvas,
``sqsq.dlq``, schedules, resources) or its command line is an :class:`AWSError`
carrying ``action`` (the AWS API operation, e.g. ``SendMessage``), ``resource`` (the
queue, table or schedule) and ``code`` (AWS's error code, or botocore's exception
name for a failure without an answer, e.g. ``EndpointConnectionError``), with the
botocore exception as ``__cause__``. ``sqsq.aws_errors.from_botocore`` is the one
place where botocore's exceptions are mapped; ``sqsq.aws_errors.aws_boundary``
applies it where the public API ends. Inside, sqsq keeps catching botocore's ``ClientError`` where it decides
on a code (a missing key, a failed condition).

At shutdown the worker cancels ``async def`` tasks still running after the
grace period: ``asyncio.CancelledError`` is a ``BaseException``, so a task's
``except Exception`` cannot swallow it.

Messages that cannot be run are not errors of the worker: the execution core turns
a :class:`DeadLetter` into an outcome that moves the message to the dead-letter queue
with its reason (``DeadLetter.reason`` is the stable, machine-readable code).
"""

from __future__ import annotations


class SqsqError(Exception):
    """Base of every error sqsq raises."""


class ConfigurationError(SqsqError):
    """An App or task option is invalid, or an app path cannot be imported."""


class InvalidScheduleExpression(ConfigurationError):
    """A schedule expression that EventBridge would refuse; the message names the
    field and the rule (``sqsq.schedules.expressions``)."""


class MissingExtra(ConfigurationError):
    """What was called needs an optional extra this install lacks: a core install
    (``pip install sqsq``: producers, results, the Lambda handler) has no worker, no
    async API and no command line; ``pip install 'sqsq[worker]'`` adds them.

    Attributes:
        extra: the extra to install (``"worker"``).
        feature: what needed it (``"the async API (adelay, aget, the worker)"``).
    """

    def __init__(self, extra: str, feature: str, cause: ImportError) -> None:
        self.extra = extra
        self.feature = feature
        super().__init__(f"{feature} needs sqsq[{extra}] ({cause}): pip install 'sqsq[{extra}]'")


# --- producer ------------------------------------------------------------------


class EnqueueError(SqsqError):
    """A task could not be enqueued.

    Attributes:
        sent: results of the tasks that *were* enqueued before the failure
            (``delay_many`` may fail part-way); empty for single sends.
        failed: ``(task_id, reason)`` pairs for the entries SQS refused.
    """

    def __init__(
        self,
        message: str,
        *,
        sent: list[object] | None = None,
        failed: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.sent = sent or []
        self.failed = failed or []


class ArgumentError(EnqueueError, TypeError):
    """The arguments given to ``delay``/``apply_async`` do not bind to the task
    function's signature (checked at enqueue time, as Celery's ``typing=True``)."""


class NotSerializable(EnqueueError, TypeError):
    """A value cannot be encoded under the envelope's JSON rules.

    Encoded: None, bool, int, finite float, str, list/tuple, dict with str keys,
    datetime/date/time (ISO 8601), UUID, Decimal (as str), bytes (base64),
    Enum (its value) and pydantic models (``model_dump(mode="json")``).
    Everything else (sets, files, arbitrary objects, NaN) raises this error,
    naming the path of the offending value, e.g. ``args[1]["items"]``.
    """


class MessageTooLarge(EnqueueError, ValueError):
    """The encoded envelope exceeds ``limits.SQS_MAX_MESSAGE_BYTES`` (1 MiB)."""


# --- dead letters ---------------------------------------------------------------


class DeadLetter(SqsqError):
    """A delivered message cannot be run; it goes to the dead-letter queue.

    ``reason`` is a stable code stored with the message (attribute
    ``sqsq-dead-letter``) and in its result item.
    """

    reason = "dead_letter"


class UndecodableMessage(DeadLetter):
    """The message body is not JSON, or not a valid sqsq envelope.

    Attributes:
        task_id: the body's ``id`` when it has a usable one (its result is stored
            under it), else None (the SQS MessageId is used).
        task: the body's ``task`` when it has one.
    """

    reason = "undecodable_message"
    task_id: str | None = None
    task: str | None = None


class UnknownTask(DeadLetter):
    """The envelope names a task this app does not register.

    Attributes:
        task_id: the message's task id when known before decoding (a Celery
            message's ``id``), else None.
    """

    reason = "unknown_task"
    task_id: str | None = None


class InvalidArguments(DeadLetter):
    """The envelope's args/kwargs do not bind to, or validate against, the function."""

    reason = "invalid_arguments"


class InvalidKey(DeadLetter):
    """A key of this message (its idempotency key, its id) is one DynamoDB refuses:
    over its key size, or not encodable as UTF-8. No retry can fix it.

    Attributes:
        task_id / task: the message's task id and name, when known.
    """

    reason = "invalid_key"
    task_id: str | None = None
    task: str | None = None


class InternalError(DeadLetter):
    """sqsq itself failed on this one message (a bug, or input it did not foresee);
    the message goes to the DLQ with the exception's type, its neighbours run."""

    reason = "internal_error"


class IdempotencyConflict(DeadLetter):
    """A call reused an idempotency key with arguments that differ from the first
    call's (``idempotency_validate=True``, the default): it is not run and does not
    get the first call's result; its message goes to the DLQ."""

    reason = "idempotency_conflict"


class DoesNotFitFunction(DeadLetter):
    """The Lambda function serving this message's queue can never run it: the task's
    ``time_limit`` plus the handler's safety margin is longer than the function's
    timeout (``sqsq infra --target lambda`` derives a timeout that fits; this guards
    hand-made functions). No retry can fix it: serve the queue with ``sqsq worker``,
    or raise the function's timeout."""

    reason = "does_not_fit_function"


class NoRoute(DeadLetter):
    """A message that is not a sqsq envelope but a foreign event (an EventBridge
    event, an S3 notification, an SNS notification, a DynamoDB stream record) that
    no route declared with ``app.on_event`` / ``on_s3`` / ``on_sns`` /
    ``on_dynamodb_stream`` / ``app.route`` matches (see ``sqsq.events``).

    Attributes:
        event: what identifies the event, e.g. ``{"kind": "eventbridge",
            "source": "aws.s3", "type": "Object Created"}``; also in the DLQ
            copy's ``sqsq-dead-letter-details`` (``event``).
    """

    reason = "no_route"

    def __init__(self, message: str, event: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.event = dict(event or {})


class FollowUpFailed(DeadLetter):
    """The task's outcome is stored, but its follow-ups (the next chain step, its
    callbacks or errbacks, counting it in a chord) could not be made within their
    budget. The body is not run again: the message goes to the DLQ with this reason
    and the result records it (its state stays what the body ended with)."""

    reason = "followup_failed"


class TaskTokenReportFailed(DeadLetter):
    """The task's outcome is stored, but Step Functions could not be told
    (SendTaskSuccess / SendTaskFailure failed within their budget: throttled,
    unreachable). The body is not run again: the message goes to the DLQ with this
    reason and the result records it; the state machine waits on its own timeout."""

    reason = "task_token_report_failed"


class DeferralsExhausted(DeadLetter):
    """Lambda on a FIFO queue: the message was deferred — its idempotency key held by
    another run, or DynamoDB unreachable — on the last receive its queue's
    maxReceiveCount allows. A FIFO queue has no per-message delay, so each deferral
    uses a receive, and Lambda cannot stop its event source receiving (a worker
    pauses instead); rather than let SQS move it to the DLQ without a reason, it goes
    there with this one. It did not run: redrive it once DynamoDB answers (a
    duplicate then resolves to the first run's outcome)."""

    reason = "deferrals_exhausted"


class ChordBodyTooLarge(DeadLetter):
    """A chord's body, given its members' results, is over SQS's message size
    (``limits.SQS_MAX_MESSAGE_BYTES``) and the app has no ``payload_bucket`` to send
    it through S3 (``sqsq.payloads``): it is never
    sent, and the chord fails with this reason (the body's result is a FAILURE,
    its errbacks run). No message is dead-lettered: the members succeeded."""

    reason = "chord_body_too_large"


class CelerySerializerRefused(DeadLetter):
    """A Celery message (protocol v2, as kombu's SQS transport writes it) whose
    content type is not ``application/json``: pickle, yaml or msgpack. Its body is
    never decoded, so nothing in it runs (``sqsq.interop.celery_protocol``)."""

    reason = "celery_serializer_refused"
    task_id: str | None = None


class PayloadMissing(DeadLetter):
    """The message points to its body in S3 (a claim check: ``sqsq.payloads``, or the
    SQS Extended Client's pointer) and the object is not there (``NoSuchKey``, or the
    bucket is gone), or it is not the object sent (its sha256 differs from the one
    in sqsq's key). Never silently deleted: the pointer goes to the DLQ with this
    reason, so the loss is visible and the message can be redriven once the object
    is restored."""

    reason = "payload_missing"


# --- results --------------------------------------------------------------------


class ResultError(SqsqError):
    """Base for errors raised while reading a task's result."""


class ResultTimeout(ResultError, TimeoutError):
    """The result was not ready within the given timeout (seconds)."""


class TaskFailed(ResultError):
    """The task ended in FAILURE.

    Attributes:
        task_id: the failed task's id.
        remote_type: the exception's qualified type name in the worker, e.g.
            ``"builtins.ValueError"``, or a dead-letter reason's error type.
        remote_message: ``str(exception)`` in the worker.
        remote_traceback: the formatted traceback from the worker, or None.
    """

    def __init__(
        self,
        task_id: str,
        remote_type: str,
        remote_message: str,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(f"task {task_id} failed: {remote_type}: {remote_message}")
        self.task_id = task_id
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback


class TaskRevoked(TaskFailed):
    """The task was revoked (state REVOKED) and did not run."""


class TaskExpired(TaskRevoked):
    """The task's ``expires`` time passed before a worker could run it (state REVOKED)."""


class ChainError(TaskFailed):
    """A chain step that never ran because an earlier step failed (state FAILURE;
    ``remote_message`` names the failed step). Stored as ``"sqsq.workflows.ChainError"``,
    which is this class's name (it is exported from ``sqsq.workflows``)."""


class ChordError(TaskFailed):
    """A chord's body that never ran because one of its members failed (state
    FAILURE; ``remote_message`` names the member). Stored as
    ``"sqsq.workflows.ChordError"``, which is this class's name (it is exported from
    ``sqsq.workflows``)."""


# The stored type names of the canvas' failures are where users import them from.
ChainError.__module__ = ChordError.__module__ = "sqsq.workflows"

#: Stored exception types that :meth:`sqsq.result.ResultRecord.error` raises as
#: their own class rather than as a plain :class:`TaskFailed`.
_REMOTE_FAILURES: dict[str, type[TaskFailed]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls for cls in (ChainError, ChordError)
}


def failure_class(remote_type: str | None) -> type[TaskFailed]:
    """The :class:`TaskFailed` class a stored FAILURE of ``remote_type`` is raised as."""
    return _REMOTE_FAILURES.get(remote_type or "", TaskFailed)


class ResultNotSerializable(ResultError):
    """A task's return value cannot be stored: not JSON-encodable, or too large
    for a DynamoDB item (``limits.DYNAMODB_MAX_ITEM_BYTES``, 400 KB)."""


# --- AWS ------------------------------------------------------------------------


class AWSError(SqsqError):
    """An AWS call failed after botocore's retries; ``__cause__`` is the botocore error.

    The four subclasses are the four things a caller does differently: wait and try
    again (:class:`AWSConnectionError`, :class:`AWSThrottled`), or fix the setup
    (:class:`AWSAccessDenied`, :class:`AWSResourceNotFound` — both also a
    :class:`ConfigurationError`, as no retry fixes them and ``sqsq worker`` refuses
    to start on them). Any other AWS error code (a 5xx, a validation error) is a
    plain AWSError: ``code`` says which.

    Attributes:
        action: the AWS API operation, e.g. ``"SendMessage"``, ``"GetItem"``
            (``"unknown"`` when botocore failed before naming it).
        resource: what the call was about, as the user names it: a queue name or
            URL, a table name, a schedule name; None when several were.
        code: AWS's error code, e.g. ``"AWS.SimpleQueueService.NonExistentQueue"``,
            ``"ResourceNotFoundException"``, ``"ThrottlingException"``,
            ``"AccessDenied"``; for a failure without an answer, botocore's
            exception name, e.g. ``"EndpointConnectionError"``,
            ``"ReadTimeoutError"``, ``"NoCredentialsError"``.
        service: botocore's service id, e.g. ``"SQS"``, ``"DynamoDB"``, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        action: str,
        resource: str | None,
        code: str,
        service: str | None = None,
    ) -> None:
        super().__init__(message)
        self.action = action
        self.resource = resource
        self.code = code
        self.service = service


class AWSConnectionError(AWSError):
    """The endpoint could not be reached or did not answer in time (connection
    refused, DNS, TLS, connect or read timeout) after botocore's retries. Nothing
    says the call did not take effect: a send may have been made. Try again later;
    check ``endpoint_url`` and the region."""


class AWSThrottled(AWSError):
    """AWS throttled the call (``ThrottlingException``, ``RequestThrottled``,
    ``ProvisionedThroughputExceededException``, HTTP 429, ...) through all of
    botocore's retries. Slow down, raise ``max_attempts``, or ask AWS for a quota."""


class AWSAccessDenied(AWSError, ConfigurationError):
    """No usable credentials, or IAM refused the action (``AccessDenied``,
    ``AccessDeniedException``, an unknown or expired key). The message names the
    action: grant it to the role, or fix the credentials."""


class AWSResourceNotFound(AWSError, ConfigurationError):
    """The queue, table or schedule does not exist (``AWS.SimpleQueueService.NonExistentQueue``,
    ``ResourceNotFoundException``). Create the app's queues and table with
    ``sqsq resources create APP``, its schedules with ``sqsq schedule sync APP``."""


class TimeLimitExceeded(SqsqError):
    """A task ran longer than its ``time_limit`` seconds, or would have needed its
    message leased past ``limits.SQS_MAX_VISIBILITY_TIMEOUT_S`` (12 h, "Amazon SQS
    visibility timeout"). Recorded as the task's FAILURE; it is not retried."""


class SoftTimeLimitExceeded(SqsqError):
    """Raised *inside* a task's body when it has run its ``soft_time_limit`` seconds
    (Celery's name), so that it can clean up before the hard ``time_limit``. A body
    that catches it and returns succeeds; one that lets it out fails, or is retried,
    per its retry policy like any exception (``autoretry_for`` may name it). How each
    pool delivers it (asyncio, threads, processes, Lambda): ``sqsq.soft_time_limit``."""

    def __init__(self, message: str = "the task ran past its soft time limit") -> None:
        super().__init__(message)


# --- control flow -----------------------------------------------------------------


class Retry(SqsqError):
    """Raise from a task (or call ``self.retry()`` in a ``bind=True`` task) to retry it.

    Args:
        exc: the error that caused the retry (recorded with state RETRY).
        countdown: seconds before the next attempt; None uses the task's backoff.
    """

    def __init__(self, exc: BaseException | None = None, countdown: float | None = None) -> None:
        super().__init__(f"retry in {countdown} s" if countdown is not None else "retry")
        self.exc = exc
        self.countdown = countdown


class Reject(SqsqError):
    """Raise from a task to move its message to the dead-letter queue now
    (reason ``rejected``), without retries."""


# --- a bug in sqsq ---------------------------------------------------------------


class UnstoredOutcome(SqsqError):
    """An outcome was about to be let go of (its message deleted or made visible)
    before it was stored: a bug in sqsq, refused whatever Python's ``-O``.
    ``settle.release`` keeps such a message (it comes back after its visibility
    timeout) and lets the rest of its batch go.

    Attributes:
        task_ids: the task ids of the outcomes refused.
    """

    def __init__(self, task_ids: list[str]) -> None:
        super().__init__(
            f"letting go of {', '.join(task_ids)} before its outcome is stored: a bug in sqsq"
        )
        self.task_ids = task_ids
