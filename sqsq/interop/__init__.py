"""Interop with other task libraries on the same queues: Celery's protocol v2.

A team moving from Celery on SQS can move producers and workers in any order:

- an sqsq worker or Lambda handler runs the Celery messages that kombu's SQS
  transport writes (``celery_protocol.CeleryProtocol``, JSON serializer only),
  under the Celery id, with ``eta``, ``expires``, ``retries`` and
  ``link``/``link_error`` carried over;
- ``app.send_task(name, ..., protocol="celery")`` and tasks declared with
  ``protocol="celery"`` write messages a stock Celery worker runs
  (``celery_protocol.build``);
- ``sqsq celery check CELERY_APP SQSQ_APP`` lists what still differs
  (``check.py``).

The core never imports this package: the App's facade (``App.celery_protocol()``)
installs a :class:`~sqsq.interop.celery_protocol.CeleryProtocol` in ``App.celery``
the first time the execution core meets a body that is not an envelope; call
:func:`accept_celery` to give Celery task names that differ from sqsq's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .celery_protocol import CeleryProtocol

if TYPE_CHECKING:
    from ..app import App

__all__ = ["CeleryProtocol", "accept_celery", "install"]


def install(app: App) -> CeleryProtocol:
    """The app's :class:`CeleryProtocol`, installed as ``app.celery`` on first use.

    Raises:
        ConfigurationError: ``app.celery`` holds a translator of the user's own.
    """
    protocol = app.celery
    if protocol is None:
        protocol = app.celery = CeleryProtocol(app)
    if not isinstance(protocol, CeleryProtocol):
        raise ConfigurationError(f"app.celery holds {protocol!r}, not a CeleryProtocol")
    return protocol


def accept_celery(app: App, aliases: Mapping[str, str] | None = None) -> CeleryProtocol:
    """Run Celery messages on ``app``'s workers, mapping Celery task names to sqsq's.

    Without this call the workers already run Celery messages whose task name is
    registered in ``app``; ``aliases`` adds the tasks that were renamed in the move.

    Args:
        app: the sqsq App.
        aliases: Celery task name → registered sqsq task name.

    Returns:
        The installed :class:`CeleryProtocol`.

    Example::

        accept_celery(app, {"billing.tasks.charge": "charge"})
    """
    protocol = install(app)
    protocol.aliases.update(aliases or {})
    return protocol
