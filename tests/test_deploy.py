"""``sqsq infra``: the generated documents come from the app's declarations — the same
description ``sqsq resources create`` and ``sqsq schedule sync`` use — and the
committed ones (template.yaml, infra/) are what the generator makes today."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

import sqsq
import sqsq.cli.commands
import sqsq.cli.deploy
import sqsq.deploy.bundle
from sqsq.cli import cli
from sqsq.deploy import TARGETS, Options, render
from sqsq.resources import apply, describe
from sqsq.schedules import scheduler
from sqsq.worker import SHUTDOWN_MARGIN_S

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = "examples.quickstart.app:app"
SHOP = "tests.apps.deployed:app"
#: The committed output of each target for the example app.
GENERATED = {
    "lambda": ROOT / "template.yaml",
    "ecs": ROOT / "infra" / "worker-ecs.yaml",
    "ec2": ROOT / "infra" / "worker-ec2.yaml",
}


def _app(path: str) -> sqsq.App:
    return sqsq.load_app(path)


def _doc(path: str, target: str, **options: Any) -> dict[str, Any]:
    return render(_app(path), target, Options(path, **options))  # type: ignore[arg-type]


def _of_type(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc["Resources"].items() if v["Type"] == kind}


@pytest.mark.parametrize("target", TARGETS)
def test_committed_documents_are_what_the_generator_makes(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drift check: regenerate with the CLI and compare byte for byte (from the
    repository's root, where template.yaml is: its CodeUri is relative to it)."""
    monkeypatch.chdir(ROOT)
    # the function's code is infra/lambda (the app and sqsq, linked), not the repository
    code = ["--code-uri", "infra/lambda"] if target == "lambda" else []
    result = CliRunner().invoke(cli, ["infra", QUICKSTART, "--target", target, *code])
    assert result.exit_code == 0, result.output
    committed = GENERATED[target].read_text()
    assert result.output == committed, (
        f"{GENERATED[target].relative_to(ROOT)} differs from `sqsq infra {QUICKSTART} "
        f"--target {target}`: regenerate it (README, Deploy)"
    )


def _as_sqs_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.parametrize("path", [QUICKSTART, SHOP])
@pytest.mark.parametrize("target", TARGETS)
def test_queue_properties_are_the_attributes_resources_create_sets(path: str, target: str) -> None:
    doc = _doc(path, target)
    queues = _of_type(doc, "AWS::SQS::Queue")
    specs = describe(_app(path)).queues
    assert len(queues) == len(specs)
    by_name = {q["Properties"]["QueueName"]: q["Properties"] for q in queues.values()}
    for spec in specs:
        properties = dict(by_name[spec.name])
        want = spec.attributes(lambda name: name)
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in want:
                policy = properties.pop(key)
                expected = json.loads(want.pop(key))
                if key == "RedrivePolicy":
                    target_id = policy["deadLetterTargetArn"]["Fn::GetAtt"][0]
                    dlq = doc["Resources"][target_id]["Properties"]["QueueName"]
                    assert dlq == expected["deadLetterTargetArn"] == spec.partner
                    assert policy["maxReceiveCount"] == expected["maxReceiveCount"]
                else:
                    assert policy["redrivePermission"] == "byQueue"
                    (arn,) = policy["sourceQueueArns"]
                    assert arn["Fn::Sub"].endswith(":" + spec.partner)
        properties.pop("QueueName")
        if target == "lambda" and "VisibilityTimeout" in want:
            # a queue the function consumes gets AWS's >= 6 x timeout, never less than
            # the app's (`resources create` keeps the longer one, see below)
            assert properties.pop("VisibilityTimeout") >= int(want.pop("VisibilityTimeout"))
        assert {k: _as_sqs_string(v) for k, v in properties.items()} == want, spec.name


def test_resources_create_and_the_template_agree_on_aws(local_aws: Any) -> None:
    """What `resources create` made on the endpoint has the template's values."""
    app = _app(SHOP)
    apply(app)
    doc = _doc(SHOP, "ecs")
    sqs = boto3.client("sqs", endpoint_url=local_aws.url_for("sqs"), region_name="us-east-1")
    for queue in _of_type(doc, "AWS::SQS::Queue").values():
        properties = queue["Properties"]
        url = sqs.get_queue_url(QueueName=properties["QueueName"])["QueueUrl"]
        have = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "FifoQueue"):
            if key in properties:
                assert have[key] == _as_sqs_string(properties[key]), (properties["QueueName"], key)
        if "RedrivePolicy" in properties:
            live = json.loads(have["RedrivePolicy"])
            assert int(live["maxReceiveCount"]) == properties["RedrivePolicy"]["maxReceiveCount"]
    if not local_aws.has_ttl:  # dynalite: no TTL or backup calls (resources create warns)
        return
    ddb = boto3.client(
        "dynamodb", endpoint_url=local_aws.url_for("dynamodb"), region_name="us-east-1"
    )
    table = _of_type(doc, "AWS::DynamoDB::Table")["ResultTable"]["Properties"]
    backups = ddb.describe_continuous_backups(TableName=table["TableName"])
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = ddb.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == table["TimeToLiveSpecification"]["AttributeName"]


