"""Retry policy: Celery's options, SQS's mechanics.

A retry does not send a new message. The failed message is made visible again
after the backoff with ChangeMessageVisibility, so there are never two copies;
the attempt number is SQS's ApproximateReceiveCount. The delay::

    retry_backoff = False            delay = default_retry_delay
    retry_backoff = True | base_s    delay = min(retry_backoff_max, base_s * 2 ** (attempt - 1))
    retry_jitter  = True             delay = uniform(0, delay)         ("full jitter")

(``True`` means a base of 1 s, as in Celery.) An explicit ``countdown`` wins. Every
delay is capped by what the message's visibility timeout may still grow to
(``limits.SQS_MAX_VISIBILITY_TIMEOUT_S``, 12 h from the receive).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Celery's defaults.
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_DELAY_S = 180.0
DEFAULT_RETRY_BACKOFF_MAX_S = 600.0


def full_jitter_s(attempt: int, base_s: float, cap_s: float) -> float:
    """A random delay in ``[0, min(cap_s, base_s * 2**attempt)]`` seconds ("full
    jitter", AWS Architecture blog "Exponential Backoff And Jitter"). Used between
    sqsq's own retries of AWS calls (unprocessed batch entries, failed receives)."""
    return random.uniform(0, min(cap_s, base_s * 2.0 ** min(attempt, 64)))


@dataclass(frozen=True)
class RetryPolicy:
    """How a task is retried.

    Attributes:
        max_retries: retries after the first attempt; None retries forever (until
            the redrive policy's maxReceiveCount moves the message to the DLQ).
        autoretry_for: exception types that cause a retry; others fail at once.
        retry_backoff_s: exponential base in seconds; 0 disables backoff.
        retry_backoff_max_s: cap of the exponential delay, seconds.
        retry_jitter: full jitter over the exponential delay.
        default_retry_delay_s: the delay when there is no backoff, seconds.
    """

    max_retries: int | None = DEFAULT_MAX_RETRIES
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_backoff_s: float = 0.0
    retry_backoff_max_s: float = DEFAULT_RETRY_BACKOFF_MAX_S
    retry_jitter: bool = True
    default_retry_delay_s: float = DEFAULT_RETRY_DELAY_S

    def exhausted(self, attempt: int) -> bool:
        """True when attempt number ``attempt`` (1-based) may not be retried."""
        return self.max_retries is not None and attempt > self.max_retries

    def delay_s(self, attempt: int, countdown_s: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1`` (``attempt`` is 1-based)."""
        if countdown_s is not None:
            return max(0.0, countdown_s)
        if not self.retry_backoff_s:
            return self.default_retry_delay_s
        exponent = min(attempt - 1, 64)  # past 2**64 every delay is capped anyway
        delay = min(self.retry_backoff_max_s, self.retry_backoff_s * 2.0**exponent)
        if self.retry_jitter:
            delay = random.uniform(0, delay)
        return delay

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` (raised by the task) is retried automatically."""
        return bool(self.autoretry_for) and isinstance(exc, self.autoretry_for)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    error = response.get("Error")
    return str(error.get("Code", "")) if isinstance(error, dict) else ""


def is_permanent(exc: BaseException) -> bool:
    """Whether no retry of the AWS call that raised ``exc`` can succeed: no
    credentials or region, or a 4xx answer other than throttling (access denied, a
    missing queue, secret or parameter, a bad request)."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, NoCredentialsError | NoRegionError):
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return 400 <= status < 500 and "Throttl" not in error_code(exc) and status != 429
    return False
