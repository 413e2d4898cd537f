"""botocore's exceptions as :class:`sqsq.AWSError`: the one mapping, and the
boundary that applies it where sqsq's public API and command line end.

::

    botocore.exceptions.ClientError (AWS answered)       code = Error.Code
        NonExistentQueue, ResourceNotFoundException, ... ─► AWSResourceNotFound
        AccessDenied, AccessDeniedException, ...         ─► AWSAccessDenied
        ThrottlingException, RequestThrottled, 429, ... ─► AWSThrottled
        anything else (5xx, validation)                 ─► AWSError
    botocore.exceptions.BotoCoreError (no answer)        code = the class name
        NoCredentialsError, PartialCredentialsError, ... ─► AWSAccessDenied
        EndpointConnectionError, ConnectTimeoutError,
        ReadTimeoutError, ConnectionClosedError, ...     ─► AWSConnectionError
        anything else                                   ─► AWSError

The action of a ``ClientError`` is its ``operation_name``; an error without an
answer names none, so ``sqsq.clients`` registers :func:`note_call` on botocore's
``after-call-error`` event of every client it builds, which notes the service and
operation on the exception. The resource comes from the caller (the task's queue,
the app's table), as the user names it.

Inside sqsq, code keeps catching botocore's ``ClientError`` where it decides on a
code (a failed condition, a missing item); only what escapes the public API is
translated.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .errors import (
    AWSAccessDenied,
    AWSConnectionError,
    AWSError,
    AWSResourceNotFound,
    AWSThrottled,
)

F = TypeVar("F", bound=Callable[..., Any])


#: AWS error codes by the subclass they are raised as. Throttling codes are
#: botocore's own list (botocore.retries.standard.ThrottledRetryableChecker).
_NOT_FOUND = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ResourceNotFoundException",
        "TableNotFoundException",
        "NoSuchEntity",
        "NotFoundException",
        "ParameterNotFound",
    }
)
_ACCESS_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "UnauthorizedOperation",
        "KMS.AccessDeniedException",
    }
)
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "AWS.SimpleQueueService.RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)
#: botocore's credential exceptions (no answer from AWS), by class name.
_NO_CREDENTIALS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
)
#: How a missing resource is made.
_CREATE_WITH = (
    "create the app's queues and table with `sqsq resources create APP` "
    "(its schedules with `sqsq schedule sync APP`)"
)
#: Service names in messages, by botocore's hyphenized service id (a boto3 client's name).
_SERVICE_NAMES = {
    "sqs": "SQS",
    "dynamodb": "DynamoDB",
    "scheduler": "EventBridge Scheduler",
    "iam": "IAM",
    "sts": "STS",
    "ssm": "SSM",
    "secrets-manager": "Secrets Manager",
    "sfn": "Step Functions",
    "lambda": "Lambda",
    "s3": "S3",
}

#: The attribute :func:`note_call` sets on a botocore exception: (service, action).
CALL_ATTRIBUTE = "_sqsq_call"


def note_call(event_name: str = "", exception: BaseException | None = None, **kwargs: Any) -> None:
    """botocore's ``after-call-error`` handler (``sqsq.clients`` registers it on every
    client): notes ``(service, operation)`` on an exception raised without an AWS
    answer, which names neither. ``event_name`` is
    ``after-call-error.<service id>.<operation>``."""
    if exception is not None:
        _, service, action = [*event_name.split("."), "", ""][:3]
        setattr(exception, CALL_ATTRIBUTE, (service, action))


def is_botocore(exc: BaseException) -> bool:
    """Whether ``exc`` is one of botocore's exceptions (never imports botocore)."""
    exceptions = sys.modules.get("botocore.exceptions")
    return exceptions is not None and isinstance(
        exc, (exceptions.ClientError, exceptions.BotoCoreError)
    )