def test_resources_create_keeps_the_longer_visibility_a_lambda_stack_gave(
    local_aws: Any,
) -> None:
    """A queue the Lambda template lengthened (6 x its timeout) is not shortened back
    to the app's visibility_timeout_s by a later `resources create`; a shorter one is
    raised to it."""
    app = _app(QUICKSTART)
    apply(app)
    sqs = boto3.client("sqs", endpoint_url=local_aws.url_for("sqs"), region_name="us-east-1")
    urls = {
        n: sqs.get_queue_url(QueueName=n)["QueueUrl"]
        for n in ("quickstart-default", "quickstart-emails")
    }
    visibility = _doc(QUICKSTART, "lambda")["Resources"]["DefaultQueue"]["Properties"][
        "VisibilityTimeout"
    ]
    sqs.set_queue_attributes(
        QueueUrl=urls["quickstart-default"], Attributes={"VisibilityTimeout": str(visibility)}
    )
    sqs.set_queue_attributes(
        QueueUrl=urls["quickstart-emails"], Attributes={"VisibilityTimeout": "7"}
    )
    apply(app)
    have = {
        name: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])[
            "Attributes"
        ]["VisibilityTimeout"]
        for name, url in urls.items()
    }
    assert have == {"quickstart-default": str(visibility), "quickstart-emails": "30"}


def test_fifo_app_redrive_counts_follow_the_retries() -> None:
    queues = {q.name: q for q in describe(_app(SHOP)).source_queues()}
    assert queues["shop-orders.fifo"].max_receive_count == 6 + 2  # place: max_retries=6
    assert queues["shop-orders.fifo"].content_based_deduplication  # a schedule sends there
    assert not queues["shop-ledger.fifo"].content_based_deduplication


