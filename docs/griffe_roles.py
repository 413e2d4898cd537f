"""A griffe extension for the API reference: sqsq's docstrings are Google style but
name other objects with Sphinx roles (``:class:`~sqsq.result.AsyncResult```) and end
examples with ``Example::``; rendered as they are, both show literally. Each role
becomes inline code of the name it shows (``~`` keeps the last part, as Sphinx
does), and ``Example::`` the Google section ``Example:``.
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


def plain(text: str) -> str:
    """``text`` without Sphinx roles and with Google's ``Example:`` heading."""
    text = _ROLE.sub(_name, text)
    return re.sub(r"^(\s*)(Examples?)::\s*$", r"\1\2:", text, flags=re.M)


class SphinxRoles(griffe.Extension):
    """Rewrites each loaded object's docstring with :func:`plain`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
