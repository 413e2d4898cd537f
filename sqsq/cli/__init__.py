"""The ``sqsq`` command line (click).

A user error (bad APP path, missing queue, bad option) prints ``Error: …`` and
exits with :data:`EXIT_USAGE`; it never prints a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import ConfigurationError, SqsqError

#: Exit codes.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class _UsageError(click.ClickException):
    """``Error: …`` with exit code :data:`EXIT_USAGE` (bad APP, missing queue, …)."""

    exit_code = EXIT_USAGE


class _Group(click.Group):
    """Turns sqsq and AWS errors into ``Error: …`` lines."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            raise _UsageError(str(exc)) from None
        except SqsqError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            module = type(exc).__module__
            if module.startswith(("botocore", "boto3", "aiobotocore")):
                raise click.ClickException(f"AWS: {exc}") from None
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sqsq")
def cli() -> None:
    """sqsq: background tasks on Amazon SQS, DynamoDB and Lambda."""


def main() -> None:
    """Console-script entry point."""
    from . import commands, deploy, schedule  # noqa: F401  (registers the commands)

    sys.exit(cli.main(prog_name="sqsq"))
