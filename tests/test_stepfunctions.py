"""Step Functions callbacks: a state machine's ``sqs:sendMessage.waitForTaskToken``
task runs a sqsq task and gets its outcome back (SendTaskSuccess / SendTaskFailure),
with SendTaskHeartbeat while its lease is extended (docs/guides/stepfunctions.md).

Two kinds of Step Functions endpoint:

- a **real** one that runs the state machines of ``examples/stepfunctions/*.asl.json``
  (the definitions docs/guides/stepfunctions.md includes): moto's state-machine executor
  (``moto.stepfunctions.parser``, switched on through ``/moto-api/config``), or on
  an external endpoint its own Step Functions if it serves one;
- a **recording** one (:class:`Recorder`, a tiny HTTP server in this process) that
  the worker's Step Functions client is pointed at with botocore's
  ``AWS_ENDPOINT_URL_SFN``: it records every call with its arguments, answers
  what a test scripts (500, a dropped connection, TaskTimedOut), and notes at each
  call whether the outcome was stored and the message still held — no mock of
  sqsq's code, the worker is a real process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

import sqsq
import sqsq.resources
from sqsq import State, limits, signing, task_tokens
from sqsq.envelope import decode, encode, encode_fields
from sqsq.errors import EnqueueError, UndecodableMessage
from sqsq.local import LocalEndpoint
from sqsq.outcome import Outcome, OutcomeKind
from sqsq.testing import LambdaContext, sqs_event
from tests.helpers import consuming, queue_counts

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "stepfunctions"
APP = "examples.stepfunctions.app:app"
ROLE = "arn:aws:iam::123456789012:role/sqsq-state-machine"


def definition(name: str, queue_url: str) -> str:
    """A state machine of examples/stepfunctions/, ``${QueueUrl}`` filled in as SAM's
    DefinitionSubstitutions would."""
    return (EXAMPLE / name).read_text().replace("${QueueUrl}", queue_url)


def wait_for(check: Callable[[], Any], timeout_s: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.2)


# --- the app and its queue ---------------------------------------------------------------


@pytest.fixture
def orders(local_aws: Any) -> sqsq.App:
    """The example app with its queues and table; a 2 s visibility timeout, so that a
    task of a few seconds has its lease extended."""
    from examples.stepfunctions.app import app

    sqsq.resources.apply(sqsq.App(app.name, visibility_timeout_s=2))
    return app


def queue_url(app: sqsq.App) -> str:
    sqs = boto3.client("sqs")
    return str(sqs.get_queue_url(QueueName=app.queue_name("default"))["QueueUrl"])


def counts(url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    return queue_counts(boto3.client("sqs"), url)


# --- a real Step Functions ---------------------------------------------------------------


def _moto_config(url: str, execute: bool) -> None:
    body = json.dumps({"stepfunctions": {"execute_state_machine": execute}}).encode()
    request = urllib.request.Request(f"{url}/moto-api/config", data=body, method="POST")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def states(local_aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Step Functions client whose endpoint runs state machines for real; on an
    external endpoint, botocore's AWS_ENDPOINT_URL_SFN points sqsq (this process
    and the workers it starts) there too (the kit sets no Step Functions endpoint)."""
    if isinstance(local_aws, LocalEndpoint):
        # moto's executor calls SQS over HTTP on localhost:$MOTO_PORT (its own server)
        saved = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = local_aws.url.rsplit(":", 1)[1]
        _moto_config(local_aws.url, True)
        try:
            yield boto3.client("stepfunctions", endpoint_url=local_aws.url)
        finally:
            _moto_config(local_aws.url, False)
            if saved is None:
                os.environ.pop("MOTO_PORT", None)
            else:
                os.environ["MOTO_PORT"] = saved
        return
    url = local_aws.url_for("sqs")
    if url is None:
        pytest.skip("on AWS itself the state machines need a real role; the kit makes none")
    client = boto3.client("stepfunctions", endpoint_url=url)
    try:
        client.list_state_machines(maxResults=1)
    except Exception as exc:  # e.g. LocalStack started without stepfunctions in SERVICES
        pytest.skip(f"no Step Functions at {url} ({type(exc).__name__})")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", url)
    yield client


def state_machine(states: Any, name: str, queue: str) -> str:
    arn = states.create_state_machine(
        name=f"{name.split('.')[0]}-{uuid.uuid4().hex[:8]}",
        definition=definition(name, queue),
        roleArn=ROLE,
    )["stateMachineArn"]
    return str(arn)


