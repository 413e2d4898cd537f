"""OpenTelemetry tracing (``sqsq.tracing``) with the SDK's in-memory exporter: a
real worker process (its spans written to a file by ``tests/apps/traced.py``),
the Lambda handler in-process and ``apply()``. Every ``process`` span links to
its ``send`` span; a retried task's attempts share one trace; the context rides
in the envelope and in ``AWSTraceHeader``, never in a message attribute.
"""

from __future__ import annotations

import contextvars
import json
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

pytest.importorskip("opentelemetry.sdk", reason="sqsq[otel] tests need opentelemetry-sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanContext, TraceFlags

import sqsq
import sqsq.tracing
from sqsq import State
from sqsq.local import LocalEndpoint
from sqsq.logs import SpanIds, TextFormatter
from tests.apps import traced
from tests.conftest import WorkerFactory

APP = "tests.apps.traced:app"


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """sqsq's spans in this process go to an in-memory exporter (not the global
    provider, which other tests' processes share)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer_provider.exporter = exporter  # type: ignore[attr-defined]
    sqsq.tracing.install(tracer_provider=tracer_provider)
    yield tracer_provider
    sqsq.tracing.uninstall()
    sqsq.tracing.install()


def spans(provider: TracerProvider) -> list[dict[str, Any]]:
    return [traced.span_line(s) for s in provider.exporter.get_finished_spans()]  # type: ignore[attr-defined]


def named(lines: list[dict[str, Any]], prefix: str, task_id: str) -> list[dict[str, Any]]:
    return [
        line
        for line in lines
        if line["name"].startswith(prefix) and line["attributes"].get("sqsq.task.id") == task_id
    ]


def check_linked(process: dict[str, Any], send: dict[str, Any]) -> None:
    """``process`` links to ``send``, in its trace."""
    assert process["links"] == [[send["trace_id"], send["span_id"]]], (process, send)
    assert process["trace_id"] == send["trace_id"]
    assert process["kind"] == "CONSUMER" and send["kind"] == "PRODUCER"
    assert process["attributes"]["messaging.system"] == "aws_sqs"


@pytest.fixture
def traced_app(local_aws: LocalEndpoint) -> Iterator[sqsq.App]:
    import sqsq.resources

    sqsq.resources.apply(traced.app)
    yield traced.app


@pytest.fixture
def span_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the workers this test starts write their spans (``tests/apps/traced.py``)."""
    path = tmp_path / "spans.jsonl"
    monkeypatch.setenv(traced.SPANS_VARIABLE, str(path))
    return path


def exported(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_worker_process_spans_link_to_their_sends(
    traced_app: sqsq.App, provider: TracerProvider, worker: WorkerFactory, span_file: Path
) -> None:
    ok, flaky = traced.ok.delay(2), traced.flaky.delay("k")
    many = traced.ok.delay_many([(i,) for i in range(3)])
    process = worker.start(APP, "--queues", "default", "--concurrency", "2", "--wait-time", "1")
    with pytest.raises(sqsq.TaskFailed):  # a retry waits invisible: no --burst
        flaky.get(timeout=60)
    assert ok.get(timeout=60) == 4 and [r.get(timeout=60) for r in many] == [0, 2, 4]
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    sent = spans(provider)
    ran = exported(span_file)
    for result in (ok, *many):
        [send] = named(sent, "send ", result.id)
        [process] = named(ran, "process ", result.id)
        check_linked(process, send)
        assert process["parent"] == send["span_id"]  # no span current in the worker
        assert process["attributes"]["sqsq.task.outcome"] == "SUCCESS"
        assert send["attributes"]["messaging.destination.name"] == traced_app.queue_name("default")
    # a retried task: one process span per attempt, all in the send's trace
    [send] = named(sent, "send ", flaky.id)
    attempts = named(ran, "process ", flaky.id)
    assert [a["attributes"]["sqsq.task.attempt"] for a in attempts] == [1, 2]
    assert [a["attributes"]["sqsq.task.outcome"] for a in attempts] == ["RETRY", "FAILURE"]
    for attempt in attempts:
        check_linked(attempt, send)
    assert attempts[-1]["status"] == "ERROR"
    # receive spans: one per ReceiveMessage that brought messages, linked to them
    receives = [line for line in ran if line["name"].startswith("receive ")]
    assert sum(r["attributes"]["messaging.batch.message_count"] for r in receives) == 6
    linked = {tuple(link) for r in receives for link in r["links"]}
    assert (send["trace_id"], send["span_id"]) in linked and all(
        r["kind"] == "CLIENT" and r["parent"] is None for r in receives
    )
    # settle spans: 5 deletes (ok, flaky's failure, 3 of many), 1 visibility change
    settles = [
        line for line in ran if line["attributes"].get("messaging.operation.type") == "settle"
    ]
    count = {"delete": 0, "change_visibility": 0}
    for line in settles:
        count[line["attributes"]["messaging.operation.name"]] += line["attributes"][
            "messaging.batch.message_count"
        ]
    assert count == {"delete": 5, "change_visibility": 1}, settles
    # a log line of the body carries the ids of its process span (text format)
    [process] = named(ran, "process ", ok.id)
    marker = f"trace_id={process['trace_id']} span_id={process['span_id']}"
    assert any("doubling 2" in line and marker in line for line in stderr.splitlines())


def test_process_pool_bodies_make_their_spans_under_the_process_span(
    traced_app: sqsq.App, provider: TracerProvider, worker: WorkerFactory, span_file: Path
) -> None:
    """``--pool processes``: the worker process makes the process span around the
    child's run and hands its context to the child, where the body's own spans are
    its children."""
    ok, nested = traced.ok.delay(5), traced.nested.delay(1)
    done = worker.run(APP, "--queues", "default", "--pool", "processes", timeout=120)
    assert done.returncode == 0, done.stderr
    assert ok.get(timeout=0) == 10
    sent = spans(provider)
    ran = exported(span_file)
    for result in (ok, nested):
        [send] = named(sent, "send ", result.id)
        [process] = named(ran, "process ", result.id)
        check_linked(process, send)
        assert process["attributes"]["sqsq.task.outcome"] == "SUCCESS"
    [process] = named(ran, "process ", nested.id)
    [inner] = [line for line in ran if line["name"] == "inner"]  # exported by the child
    assert (inner["trace_id"], inner["parent"]) == (process["trace_id"], process["span_id"])
    assert nested.get(timeout=0) == process["span_id"]  # the child saw it as its parent


def test_a_redriven_dead_letter_runs_again_linked_to_its_send(
    traced_app: sqsq.App, provider: TracerProvider, worker: WorkerFactory, span_file: Path
) -> None:
    """A task rejected to the DLQ and moved back with ``sqsq dlq redrive`` (on moto,
    which has no message move tasks, sqsq copies the messages): its new run's process
    span links to the original send span, in its trace (the envelope's
    ``traceparent`` rides along; the copies' ``AWSTraceHeader``: the test below)."""
    from click.testing import CliRunner

    import sqsq.cli.commands  # noqa: F401  (registers `sqsq dlq`)
    from sqsq.cli import cli

    result = traced.picky.delay(4)
    first = worker.run(APP, "--queues", "default", **{traced.REJECT_VARIABLE: "1"})
    assert first.returncode == 0, first.stderr
    assert result.state is State.FAILURE
    [send] = named(spans(provider), "send ", result.id)
    moved = CliRunner().invoke(cli, ["dlq", "redrive", APP, "default"])
    assert moved.exit_code == 0, moved.output
    assert "moved 1 message(s)" in moved.output, moved.output
    again = worker.run(APP, "--queues", "default")
    assert again.returncode == 0, again.stderr
    assert traced_app.AsyncResult(result.id).get(timeout=0) == 4
    runs = named(exported(span_file), "process ", result.id)
    assert [r["attributes"]["sqsq.task.outcome"] for r in runs] == ["FAILURE", "SUCCESS"]
    for run in runs:
        check_linked(run, send)
        assert run["parent"] == send["span_id"]


def test_the_dlq_copy_and_the_redrive_keep_the_aws_trace_header() -> None:
    """The SendMessageBatch entries of a dead letter's DLQ copy and of its redrive
    carry the message's ``AWSTraceHeader`` (a system attribute). Built, not sent:
    moto 5.2 drops ``MessageSystemAttributes`` of SendMessageBatch entries (its
    SendMessage keeps them; the conformance pass runs them against LocalStack)."""
    from sqsq.dlq import _resend_entry
    from sqsq.sqs import DeadLetterNote, dead_letter_entry

    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    note = DeadLetterNote("rejected", "sqsq.errors.Reject", "no", "t-1", "traced-default", 1)
    copy = dead_letter_entry("0", "{}", {}, note, trace_header=header)
    message = {"MessageId": "m", "Body": "{}", "Attributes": {"AWSTraceHeader": header}}
    for entry in (copy, _resend_entry(0, message, fifo=False)):
        assert entry["MessageSystemAttributes"] == {
            "AWSTraceHeader": {"DataType": "String", "StringValue": header}
        }
    assert "MessageSystemAttributes" not in dead_letter_entry("0", "{}", {}, note)


def test_step_functions_callbacks_are_spans_in_the_task_trace(
    traced_app: sqsq.App, provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bodies as a ``waitForTaskToken`` state sends them (a task token, the
    execution's ``AWSTraceHeader``), run by the Lambda handler: each SendTaskSuccess /
    SendTaskFailure (to a recording Step Functions endpoint) is a ``callback`` span in
    the execution's trace, beside the ``process`` span."""
    from sqsq.testing import LambdaContext, sqs_event
    from tests.test_lambda import queue_arn, receive
    from tests.test_stepfunctions import Recorder

    name = traced_app.queue_name("default")
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    upstream = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    for task, token in ((traced.ok, "tok-ok"), (traced.picky, "tok-picky")):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"task": task.name, "args": [3], "task_token": token}),
            MessageSystemAttributes={
                "AWSTraceHeader": {"DataType": "String", "StringValue": upstream}
            },
        )
    monkeypatch.setenv(traced.REJECT_VARIABLE, "1")  # picky rejects: SendTaskFailure
    traced_app.clients.close()  # made for another endpoint by an earlier test
    with Recorder(lambda action, n: (200, None)) as recorder:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", recorder.url)
        event = sqs_event(receive(name, 2), queue_arn(name))
        response = traced_app.lambda_handler(event, LambdaContext(remaining_ms=60_000))
    traced_app.clients.close()
    assert response == {"batchItemFailures": []}
    assert sorted(a for a, _, _ in recorder.calls) == ["SendTaskFailure", "SendTaskSuccess"]
    lines = spans(provider)
    callbacks = {
        line["attributes"]["sqsq.step_functions.action"]: line
        for line in lines
        if line["name"].startswith("callback ")
    }
    assert set(callbacks) == {"SendTaskSuccess", "SendTaskFailure"}
    for action, task in (("SendTaskSuccess", traced.ok), ("SendTaskFailure", traced.picky)):
        callback = callbacks[action]
        [process] = [
            line
            for line in lines
            if line["name"].startswith("process ")
            and line["attributes"]["sqsq.task.name"] == task.name
        ]
        assert callback["name"] == f"callback {name}"
        assert callback["attributes"]["sqsq.task.id"] == process["attributes"]["sqsq.task.id"]
        for line in (callback, process):  # both in the execution's trace, under its span
            assert line["trace_id"] == "5759e988bd862e3fe1be46a994272793"
            assert line["parent"] == "53995c3f42cd8ad8"
            assert line["links"] == [["5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"]]
    assert callbacks["SendTaskSuccess"]["attributes"]["sqsq.task.outcome"] == "SUCCESS"


def test_beside_botocores_instrumentation_each_span_once_and_no_attribute(
    traced_app: sqsq.App, provider: TracerProvider
) -> None:
    """With ``opentelemetry-instrumentation-botocore`` on too: its spans are CLIENT
    spans of the AWS calls (``SQS.SendMessageBatch``…), sqsq's ``send`` and
    ``process`` spans appear once each, and the message carries one context — sqsq's
    send span's, in the envelope and ``AWSTraceHeader`` — and no message attribute
    (botocore's instrumentation puts its own context only in the HTTP request's
    ``X-Amzn-Trace-Id`` header, and injects message attributes for SNS, not SQS)."""
    instrumentation = pytest.importorskip(
        "opentelemetry.instrumentation.botocore",
        reason="needs opentelemetry-instrumentation-botocore (the test extra)",
    )
    from sqsq.testing import LambdaContext, sqs_event
    from tests.test_lambda import queue_arn, receive

    instrumentor = instrumentation.BotocoreInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with provider.get_tracer("web").start_as_current_span("request") as request:
            result = traced.ok.delay(3)
        name = traced_app.queue_name("default")
        event = sqs_event(receive(name, 1), queue_arn(name))
        response = traced_app.lambda_handler(event, LambdaContext(remaining_ms=60_000))
    finally:
        instrumentor.uninstrument()
    assert response == {"batchItemFailures": []} and result.get(timeout=0) == 6
    lines = spans(provider)
    [send] = named(lines, "send ", result.id)
    [process] = named(lines, "process ", result.id)
    check_linked(process, send)
    request_id = f"{request.get_span_context().span_id:016x}"
    assert send["parent"] == request_id
    aws_calls = [line for line in lines if line["attributes"].get("rpc.system") == "aws-api"]
    names = {line["name"] for line in aws_calls}
    assert {"SQS.ReceiveMessage", "DynamoDB.BatchWriteItem"} <= names, names
    assert all(line["kind"] == "CLIENT" for line in aws_calls)
    messaging = [line for line in lines if line["kind"] in ("PRODUCER", "CONSUMER")]
    assert sorted(line["name"] for line in messaging) == sorted([send["name"], process["name"]])
    [sent_by] = [line for line in aws_calls if line["name"].startswith("SQS.SendMessage")]
    assert sent_by["parent"] == request_id  # beside sqsq's send span, not a second one
    [record] = event["Records"]
    assert record["messageAttributes"] == {}
    headers = json.loads(record["body"])["headers"]
    assert list(headers) == ["traceparent"]
    assert headers["traceparent"].startswith(f"00-{send['trace_id']}-{send['span_id']}-")
    assert record["attributes"]["AWSTraceHeader"] == (
        f"Root=1-{send['trace_id'][:8]}-{send['trace_id'][8:]};Parent={send['span_id']};Sampled=1"
    )


def test_a_worker_beside_aiobotocores_instrumentation(
    traced_app: sqsq.App, provider: TracerProvider, worker: WorkerFactory, span_file: Path
) -> None:
    """The worker with ``AiobotocoreInstrumentor`` on: its ReceiveMessage,
    DeleteMessageBatch and BatchWriteItem are CLIENT spans beside sqsq's receive,
    process and settle spans; one process span per task, linked to its send."""
    pytest.importorskip(
        "opentelemetry.instrumentation.botocore",
        reason="needs opentelemetry-instrumentation-botocore (the test extra)",
    )
    results = traced.ok.delay_many([(i,) for i in range(3)])
    done = worker.run(APP, "--queues", "default", **{traced.INSTRUMENT_VARIABLE: "1"})
    assert done.returncode == 0, done.stderr
    assert [r.get(timeout=0) for r in results] == [0, 2, 4]
    sent, ran = spans(provider), exported(span_file)
    for result in results:
        [send] = named(sent, "send ", result.id)
        [process] = named(ran, "process ", result.id)
        check_linked(process, send)
    aws_calls = [line for line in ran if line["attributes"].get("rpc.system") == "aws-api"]
    names = {line["name"] for line in aws_calls}
    assert {"SQS.ReceiveMessage", "SQS.DeleteMessageBatch", "DynamoDB.BatchWriteItem"} <= names
    assert all(line["kind"] == "CLIENT" for line in aws_calls)
    consumers = [line for line in ran if line["kind"] in ("PRODUCER", "CONSUMER")]
    assert sorted(line["attributes"]["sqsq.task.id"] for line in consumers) == sorted(
        r.id for r in results
    )


def test_chains_continue_the_trace_and_a_chord_callback_links_its_members(
    traced_app: sqsq.App, provider: TracerProvider, worker: WorkerFactory, span_file: Path
) -> None:
    """The worker sends a chain's next step and a chord's callback (settle's follow-ups):
    the step's send span is a child of the finished step's send span; the callback's
    links to every member's send span."""
    steps = sqsq.chain(traced.ok.s(1), traced.ok.s()).delay()
    members = [traced.ok.s(i) for i in range(3)]
    callback = sqsq.chord(members, traced.total.s()).delay()
    done = worker.run(APP, "--queues", "default", "--concurrency", "2", timeout=120)
    assert done.returncode == 0, done.stderr
    assert steps.get(timeout=0) == 4 and callback.get(timeout=0) == 6
    sent = spans(provider)  # this process sent the chain's first step and the members
    by_worker = [line for line in exported(span_file) if line["name"].startswith("send ")]
    [first] = [line for line in sent if line["attributes"]["sqsq.task.id"] == steps.parent.id]
    [second] = named(by_worker, "send ", steps.id)
    assert second["parent"] == first["span_id"] and second["trace_id"] == first["trace_id"]
    member_sends = [line for line in sent if line["attributes"]["sqsq.task.name"] == traced.ok.name]
    member_sends = [line for line in member_sends if line["span_id"] != first["span_id"]]
    assert len(member_sends) == 3
    [body] = named(by_worker, "send ", callback.id)
    assert sorted(tuple(link) for link in body["links"]) == sorted(
        (line["trace_id"], line["span_id"]) for line in member_sends
    )
    assert body["parent"] in {line["span_id"] for line in member_sends}  # the last finisher


def test_no_message_attribute_only_the_envelope_and_aws_trace_header(
    traced_app: sqsq.App, provider: TracerProvider
) -> None:
    result = traced.ok.delay(1)
    [send] = named(spans(provider), "send ", result.id)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=traced_app.queue_name("default"))["QueueUrl"]
    [message] = sqs.receive_message(
        QueueUrl=url, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    assert "MessageAttributes" not in message
    headers = json.loads(message["Body"])["headers"]
    assert headers["traceparent"].startswith(f"00-{send['trace_id']}-{send['span_id']}-")
    header = message["Attributes"]["AWSTraceHeader"]
    assert header == (
        f"Root=1-{send['trace_id'][:8]}-{send['trace_id'][8:]};Parent={send['span_id']};Sampled=1"
    )


def test_lambda_record_spans_under_the_invocation_span(
    traced_app: sqsq.App, provider: TracerProvider
) -> None:
    from sqsq.testing import LambdaContext, sqs_event
    from tests.test_lambda import queue_arn, receive

    first, second = traced.ok.delay(3), traced.ok.delay(4)
    name = traced_app.queue_name("default")
    event = sqs_event(receive(name, 2), queue_arn(name))
    assert all("AWSTraceHeader" in record["attributes"] for record in event["Records"])
    tracer = provider.get_tracer("lambda-runtime")
    with tracer.start_as_current_span("invocation") as invocation:
        response = traced_app.lambda_handler(event, LambdaContext(remaining_ms=60_000))
    assert response == {"batchItemFailures": []} and first.get(timeout=0) == 6
    lines = spans(provider)
    invocation_id = f"{invocation.get_span_context().span_id:016x}"
    for result in (first, second):
        [send] = named(lines, "send ", result.id)
        [process] = named(lines, "process ", result.id)
        assert process["parent"] == invocation_id  # one span per record, under the invocation
        assert process["links"] == [[send["trace_id"], send["span_id"]]]


def test_a_foreign_message_continues_its_aws_trace_header(
    traced_app: sqsq.App, provider: TracerProvider
) -> None:
    """A body without ``traceparent`` (sent by EventBridge, SNS, the CLI) continues
    the trace of its ``AWSTraceHeader``."""
    from sqsq.testing import LambdaContext, sqs_event
    from tests.test_lambda import queue_arn, receive

    name = traced_app.queue_name("default")
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    upstream = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps({"task": "tests.apps.traced.ok", "args": [5], "kwargs": {}}),
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": upstream}},
    )
    event = sqs_event(receive(name, 1), queue_arn(name))
    assert traced_app.lambda_handler(event, LambdaContext(remaining_ms=60_000)) == {
        "batchItemFailures": []
    }
    [process] = [line for line in spans(provider) if line["name"].startswith("process ")]
    assert process["trace_id"] == "5759e988bd862e3fe1be46a994272793"
    assert process["parent"] == "53995c3f42cd8ad8"
    assert process["links"] == [["5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"]]


