"""Helpers shared by the test modules (not fixtures: those live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def examples(default: int) -> int:
    """``max_examples`` for a property test: ``default``, or more when the environment
    variable ``SQSQ_HYPOTHESIS_EXAMPLES`` asks for more (a deeper run than CI's, e.g.
    ``SQSQ_HYPOTHESIS_EXAMPLES=1000``). Never fewer than ``default``."""
    return max(default, int(os.environ.get("SQSQ_HYPOTHESIS_EXAMPLES") or 0))


def queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    """``(visible, in flight)``: ApproximateNumberOfMessages and
    ApproximateNumberOfMessagesNotVisible of the queue at ``url``."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def burst_worker(
    app: str, cwd: Any, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sqsq worker APP --burst OPTIONS`` from ``cwd`` with the repository on
    PYTHONPATH and ``env`` added to the environment; returns when it exits (≤ 90 s)."""
    full = dict(os.environ)
    full["PYTHONPATH"] = str(ROOT) + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sqsq", "worker", app, "--burst", *options],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=90,
    )


#: CloudFormation resource types moto's CloudFormation cannot create (it fails on
#: some, skips others with a warning and an entry without a logical id in
#: DescribeStackResources): what the stack tests leave out (``omit``).
MOTO_CFN_UNSUPPORTED = frozenset(
    {
        "AWS::CloudWatch::Alarm",
        "AWS::AutoScaling::ScalingPolicy",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::Scheduler::ScheduleGroup",
        "AWS::Scheduler::Schedule",
        "AWS::SNS::Subscription",
        "AWS::SQS::QueuePolicy",
        "AWS::Pipes::Pipe",
    }
)


def cfn_lint(*files: Any) -> subprocess.CompletedProcess[str]:
    """cfn-lint on ``files`` with its informational checks on, failing on any finding."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",  # = cfn-lint
            "--include-checks",
            "I",
            "--non-zero-exit-code",
            "informational",
            "--",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def log_lines(process: Any) -> tuple[list[str], threading.Thread]:
    """The lines ``process`` writes to stderr, as they come, and the thread that reads
    them (it ends at the process's end: join it before reading what it logged). A
    worker's pipe that nobody reads fills (64 KiB) and blocks the worker's writes."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr or ()), daemon=True)
    reader.start()
    return lines, reader


def consuming(process: Any, timeout_s: float = 60) -> None:
    """Wait until the worker logs that it consumes its queues (its stderr is read up
    to that line; the rest stays for :func:`stop`)."""
    lines: list[str] = []

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if " consuming " in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert lines and " consuming " in lines[-1], f"the worker did not start: {''.join(lines)}"


def until(what: Any, description: str, wait_s: float = 60.0) -> Any:
    """Poll ``what()`` until it returns something truthy, at most ``wait_s`` seconds
    (a wait, not a timing claim); its value."""
    import time

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"never: {description}")