def start(states: Any, machine: str, payload: dict[str, Any]) -> str:
    return str(
        states.start_execution(
            stateMachineArn=machine, name=uuid.uuid4().hex, input=json.dumps(payload)
        )["executionArn"]
    )


def finished(states: Any, execution: str, timeout_s: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        described: dict[str, Any] = states.describe_execution(executionArn=execution)
        return None if described["status"] == "RUNNING" else described

    result: dict[str, Any] = wait_for(done, timeout_s, f"execution {execution}")
    return result


def stop(process: Any) -> str:
    """SIGTERM the worker; its stderr (the summary line is in it)."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return str(stderr)


def message_id(states: Any, execution: str) -> str:
    """The MessageId of the execution's SendMessage (its TaskSubmitted event)."""
    for event in states.get_execution_history(executionArn=execution)["events"]:
        if event["type"] == "TaskSubmitted":
            return str(json.loads(event["taskSubmittedEventDetails"]["output"])["MessageId"])
    raise AssertionError(f"no TaskSubmitted event in {execution}")


def test_callback_state_machine_gets_the_result_or_the_error(
    orders: sqsq.App, states: Any, worker: Any, local_aws: Any
) -> None:
    url = queue_url(orders)
    machine = state_machine(states, "callback.asl.json", url)
    ok = start(states, machine, {"sku": "sku-1", "quantity": 3})
    short = start(states, machine, {"sku": "sku-2", "quantity": 500})
    wait_for(lambda: counts(url)[0] == 2, what="the state machine's two messages")

    # the worker's Step Functions calls go through a recording relay to the real endpoint
    with Recorder(forward_to=states.meta.endpoint_url) as recorder:
        process = worker.start(APP, AWS_ENDPOINT_URL_SFN=recorder.url)
        succeeded = finished(states, ok)
        failed = finished(states, short)
        wait_for(lambda: counts(url) == (0, 0), what="both messages deleted")
        stop(process)

    assert succeeded["status"] == "SUCCEEDED"
    output = json.loads(succeeded["output"])  # ResultPath: $.reservation
    assert output == {"sku": "sku-1", "quantity": 3, "reservation": {"sku": "sku-1", "reserved": 3}}

    assert failed["status"] == "FAILED"
    assert failed["error"] == "examples.stepfunctions.app.OutOfStock"
    # What sqsq sent: SendTaskFailure with the error and a cause that says what happened.
    ((report, _),) = recorder.of("SendTaskFailure")
    assert report["error"] == "examples.stepfunctions.app.OutOfStock"
    cause = json.loads(report["cause"])
    assert cause["state"] == "FAILURE" and cause["task"] == "orders.reserve_stock"
    assert cause["message"] == "only 100 of sku-2 left, 500 asked for"
    # On AWS the execution fails with the task's error and cause (DescribeExecution).
    # moto 5.x's SendTaskFailure passes only the error on (stepfunctions/responses.py),
    # so its executions have no cause: a gap of the emulator, not sqsq's behaviour.
    if not isinstance(local_aws, LocalEndpoint):
        assert failed["cause"] == report["cause"]
    # the outcome is still stored: the failure under its task id (the MessageId)
    record = orders.results.get_result(message_id(states, short))
    assert record is not None and record.state is State.FAILURE
    assert record.exc_type == "examples.stepfunctions.app.OutOfStock"


def test_fire_and_forget_state_machine_just_enqueues(
    orders: sqsq.App, states: Any, worker: Any
) -> None:
    url = queue_url(orders)
    machine = state_machine(states, "send.asl.json", url)
    execution = finished(states, start(states, machine, {"sku": "sku-3", "quantity": 2}))
    assert execution["status"] == "SUCCEEDED"
    message_id = json.loads(execution["output"])["MessageId"]  # SendMessage's answer
    result = worker.run(APP)
    assert result.returncode == 0, result.stderr
    record = orders.results.get_result(message_id)
    assert record is not None and record.state is State.SUCCESS
    assert record.value == {"sku": "sku-3", "reserved": 2}


def test_heartbeats_keep_a_long_task_alive(orders: sqsq.App, states: Any, worker: Any) -> None:
    """The documented definition with HeartbeatSeconds 3 and a task of 8 s: without
    a SendTaskHeartbeat on each lease extension (every ~1 s with the 2 s visibility
    timeout) the execution would fail with States.Timeout."""
    url = queue_url(orders)
    document = json.loads(definition("callback.asl.json", url))
    task = document["States"]["ReserveStock"]
    task["HeartbeatSeconds"] = 3
    task["Parameters"]["MessageBody"] = {
        "task": "orders.pack",
        "kwargs": {"sku.$": "$.sku", "seconds": 8},
        "task_token.$": "$$.Task.Token",
    }
    machine = states.create_state_machine(
        name=f"pack-{uuid.uuid4().hex[:8]}", definition=json.dumps(document), roleArn=ROLE
    )["stateMachineArn"]
    # Step Functions counts HeartbeatSeconds from the state's start: the worker must
    # be consuming before the message is sent (a start slower than 3 s on a loaded
    # machine would time the execution out before its first receive).
    process = worker.start(APP)
    consuming(process)
    execution = start(states, machine, {"sku": "sku-4"})
    described = finished(states, execution, timeout_s=90)
    stderr = stop(process)
    assert described["status"] == "SUCCEEDED", (described, stderr[-2000:])
    assert json.loads(described["output"])["reservation"] == "packed sku-4"
    extended = re.search(r"leases_extended=(\d+)", stderr)
    assert extended is not None and int(extended.group(1)) >= 3, stderr[-2000:]


def test_lambda_handler_reports_through_the_same_store_stage(orders: sqsq.App, states: Any) -> None:
    """The Lambda handler (in this process): the calls are counted and their
    arguments read with botocore's before-call hooks on the app's client."""
    url = queue_url(orders)
    machine = state_machine(states, "callback.asl.json", url)
    ok = start(states, machine, {"sku": "sku-5", "quantity": 1})
    short = start(states, machine, {"sku": "sku-6", "quantity": 101})
    wait_for(lambda: counts(url)[0] == 2, what="the state machine's two messages")
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while len(messages) < 2:
        messages += sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(event_name: str, params: dict[str, Any], **_: Any) -> None:
        calls.append((event_name.rsplit(".", 1)[1], json.loads(params["body"])))

    orders.clients.close()  # a client made for another endpoint by an earlier test
    client = orders.clients.sync("stepfunctions")
    client.meta.events.register("before-call.sfn", record)
    try:
        response = orders.lambda_handler(
            sqs_event(messages, arn["QueueArn"]), LambdaContext(remaining_ms=60_000)
        )
    finally:
        client.meta.events.unregister("before-call.sfn", record)
    assert response == {"batchItemFailures": []}

    tokens = {m["MessageId"]: json.loads(m["Body"])["task_token"] for m in messages}
    assert sorted(name for name, _ in calls) == ["SendTaskFailure", "SendTaskSuccess"]
    assert {body["taskToken"] for _, body in calls} == set(tokens.values())
    (success,) = [body for name, body in calls if name == "SendTaskSuccess"]
    assert json.loads(success["output"]) == {"sku": "sku-5", "reserved": 1}
    (failure,) = [body for name, body in calls if name == "SendTaskFailure"]
    assert failure["error"] == "examples.stepfunctions.app.OutOfStock"
    (failed_id,) = [m for m, token in tokens.items() if token == failure["taskToken"]]
    assert json.loads(failure["cause"]) == {
        "task_id": failed_id,
        "task": "orders.reserve_stock",
        "state": "FAILURE",
        "error_type": "examples.stepfunctions.app.OutOfStock",
        "message": "only 100 of sku-6 left, 101 asked for",
        "reason": "task_failed",
    }
    assert finished(states, ok)["status"] == "SUCCEEDED"
    assert finished(states, short)["status"] == "FAILED"
    for message_id in tokens:
        record_ = orders.results.get_result(message_id)
        assert record_ is not None and record_.state in (State.SUCCESS, State.FAILURE)


# --- a recording Step Functions ----------------------------------------------------------


class Recorder:
    """A Step Functions endpoint that records calls and answers as scripted.

    ``answer(action, n)`` (``n``: how many calls of that action came before) returns
    an HTTP status and error code — ``(200, None)`` for success — or None to drop the
    connection without an answer. ``probe()`` runs at each call; what it returns is
    recorded beside the call. With ``forward_to`` (a real Step Functions endpoint)
    each call is recorded and then relayed there, and its answer is the endpoint's:
    what sqsq sent is read at the HTTP boundary while the state machine runs on.
    """

    def __init__(
        self,
        answer: Callable[[str, int], tuple[int, str | None] | None] = lambda action, n: (200, None),
        probe: Callable[[], Any] = lambda: None,
        *,
        forward_to: str | None = None,
    ) -> None:
        self.calls: list[tuple[str, dict[str, Any], Any]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                action = self.headers["X-Amz-Target"].rsplit(".", 1)[1]
                seen = recorder.probe()
                with recorder.lock:
                    n = sum(1 for a, _, _ in recorder.calls if a == action)
                    recorder.calls.append((action, body, seen))
                if forward_to is not None:
                    self._relay(forward_to, raw)
                    return
                reply = answer(action, n)
                if reply is None:  # the network fails: no answer at all
                    self.close_connection = True
                    self.connection.close()
                    return
                status, code = reply
                data = b"{}" if code is None else json.dumps({"__type": code}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _relay(self, endpoint: str, raw: bytes) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                request = urllib.request.Request(
                    endpoint + self.path, data=raw, headers=headers, method="POST"
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, data = response.status, response.read()
                except urllib.error.HTTPError as error:  # an AWS error answer: relayed as is
                    status, data = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.probe = probe
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of(self, action: str) -> list[tuple[dict[str, Any], Any]]:
        with self.lock:
            return [(body, seen) for a, body, seen in self.calls if a == action]


def send_with_token(app: sqsq.App, task: str, token: str, **kwargs: Any) -> str:
    """The body a waitForTaskToken task sends: the minimal form plus the token."""
    body = json.dumps({"task": task, "kwargs": kwargs, "task_token": token})
    response = boto3.client("sqs").send_message(QueueUrl=queue_url(app), MessageBody=body)
    return str(response["MessageId"])


def test_a_failing_report_is_retried_and_the_message_kept_until_it_went_through(
    orders: sqsq.App, worker: Any
) -> None:
    """The endpoint answers 500, then drops the connection, then succeeds. With
    SQSQ_MAX_ATTEMPTS=1 (botocore's ``max_attempts`` counts retries: two tries per
    call) the first call fails and sqsq reports again; at every try the outcome is
    stored and the message still held; it is deleted after the report went through."""
    url = queue_url(orders)
    box: dict[str, str] = {}

    def probe() -> tuple[State | None, tuple[int, int]]:
        record = orders.results.get_result(box["id"])
        return (record.state if record else None), counts(url)

    answers = {0: (500, "InternalFailure"), 1: None}
    with Recorder(lambda action, n: answers.get(n, (200, None)), probe) as recorder:
        box["id"] = send_with_token(orders, "orders.reserve_stock", "token-1", sku="s", quantity=4)
        process = worker.start(APP, AWS_ENDPOINT_URL_SFN=recorder.url, SQSQ_MAX_ATTEMPTS="1")
        wait_for(lambda: len(recorder.of("SendTaskSuccess")) >= 3, what="three reports")
        wait_for(lambda: counts(url) == (0, 0), what="the message deleted")
        stderr = stop(process)
    reports = recorder.of("SendTaskSuccess")
    assert len(reports) == 3, stderr[-2000:]
    for body, (state, (visible, in_flight)) in reports:
        assert body == {"taskToken": "token-1", "output": '{"sku":"s","reserved":4}'}
        assert state is State.SUCCESS and (visible, in_flight) == (0, 1)
    assert recorder.of("SendTaskFailure") == []
    assert "reporting 1 outcomes to Step Functions failed" in stderr


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken"])
def test_an_expired_token_does_not_block_the_message(
    orders: sqsq.App, worker: Any, code: str
) -> None:
    url = queue_url(orders)
    with Recorder(lambda action, n: (400, code)) as recorder:
        task_id = send_with_token(orders, "orders.reserve_stock", "old", sku="s", quantity=1000)
        result = worker.run(APP, AWS_ENDPOINT_URL_SFN=recorder.url)
    assert result.returncode == 0, result.stderr
    assert len(recorder.of("SendTaskFailure")) == 1  # refused for good: not sent again
    assert counts(url) == (0, 0)
    record = orders.results.get_result(task_id)
    assert record is not None and record.state is State.FAILURE
    assert f"Step Functions refused its send_task_failure ({code}" in result.stderr


def test_heartbeat_answered_task_timed_out_is_sent_once(orders: sqsq.App, worker: Any) -> None:
    url = queue_url(orders)

    def answer(action: str, n: int) -> tuple[int, str | None]:
        return (400, "TaskTimedOut") if action == "SendTaskHeartbeat" else (200, None)

    with Recorder(answer) as recorder:
        send_with_token(orders, "orders.pack", "beat-1", sku="s", seconds=5)
        process = worker.start(APP, AWS_ENDPOINT_URL_SFN=recorder.url)
        wait_for(lambda: recorder.of("SendTaskSuccess"), what="the report")
        wait_for(lambda: counts(url) == (0, 0), what="the message deleted")
        stderr = stop(process)
    extended = re.search(r"leases_extended=(\d+)", stderr)
    assert extended is not None and int(extended.group(1)) >= 2, stderr[-2000:]
    assert [body for body, _ in recorder.of("SendTaskHeartbeat")] == [{"taskToken": "beat-1"}]
    assert stderr.count("no more heartbeats") == 1
    assert [body for body, _ in recorder.of("SendTaskSuccess")] == [
        {"taskToken": "beat-1", "output": '"packed s"'}
    ]


def test_a_dead_letter_with_a_token_is_reported_as_a_failure(orders: sqsq.App, worker: Any) -> None:
    with Recorder(lambda action, n: (200, None)) as recorder:
        task_id = send_with_token(orders, "orders.nope", "t-dlq", sku="s")
        result = worker.run(APP, AWS_ENDPOINT_URL_SFN=recorder.url)
    assert result.returncode == 0, result.stderr
    ((body, _),) = recorder.of("SendTaskFailure")
    assert body["taskToken"] == "t-dlq" and body["error"] == "sqsq.errors.UnknownTask"
    cause = json.loads(body["cause"])
    assert cause["task_id"] == task_id and cause["reason"] == "unknown_task"


@pytest.fixture
def no_botocore_retries(orders: sqsq.App) -> sqsq.App:
    """The example's tasks in an App whose clients retry a call once
    (``max_attempts=1``: botocore counts retries), so failures reach sqsq's own
    retries quickly."""
    from examples.stepfunctions.app import pack, reserve_stock

    app = sqsq.App(orders.name, max_attempts=1)
    app.task(name=reserve_stock.name)(reserve_stock.fn)
    app.task(name=pack.name)(pack.fn)
    return app


def lambda_event(app: sqsq.App, expected: int) -> tuple[dict[str, Any], list[str]]:
    sqs = boto3.client("sqs")
    url = queue_url(app)
    messages: list[dict[str, Any]] = []
    while len(messages) < expected:
        messages += sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return sqs_event(messages, arn["QueueArn"]), [m["MessageId"] for m in messages]


def test_lambda_retries_a_failing_report_then_lets_the_record_go(
    no_botocore_retries: sqsq.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = no_botocore_retries
    url = queue_url(app)
    box: dict[str, str] = {}

    def probe() -> tuple[State | None, tuple[int, int]]:
        record = app.results.get_result(box["id"])
        return (record.state if record else None), counts(url)

    answers = {0: (500, "InternalFailure"), 1: None}
    with Recorder(lambda action, n: answers.get(n, (200, None)), probe) as recorder:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", recorder.url)
        box["id"] = send_with_token(app, "orders.reserve_stock", "tok-l", sku="s", quantity=7)
        event, _ = lambda_event(app, 1)
        response = app.lambda_handler(event, LambdaContext(remaining_ms=60_000))
    assert response == {"batchItemFailures": []}
    reports = recorder.of("SendTaskSuccess")
    assert len(reports) == 3
    for body, (state, held) in reports:
        assert body == {"taskToken": "tok-l", "output": '{"sku":"s","reserved":7}'}
        assert state is State.SUCCESS and held == (0, 1)
    assert counts(url) == (0, 0)


def test_lambda_lists_a_record_whose_report_never_went_through(
    no_botocore_retries: sqsq.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = no_botocore_retries
    url = queue_url(app)
    with Recorder(lambda action, n: (503, "ServiceUnavailable")) as recorder:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", recorder.url)
        task_id = send_with_token(app, "orders.reserve_stock", "tok-x", sku="s", quantity=7)
        event, _ = lambda_event(app, 1)
        response = app.lambda_handler(event, LambdaContext(remaining_ms=60_000))
    assert response == {"batchItemFailures": [{"itemIdentifier": task_id}]}
    # REPORT_ATTEMPTS rounds of one call, each tried twice by botocore
    assert len(recorder.of("SendTaskSuccess")) == 2 * task_tokens.REPORT_ATTEMPTS
    record = app.results.get_result(task_id)
    assert record is not None and record.state is State.SUCCESS  # stored all the same
    assert counts(url) == (0, 1)  # kept: it comes back, and is reported then


# --- the envelope, signing and the report's shape (pure) -----------------------------------


def test_the_token_is_an_envelope_field_up_to_the_step_functions_limit() -> None:
    token = "t" * limits.STEPFUNCTIONS_MAX_TASK_TOKEN_CHARS
    body = encode_fields(task="orders.pack", task_token=token)
    assert decode(body, "m-1").task_token == token
    # a deferral or an ETA hop re-encodes the envelope: the token goes along
    assert decode(encode(decode(body, "m-1")), "m-3").task_token == token
    assert task_tokens.token_of(body) == token
    with pytest.raises(EnqueueError):
        encode_fields(task="orders.pack", task_token=token + "t")
    with pytest.raises(UndecodableMessage, match="task_token"):
        decode(json.dumps({"task": "orders.pack", "task_token": token + "t"}), "m-2")
    assert task_tokens.token_of(json.dumps({"task": "x", "task_token": token + "t"})) is None


def test_signing_accepts_the_minimal_form_with_a_token_unsigned() -> None:
    key = b"k"
    with_token = json.dumps({"task": "orders.pack", "args": [], "task_token": "t"})
    assert signing.check(with_token, {}, key) is None
    with_id = json.dumps({"task": "orders.pack", "id": "mine", "task_token": "t"})
    assert signing.check(with_id, {}, key) == "unsigned_message"


def _outcome(kind: OutcomeKind, value: Any = None, message: str = "") -> Outcome:
    from sqsq.delivery import Delivery
    from sqsq.result import ResultRecord

    body = json.dumps({"task": "orders.pack", "task_token": "tok"})
    delivery = Delivery(body=body, receipt_handle="r", message_id="m", queue="default")
    state = State.SUCCESS if kind is OutcomeKind.SUCCESS else State.FAILURE
    record = ResultRecord(
        "m",
        state,
        task="orders.pack",
        value=value,
        exc_type="builtins.ValueError",
        exc_message=message,
    )
    return Outcome(delivery, kind, "m", record)


def test_reports_stay_within_the_step_functions_limits() -> None:
    big = _outcome(OutcomeKind.SUCCESS, value="x" * limits.STEPFUNCTIONS_MAX_OUTPUT_BYTES)
    report = task_tokens.report_of(big, "tok")
    assert report.method == "send_task_failure"
    assert report.kwargs["error"] == "sqsq.errors.ResultNotSerializable"
    assert json.loads(report.kwargs["cause"])["reason"] == "result_too_large"
    failure = _outcome(OutcomeKind.FAILURE, message="\u0001" * 40_000)  # escapes grow 6x
    report = task_tokens.report_of(failure, "tok")
    assert len(report.kwargs["cause"]) <= limits.STEPFUNCTIONS_MAX_CAUSE_CHARS
    assert json.loads(report.kwargs["cause"])["message"].startswith("\u0001")
    assert not task_tokens.needs_report(_outcome(OutcomeKind.RETRY))


# --- IAM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["lambda", "ecs", "ec2"])
def test_infra_step_functions_lets_the_task_runner_report(target: str) -> None:
    from sqsq.deploy import Options, render

    app = sqsq.load_app(APP)
    role_id = {"lambda": "FunctionRole", "ecs": "TaskRole", "ec2": "InstanceRole"}[target]

    def statements(**options: Any) -> dict[str, Any]:
        doc = render(app, target, Options(APP, **options))  # type: ignore[arg-type]
        policy = doc["Resources"][role_id]["Properties"]["Policies"][0]["PolicyDocument"]
        return {s["Sid"]: s for s in policy["Statement"]}

    assert "StepFunctionsCallbacks" not in statements()
    statement = statements(step_functions=True)["StepFunctionsCallbacks"]
    assert statement["Action"] == [
        "states:SendTaskFailure",
        "states:SendTaskHeartbeat",
        "states:SendTaskSuccess",
    ]
    # the Service Authorization Reference names no resource type for them
    assert statement["Resource"] == "*"


def test_the_documented_definitions_are_the_tested_ones() -> None:
    """docs/guides/stepfunctions.md shows each definition after a comment naming its file."""
    doc = (ROOT / "docs" / "guides" / "stepfunctions.md").read_text()
    shown = dict(
        re.findall(r"<!-- (examples/stepfunctions/\S+) -->\n```json\n(.*?)\n```", doc, re.S)
    )
    assert set(shown) == {
        "examples/stepfunctions/callback.asl.json",
        "examples/stepfunctions/send.asl.json",
    }
    for path, text in shown.items():
        assert text == (ROOT / path).read_text().rstrip("\n")
        json.loads(text)