def _resources_of_policies(doc: dict[str, Any]) -> list[Any]:
    found = []
    for role in _of_type(doc, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            statements = policy["PolicyDocument"]["Statement"]
            for statement in statements:
                if "Fn::If" in statement:
                    statement = statement["Fn::If"][1]
                resource = statement["Resource"]
                found += resource if isinstance(resource, list) else [resource]
    return found


@pytest.mark.parametrize("path", [QUICKSTART, SHOP])
@pytest.mark.parametrize("target", TARGETS)
def test_iam_names_exact_resources_never_a_wildcard(path: str, target: str) -> None:
    resources = _resources_of_policies(_doc(path, target))
    assert resources
    for resource in resources:
        assert isinstance(resource, dict), f"a literal resource {resource!r}"
        assert set(resource) in ({"Fn::GetAtt"}, {"Ref"}), resource


def _worker_statements(doc: dict[str, Any], target: str) -> list[dict[str, Any]]:
    role_id = {"lambda": "FunctionRole", "ecs": "TaskRole", "ec2": "InstanceRole"}[target]
    (policy,) = doc["Resources"][role_id]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


@pytest.mark.parametrize("target", TARGETS)
def test_the_task_runner_may_send_to_its_own_queues_and_dlqs(target: str) -> None:
    statements = _worker_statements(_doc(QUICKSTART, target), target)
    senders = [s for s in statements if "sqs:SendMessage" in s["Action"]]
    targets = {r["Fn::GetAtt"][0] for s in senders for r in s["Resource"]}
    assert targets == {
        "DefaultQueue",
        "EmailsQueue",
        "DefaultDeadLetterQueue",
        "EmailsDeadLetterQueue",
    }
    consumers = [s for s in statements if "sqs:ReceiveMessage" in s["Action"]]
    assert {r["Fn::GetAtt"][0] for s in consumers for r in s["Resource"]} == {
        "DefaultQueue",
        "EmailsQueue",
    }


@pytest.mark.parametrize("path", [QUICKSTART, SHOP])
def test_stop_timeouts_are_the_grace_plus_the_margin(path: str) -> None:
    grace = _app(path).settings.shutdown_grace_s
    stop = math.ceil(grace + SHUTDOWN_MARGIN_S)
    ecs = _doc(path, "ecs")
    (container,) = ecs["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["StopTimeout"] == stop
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert float(env["SQSQ_SHUTDOWN_GRACE_S"]) == grace
    ec2 = _doc(path, "ec2")
    script = ec2["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"][
        "Fn::Base64"
    ]["Fn::Sub"]
    assert f"TimeoutStopSec={stop}\n" in script
    assert f"Environment=SQSQ_SHUTDOWN_GRACE_S={grace:g}\n" in script
    for line in ("Restart=always\n", "KillSignal=SIGTERM\n"):
        assert line in script


@pytest.mark.parametrize("path", [QUICKSTART, SHOP])
def test_lambda_visibility_is_at_least_six_timeouts_plus_the_window(path: str) -> None:
    doc = _doc(path, "lambda", batching_window_s=2)
    function = doc["Resources"]["TaskFunction"]["Properties"]
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == path.partition(":")[0] + ".lambda_handler"
    queues = _of_type(doc, "AWS::SQS::Queue")
    sources = {k: v for k, v in queues.items() if "RedrivePolicy" in v["Properties"]}
    assert set(function["Events"]) == set(sources)
    for queue_id, event in function["Events"].items():
        properties = event["Properties"]
        assert properties["Queue"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert properties["ScalingConfig"]["MaximumConcurrency"] == 10
        fifo = queues[queue_id]["Properties"].get("FifoQueue", False)
        window = properties.get("MaximumBatchingWindowInSeconds", 0)
        assert ("MaximumBatchingWindowInSeconds" in properties) is not fifo
        visibility = queues[queue_id]["Properties"]["VisibilityTimeout"]
        assert visibility >= 6 * function["Timeout"] + window
    # no task of SHOP has a time_limit: 30 s budget + 3 s to start + a 4 s margin
    assert _doc(SHOP, "lambda")["Resources"]["TaskFunction"]["Properties"]["Timeout"] == 37


def test_a_longer_lambda_timeout_raises_the_queues_visibility_timeout() -> None:
    """The queues follow AWS's rule for the timeout asked for (they used to refuse it)."""
    doc = _doc(QUICKSTART, "lambda", function_timeout_s=120, batching_window_s=5)
    function = doc["Resources"]["TaskFunction"]["Properties"]
    assert function["Timeout"] == 120
    assert function["Environment"]["Variables"]["SQSQ_LAMBDA_SAFETY_MARGIN_S"] == "12"
    for queue_id in function["Events"]:
        assert doc["Resources"][queue_id]["Properties"]["VisibilityTimeout"] == 6 * 120 + 5
    dead_letters = _of_type(doc, "AWS::SQS::Queue")["DefaultDeadLetterQueue"]["Properties"]
    assert "VisibilityTimeout" not in dead_letters


def test_a_lambda_timeout_too_short_for_any_task_is_a_clear_error() -> None:
    result = CliRunner().invoke(
        cli, ["infra", QUICKSTART, "--target", "lambda", "--function-timeout", "4"]
    )
    assert result.exit_code == 2
    assert "Error: a 4 s function leaves no time to run a task" in result.output
    assert "--function-timeout 6" in result.output
    assert "Traceback" not in result.output


def test_the_code_uri_is_the_apps_directory_relative_to_the_template(tmp_path: Path) -> None:
    """By default CodeUri is where the app is imported from, relative to --out; this
    repository's root holds no requirements.txt (its function's code is infra/lambda),
    so there the default is refused, naming --code-uri."""
    out = tmp_path / "deep" / "infra" / "lambda.yaml"
    out.parent.mkdir(parents=True)
    default = sqsq.deploy.bundle.code_uri(QUICKSTART, out)
    assert (out.parent / default).resolve() == ROOT
    assert (out.parent / default / "examples" / "quickstart" / "app.py").is_file()
    args = ["infra", QUICKSTART, "--target", "lambda", "--out", str(out)]
    refused = CliRunner().invoke(cli, [*args, "--runtime", "python3.12"])
    assert refused.exit_code == 2 and "--code-uri" in refused.output, refused.output

    code = ROOT / "infra" / "lambda"
    result = CliRunner().invoke(
        cli, [*args, "--runtime", "python3.12", "--code-uri", os.path.relpath(code, out.parent)]
    )
    assert result.exit_code == 0, result.output
    function = yaml.safe_load(out.read_text())["Resources"]["TaskFunction"]["Properties"]
    assert (out.parent / function["CodeUri"]).resolve() == code
    assert function["Runtime"] == "python3.12" and function["Architectures"] == ["arm64"]


def test_a_bundle_whose_requirements_lack_what_the_handler_imports_is_refused(
    tmp_path: Path,
) -> None:
    """CodeUri given by hand: a directory without the app's module, then one without
    requirements.txt, then one whose requirements.txt does not name sqsq (the handler
    would not import on AWS)."""
    out = tmp_path / "lambda.yaml"
    args = ["infra", QUICKSTART, "--target", "lambda", "--out", str(out), "--code-uri", "app"]
    (tmp_path / "app").mkdir()
    no_module = CliRunner().invoke(cli, args)
    assert no_module.exit_code == 2, no_module.output
    assert "does not hold examples.quickstart.app (examples/quickstart/app.py)" in no_module.output
    (tmp_path / "app" / "examples").symlink_to(ROOT / "examples")
    missing = CliRunner().invoke(cli, args)
    assert missing.exit_code == 2 and "requirements.txt does not exist" in missing.output
    (tmp_path / "app" / "requirements.txt").write_text("boto3\n# sqsq\n")
    lacking = CliRunner().invoke(cli, args)
    assert lacking.exit_code == 2 and "lacks sqsq" in lacking.output, lacking.output
    (tmp_path / "app" / "requirements.txt").write_text("boto3\nsqsq[worker]>=0.1\n")
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert "Traceback" not in no_module.output + missing.output + lacking.output


def test_schedules_are_those_schedule_sync_makes() -> None:
    app = _app(SHOP)
    doc = _doc(SHOP, "ecs")
    schedules = _of_type(doc, "AWS::Scheduler::Schedule")
    assert {s["Properties"]["Name"] for s in schedules.values()} == set(app.periodic_tasks)
    (group,) = _of_type(doc, "AWS::Scheduler::ScheduleGroup").values()
    assert group["Properties"]["Name"] == scheduler.group_name(app)
    role = doc["Resources"]["SchedulerRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"] == scheduler.trust_policy()
    for schedule in schedules.values():
        properties = schedule["Properties"]
        periodic = app.periodic_tasks[properties["Name"]]
        target = properties["Target"]
        assert json.loads(target["Input"]) == json.loads(scheduler.input_template(periodic))
        assert target["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
        assert properties["ScheduleExpression"] == periodic.expression.text
        queue_id = target["Arn"]["Fn::GetAtt"][0]
        queue = doc["Resources"][queue_id]["Properties"]
        assert queue["QueueName"] == app.queue_name(periodic.queue)
        if queue.get("FifoQueue"):
            assert target["SqsParameters"] == {"MessageGroupId": scheduler.FIFO_GROUP}
            assert "DeadLetterConfig" not in target
        else:
            dlq_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
            assert doc["Resources"][dlq_id]["Properties"]["QueueName"].endswith("-dlq")


@pytest.mark.parametrize("target", TARGETS)
def test_one_alarm_per_dead_letter_queue_and_outputs_for_producers(target: str) -> None:
    doc = _doc(SHOP, target)
    alarms = {  # the others: tests/test_deploy_alarms.py
        k: v
        for k, v in _of_type(doc, "AWS::CloudWatch::Alarm").items()
        if v["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    dlqs = [
        k
        for k, v in _of_type(doc, "AWS::SQS::Queue").items()
        if "RedriveAllowPolicy" in v["Properties"]
    ]
    assert sorted(
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for a in alarms.values()
    ) == sorted(dlqs)
    for queue_id in _of_type(doc, "AWS::SQS::Queue"):
        assert doc["Outputs"][queue_id + "Url"]["Value"] == {"Ref": queue_id}
    assert doc["Outputs"]["ResultTableName"]["Value"] == {"Ref": "ResultTable"}
    for resource in [
        *_of_type(doc, "AWS::SQS::Queue").values(),
        *_of_type(doc, "AWS::DynamoDB::Table").values(),
    ]:
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


def test_omit_leaves_out_a_type_and_what_refers_to_it() -> None:
    doc = _doc(SHOP, "ecs", omit=frozenset({"AWS::Scheduler::ScheduleGroup"}))
    assert not _of_type(doc, "AWS::Scheduler::ScheduleGroup")
    assert not _of_type(doc, "AWS::Scheduler::Schedule")  # they name the group
    assert _of_type(doc, "AWS::SQS::Queue")
    assert yaml.safe_load(sqsq.deploy.dump(doc)) == doc


def test_queues_that_would_share_a_logical_id_are_refused() -> None:
    app = sqsq.App("clash")

    @app.task(queue="a-b")
    def one() -> None: ...

    @app.task(queue="a_b")
    def two() -> None: ...

    with pytest.raises(sqsq.errors.ConfigurationError, match="share the CloudFormation id AB"):
        render(app, "ecs", Options("clash:app"))


@pytest.mark.parametrize("target", TARGETS)
def test_long_countdowns_add_the_eta_group_and_only_its_schedules(target: str) -> None:
    from sqsq.schedules import eta

    app = _app(QUICKSTART)
    plain = _doc(QUICKSTART, target)
    doc = _doc(QUICKSTART, target, long_countdowns=True)
    groups = {
        g["Properties"]["Name"] for g in _of_type(doc, "AWS::Scheduler::ScheduleGroup").values()
    }
    assert groups == {scheduler.group_name(app), eta.group_name(app)}
    assert eta.group_name(app) not in json.dumps(plain)
    role_id = {"lambda": "FunctionRole", "ecs": "TaskRole", "ec2": "InstanceRole"}[target]
    statements = doc["Resources"][role_id]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    by_sid = {s["Sid"]: s for s in statements}
    arn = by_sid["LongCountdowns"]["Resource"]["Fn::Sub"]
    assert arn.endswith(f":schedule/{eta.group_name(app)}/*")
    assert by_sid["PassSchedulerRole"]["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    # every other statement still names exact resources
    others = [s for s in statements if s["Sid"] != "LongCountdowns"]
    for statement in others:
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        assert all(set(r) in ({"Fn::GetAtt"}, {"Ref"}) for r in resources)


def _signed_app(spec: str) -> Any:
    app = sqsq.App("signed", signing_key=spec)

    @app.task
    def ping() -> str:
        return "pong"

    return app


def _worker_environment(doc: dict[str, Any], target: str) -> dict[str, str]:
    resources = doc["Resources"]
    if target == "lambda":
        variables: dict[str, str] = resources["TaskFunction"]["Properties"]["Environment"][
            "Variables"
        ]
        return variables
    if target == "ecs":
        (container,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        return {e["Name"]: e["Value"] for e in container["Environment"]}
    script = resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"][
        "Fn::Base64"
    ]["Fn::Sub"]
    pairs = [line.removeprefix("Environment=") for line in script.splitlines()]
    return dict(p.split("=", 1) for p in pairs if p.startswith("SQSQ_"))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("spec", "action", "arn"),
    [
        (
            "secretsmanager:sqsq/signing",
            "secretsmanager:GetSecretValue",
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
            "sqsq/signing-??????",
        ),
        (
            "ssm:/sqsq/signing",
            "ssm:GetParameter",
            "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/sqsq/signing",
        ),
    ],
)
def test_a_signing_key_kept_in_a_secret_is_passed_on_and_readable(
    target: str, spec: str, action: str, arn: str
) -> None:
    doc = render(_signed_app(spec), target, Options("signed:app", handler="signed.handler"))  # type: ignore[arg-type]
    assert _worker_environment(doc, target)["SQSQ_SIGNING_KEY"] == spec
    (statement,) = [s for s in _worker_statements(doc, target) if s.get("Sid") == "SigningKey"]
    assert statement == {
        "Sid": "SigningKey",
        "Effect": "Allow",
        "Action": action,
        "Resource": {"Fn::Sub": arn},
    }


@pytest.mark.parametrize("target", TARGETS)
def test_a_literal_signing_key_is_never_written_into_a_template(target: str) -> None:
    doc = render(
        _signed_app("s3cret-literal"), target, Options("signed:app", handler="signed.handler")
    )  # type: ignore[arg-type]
    assert "s3cret-literal" not in json.dumps(doc)
    assert not [s for s in _worker_statements(doc, target) if s.get("Sid") == "SigningKey"]


def test_cfn_lint_passes_the_signing_key_statements(tmp_path: Path) -> None:
    from sqsq.deploy import dump
    from tests.helpers import cfn_lint

    files = []
    for spec in ("secretsmanager:sqsq/signing", "ssm:/sqsq/signing"):
        for target in TARGETS:
            doc = render(_signed_app(spec), target, Options("signed:app", handler="signed.handler"))
            out = tmp_path / f"signed-{spec.partition(':')[0]}-{target}.yaml"
            out.write_text(dump(doc))
            files.append(out)
    result = cfn_lint(*files)
    assert result.returncode == 0, result.stdout + result.stderr