def test_apply_runs_in_the_callers_trace(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("web")
    with tracer.start_as_current_span("request") as request:
        assert traced.ok.apply(7).get() == 14
        failed = traced.flaky.apply("x")
    assert failed.state is State.FAILURE
    lines = spans(provider)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    request_id = f"{request.get_span_context().span_id:016x}"
    assert {line["trace_id"] for line in lines} == {trace_id}
    [send] = named(lines, "send ", failed.id)
    attempts = named(lines, "process ", failed.id)
    assert [a["attributes"]["sqsq.task.attempt"] for a in attempts] == [1, 2]
    for attempt in attempts:
        assert attempt["parent"] == request_id and attempt["links"][0][1] == send["span_id"]


def test_the_api_alone_passes_a_context_on_and_makes_nothing_without_one() -> None:
    """No SDK (the API's no-op provider): a run makes the context its message
    carries current (the body, its log lines and its sends see it), and a message
    without one makes nothing current (and costs no span)."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    from sqsq import producer
    from sqsq.calling import invoke
    from sqsq.delivery import Delivery
    from sqsq.execution import Executor

    app = sqsq.App("traceapi")

    @app.task
    def where() -> str:
        return f"{trace.get_current_span().get_span_context().trace_id:032x}"

    def run_sent() -> str:
        """Build a message of ``where`` here; run it in a context of its own."""
        message = producer.build(
            where.name, [], {}, queue="default", queue_name=app.queue_name("default")
        )
        delivery = Delivery(
            message.task_id, "", message.body, "default", trace_header=message.trace_header
        )
        prepared = Executor(app, worker_id="t").prepare(delivery)
        _, _, result = contextvars.Context().run(invoke, prepared, 60.0)  # nothing current
        return str(result.value)

    sqsq.tracing.install(tracer_provider=trace.NoOpTracerProvider())
    try:
        upstream = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
        token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(upstream)))
        try:
            assert run_sent() == f"{0xABC:032x}"
        finally:
            otel_context.detach(token)
        assert run_sent() == "0" * 32
    finally:
        sqsq.tracing.uninstall()
        sqsq.tracing.install()


def test_signed_envelope_carries_the_context_inside_the_signature(
    local_aws: LocalEndpoint, provider: TracerProvider
) -> None:
    app = sqsq.App("tracesigned", signing_key="k" * 32)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    from sqsq.resources import apply

    apply(app)
    add.delay(1, 2)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=app.queue_name("default"))["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    body = json.loads(message["Body"])
    assert "traceparent" in body["headers"]
    assert set(message["MessageAttributes"]) == {"sqsq-signature"}  # only the signature
    tampered = json.dumps(
        {**body, "headers": {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}
    )
    from sqsq.signing import verify

    keys = app.verification_keys
    assert verify(message["Body"], message["MessageAttributes"], keys).signed
    assert not verify(tampered, message["MessageAttributes"], keys).signed


def test_aws_trace_header_round_trip() -> None:
    context = SpanContext(
        trace_id=0x5759E988BD862E3FE1BE46A994272793,
        span_id=0x53995C3F42CD8AD8,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    header = sqsq.tracing.to_aws_trace_header(context)
    assert header == "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    back = sqsq.tracing.from_aws_trace_header(header)
    assert back is not None and (back.trace_id, back.span_id) == (context.trace_id, context.span_id)
    assert sqsq.tracing.from_aws_trace_header("Root=1-5759e988-bd862e3fe1be46a994272793") is None


def test_log_lines_carry_the_span_ids(provider: TracerProvider) -> None:
    record = logging.LogRecord("sqsq.x", logging.INFO, __file__, 1, "hello", None, None)
    formatter = TextFormatter("%(message)s")
    SpanIds().filter(record)
    assert formatter.format(record) == "hello"  # no span: nothing added
    with provider.get_tracer("t").start_as_current_span("s") as span:
        inside = logging.LogRecord("sqsq.x", logging.INFO, __file__, 1, "hello", None, None)
        SpanIds().filter(inside)
    context = span.get_span_context()
    ids = f"trace_id={context.trace_id:032x} span_id={context.span_id:016x}"
    assert formatter.format(inside) == f"hello {ids}"


def test_enabled_by_installing_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first App finds ``opentelemetry.trace`` and installs the hooks; the
    ``tracing`` setting turns the look-up off, or requires the API."""
    import sqsq.app
    from sqsq import calling, producer

    sqsq.tracing.uninstall()
    try:
        sqsq.App("untraced", tracing=False)
        assert not sqsq.tracing.installed()
        sqsq.App("traced2")
        assert sqsq.tracing.installed() and producer.tracing is not None
        assert calling.tracing is not None
        monkeypatch.setattr(sqsq.app, "_otel_found", False)  # as without sqsq[otel]
        with pytest.raises(sqsq.MissingExtra, match=r"sqsq\[otel\]"):
            sqsq.App("required", tracing=True)
    finally:
        sqsq.tracing.install()


def test_a_schedule_fire_is_a_root_span_with_its_schedule(
    local_aws: LocalEndpoint, provider: TracerProvider
) -> None:
    from datetime import UTC, datetime

    from sqsq.resources import apply
    from sqsq.testing import LambdaContext, fire_schedule, sqs_event
    from tests.test_lambda import queue_arn, receive

    app = sqsq.App("tracefires")

    @app.periodic_task("rate(1 hour)", name="hourly")
    def hourly() -> str:
        return "ran"

    apply(app)
    at = datetime(2027, 1, 4, 12, tzinfo=UTC)
    fired = fire_schedule(app, "hourly", at=at)
    name = app.queue_name("default")
    event = sqs_event(receive(name, 1), queue_arn(name))
    assert app.lambda_handler(event, LambdaContext(remaining_ms=60_000)) == {
        "batchItemFailures": []
    }
    assert fired.get(timeout=0) == "ran"
    [process] = named(spans(provider), "process ", fired.id)
    assert process["parent"] is None and process["links"] == []  # one root per fire
    assert process["attributes"]["sqsq.schedule.name"] == "hourly"
    assert process["attributes"]["sqsq.schedule.scheduled_time"] == at.isoformat()
