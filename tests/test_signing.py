"""Message signing under attack (issue 18, the signing rows): everything sqsq sends
is signed (canvas follow-ups, schedules, re-sends, redrives), keys rotate without a
dead letter, and nothing of a body no accepted key signed is acted on beyond the
minimal form. The attacker holds only sqs:SendMessage (and no key).

Real ``sqsq worker`` processes against the embedded moto server; schedules fired by
``sqsq.testing.SimulatedScheduler`` on a virtual clock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import sqsq
import sqsq.cli.commands  # registers the commands
import sqsq.cli.schedule  # registers `sqsq schedule`
from sqsq import State, signing
from sqsq.cli import cli
from sqsq.schedules import scheduler
from sqsq.signing import signature_attribute
from sqsq.testing import LambdaContext, SimulatedScheduler, sqs_event
from tests.test_hostile import dlq_reasons, receive_all, result, url

KEY = "current-key"
OLD_KEY = "previous-key"
HOSTILE = "tests.apps.hostile:app"
CANVAS = "tests.apps.canvas:app"
PERIODIC = "tests.apps.periodic:app"


def signed(monkeypatch: pytest.MonkeyPatch, app: Any, key: str = KEY, *previous: str) -> Any:
    """``app`` (the module's own App, as the worker loads it) with signing on in this
    process, as ``SQSQ_SIGNING_KEY`` would set it."""
    update = {"signing_key": key, "signing_previous_keys": tuple(previous)}
    monkeypatch.setattr(app, "settings", app.settings.model_copy(update=update))
    return app


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return stderr


def peek_reasons(app: Any) -> dict[str, str]:
    """Task id → dead-letter reason in the default queue's DLQ, the messages released
    again (``dlq_reasons`` keeps them hidden for 30 s)."""
    from sqsq.dlq import describe, peek

    sqs = app.clients.sync("sqs")
    dlq = queue_url(app, "default") + "-dlq"
    return {str(row.task_id): row.reason for row in map(describe, peek(sqs, dlq))}


def queue_url(app: Any, queue: str) -> str:
    return str(app.directory.url(app.queue_name(queue)))


# --- row 1: chains, groups and chords sent by the app itself ------------------------------


@pytest.fixture
def canvas(local_aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from sqsq.resources import apply
    from tests.apps.canvas import app

    apply(app)
    yield signed(monkeypatch, app)


def test_chains_groups_and_chords_are_signed_end_to_end(canvas: Any, worker: Any) -> None:
    """Row 1 (and the signed end-to-end runs of a chain, a group and a chord): on main
    every follow-up went out unsigned — dead-lettered ``unsigned_message``, the chain
    and the chord FAILURE, the group's members PENDING forever."""
    from tests.apps.canvas import add, mul, tsum

    chained = (add.s(1, 2) | add.s(3) | mul.s(10)).apply_async()
    grouped = sqsq.group(add.s(1, 1), add.s(2, 2), add.s(3, 3)).apply_async()
    chorded = sqsq.chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
    process = worker.start(CANVAS, "-c", "4", SQSQ_SIGNING_KEY=KEY)
    try:
        assert chained.get(timeout=60) == 60
        assert grouped.get(timeout=60) == [2, 4, 6]
        assert chorded.get(timeout=60) == 6
    finally:
        stderr = stop(process)
    assert "unsigned" not in stderr, stderr
    for queue in canvas.queues():
        assert dlq_reasons(canvas, queue) == {}


# --- row 2: a schedule's fire, and a countdown over 900 s ----------------------------------


@pytest.fixture
def periodic(local_aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The periodic test app with signing on, its resources created and its schedules
    synced (their Input templates signed)."""
    from sqsq.resources import apply
    from tests.apps.periodic import app

    signed(monkeypatch, app)
    apply(app)
    done = CliRunner().invoke(cli, ["schedule", "sync", PERIODIC], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    yield app


def test_schedule_run_sends_a_fire_the_worker_accepts(periodic: Any, worker: Any) -> None:
    """Row 2, ``schedule run`` (what ``serve`` and ``sqsq dev`` send too): on main the
    fire went out unsigned and was dead-lettered ``unsigned_message``."""
    done = CliRunner().invoke(cli, ["schedule", "run", PERIODIC, "noon"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    task_id = done.output.strip()

    ran = worker.run(PERIODIC, "-c", "1", SQSQ_SIGNING_KEY=KEY)

    assert ran.returncode == 0, ran.stderr
    record = periodic.AsyncResult(task_id).record
    assert record is not None and record.state is State.SUCCESS, ran.stderr
    assert record.value == "report noon"
    assert dlq_reasons(periodic, "default") == {}


def test_a_periodic_fire_sent_by_scheduler_is_signed_end_to_end(periodic: Any, worker: Any) -> None:
    """Row 2, Scheduler's fires (the simulator fills the context attributes exactly as
    Scheduler does, after the template was signed): on main, ``unsigned_message``."""
    start = datetime.now(UTC).replace(microsecond=0)
    run = SimulatedScheduler.for_app(periodic, now=start).advance(timedelta(minutes=2))
    ticks = [f for f in run.select("tick") if f.outcome == "sent"]
    assert ticks

    ran = worker.run(PERIODIC, "-c", "1", SQSQ_SIGNING_KEY=KEY)

    assert ran.returncode == 0, ran.stderr
    for fire in ticks:
        record = periodic.AsyncResult(fire.execution_id).record
        assert record is not None and record.state is State.SUCCESS, ran.stderr
        assert record.value == fire.scheduled_time.isoformat()
    assert dlq_reasons(periodic, "default") == {}
    template = periodic.clients.sync("scheduler").get_schedule(
        GroupName=scheduler.group_name(periodic), Name="tick"
    )["Target"]["Input"]
    assert json.loads(template)[signing.BODY_FIELD].startswith(signing.TEMPLATE_VERSION)


class _Then(datetime):
    """``datetime`` whose ``now()`` is two hours ago: a countdown made "then" is due by
    now on the real clock, which the worker reads (the simulator moves only its own)."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) - timedelta(hours=2)


def test_a_long_countdown_is_signed_end_to_end(
    periodic: Any, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 2, a countdown over 900 s (a one-time schedule, fired by the simulator): on
    main its body went out unsigned, ``unsigned_message``."""
    import sqsq.schedules.eta
    from sqsq.schedules.eta import group_name
    from tests.apps.periodic import cleanup

    then = _Then.now(UTC).replace(microsecond=0)
    with monkeypatch.context() as patch:
        patch.setattr(sqsq.schedules.eta, "datetime", _Then)
        later = cleanup.apply_async((5,), countdown=3600)  # due an hour ago, really
    sim = SimulatedScheduler.for_app(periodic, now=then, groups=[group_name(periodic)])
    (fire,) = sim.advance(timedelta(minutes=61))
    assert fire.outcome == "sent" and fire.schedule == f"eta-{later.id}"

    ran = worker.run(PERIODIC, "-c", "1", SQSQ_SIGNING_KEY=KEY)

    assert ran.returncode == 0, ran.stderr
    record = later.record
    assert record is not None and record.state is State.SUCCESS, ran.stderr
    assert record.value == 5
    assert dlq_reasons(periodic, "default") == {}


def test_a_long_countdown_in_hop_mode_is_signed_again_with_its_eta(
    hostile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hop body carries the due time, so it is a new body: on main it went out
    with the signature of the body without it (``bad_signature`` on arrival)."""
    from tests.apps.hostile import probe

    signed(monkeypatch, hostile)
    monkeypatch.setattr(
        hostile, "settings", hostile.settings.model_copy(update={"long_eta": "hop"})
    )
    sent: list[dict[str, Any]] = []  # what SendMessage was given (botocore's hook)

    def seen(params: dict[str, Any], **_: Any) -> None:
        sent.append(params)

    sqs = hostile.clients.sync("sqs")
    sqs.meta.events.register("provide-client-params.sqs.SendMessage", seen)
    try:
        hop = probe.apply_async((8,), countdown=1800)
    finally:
        sqs.meta.events.unregister("provide-client-params.sqs.SendMessage", seen)

    (request,) = sent
    assert request["DelaySeconds"] == 900 and hop.id in request["MessageBody"]
    attributes = request["MessageAttributes"]
    assert signing.check(request["MessageBody"], attributes, KEY.encode()) is None


# --- row 3: the workflow of a refused body -------------------------------------------------


def test_the_workflow_of_a_refused_body_is_not_followed(canvas: Any, worker: Any) -> None:
    """Row 3: on main an unsigned body was refused ``unsigned_message`` but its
    ``workflow`` was still followed: the chain step it named (another task's id) was
    overwritten with a ChainError, and the chord it named counted a failed member and
    failed its body."""
    from sqsq import producer
    from sqsq.workflows.plan import plan, put_chord_request
    from tests.apps.canvas import add, tsum

    victim = add.delay(20, 22)  # signed by the app
    ran = worker.run(CANVAS, "-c", "1", SQSQ_SIGNING_KEY=KEY)
    assert ran.returncode == 0, ran.stderr
    assert victim.get(timeout=5) == 42
    # a chord of the app's, written but its members not sent yet
    chorded = sqsq.chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    outcome = chorded.freeze()
    sig = chorded.to_dict()
    first = plan(canvas, sig, check=True)
    for item in first.chords:
        canvas.clients.sync("dynamodb").put_item(**put_chord_request(canvas, item))
    step = {"t": "task", "task": "tests.apps.canvas.add", "args": [0], "kwargs": {}}
    forged = [
        {"task": "tests.apps.canvas.add", "args": [1, 2], "workflow": workflow}
        for workflow in [
            {"chain": [{**step, "options": {"task_id": victim.id}}]},
            {"chord": {"id": sig["options"]["chord_id"], "index": 0}},
        ]
    ]
    sqs = canvas.clients.sync("sqs")
    forged_ids = [
        sqs.send_message(QueueUrl=queue_url(canvas, "default"), MessageBody=json.dumps(body))[
            "MessageId"
        ]
        for body in forged
    ]

    ran = worker.run(CANVAS, "-c", "1", SQSQ_SIGNING_KEY=KEY)

    assert ran.returncode == 0, ran.stderr
    record = victim.record
    assert record is not None and record.state is State.SUCCESS and record.value == 42
    assert outcome.record is None  # the chord's body not failed
    for forged_id in forged_ids:
        refused = canvas.AsyncResult(forged_id).record
        assert refused is not None and refused.dead_letter_reason == "unsigned_message"
    producer.send_sync(canvas.clients, canvas.directory, first.messages)  # its members
    ran = worker.run(CANVAS, "-c", "2", SQSQ_SIGNING_KEY=KEY)
    assert ran.returncode == 0, ran.stderr
    assert outcome.get(timeout=30) == 6
    assert dlq_reasons(canvas, "default") == dict.fromkeys(forged_ids, "unsigned_message")


# --- row 4: a deeply nested unsigned body naming another task's id ------------------------


@pytest.mark.parametrize("depth", [600, 5000])
def test_a_deep_unsigned_body_is_dead_lettered_under_its_message_id(
    hostile: Any, worker: Any, monkeypatch: pytest.MonkeyPatch, depth: int
) -> None:
    """Row 4: on main the body was judged before its signature — too deep, it was
    dead-lettered ``undecodable_message`` under the ``id`` it named, overwriting that
    task's SUCCESS."""
    from tests.apps.hostile import probe

    signed(monkeypatch, hostile)
    victim = probe.delay(3)
    ran = worker.run(HOSTILE, "-c", "1", SQSQ_SIGNING_KEY=KEY)
    assert ran.returncode == 0, ran.stderr
    assert result(hostile, victim.id).value == 3
    body = json.dumps({"id": victim.id, "task": "tests.apps.hostile.probe", "args": ["deep"]})
    body = body.replace('"deep"', "[" * depth + "]" * depth)
    sqs = hostile.clients.sync("sqs")
    deep_id = sqs.send_message(QueueUrl=url(hostile), MessageBody=body)["MessageId"]

    ran = worker.run(HOSTILE, "-c", "1", SQSQ_SIGNING_KEY=KEY)

    assert ran.returncode == 0, ran.stderr
    record = result(hostile, victim.id)
    assert record.state is State.SUCCESS and record.value == 3
    assert result(hostile, deep_id).dead_letter_reason == "undecodable_message"
    assert dlq_reasons(hostile) == {deep_id: "undecodable_message"}


# --- row 5: an unsigned minimal body and a signed call's idempotency key ------------------


def test_an_unsigned_call_cannot_claim_a_signed_calls_idempotency_key(
    hostile: Any, worker: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Row 5: on main the unsigned minimal body (allowed) rendered the key ``k`` and
    claimed it: the app's own later call with that key never ran its body, and got
    the attacker's result (``duplicate_of``)."""
    from tests.apps.hostile import keyed, lines

    signed(monkeypatch, hostile)
    theirs, ours = tmp_path / "attacker", tmp_path / "app"
    minimal = json.dumps({"task": "tests.apps.hostile.keyed", "args": ["k", str(theirs)]})
    sqs = hostile.clients.sync("sqs")
    attacker_id = sqs.send_message(QueueUrl=url(hostile), MessageBody=minimal)["MessageId"]
    ran = worker.run(HOSTILE, "-c", "1", SQSQ_SIGNING_KEY=KEY)
    assert ran.returncode == 0, ran.stderr
    assert result(hostile, attacker_id).value == "k"  # the minimal form still runs
    assert lines(theirs) == ["k"]

    call = keyed.delay("k", str(ours))  # the app's own, signed
    ran = worker.run(HOSTILE, "-c", "1", SQSQ_SIGNING_KEY=KEY)

    assert ran.returncode == 0, ran.stderr
    record = result(hostile, call.id)
    assert record.state is State.SUCCESS and "duplicate_of" not in record.extra
    assert lines(ours) == ["k"]  # its body ran
    # and an unsigned call again with the same key deduplicates against its own kind
    again = sqs.send_message(QueueUrl=url(hostile), MessageBody=minimal)["MessageId"]
    ran = worker.run(HOSTILE, "-c", "1", SQSQ_SIGNING_KEY=KEY)
    assert ran.returncode == 0, ran.stderr
    assert result(hostile, again).extra == {"duplicate_of": attacker_id}
    assert lines(theirs) == ["k"] and lines(ours) == ["k"]
    assert dlq_reasons(hostile) == {}


# --- row 6: key rotation and redrive --------------------------------------------------------


def test_keys_rotate_without_a_dead_letter_and_redrive_re_signs(
    hostile: Any, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 6: on main there was one key: after a change, in-flight messages signed with
    the previous one went to the DLQ ``bad_signature``, and a redrive sent them back
    with that signature, to be dead-lettered again."""
    old = sqsq.App("hostile", signing_key=OLD_KEY)
    in_flight = old.send_task("tests.apps.hostile.probe", [1])
    rotating = {"SQSQ_SIGNING_KEY": KEY, "SQSQ_SIGNING_PREVIOUS_KEYS": json.dumps([OLD_KEY])}

    ran = worker.run(HOSTILE, "-c", "1", **rotating)

    assert ran.returncode == 0, ran.stderr
    assert result(hostile, in_flight.id).value == 1  # verified with the previous key
    assert dlq_reasons(hostile) == {}

    # dead letters of a worker that no longer accepted the old key, and two forgeries
    stranded = old.send_task("tests.apps.hostile.probe", [2])
    sqs = hostile.clients.sync("sqs")
    forged_body = json.dumps({"id": str(uuid.uuid4()), "task": "tests.apps.hostile.probe"})
    forged = sqs.send_message(
        QueueUrl=url(hostile),
        MessageBody=forged_body,
        MessageAttributes=signature_attribute(forged_body, b"not-a-key"),
    )["MessageId"]
    unsigned_body = json.dumps({"id": str(uuid.uuid4()), "task": "tests.apps.hostile.probe"})
    unsigned = sqs.send_message(QueueUrl=url(hostile), MessageBody=unsigned_body)["MessageId"]
    ran = worker.run(HOSTILE, "-c", "1", SQSQ_SIGNING_KEY=KEY)
    assert ran.returncode == 0, ran.stderr
    reasons = peek_reasons(hostile)  # none under a body's id: none was verified
    assert reasons.pop(forged) == "bad_signature"
    assert reasons.pop(unsigned) == "unsigned_message"
    assert list(reasons.values()) == ["bad_signature"] and stranded.id not in reasons

    signed(monkeypatch, hostile, KEY, OLD_KEY)  # the operator's redrive, keys rotating
    moved = CliRunner().invoke(cli, ["dlq", "redrive", HOSTILE, "default"])
    assert moved.exit_code == 0, moved.output
    messages = {
        m["MessageId"]: m
        for m in receive_all(hostile, 3)
        if m["Body"] in (forged_body, unsigned_body) or stranded.id in m["Body"]
    }
    by_body = {m["Body"]: m for m in messages.values()}
    # what the previous key signed now carries the current key's signature...
    (again,) = [m for m in messages.values() if stranded.id in m["Body"]]
    given = again["MessageAttributes"]["sqsq-signature"]["StringValue"]
    assert given == signing.sign(again["Body"], KEY.encode())
    # ...what no accepted key signed is not signed by the redrive
    assert by_body[forged_body]["MessageAttributes"]["sqsq-signature"]["StringValue"] == (
        signing.sign(forged_body, b"not-a-key")
    )
    assert "sqsq-signature" not in by_body[unsigned_body].get("MessageAttributes", {})
    for m in messages.values():  # back in the queue for the worker
        sqs.change_message_visibility(
            QueueUrl=url(hostile), ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )

    ran = worker.run(HOSTILE, "-c", "1", SQSQ_SIGNING_KEY=KEY)  # the previous key retired

    assert ran.returncode == 0, ran.stderr
    assert result(hostile, stranded.id).value == 2
    assert sorted(dlq_reasons(hostile).values()) == ["bad_signature", "unsigned_message"]


# --- the Lambda handler ----------------------------------------------------------------------


def test_lambda_handler_accepts_a_scheduler_fire_and_a_previous_key_and_refuses_the_rest(
    hostile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same verdict in the Lambda handler: a Scheduler template fire (signature in
    the body, context attributes filled), a message the previous key signed, and a
    refused body whose workflow and task token are not acted on."""
    from sqsq.schedules.declare import PeriodicTask
    from sqsq.schedules.expressions import parse

    signed(monkeypatch, hostile, KEY, OLD_KEY)
    periodic = PeriodicTask(
        name="every", task="tests.apps.hostile.probe", expression=parse("rate(1 hour)"),
        queue="default", args=[9],
    )  # fmt: skip
    fire_time = datetime(2026, 1, 1, tzinfo=UTC)
    body = scheduler.render(
        scheduler.input_template(periodic, KEY.encode()),
        scheduled_at=fire_time,
        execution_id="0123456789abcdef",
        schedule_arn="arn:aws:scheduler:us-east-1:123456789012:schedule/hostile-sqsq/every",
        attempt=1,
    )
    old = sqsq.App("hostile", signing_key=OLD_KEY)
    previous = old.send_task("tests.apps.hostile.probe", [4])
    victim = str(uuid.uuid4())
    refused_body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "task": "tests.apps.hostile.probe",
            "args": [5],
            "task_token": "token-of-someone",
            "workflow": {
                "chain": [
                    {
                        "t": "task",
                        "task": "tests.apps.hostile.probe",
                        "args": [],
                        "kwargs": {},
                        "options": {"task_id": victim},
                    },
                ]
            },
        }
    )
    tampered = body.replace('"args":[9]', '"args":[10]')
    sqs = hostile.clients.sync("sqs")
    ids = {
        name: sqs.send_message(QueueUrl=url(hostile), MessageBody=text)["MessageId"]
        for name, text in [("fire", body), ("refused", refused_body), ("tampered", tampered)]
    }
    messages = receive_all(hostile, 4)

    response = hostile.lambda_handler(sqs_event(messages, _arn(hostile)), LambdaContext())

    assert response == {"batchItemFailures": []}
    record = result(hostile, "0123456789abcdef")
    assert record.state is State.SUCCESS and record.value == 9
    assert record.task_id == "0123456789abcdef"
    assert result(hostile, previous.id).value == 4
    assert result(hostile, ids["refused"]).dead_letter_reason == "unsigned_message"
    assert result(hostile, ids["tampered"]).dead_letter_reason == "bad_signature"
    assert result(hostile, victim) is None  # the refused body's chain was not followed
    assert dlq_reasons(hostile) == {
        ids["refused"]: "unsigned_message",
        ids["tampered"]: "bad_signature",
    }


def _arn(app: Any) -> str:
    return f"arn:aws:sqs:us-east-1:123456789012:{app.queue_name('default')}"


# --- the signature Scheduler carries (pure) --------------------------------------------------


def _fire(template: str, **changes: Any) -> str:
    fill = {
        "scheduled_at": datetime(2026, 5, 1, 12, tzinfo=UTC),
        "execution_id": "a1b2c3d4e5f60718",
        "schedule_arn": "arn:aws:scheduler:eu-west-1:123456789012:schedule/app-sqsq/tick",
        "attempt": 2,
    }
    return scheduler.render(template, **{**fill, **changes})


def _template(key: bytes = b"k") -> str:
    from sqsq.schedules.declare import PeriodicTask
    from sqsq.schedules.expressions import parse

    periodic = PeriodicTask(
        name="tick", task="t", expression=parse("rate(1 minute)"), queue="default",
        args=["2026-05-01T12:00:00Z"], kwargs={"n": 1},
    )  # fmt: skip
    return scheduler.input_template(periodic, key)


def test_a_template_signature_verifies_once_filled_and_nothing_else_does() -> None:
    template = _template()
    assert signing.verify(_fire(template), {}, [b"other", b"k"]) == signing.Verdict(None, 1)
    # a literal that looks like a fill (in args) is not put back: only the slots are
    assert '"args":["2026-05-01T12:00:00Z"]' in _fire(template)
    for forged in [
        _fire(template).replace('"kwargs":{"n":1}', '"kwargs":{"n":2}'),  # the arguments
        _fire(template, execution_id="not an id!"),  # a fill outside its pattern
        _fire(template).replace(
            "schedule:tick@2026-05-01T12:00:00Z", "schedule:tick@2026-05-02T12:00:00Z"
        ),
        _fire(template).replace("v2t:", "v2:"),  # not a template signature
        _fire(template).replace('"id":"a1b2c3d4e5f60718",', ""),  # a field taken out
    ]:
        assert signing.verify(forged, {}, [b"k"]).reason == "bad_signature", forged
    assert signing.verify(_fire(_template(b"other")), {}, [b"k"]).reason == "bad_signature"


def test_settings_take_previous_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SQSQ_SIGNING_KEY", "a")
    monkeypatch.setenv("SQSQ_SIGNING_PREVIOUS_KEYS", '["b", "c"]')
    assert sqsq.App("keys").verification_keys == [b"a", b"b", b"c"]
    monkeypatch.setenv("SQSQ_SIGNING_PREVIOUS_KEYS", "b")
    assert sqsq.App("keys").verification_keys == [b"a", b"b"]
    monkeypatch.delenv("SQSQ_SIGNING_KEY")
    assert sqsq.App("keys").verification_keys == []
