"""The generated Lambda function under AWS's rules: its template driven by the simulated
SQS event source mapping (``sqsq.testing.lambda_esm``) — batches, partial batch
responses, the function's timeout counted down and enforced by killing the execution
environment (a real process) — against the real queues and table of the endpoint.

moto's own event source mapping invokes one record at a time and ignores
``batchItemFailures`` and the timeout, so none of this could be seen there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

import sqsq
import sqsq.cli.deploy  # registers `sqsq infra`
import sqsq.resources
from sqsq import State
from sqsq.cli import cli
from sqsq.deploy import Options, dump, render
from sqsq.deploy import bundle as bundle_module
from sqsq.deploy.lambda_timing import MAX_TIME_LIMIT_S, safety_margin_s
from sqsq.testing.lambda_esm import (
    EventSource,
    EventSourceMapping,
    InProcess,
    build_bundle,
    failed_items,
    fifo_violations,
)

ROOT = Path(__file__).resolve().parents[1]
TIMED = "tests.apps.timed:app"

pytestmark = pytest.mark.slow


def _template(tmp_path: Path, app_path: str, **options: Any) -> Path:
    """``sqsq infra APP --target lambda --out <tmp>/infra/lambda.yaml`` (CodeUri relative
    to that file, as the CLI writes it)."""
    out = tmp_path / "infra" / "lambda.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    code_uri = bundle_module.code_uri(app_path, out)
    doc = render(sqsq.load_app(app_path), "lambda", Options(app_path, code_uri=code_uri, **options))
    out.write_text(dump(doc))
    return out


def _hand_edited(template: Path, timeout_s: int, margin_s: int | None = None) -> Path:
    """The template with its function's Timeout (and safety margin) changed by hand."""
    doc = yaml.safe_load(template.read_text())
    function = doc["Resources"]["TaskFunction"]["Properties"]
    function["Timeout"] = timeout_s
    if margin_s is not None:
        function["Environment"]["Variables"]["SQSQ_LAMBDA_SAFETY_MARGIN_S"] = str(margin_s)
    template.write_text(dump(doc))
    return template


@pytest.fixture
def timed(local_aws: Any, tmp_path: Path) -> Any:
    from tests.apps import timed as module

    sqsq.resources.apply(module.app)
    return module


def _effects(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _dlq_reasons(app: sqsq.App) -> list[str]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=app.queue_name("default") + "-dlq")["QueueUrl"]
    reasons = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return sorted(reasons)
        reasons += [
            json.loads(m["MessageAttributes"]["sqsq-dead-letter"]["StringValue"])["reason"]
            for m in got
        ]


