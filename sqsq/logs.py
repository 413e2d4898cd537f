"""Logging setup for the command line (the library itself only adds a NullHandler).

``text``: one readable line per event. ``json``: one JSON object per line with
the record's structured fields (task_id, task, queue, state, duration_s, …),
formatted by python-json-logger.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal


def configure(level: str = "INFO", fmt: Literal["text", "json"] = "text") -> None:
    """Send sqsq's logs to stderr in the given format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("sqsq")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
