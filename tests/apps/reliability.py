"""Test-only tasks and helpers for the reliability tests: retries, idempotency,
revocation, FIFO, time limits and leases.

Every task with a side effect appends one line to the file named by its ``path``
argument (also from child processes), so a test counts how often a body really ran.
Queues: ``default``, ``orders.fifo``, ``lease`` (tests lower its visibility timeout to
1 s) and ``many``; ``short_app`` sees the same queues and table as a Lambda function
configured with 1 s leases. The helpers at the end create the resources (``setup``),
start workers for module-wide scenarios and read queues with plain boto3.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

import sqsq
from sqsq.errors import Reject, Retry
from sqsq.task import BoundTask
from tests.helpers import queue_counts

#: Visibility timeout of the queues ``resources.apply`` creates, seconds.
VISIBILITY_S = 10

app = sqsq.App("reliab", visibility_timeout_s=VISIBILITY_S)


def mark(path: str, text: str = "run") -> int:
    """Append ``text`` as a line to ``path``; the number of lines now in the file."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(text + "\n")
    return len(Path(path).read_text(encoding="utf-8").splitlines())


def lines(path: str | Path) -> list[str]:
    """The lines ``mark`` wrote to ``path`` (none if it does not exist)."""
    file = Path(path)
    return file.read_text(encoding="utf-8").splitlines() if file.exists() else []


# --- retries ---------------------------------------------------------------------------


@app.task(autoretry_for=(ConnectionError,), retry_backoff=True, retry_jitter=False, max_retries=2)
def flaky(path: str, failures: int, error: str = "connection") -> int:
    """Fails its first ``failures`` runs (ConnectionError, or ValueError with
    ``error="value"``), then returns the run number."""
    run = mark(path)
    if run <= failures:
        if error == "value":
            raise ValueError(f"bad input on run {run}")
        raise ConnectionError(f"transient failure on run {run}")
    return run


@app.task(bind=True, max_retries=3)
def bound_retry(self: BoundTask, path: str) -> dict[str, int]:
    """Retries itself once with ``self.retry(countdown=1)``."""
    mark(path, f"{self.request.attempt},{self.request.retries}")
    if self.request.attempt == 1:
        raise self.retry(exc=TimeoutError("first attempt timed out"), countdown=1)
    return {"attempt": self.request.attempt, "retries": self.request.retries}


@app.task
def raise_retry(path: str) -> int:
    """Raises ``Retry(exc=KeyError, countdown=1)`` on its first run."""
    run = mark(path)
    if run == 1:
        raise Retry(exc=KeyError("inventory"), countdown=1)
    return run


@app.task(autoretry_for=(Exception,), max_retries=3, default_retry_delay=1)
def rejecting(path: str) -> None:
    """Rejects its message (even though every Exception is autoretried)."""
    mark(path)
    raise Reject("malformed order")


@app.task(queue="many", max_retries=10)
def many_retries() -> None:
    """Declares max_retries=10 on its own queue (for the redrive policy)."""


# --- idempotency ---------------------------------------------------------------------------


@app.task(idempotency_key="{order_id}")
def charge_once(order_id: str, cents: int, path: str) -> dict[str, object]:
    run = mark(path, order_id)
    return {"order_id": order_id, "cents": cents, "run": run}


@app.task(idempotency_key="{order_id}", idempotency_validate=False)
def charge_loose(order_id: str, cents: int, path: str) -> dict[str, object]:
    """As ``charge_once``, but a duplicate with other arguments gets the first result."""
    run = mark(path, order_id)
    return {"order_id": order_id, "cents": cents, "run": run}


def refund_key(order_id: str, cents: int, path: str) -> str:
    """The idempotency key of ``refund_once``: order and amount, not the path."""
    return f"refund-{order_id}-{cents}"


@app.task(idempotency_key=refund_key)
def refund_once(order_id: str, cents: int, path: str) -> dict[str, object]:
    run = mark(path, order_id)
    return {"refunded": order_id, "cents": cents, "run": run}


@app.task(idempotency_key="{key}")
def fails_first(key: str, path: str) -> int:
    """Raises ValueError on the first run recorded in ``path``, then returns the run."""
    run = mark(path, key)
    if run == 1:
        raise ValueError("first run fails")
    return run


@app.task
def counted(path: str, label: str) -> str:
    """No options: marks ``label`` and returns it."""
    mark(path, label)
    return label


# --- Lambda ---------------------------------------------------------------------------------


@app.task(autoretry_for=(ConnectionError,), retry_backoff=2, retry_jitter=False)
def lambda_flaky(path: str) -> None:
    """Always fails with ConnectionError; retried after 2 s (no jitter)."""
    mark(path)
    raise ConnectionError("downstream unavailable")


# --- FIFO -----------------------------------------------------------------------------------


@app.task(queue="orders.fifo")
def fifo_step(path: str, group: str, seq: int, pause: float = 0.0) -> str:
    """Sleeps ``pause`` seconds, then marks ``group:seq``."""
    time.sleep(pause)
    mark(path, f"{group}:{seq}")
    return f"{group}:{seq}"


@app.task(queue="orders.fifo")
def fifo_fail(path: str) -> None:
    mark(path, "fail")
    raise ValueError("cannot ship")


@app.task(
    queue="orders.fifo", autoretry_for=(ConnectionError,), retry_backoff=2, retry_jitter=False
)
def fifo_flaky(path: str, group: str, seq: int) -> None:
    mark(path, f"{group}:{seq}")
    raise ConnectionError("carrier unavailable")