def from_botocore(exc: BaseException, *, resource: str | None = None) -> AWSError:
    """The :class:`AWSError` for a botocore exception — the one place where they are
    mapped (the caller raises it ``from exc``).

    Args:
        exc: a botocore ``ClientError`` (AWS answered with an error code) or
            ``BotoCoreError`` (no answer: connection, timeout, credentials).
        resource: the queue, table or schedule the call was about.

    Returns:
        :class:`AWSResourceNotFound`, :class:`AWSAccessDenied`,
        :class:`AWSThrottled`, :class:`AWSConnectionError`, or :class:`AWSError`;
        its message names the service (when known), the action, the resource and
        the code.
    """
    service, action = getattr(exc, CALL_ATTRIBUTE, (None, None))
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # a ClientError: AWS answered
        error = response.get("Error") or {}
        code = str(error.get("Code") or "Unknown")
        action = str(getattr(exc, "operation_name", None) or action)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        said = f"{code}: {error.get('Message')}" if error.get("Message") else code
    else:  # a BotoCoreError: no answer
        code = type(exc).__name__
        said = f"{code}: {exc}"
        status = None
    action = action or "unknown"
    call = " ".join(filter(None, (_SERVICE_NAMES.get(service or "", service), action)))
    call += f" on {resource!r}" if resource else ""
    kind: type[AWSError] = AWSError
    message = f"{call} failed ({said})"
    if code in _NOT_FOUND:
        kind = AWSResourceNotFound
        message = f"{call}: it does not exist ({said}); {_CREATE_WITH}"
        if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            message = f"SQS queue {resource!r} does not exist ({action}: {code}); {_CREATE_WITH}"
    elif code in _NO_CREDENTIALS:
        kind = AWSAccessDenied
        message = f"{call}: no usable AWS credentials ({said})"
    elif code in _ACCESS_DENIED:
        kind = AWSAccessDenied
        message = f"{call} was refused ({said}); check the credentials and the IAM policy"
    elif code in _THROTTLED or status == 429:
        kind = AWSThrottled
        message = f"{call} was throttled through botocore's retries ({said})"
    elif _no_connection(exc):
        kind = AWSConnectionError
        message = f"{call}: cannot reach AWS ({said}); check endpoint_url, the region, the network"
    return kind(message, action=action, resource=resource, code=code, service=service)


def _no_connection(exc: BaseException) -> bool:
    """Whether botocore got no answer: refused, DNS, TLS, connect or read timeout."""
    exceptions = sys.modules["botocore.exceptions"]
    return isinstance(exc, (exceptions.ConnectionError, exceptions.HTTPClientError))


class aws_boundary:  # lower case: used as a decorator, as contextlib's are
    """Where sqsq's public API ends: a botocore exception escaping the wrapped
    function (sync or ``async def``) or ``with`` block is raised as
    :func:`from_botocore`'s :class:`AWSError`, ``from`` the botocore exception.
    sqsq's own errors and everything else pass unchanged.

    Args:
        resource: the resource named in the error: a string, or (as a decorator) a
            function of the wrapped call's arguments returning it, e.g.
            ``aws_boundary(lambda task, *a, **k: task.queue_name)``.

    Example::

        @aws_boundary(lambda result, *_: result.table)
        def _fetch(self) -> ResultRecord | None: ...

        with aws_boundary(dlq_name):
            client.purge_queue(QueueUrl=url)
    """

    def __init__(self, resource: str | Callable[..., str | None] | None = None) -> None:
        self.resource = resource

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                with _Call(self.resource, args, kwargs):
                    return await fn(*args, **kwargs)

            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _Call(self.resource, args, kwargs):
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        _Call(self.resource, (), {}).__exit__(kind, exc, traceback)


class _Call:
    """One call through an :class:`aws_boundary`: translates what escapes it. The
    resource's name is worked out only then (``delay()`` pays nothing for it)."""

    def __init__(
        self,
        resource: str | Callable[..., str | None] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.resource = resource
        self.args = args
        self.kwargs = kwargs

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        if not isinstance(exc, Exception) or not is_botocore(exc):
            return
        resource = self.resource
        if callable(resource):
            try:
                resource = resource(*self.args, **self.kwargs)
            except Exception:  # the name is a courtesy: never hide the AWS error behind it
                resource = None
        raise from_botocore(exc, resource=resource) from exc
