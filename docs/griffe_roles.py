"""A griffe extension for the API reference: sqsq's docstrings are Google style but
name other objects with Sphinx roles (``:class:`~sqsq.result.AsyncResult```) and end
examples with ``Example::``; rendered as they are, both show literally. Each role
becomes inline code of the name it shows (``~`` keeps the last part, as Sphinx
does), and ``Example::`` with its indented block a Google ``Example:`` section
holding a fenced python block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _name(match: re.Match[str]) -> str:
    target = match.group(2)
    shown = target.rsplit(".", 1)[-1] if match.group(1) else target
    return f"`{shown}`"


def _examples(text: str) -> str:
    """``Example::`` and its indented block -> ``Example:`` and a fenced python block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        heading = re.match(r"^(\s*)(Examples?)::\s*$", lines[i])
        if not heading:
            out.append(lines[i])
            i += 1
            continue
        indent = len(heading.group(1))
        out.append(f"{heading.group(1)}{heading.group(2)}:")
        i += 1
        block: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():  # trailing blank lines stay outside
            block.pop()
            i -= 1
        while block and not block[0].strip():
            block.pop(0)
        if block:
            pad = " " * min(len(line) - len(line.lstrip()) for line in block if line.strip())
            out.extend([f"{pad}```python", *block, f"{pad}```"])
    return "\n".join(out)


def plain(text: str) -> str:
    """``text`` without Sphinx roles, its ``Example::`` blocks as Google sections."""
    return _examples(_ROLE.sub(_name, text))


class SphinxRoles(griffe.Extension):
    """Rewrites each loaded object's docstring with :func:`plain`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
