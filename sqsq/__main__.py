"""``python -m sqsq`` and the ``sqsq`` console script: the command line.

The command line comes with ``sqsq[worker]`` (click, rich, …): on a core install it
prints ``Error: … pip install 'sqsq[worker]'`` and exits with ``EXIT_USAGE`` (2), not
a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    try:
        from .cli import commands, deploy, main, schedule  # noqa: F401  (registers the commands)
    except ImportError as exc:
        from .errors import MissingExtra

        print(f"Error: {MissingExtra('worker', 'the sqsq command line', exc)}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    main()
