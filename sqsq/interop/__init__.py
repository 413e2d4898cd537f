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
:func:`use_celery` to give Celery task names that differ from sqsq's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .celery_protocol import CeleryProtocol

if TYPE_CHECKING:
    from ..app import App

__all__ = ["CeleryProtocol", "install", "use_celery"]


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


def use_celery(
    app: App,
    *,
    aliases: Mapping[str, str] | None = None,
    queues: Mapping[str, str] | None = None,
) -> CeleryProtocol:
    """Name what differs between ``app`` and the Celery app it replaces.

    Without this call ``app``'s workers already run Celery messages whose task
    name is registered in ``app``, and ``protocol="celery"`` sends name the SQS
    queue by its physical name.

    Args:
        app: the sqsq App.
        aliases: Celery task name → registered sqsq task name (tasks renamed in
            the move).
        queues: sqsq logical queue → Celery queue name (the key of kombu's
            ``predefined_queues`` for that SQS queue), for ``protocol="celery"``.

    Returns:
        The installed :class:`CeleryProtocol`.

    Example::

        use_celery(app, aliases={"billing.tasks.charge": "charge"}, queues={"default": "celery"})
    """
    protocol = install(app)
    protocol.aliases.update(aliases or {})
    protocol.queues.update(queues or {})
    return protocol