# --- time limits and leases --------------------------------------------------------------------


@app.task(time_limit=1)
async def async_sleeper(path: str, seconds: float) -> str:
    mark(path, "start")
    await asyncio.sleep(seconds)
    mark(path, "end")
    return "done"


@app.task(time_limit=1)
def sync_sleeper(path: str, seconds: float) -> int:
    """Marks its pid, sleeps, marks ``end``."""
    mark(path, str(os.getpid()))
    time.sleep(seconds)
    mark(path, "end")
    return os.getpid()


@app.task
def whoami() -> int:
    return os.getpid()


@app.task(queue="lease", visibility_timeout=2, idempotency_key="{path}")
def long_lease(path: str, seconds: float) -> int:
    """Runs ``seconds`` on the ``lease`` queue with a 2 s lease of its own (the message's
    and the idempotency key's), marking ``run`` first and ``end`` last."""
    run = mark(path)
    time.sleep(seconds)
    mark(path, "end")
    return run


@app.task(bind=True)
def request_info(self: BoundTask, order_id: str, cents: int = 5) -> dict[str, object]:
    """What ``self.request`` says, and the pid of the process that ran it."""
    request = self.request
    return {
        "id": request.id,
        "task": request.task,
        "args": request.args,
        "kwargs": request.kwargs,
        "attempt": request.attempt,
        "retries": request.retries,
        "queue": request.queue,
        "idempotency_key": request.idempotency_key,
        "pid": os.getpid(),
    }


@app.task(queue="lease")
def lease_step(path: str, label: str, seconds: float) -> str:
    """Sleeps ``seconds`` on the ``lease`` queue (its visibility), then marks ``label``."""
    time.sleep(seconds)
    mark(path, label)
    return label


# --- a Lambda function's view with 1 s leases -----------------------------------------------------

#: The same queues and table seen from a Lambda function whose app sets 1 s leases
#: (``lambda_handler`` claims idempotency keys for ``visibility_timeout_s``).
short_app = sqsq.App("reliab", visibility_timeout_s=1)


@short_app.task(queue="lease", idempotency_key="{key}")
def slow_once(key: str, path: str, seconds: float) -> str:
    """Marks ``key``, then sleeps ``seconds``."""
    mark(path, key)
    time.sleep(seconds)
    return key


# --- helpers for the tests ----------------------------------------------------------------------


def setup() -> sqsq.App:
    """Create the app's queues and table (on a freshly reset endpoint) and forget the
    queue URLs and attributes this process cached for an earlier test."""
    from sqsq.resources import apply
    from sqsq.sqs import dead_letter_name

    for logical in app.queues():
        name = app.queue_name(logical)
        app.directory.forget(name)
        app.directory.forget(dead_letter_name(name))
    apply(app)
    return app


APP_PATH = "tests.apps.reliability:app"
ROOT = Path(__file__).resolve().parents[2]


def spawn_worker(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``python -m sqsq worker tests.apps.reliability:app ARGS`` (as the ``worker``
    fixture does) for fixtures wider than one test."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "sqsq", "worker", APP_PATH, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_burst(cwd: Path, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``sqsq worker … --burst ARGS`` to its end; its exit code and stderr
    (killed, with code -9, if it outlives ``timeout`` seconds)."""
    process = spawn_worker(cwd, "--burst", *args)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        return -9, stderr
    return process.returncode, stderr


def stop_worker(process: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM a long-running worker; its exit code and stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        return -9, stderr
    return process.returncode, stderr


@functools.cache
def sqs() -> Any:
    """A plain boto3 SQS client on the local endpoint (one per process)."""
    return boto3.client("sqs")


def queue_url(name: str) -> str:
    return str(sqs().get_queue_url(QueueName=name)["QueueUrl"])


def queue_arn(name: str) -> str:
    attributes = sqs().get_queue_attributes(QueueUrl=queue_url(name), AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def counts(name: str) -> tuple[int, int]:
    """(visible, in flight) messages of physical queue ``name``."""
    return queue_counts(sqs(), queue_url(name))


def receive(name: str, wait_s: int = 0, limit: int = 10) -> list[dict[str, Any]]:
    """One ReceiveMessage on physical queue ``name`` with every attribute."""
    messages: list[dict[str, Any]] = (
        sqs()
        .receive_message(
            QueueUrl=queue_url(name),
            MaxNumberOfMessages=limit,
            WaitTimeSeconds=wait_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        .get("Messages", [])
    )
    return messages


def drain(name: str) -> list[dict[str, Any]]:
    """Receive every visible message of ``name`` (left in flight, not deleted)."""
    found: list[dict[str, Any]] = []
    while batch := receive(name):
        found += batch
    return found


def dead_letters(logical: str = "default") -> dict[str, dict[str, Any]]:
    """The DLQ copies of a logical queue by task id: ``{"reason", "details", "message"}``."""
    from sqsq.sqs import DEAD_LETTER_REASON_ATTRIBUTE, dead_letter_name, read_dead_letter

    found = {}
    for message in drain(dead_letter_name(app.queue_name(logical))):
        attributes = message.get("MessageAttributes", {})
        details = read_dead_letter(attributes) or {}
        found[str(details.get("task_id"))] = {
            "reason": attributes[DEAD_LETTER_REASON_ATTRIBUTE]["StringValue"],
            "details": details,
            "message": message,
        }
    return found
