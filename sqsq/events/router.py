"""The router: what the execution core asks about bodies that are not envelopes.

::

    JSON object without "task" ─► SNS notification? ─ Message is an envelope ───► run it (its
                                │                  │                             signature checked
                                │                  │                             against the SNS
                                │                  │                             message attributes)
                                │                  ├ Message is an event ───────► as below
                                │                  └ else: an on_sns route ─────► run its task
                                ├─ s3:TestEvent ───────────────────────────────► dropped (deleted)
                                ├─ S3 notification of N > 1 records ────────────► N messages of one
                                │                                                 record sent on
                                ├─ EventBridge event / S3 record / stream record
                                │   / other JSON ─► the first route that matches ► run its task
                                └─ no route matches ────────────────────────────► DLQ, no_route

A routed run is the envelope ``{"task": <route's task>, "args": [<event>],
"idempotency_key": "event:<service>:<identity>"}`` (the key only when the task
declares none of its own): keys are scoped by task name, and an envelope's key
could only take this form when a producer sets it explicitly (which signing
forbids to unsigned bodies). The task's parameter annotation turns the event into
its model (e.g. Powertools' ``EventBridgeModel``) or leaves it a ``dict``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .. import signing
from ..envelope import Envelope, dumps, from_json, parse
from ..errors import DeadLetter, NoRoute, UndecodableMessage
from ..outcome import Outcome, OutcomeKind
from . import patterns, shapes
from .routes import Route

if TYPE_CHECKING:
    from ..app import App
    from ..delivery import Delivery

logger = logging.getLogger(__name__)

#: Envelope header naming the route a run came from.
ROUTE_HEADER = "sqsq-route"
#: Most records of one S3 notification split into messages of one record each.
MAX_SPLIT_RECORDS = 100


class EventRouter:
    """The app's routes, and the :class:`~sqsq.execution.Router` the core asks.

    Args:
        app: the App whose tasks the routes run.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.routes: list[Route] = []

    def add(self, route: Route) -> None:
        """Add a route; the first route that matches an event wins."""
        self.routes.append(route)

    def match(self, event: shapes.Event) -> Route | None:
        """The first route of ``event``'s service that matches it, else the first
        ``json`` route (``app.route``) that does, in declaration order.

        Runs on the worker's event loop (``Worker._accept``): matching is linear in
        the event for each route (``patterns.matches`` never backtracks), and an event
        is one SQS message (at most ``limits.SQS_MAX_MESSAGE_BYTES``), already parsed
        on the loop — so a hostile value costs about what decoding it did."""
        for service in dict.fromkeys((event.service, "json")):
            for route in self.routes:
                if route.service == service and patterns.matches(route.pattern, event.document):
                    return route
        return None

    # --- the Router protocol ----------------------------------------------------------

    def route(self, delivery: Delivery, body: dict[str, Any]) -> Envelope | Outcome | None:
        """See :class:`sqsq.execution.Router`."""
        if shapes.is_sns_notification(body):
            return self._sns(delivery, body)
        found = self._event(delivery, body)
        if found is not None:
            return found
        event = shapes.classify(body)
        if event is None:
            return None  # not an AWS event: decoded as an envelope, and fails as one
        raise _no_route(event)

    def _event(self, delivery: Delivery, body: dict[str, Any]) -> Envelope | Outcome | None:
        """The run (or outcome) for an event body; None when no route matches."""
        if shapes.is_s3_test_event(body):
            logger.info(
                "message %s: s3:TestEvent for bucket %s acknowledged and dropped",
                delivery.message_id,
                body.get("Bucket"),
                extra={"queue": delivery.queue},
            )
            return _let_go(delivery, ())
        records = shapes.s3_records(body)
        if records is not None and len(records) != 1:
            self._check_split(delivery, len(records))
            logger.info(
                "message %s: S3 notification of %d records sent on as one message each",
                delivery.message_id,
                len(records),
                extra={"queue": delivery.queue},
            )
            return _let_go(delivery, tuple(dumps({"Records": [r]}) for r in records))
        event = shapes.classify(body) or shapes.json_event(body)
        route = self.match(event)
        return None if route is None else self._run(delivery, route, event)

    def _check_split(self, delivery: Delivery, count: int) -> None:
        """An S3 notification of ``count`` records may be split into as many messages:
        not on a FIFO queue (S3 cannot notify one; a copy would need a message group),
        and not beyond :data:`MAX_SPLIT_RECORDS` (S3 sends one record per message: a
        body of thousands is not S3's, and would fan out into thousands of messages).

        Raises:
            UndecodableMessage: it may not.
        """
        if count > MAX_SPLIT_RECORDS:
            raise UndecodableMessage(
                f"S3 notification of {count} records, over MAX_SPLIT_RECORDS="
                f"{MAX_SPLIT_RECORDS} (S3 sends one record per message)"
            )
        if count and self.app.queue_name(delivery.queue).endswith(".fifo"):
            raise UndecodableMessage(
                f"S3 notification of {count} records on a FIFO queue: not split "
                "(S3 cannot notify a FIFO queue)"
            )

    def _sns(self, delivery: Delivery, body: dict[str, Any]) -> Envelope | Outcome:
        try:
            inner = parse(body["Message"])
        except UndecodableMessage:
            inner = None
        if isinstance(inner, dict) and "task" in inner:
            return self._wrapped_envelope(delivery, body, inner)
        if isinstance(inner, dict):
            found = self._event(delivery, inner)
            if found is not None:
                return found
        event = shapes.sns_event(body)
        route = self.match(event)
        if route is None:
            raise _no_route(event)
        return self._run(delivery, route, event)

    def _wrapped_envelope(
        self, delivery: Delivery, body: dict[str, Any], inner: dict[str, Any]
    ) -> Envelope:
        """An envelope published to SNS: the message is the envelope, its SNS message
        attributes are its attributes (``sqsq-signature``), and the SNS MessageId is
        its idempotency key unless it (or its task) has one."""
        key = self.app.signing_key
        if key is not None:
            refused = signing.check(body["Message"], _sns_attributes(body), key)
            if refused is not None:
                error = DeadLetter(f"SNS message: {refused.replace('_', ' ')}")
                error.reason = refused
                raise error
        envelope = from_json(inner, delivery.message_id)
        task = self.app.tasks.get(envelope.task)
        if envelope.idempotency_key is None and task is not None and task.idempotency_key is None:
            sns_key = shapes.sns_event(body).key
            envelope = envelope.model_copy(update={"idempotency_key": sns_key})
        return envelope

    def _run(self, delivery: Delivery, route: Route, event: shapes.Event) -> Envelope:
        from pydantic import ValidationError

        from ..envelope_model import Envelope

        task = self.app.tasks.get(route.task)
        own_key = task is not None and task.idempotency_key is not None
        logger.debug(
            "message %s: %s event %s %s routed to %s",
            delivery.message_id,
            event.service,
            event.source,
            event.type,
            route.task,
            extra={"queue": delivery.queue},
        )
        try:
            return Envelope.model_validate(
                {
                    "id": delivery.message_id,
                    "task": route.task,
                    "args": [event.document],
                    "idempotency_key": None if own_key else event.key,
                    "headers": {ROUTE_HEADER: route.name},
                }
            )
        except ValidationError as exc:  # e.g. an identity pydantic refuses
            raise UndecodableMessage(f"{event.service} event: {exc.errors()[0]['msg']}") from None


def _let_go(delivery: Delivery, bodies: tuple[str, ...]) -> Outcome:
    """RESEND ``bodies`` as new messages and delete this one; none: just delete it
    (nothing is stored: there is no task)."""
    return Outcome(
        delivery,
        OutcomeKind.RESEND,
        delivery.message_id,
        None,
        store=False,
        bodies=bodies,
        copied=not bodies,
    )


def _sns_attributes(body: dict[str, Any]) -> dict[str, Any]:
    """SNS message attributes (``{"Type", "Value"}``) in SQS's shape (``StringValue``)."""
    attributes = body.get("MessageAttributes")
    if not isinstance(attributes, dict):
        return {}
    return {
        name: {"DataType": value.get("Type", "String"), "StringValue": value.get("Value")}
        for name, value in attributes.items()
        if isinstance(value, dict)
    }


def _no_route(event: shapes.Event) -> NoRoute:
    described = event.describe()
    what = " ".join(f"{k}={v!r}" for k, v in described.items() if v)
    return NoRoute(f"no route matches this foreign event ({what})", described)
