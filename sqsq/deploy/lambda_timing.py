"""The Lambda function's timing, derived from the tasks it serves.

Three numbers must agree, or the function runs nothing (a 5 s function whose
handler keeps a 5 s safety margin starts no record) or loses leases::

    Timeout  = longest time_limit of the served tasks + SETTLE_S + safety margin
    margin   = safety_margin_s(Timeout): 10 % of the timeout, 2–30 s
    queue VisibilityTimeout >= 6 x Timeout + MaximumBatchingWindowInSeconds

    |<------------------------------ Timeout ------------------------------>|
    | SETTLE_S: lookups, | the longest task (its time_limit)   | margin:     |
    | claim, key read    |                                     | store, delete|

- **Timeout** (``AWS::Serverless::Function`` ``Timeout``, 1–900 s, "Configure
  Lambda function timeout"): a task without ``time_limit`` counts as
  :data:`DEFAULT_TASK_BUDGET_S`; ``--function-timeout`` sets it instead (and must
  hold the longest limit).
- **Safety margin** (``SQSQ_LAMBDA_SAFETY_MARGIN_S`` in the function's environment,
  read by the handler as ``Settings.lambda_safety_margin_s``): the handler starts
  a record only while its ``time_limit`` plus the margin fits in the remaining
  time, so what runs finishes, and the margin is left to store the outcomes and
  delete the messages.
- **Visibility timeout** of every queue the function consumes: AWS's rule for SQS
  event sources, "set the source queue's visibility timeout to at least six times
  the timeout that you configure on your function", plus the batching window
  ("Using Lambda with Amazon SQS"). The app's ``visibility_timeout_s`` is kept
  where it is longer.

A task whose ``time_limit`` cannot fit within Lambda's 900 s is a
:class:`~sqsq.errors.ConfigurationError` naming it; its queue can be left to
``sqsq worker`` (``--worker-queue``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import limits
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..app import App

#: The handler's own work in an invocation besides tasks and the final store:
#: queue lookups, the signing key, idempotency claims, the stores between tasks.
SETTLE_S = 3
#: What a task without ``time_limit`` is given in a derived timeout, seconds.
DEFAULT_TASK_BUDGET_S = 30
#: Bounds of the safety margin, seconds (see :func:`safety_margin_s`).
MIN_MARGIN_S = 2
MAX_MARGIN_S = 30
#: AWS guidance: queue visibility timeout >= 6 x function timeout (+ batching window).
VISIBILITY_FACTOR = 6


def safety_margin_s(timeout_s: float) -> int:
    """The safety margin of a function with this timeout: 10 % of it, at least
    :data:`MIN_MARGIN_S` and at most :data:`MAX_MARGIN_S` seconds."""
    return max(MIN_MARGIN_S, min(MAX_MARGIN_S, math.ceil(timeout_s / 10)))


def fits(time_limit_s: float, timeout_s: int) -> bool:
    """Whether a task of this ``time_limit`` can run in a function of this timeout."""
    return time_limit_s + SETTLE_S + safety_margin_s(timeout_s) <= timeout_s


def timeout_for(time_limit_s: float) -> int:
    """The shortest function timeout, seconds, that holds a task of this limit
    (may exceed Lambda's 900 s; the caller checks)."""
    timeout = math.ceil(time_limit_s) + SETTLE_S + MIN_MARGIN_S
    while not fits(time_limit_s, timeout):
        timeout += 1
    return timeout


#: The longest ``time_limit`` a Lambda function can serve, seconds.
MAX_TIME_LIMIT_S = (
    limits.LAMBDA_MAX_TIMEOUT_S - SETTLE_S - safety_margin_s(limits.LAMBDA_MAX_TIMEOUT_S)
)


@dataclass(frozen=True)
class Timing:
    """What the template writes.

    Attributes:
        timeout_s: the function's ``Timeout``, seconds (1–900).
        margin_s: the handler's safety margin, seconds.
        visibility_timeout_s: the consumed queues' ``VisibilityTimeout``, seconds.
        longest: ``(task name, seconds)`` of the longest task the timeout was derived
            from (``time_limit``, or :data:`DEFAULT_TASK_BUDGET_S` without one).
    """

    timeout_s: int
    margin_s: int
    visibility_timeout_s: int
    longest: tuple[str, float]


def served_tasks(app: App, worker_queues: frozenset[str]) -> dict[str, float | None]:
    """Task name → ``time_limit_s`` of the tasks whose queue the function consumes."""
    unknown = worker_queues - set(app.queues())
    if unknown:
        raise ConfigurationError(
            f"--worker-queue {', '.join(sorted(unknown))}: not a queue of app {app.name} "
            f"(its queues: {', '.join(sorted(app.queues()))})"
        )
    return {
        name: task.time_limit_s
        for name, task in sorted(app.tasks.items())
        if task.queue not in worker_queues
    }


def derive(
    app: App,
    *,
    function_timeout_s: int | None = None,
    batching_window_s: int = 0,
    worker_queues: frozenset[str] = frozenset(),
) -> Timing:
    """The function's timing (see the module docstring).

    Args:
        app: the App.
        function_timeout_s: the timeout asked for (``--function-timeout``), seconds;
            None derives it from the tasks.
        batching_window_s: MaximumBatchingWindowInSeconds, seconds (0–300).
        worker_queues: logical queues left to ``sqsq worker``: their tasks do not count.

    Raises:
        ConfigurationError: a task's ``time_limit`` does not fit Lambda's 900 s (or the
            timeout asked for), naming the task and its limit.
    """
    tasks = served_tasks(app, worker_queues)
    budgets = {name: limit or DEFAULT_TASK_BUDGET_S for name, limit in tasks.items()}
    longest = max(budgets.items(), key=lambda kv: kv[1], default=("", DEFAULT_TASK_BUDGET_S))
    for name, limit in tasks.items():
        if limit is not None and limit > MAX_TIME_LIMIT_S:
            raise ConfigurationError(
                f"task {name} has time_limit={limit:g} s; a Lambda function runs at most "
                f'{limits.LAMBDA_MAX_TIMEOUT_S} s ("Lambda quotas": function timeout), of '
                f"which sqsq keeps {limits.LAMBDA_MAX_TIMEOUT_S - MAX_TIME_LIMIT_S} s to start "
                f"and settle, so tasks may take at most {MAX_TIME_LIMIT_S} s: lower its "
                f"time_limit, or serve its queue {app.tasks[name].queue!r} with `sqsq worker` "
                f"(--worker-queue {app.tasks[name].queue})"
            )
    if function_timeout_s is None:
        timeout = min(timeout_for(longest[1]), limits.LAMBDA_MAX_TIMEOUT_S)
    else:
        timeout = function_timeout_s
        if not fits(0, timeout):
            raise ConfigurationError(
                f"a {timeout} s function leaves no time to run a task ({SETTLE_S} s to start, "
                f"{safety_margin_s(timeout)} s safety margin to settle): use --function-timeout "
                f"{timeout_for(1)} or more"
            )
        for name, limit in tasks.items():
            if limit is not None and not fits(limit, timeout):
                raise ConfigurationError(
                    f"task {name} has time_limit={limit:g} s, which a {timeout} s function "
                    f"cannot hold ({SETTLE_S} s to start, {safety_margin_s(timeout)} s safety "
                    f"margin to settle): use --function-timeout {timeout_for(limit)} or more, "
                    "or leave out --function-timeout to derive it"
                )
    visibility = max(
        int(app.settings.visibility_timeout_s), VISIBILITY_FACTOR * timeout + batching_window_s
    )
    return Timing(timeout, safety_margin_s(timeout), visibility, longest)


__all__ = [
    "DEFAULT_TASK_BUDGET_S",
    "MAX_TIME_LIMIT_S",
    "SETTLE_S",
    "Timing",
    "derive",
    "fits",
    "safety_margin_s",
    "served_tasks",
    "timeout_for",
]
