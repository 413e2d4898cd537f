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
#: Messages per second an action moves back at most, by default.
DEFAULT_RATE = 10.0


def create_app(
    apps: Sequence[App], *, allow_actions: bool = False, rate: float = DEFAULT_RATE
) -> Any:
    """The dashboard of ``apps`` as an ASGI application (a Starlette instance).

    Args:
        apps: one or more apps; each is served under ``/apps/<name>/``.
        allow_actions: serve the actions — retry, revoke, replay and redrive by
            filter (:mod:`sqsq.dashboard.actions`); every page then needs a user
            (the app's ``dashboard_users`` over HTTP basic, or its
            ``dashboard_identity_header``) and every action a CSRF token. Off by
            default: the dashboard is read-only and refuses every POST (403).
        rate: messages per second an action moves back at most.

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
    if allow_actions and not any(
        a.settings.dashboard_users or a.settings.dashboard_identity_header for a in apps
    ):
        raise ConfigurationError(
            "--allow-actions needs users: set dashboard_users (SQSQ_DASHBOARD_USERS, JSON "
            "user -> password) or dashboard_identity_header on the app"
        )
    return Dashboard(apps, allow_actions=allow_actions, rate=rate).asgi()


def serve(
    apps: Sequence[App],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_actions: bool = False,
    rate: float = DEFAULT_RATE,
) -> None:
    """Serve the dashboard of ``apps`` with uvicorn until interrupted (Ctrl-C, SIGTERM).

    Args:
        apps: the apps shown.
        allow_actions: see :func:`create_app`.
        rate: see :func:`create_app`.
        host: the address to listen on (default: :data:`DEFAULT_HOST`, this machine
            only; put an authenticating proxy in front before listening wider).
        port: the TCP port (0: any free port, logged by uvicorn).

    Raises:
        MissingExtra: the ``dashboard`` extra is not installed.
        ConfigurationError: see :func:`create_app`.
    """
    asgi = create_app(apps, allow_actions=allow_actions, rate=rate)
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingExtra("dashboard", "the dashboard", exc) from None
    uvicorn.run(asgi, host=host, port=port, log_level="info", server_header=False)
