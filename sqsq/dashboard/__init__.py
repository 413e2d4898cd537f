"""``sqsq dashboard``: a web UI over what sqsq already stores (the ``dashboard`` extra).

Read-only and stateless: each page reads AWS when it is asked for (see
:mod:`sqsq.dashboard.reads` for the requests per page) and keeps nothing, so an idle
dashboard makes no request and its memory does not grow with the table. Queues,
dead-letter queues, workers, schedules and any task by id work on every app; the
tasks list and the errors grouped by (task, exception type) need the app's
``listing`` index (``listing_index=True``, :mod:`sqsq.listing`).

Stack: Starlette (ASGI routes) + Jinja2 (server-rendered templates, autoescaped) +
uvicorn (the server); no JavaScript.

Example:
    Serve two apps on localhost::

        sqsq dashboard shop.tasks:app billing.tasks:app --port 5555

    or from Python (any ASGI server)::

        from sqsq.dashboard import create_app
        asgi = create_app([app])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, MissingExtra

if TYPE_CHECKING:
    from ..app import App

__all__ = ["create_app", "serve"]

#: The address served by default: this machine only (never every interface).
DEFAULT_HOST = "127.0.0.1"
#: The TCP port served by default (Flower's).
DEFAULT_PORT = 5555


def create_app(apps: Sequence[App]) -> Any:
    """The dashboard of ``apps`` as an ASGI application (a Starlette instance).

    Args:
        apps: one or more apps; each is served under ``/apps/<name>/``.

    Returns:
        A Starlette application; serve it with uvicorn or any ASGI server.

    Raises:
        MissingExtra: Starlette, Jinja2 or uvicorn is not installed
            (``pip install 'sqsq[dashboard]'``).
        ConfigurationError: no app, or two apps with the same name.
    """
    try:
        from .web import Dashboard
    except ImportError as exc:
        raise MissingExtra("dashboard", "the dashboard", exc) from None
    names = [app.name for app in apps]
    if not names:
        raise ConfigurationError("the dashboard needs at least one app")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"two apps share a name: {sorted(names)}")
    return Dashboard(apps).asgi()


def serve(apps: Sequence[App], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the dashboard of ``apps`` with uvicorn until interrupted (Ctrl-C, SIGTERM).

    Args:
        apps: the apps shown.
        host: the address to listen on (default: :data:`DEFAULT_HOST`, this machine
            only; put an authenticating proxy in front before listening wider).
        port: the TCP port (0: any free port, logged by uvicorn).

    Raises:
        MissingExtra: the ``dashboard`` extra is not installed.
        ConfigurationError: see :func:`create_app`.
    """
    asgi = create_app(apps)
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingExtra("dashboard", "the dashboard", exc) from None
    uvicorn.run(asgi, host=host, port=port, log_level="info", server_header=False)