def test_a_batch_with_mixed_outcomes(timed: Any, tmp_path: Path) -> None:
    """One batch: successes, a failure, a body that is not JSON, an unknown task. The
    function's response lists none of them (all final), so the mapping deletes them
    all; the failure and the dead letters are in the DLQ with their reasons."""
    effects = tmp_path / "effects"
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=timed.app.queue_name("default"))["QueueUrl"]
    results = [timed.quick.delay(n) for n in range(3)]
    failed = timed.boom.delay()
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"task": "nope", "args": []}))

    with EventSourceMapping.from_template(
        _template(tmp_path, TIMED), environ={"TIMED_EFFECTS": str(effects)}
    ) as esm:
        invocations = esm.drain(idle_polls=2)

    assert invocations and not any(i.error or i.violations for i in invocations), invocations
    assert sum(len(i.message_ids) for i in invocations) == 6
    assert all(i.response == {"batchItemFailures": []} for i in invocations)
    assert sum(len(i.deleted) for i in invocations) == 6
    assert [r.get(timeout=5) for r in results] == [0, 1, 2]
    assert failed.state == State.FAILURE
    assert sorted(_effects(effects)) == ["quick 0", "quick 1", "quick 2"]
    assert _dlq_reasons(timed.app) == ["task_failed", "undecodable_message", "unknown_task"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_an_invocation_killed_at_its_timeout_does_not_run_finished_work_again(
    timed: Any, tmp_path: Path
) -> None:
    """A hand-made 8 s function gets three quick tasks and one that sleeps 60 s (no time_limit,
    so the handler starts it): the environment is killed at 8 s. The quick outcomes
    were stored and their messages deleted as they finished; only the sleeper comes
    back (after the queue's visibility timeout) and runs — the quick bodies once."""
    effects = tmp_path / "effects"
    quick = [timed.quick.delay(n) for n in range(3)]
    sleeper = timed.sleepy.delay(60, "once")
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=timed.app.queue_name("default"))["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "10"})

    template = _hand_edited(_template(tmp_path, TIMED), 8, margin_s=2)
    with EventSourceMapping.from_template(template, environ={"TIMED_EFFECTS": str(effects)}) as esm:
        first = esm.drain(until=lambda: any(i.timed_out for i in esm.invocations), timeout_s=60)
        killed = next(i for i in first if i.timed_out)
        assert killed.error and killed.error["errorType"] == "Sandbox.Timedout"
        assert killed.deleted == []  # a function error: the mapping deletes nothing
        assert [r.get(timeout=5) for r in quick] == [0, 1, 2]  # stored before the kill
        assert sleeper.state == State.PENDING
        later = esm.drain(until=lambda: sleeper.state == State.SUCCESS, timeout_s=60)

    assert sleeper.get(timeout=5) == "once"
    assert any(i.cold_start for i in later)  # the killed environment was replaced
    assert sorted(_effects(effects)) == [
        "quick 0",
        "quick 1",
        "quick 2",
        "sleepy once",
        "sleepy once",
    ]


def test_a_60_s_task_runs_in_a_function_generated_for_it(timed: Any, tmp_path: Path) -> None:
    """``report`` has ``time_limit=60``: the derived function has room for it (60 s +
    3 s to start + the margin), and a 50 s run near its limit succeeds under that
    timeout — the committed template's old 5 s function started nothing."""
    template = _template(tmp_path, TIMED)
    function = yaml.safe_load(template.read_text())["Resources"]["TaskFunction"]["Properties"]
    margin = safety_margin_s(function["Timeout"])
    assert function["Timeout"] == 60 + 3 + margin == 70
    assert function["Environment"]["Variables"]["SQSQ_LAMBDA_SAFETY_MARGIN_S"] == str(margin)
    result = timed.report.delay(50)
    neighbour = timed.quick.delay(7)

    with EventSourceMapping.from_template(template) as esm:
        invocations = esm.drain(until=lambda: result.state == State.SUCCESS, timeout_s=150)

    assert result.get(timeout=5) == 50
    assert neighbour.get(timeout=60) == 7
    assert not any(i.error or i.timed_out for i in invocations), invocations


def test_a_function_with_no_room_past_its_margin_refuses_and_says_so_once(
    timed: Any, tmp_path: Path
) -> None:
    """A hand-edited function whose timeout is its safety margin: every invocation is
    refused (a function error, so nothing is deleted and SQS counts the receive), and
    the reason is logged once per execution environment, not per record."""
    template = _hand_edited(_template(tmp_path, TIMED), 5, margin_s=5)
    timed.quick.delay(1)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=timed.app.queue_name("default"))["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "1"})

    with EventSourceMapping.from_template(template) as esm:
        invocations = esm.drain(until=lambda: len(esm.invocations) >= 2, timeout_s=30)

    assert len(invocations) >= 2
    assert all(i.error and i.error["errorType"] == "ConfigurationError" for i in invocations)
    assert all(i.deleted == [] for i in invocations)
    logs = [line for i in invocations for line in i.logs if "no record can start" in line]
    assert len(logs) == 1, [i.logs for i in invocations]


def test_a_task_that_can_never_fit_the_function_is_a_dead_letter_with_its_reason(
    timed: Any, tmp_path: Path
) -> None:
    """A hand-made 20 s function serving ``report`` (time_limit 60 s): its message is a
    dead letter ``does_not_fit_function`` — not returned until SQS moves it to the DLQ
    without a reason — and its neighbour runs."""
    template = _hand_edited(_template(tmp_path, TIMED), 20)
    result = timed.report.delay(1)
    neighbour = timed.quick.delay(2)

    with EventSourceMapping.from_template(template) as esm:
        invocations = esm.drain(idle_polls=2)

    assert not any(i.error for i in invocations)
    assert neighbour.get(timeout=5) == 2
    assert result.state == State.FAILURE
    assert _dlq_reasons(timed.app) == ["does_not_fit_function"]


def test_maximum_concurrency_runs_batches_in_environments_of_their_own(
    timed: Any, tmp_path: Path
) -> None:
    """BatchSize 1 and MaximumConcurrency 2 (over the 10 asked for): two batches, each
    in an execution environment of its own — two cold starts, where one environment
    would have run the second batch warm."""
    template = _template(tmp_path, TIMED, batch_size=1, maximum_concurrency=2)
    results = [timed.sleepy.delay(2, f"c{n}") for n in range(2)]
    effects = tmp_path / "effects"

    with EventSourceMapping.from_template(template, environ={"TIMED_EFFECTS": str(effects)}) as esm:
        assert {s.maximum_concurrency for s in esm.sources} == {2}
        invocations = esm.drain(
            until=lambda: all(r.ready() for r in results), concurrency=10, timeout_s=60
        )

    assert sorted(r.get(timeout=5) for r in results) == ["c0", "c1"]
    assert len(invocations) == 2 and all(i.cold_start for i in invocations)
    assert all(len(i.message_ids) == 1 for i in invocations)


def test_an_in_process_handler_under_the_mapping(timed: Any) -> None:
    """The fast runtime: the handler called in this process, the same rules applied —
    here a handler that returns one record to the queue: it stays, the rest go."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=timed.app.queue_name("default"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    results = [timed.quick.delay(n) for n in range(3)]
    kept: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = timed.app.lambda_handler({"Records": event["Records"][1:]}, context)
        kept.append(event["Records"][0]["messageId"])
        return {"batchItemFailures": [{"itemIdentifier": kept[-1]}, *response["batchItemFailures"]]}

    esm = EventSourceMapping(InProcess(handler), [EventSource(url, arn)], timeout_s=30)
    (invocation,) = esm.drain(idle_polls=1, until=lambda: len(esm.invocations) == 1)

    assert invocation.returned == kept and len(invocation.deleted) == 2
    assert invocation.cold_start and not invocation.error
    assert sorted(r.state for r in results).count(State.SUCCESS) == 2
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # the one it kept


def test_a_time_limit_over_lambdas_maximum_is_a_generation_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["infra", "tests.apps.too_long:app", "--target", "lambda"])
    assert result.exit_code == 2, result.output
    assert "task tests.apps.too_long.nightly has time_limit=3600 s" in result.output
    assert f"at most {MAX_TIME_LIMIT_S} s" in result.output
    assert "--worker-queue batch" in result.output
    assert "Traceback" not in result.output

    code = tmp_path / "code"  # a function's code directory: the app and its requirements
    code.mkdir()
    (code / "tests").symlink_to(ROOT / "tests")
    (code / "requirements.txt").write_text("sqsq\n")
    args = ["infra", "tests.apps.too_long:app", "--target", "lambda", "--worker-queue", "batch"]
    routed = CliRunner().invoke(cli, [*args, "--code-uri", str(code)])
    assert routed.exit_code == 0, routed.output
    doc = yaml.safe_load(routed.output)
    assert set(doc["Resources"]["TaskFunction"]["Properties"]["Events"]) == {"DefaultQueue"}
    queues = doc["Resources"]
    assert queues["BatchQueue"]["Properties"]["VisibilityTimeout"] == 30  # the app's own
    assert (
        queues["DefaultQueue"]["Properties"]["VisibilityTimeout"]
        >= 6 * (doc["Resources"]["TaskFunction"]["Properties"]["Timeout"])
    )


def test_the_committed_template_bundle_imports_and_runs_a_task_with_nothing_else(
    quickstart: Any, tmp_path: Path
) -> None:
    """What ``sam build`` packs for template.yaml — CodeUri copied, its requirements.txt
    installed into an empty directory — is the handler's requirements and the app's code
    only (no tests, docs or benchmarks of the repository; 33 MB unzipped when measured,
    botocore 21 MB of it, sqsq 0.9 MB, the app 10 kB), and runs a task in a process with only that directory and the
    standard library on its path (``python -I -S``)."""
    from examples.quickstart.app import Order, charge

    template = ROOT / "template.yaml"
    code_uri = yaml.safe_load(template.read_text())["Resources"]["TaskFunction"]["Properties"][
        "CodeUri"
    ]
    bundle = build_bundle((ROOT / code_uri).resolve(), tmp_path / "bundle")
    installed = {"bin"}  # pip --target's scripts
    for record in bundle.glob("*.dist-info/RECORD"):
        installed |= {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()}
    code = {p.name for p in bundle.iterdir()} - installed
    size_mb = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / 1e6
    assert code == {"sqsq", "examples", "requirements.txt"}, f"{code} ({size_mb:.0f} MB)"
    assert {p.name for p in (bundle / "examples").iterdir()} <= {"__init__.py", "quickstart"}
    assert size_mb < 50, f"the bundle is {size_mb:.0f} MB (33 MB when measured)"
    result = charge.delay(Order(order_id="b-1", cents=250))

    with EventSourceMapping.from_template(template, code_dir=bundle, isolated=True) as esm:
        invocations = esm.drain(until=lambda: result.state != State.PENDING, timeout_s=60)

    assert not any(i.error for i in invocations), [i.error for i in invocations]
    assert result.get(timeout=5) == {"order_id": "b-1", "charged": 250, "currency": "EUR"}
    assert invocations[0].cold_start


# --- the mapping's own rules, as AWS documents them ---------------------------------------


@pytest.mark.parametrize(
    ("response", "returned"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, None),
        ({"batchItemFailures": [{"itemIdentifer": "b"}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": "zz"}]}, None),
        ("ok", None),
    ],
)
def test_partial_batch_responses_are_read_as_lambda_reads_them(
    response: Any, returned: set[str] | None
) -> None:
    assert failed_items(response, ["a", "b", "c"]) == returned


def test_fifo_order_is_broken_when_a_record_after_a_returned_one_is_deleted() -> None:
    records = [
        {"messageId": m, "attributes": {"MessageGroupId": g}}
        for m, g in (("a1", "a"), ("b1", "b"), ("a2", "a"))
    ]
    assert fifo_violations(records, {"a1", "a2"}) == []
    assert fifo_violations(records, {"b1"}) == []
    (violation,) = fifo_violations(records, {"a1"})
    assert "a2" in violation
