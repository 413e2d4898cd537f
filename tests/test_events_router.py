"""The router's decisions in the execution core (no AWS call is made by
``Executor.prepare``): signing and routes, unwrapping without routes, splitting and
dropping S3 notifications, the event's idempotency key, and route declarations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sqsq
from sqsq.delivery import Delivery
from sqsq.errors import ConfigurationError
from sqsq.execution import Executor
from sqsq.idempotency import key_pk
from sqsq.outcome import Outcome, OutcomeKind, Prepared
from sqsq.settle import may_let_go
from sqsq.signing import signature_attribute

FIXTURES = Path(__file__).resolve().parent / "data" / "events"
EC2 = (FIXTURES / "eventbridge-ec2-state-change.docs.json").read_text()
S3 = json.loads((FIXTURES / "s3-put.sam.json").read_text())
SNS = json.loads((FIXTURES / "sns-notification.docs.json").read_text())
KEY = "s3cret"


def delivery(body: str, attributes: dict[str, Any] | None = None) -> Delivery:
    return Delivery("m-1", "r-1", body, "default", message_attributes=attributes or {})


def sns(message: str, attributes: dict[str, Any] | None = None) -> str:
    notification = dict(SNS, Message=message)
    if attributes:
        notification["MessageAttributes"] = attributes
    return json.dumps(notification)


def make_app(**settings: Any) -> sqsq.App:
    app = sqsq.App("routes", region_name="us-east-1", **settings)

    @app.on_event(source="aws.ec2")
    def ec2(event: dict[str, Any]) -> str:
        return str(event["id"])

    @app.on_s3(bucket="uploads")
    def uploaded(record: dict[str, Any]) -> str:
        return str(record["s3"]["object"]["key"])

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    return app


def prepare(app: sqsq.App, body: str, attributes: dict[str, Any] | None = None) -> Any:
    return Executor(app, "test").prepare(delivery(body, attributes))


def reason(outcome: Any) -> str:
    assert isinstance(outcome, Outcome) and outcome.note is not None, outcome
    return outcome.note.reason


def test_with_signing_on_a_declared_route_is_the_allowance_for_an_unsigned_event() -> None:
    app = make_app(signing_key=KEY)
    routed = prepare(app, EC2)
    assert isinstance(routed, Prepared) and routed.task.name.endswith(".ec2")
    versioned = json.dumps({"version": 1, "task": "add", "args": [1, 2]})
    assert reason(prepare(app, versioned)) == "unsigned_message"
    # an envelope published to SNS: its signature is an SNS message attribute
    minimal = json.dumps({"task": "add", "args": [1, 2]})
    assert isinstance(prepare(app, sns(minimal)), Prepared)
    keyed = json.dumps({"task": "add", "args": [1, 2], "id": "x"})
    assert reason(prepare(app, sns(keyed))) == "unsigned_message"
    signature = signature_attribute(keyed, KEY.encode())["sqsq-signature"]["StringValue"]
    signed = sns(keyed, {"sqsq-signature": {"Type": "String", "Value": signature}})
    prepared = prepare(app, signed)
    assert isinstance(prepared, Prepared) and prepared.envelope.id == "x"
    wrong = sns(keyed, {"sqsq-signature": {"Type": "String", "Value": "v1:00"}})
    assert reason(prepare(app, wrong)) == "bad_signature"


def test_without_routes_sns_is_unwrapped_and_events_are_no_route() -> None:
    app = sqsq.App("plain", region_name="us-east-1")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    assert app.router is None
    prepared = prepare(app, sns(json.dumps({"task": add.name, "args": [1, 2]})))
    assert isinstance(prepared, Prepared) and prepared.args == [1, 2]
    assert app.router is not None  # installed by the first foreign body
    outcome = prepare(app, EC2)
    assert reason(outcome) == "no_route"
    assert outcome.note.event == {
        "kind": "events",
        "source": "aws.ec2",
        "type": "EC2 Instance State-change Notification",
    }
    assert reason(prepare(app, json.dumps({"args": [1]}))) == "undecodable_message"
    assert reason(prepare(app, sns("plain text, no route"))) == "no_route"


def test_an_s3_notification_of_several_records_is_split_and_a_test_event_dropped() -> None:
    app = make_app()
    record = S3["Records"][0]
    split = prepare(app, json.dumps({"Records": [record, record]}))
    assert isinstance(split, Outcome) and split.kind is OutcomeKind.RESEND
    assert split.bodies == (json.dumps({"Records": [record]}, separators=(",", ":")),) * 2
    assert not may_let_go(split)  # the copies are sent first
    test_event = (FIXTURES / "s3-test-event.docs.json").read_text()
    dropped = prepare(app, test_event)
    assert isinstance(dropped, Outcome) and dropped.kind is OutcomeKind.RESEND
    assert dropped.bodies == () and dropped.record is None
    assert may_let_go(dropped)  # nothing to store or send: deleted


def test_splitting_is_bounded_and_never_on_a_fifo_queue() -> None:
    app = make_app()
    record = S3["Records"][0]
    many = json.dumps({"Records": [record] * 101})
    assert reason(prepare(app, many)) == "undecodable_message"
    fifo = Executor(app, "test").prepare(
        Delivery("m-1", "r-1", json.dumps({"Records": [record] * 2}), "orders.fifo")
    )
    assert reason(fifo) == "undecodable_message"
    assert "FIFO" in fifo.note.message
    assert reason(prepare(app, json.dumps({"Records": []}))) == "undecodable_message"


def test_a_services_own_routes_come_before_general_ones() -> None:
    app = sqsq.App("order", region_name="us-east-1")

    @app.route({"source": ["aws.ec2"]})
    def general(body: dict[str, Any]) -> None: ...

    @app.on_event(source="aws.ec2")
    def specific(event: dict[str, Any]) -> None: ...

    assert prepare(app, EC2).task is specific
    assert prepare(app, json.dumps({"source": "aws.ec2"})).task is general


def test_a_routed_body_never_has_workflow_follow_ups() -> None:
    """A foreign body's own ``workflow`` field is not sqsq's: no continuation runs."""
    from sqsq.settle import needs_follow_up

    app = make_app()

    @app.route({"kind": ["invoice"]})
    def invoice(body: dict[str, Any]) -> None: ...

    body = json.dumps({"kind": "invoice", "workflow": {"callbacks": [{"task": "add"}]}})
    prepared = prepare(app, body)
    assert isinstance(prepared, Prepared) and prepared.task is invoice
    outcome = Executor(app, "test").call(prepared)
    assert outcome.kind is OutcomeKind.SUCCESS
    assert not needs_follow_up(outcome)


def test_with_signing_on_unknown_fields_of_a_minimal_envelope_are_allowed_unsigned() -> None:
    app = make_app(signing_key=KEY)
    prepared = prepare(app, json.dumps({"task": "add", "args": [1, 2], "source": "curl"}))
    assert isinstance(prepared, Prepared)
    assert json.loads(prepared.envelope.headers["sqsq-extra"]) == {"source": "curl"}


def test_a_routed_run_is_keyed_by_the_events_identity_scoped_by_its_task() -> None:
    app = make_app()
    prepared = prepare(app, EC2)
    assert isinstance(prepared, Prepared)
    key = "event:events:6a7e8feb-b491-4cf7-a9f1-bf3703467718"
    assert prepared.envelope.idempotency_key == key
    assert prepared.idempotency_pk == key_pk(prepared.task.name, key)
    assert prepared.envelope.headers["sqsq-route"] == prepared.task.name
    s3 = prepare(app, json.dumps(S3))
    assert s3.envelope.idempotency_key == "event:s3:uploads/in/report.csv@0A1B2C3D4E5F678901"

    own = sqsq.App("ownkey", region_name="us-east-1")

    @own.on_event(source="aws.ec2", idempotency_key="{event[detail][instance-id]}")
    def keyed(event: dict[str, Any]) -> None: ...

    prepared = prepare(own, EC2)
    assert prepared.envelope.idempotency_key is None  # the task's own template applies
    assert prepared.idempotency_pk == key_pk(keyed.name, "i-1234567890abcdef0")


def test_routes_are_plain_inspectable_objects() -> None:
    from sqsq.events import routes_of

    app = make_app()

    @app.on_dynamodb_stream(table="orders", event_name=["INSERT", "MODIFY"], queue="streams")
    def changed(record: dict[str, Any]) -> None: ...

    @app.on_sns(topic_arn="arn:aws:sns:us-east-1:123456789012:t", message_attributes={"kind": "a"})
    def notified(notification: dict[str, Any]) -> None: ...

    routes = {route.task.rsplit(".", 1)[-1]: route for route in routes_of(app)}
    assert set(routes) == {"ec2", "uploaded", "changed", "notified"}
    assert routes["changed"].service == "dynamodb" and routes["changed"].queue == "streams"
    assert routes["changed"].table == "orders"
    assert routes["uploaded"].bucket == "uploads"
    assert routes["uploaded"].events == ("s3:ObjectCreated:*",)
    assert routes["notified"].topic_arn == "arn:aws:sns:us-east-1:123456789012:t"
    assert json.loads(routes["ec2"].event_pattern()) == {"source": ["aws.ec2"]}
    assert routes["notified"].pattern["MessageAttributes"] == {"kind": {"Value": ["a"]}}
    assert changed.name in app.tasks  # a route's task is a task like any other


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda app: app.on_dynamodb_stream(event_name="UPSERT"), "eventName"),
        (lambda app: app.on_event(source="x", pattern={"source": ["y"]}), "also set"),
        (lambda app: app.on_event(detail={"n": 1}), "list of matchers"),
        (lambda app: app.on_s3(bucket="b", events=[]), "empty list"),
        (lambda app: app.on_event(source="x", retries=3), "unknown task option"),
    ],
)
def test_bad_routes_fail_at_declaration(declare: Any, message: str) -> None:
    app = sqsq.App("bad", region_name="us-east-1")
    with pytest.raises(ConfigurationError, match=message):
        declare(app)(lambda event: None)


def test_import_sqsq_loads_neither_the_events_package_nor_powertools() -> None:
    code = (
        "import sys, sqsq; "
        "print([m for m in sys.modules if m.startswith(('sqsq.events', 'aws_lambda_powertools'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
