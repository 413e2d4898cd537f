"""The ``sqsq`` command line (click).

A user error (bad APP path, missing queue, bad option) prints ``Error: …`` and
exits with :data:`EXIT_USAGE`; a failed AWS call prints ``Error: …`` naming the
action, the resource and AWS's error code, and exits with :data:`EXIT_AWS` (or
:data:`EXIT_USAGE` when the setup must be fixed: a missing queue, table or schedule,
missing credentials, access denied). Neither prints a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..aws_errors import from_botocore, is_botocore
from ..errors import AWSError, ConfigurationError, SqsqError

#: Exit codes.
EXIT_OK = 0
#: The command ran and what it reports failed (a task's FAILURE, a move task's end).
EXIT_FAILURE = 1
#: A user error: a bad APP, option or argument; a configuration error, including a
#: missing queue, table or schedule and missing or refused credentials.
EXIT_USAGE = 2
#: An AWS call failed: unreachable, throttled, or an AWS error (``sqsq.AWSError``).
EXIT_AWS = 3


class _UsageError(click.ClickException):
    """``Error: …`` with exit code :data:`EXIT_USAGE` (bad APP, missing queue, …)."""

    exit_code = EXIT_USAGE


class _AWSFailure(click.ClickException):
    """``Error: …`` with exit code :data:`EXIT_AWS`."""

    exit_code = EXIT_AWS


class _Group(click.Group):
    """Turns sqsq and AWS errors into ``Error: …`` lines; a botocore error that no
    public API translated is translated here (``sqsq.aws_errors.from_botocore``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = from_botocore(exc) if is_botocore(exc) else exc
            if isinstance(error, ConfigurationError):
                raise _UsageError(str(error)) from None
            if isinstance(error, AWSError):
                raise _AWSFailure(str(error)) from None
            if isinstance(error, SqsqError):
                raise click.ClickException(str(error)) from None
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sqsq")
def cli() -> None:
    """sqsq: background tasks on Amazon SQS, DynamoDB and Lambda."""


def main() -> None:
    """Console-script entry point."""
    from . import commands, deploy, schedule  # noqa: F401  (registers the commands)

    sys.exit(cli.main(prog_name="sqsq"))
