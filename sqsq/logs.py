"""Logging setup for the command line (the library itself only adds a NullHandler).

``text``: one readable line per event. ``json``: one JSON object per line with
the record's structured fields (task_id, task, queue, state, duration_s, …),
formatted by python-json-logger.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

#: Control characters (C0, DEL, C1) and Unicode line/paragraph separators, written
#: escaped in text logs: a value from a message (a task name, a JSON key, an
#: exception message) can then never start a forged line of its own.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)] if code != 0x09}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_controls(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, …)."""
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """One line per event: the message's control characters are escaped (a
    traceback, appended after it, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


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
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("sqsq")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
