"""Foreign events: AWS services' messages routed to typed tasks.

A queue may receive what AWS services send by themselves — an SNS notification
(raw delivery off), an S3 event notification, an EventBridge event (a rule's
target, a pipe, the Scheduler), a DynamoDB stream record through EventBridge
Pipes. Routes declared in code run a task for each::

    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3RecordModel

    @app.on_event(source="orders", detail_type="Order Placed")
    def placed(event: EventBridgeModel) -> str: ...

    @app.on_s3(bucket="uploads", prefix="in/", events=["s3:ObjectCreated:*"])
    def uploaded(record: S3RecordModel) -> int: ...

The task's parameter annotation decides what it receives: a Powertools parser
model (``pip install 'sqsq[events]'``), any pydantic model, or a plain ``dict``.
Matching follows EventBridge's event patterns (``patterns.py``); unwrapping and
identities are in ``shapes.py``; the router the execution core asks is
``router.py``. The core never imports this package: :func:`install` puts the
router in the App's slot (``App.router``), which ``app.on_*`` / ``app.route`` do
when a route is declared and the App's facade (``App.event_router()``) does when
the core first meets a foreign body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .patterns import matches
from .router import EventRouter
from .routes import Route

if TYPE_CHECKING:
    from ..app import App

__all__ = ["EventRouter", "Route", "install", "matches", "routes_of"]


def install(app: App) -> EventRouter:
    """The app's :class:`EventRouter`, installed as ``app.router`` on first use.

    Raises:
        ConfigurationError: ``app.router`` holds a router of the user's own, on
            which routes cannot be declared.
    """
    if app.router is None:
        app.router = EventRouter(app)
    router = app.router
    if not isinstance(router, EventRouter):
        raise ConfigurationError(f"app.router is {router!r}, not sqsq's EventRouter")
    return router


def routes_of(app: App) -> list[Route]:
    """The routes declared on ``app``, in declaration order (for ``sqsq infra``)."""
    router = app.router
    return list(router.routes) if isinstance(router, EventRouter) else []
