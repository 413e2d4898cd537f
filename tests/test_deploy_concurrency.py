"""What ``sqsq infra`` generates for flow control: Lambda's per-source
``ScalingConfig.MaximumConcurrency`` and reserved concurrency from the settings (and
the ESM simulator honouring them), and the long-poll workers' queue priorities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import sqsq
import sqsq.cli.deploy  # registers `sqsq infra`
import sqsq.resources
from sqsq.cli import cli
from sqsq.deploy import Options, dump, render
from sqsq.testing import EventSourceMapping
from tests.apps import prio
from tests.helpers import cfn_lint

PRIO = "tests.apps.prio:app"
HANDLER = "tests.apps.prio.lambda_handler"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``prio.app`` with these settings for the test (``configured(**settings)``)."""

    def configure(**settings: Any) -> sqsq.App:
        copy = prio.app.settings.model_validate({**prio.app.settings.model_dump(), **settings})
        monkeypatch.setattr(prio.app, "settings", copy)
        return prio.app

    return configure


def _scaling(doc: dict[str, Any]) -> dict[str, int]:
    """Logical queue id → its event source's MaximumConcurrency."""
    events = doc["Resources"]["TaskFunction"]["Properties"]["Events"]
    return {
        event["Properties"]["Queue"]["Fn::GetAtt"][0]: event["Properties"]["ScalingConfig"][
            "MaximumConcurrency"
        ]
        for event in events.values()
    }


# --- Lambda -----------------------------------------------------------------------------------


def test_maximum_concurrency_per_queue_and_reserved_concurrency_from_the_settings(
    configured: Any, tmp_path: Path
) -> None:
    app = configured(
        lambda_maximum_concurrency={"high": 50, "low": 2}, lambda_reserved_concurrency=60
    )

    doc = render(app, "lambda", Options(PRIO, handler=HANDLER))

    assert _scaling(doc) == {"HighQueue": 50, "LowQueue": 2, "DefaultQueue": 10}
    assert doc["Parameters"]["ReservedConcurrency"]["Default"] == 60
    function = doc["Resources"]["TaskFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"]["Fn::If"][1] == {"Ref": "ReservedConcurrency"}
    out = tmp_path / "prio-lambda.yaml"
    out.write_text(dump(doc))
    result = cfn_lint(out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_number_for_every_queue_and_the_cli_option_over_it(configured: Any) -> None:
    app = configured(lambda_maximum_concurrency=25)

    assert set(_scaling(render(app, "lambda", Options(PRIO, handler=HANDLER))).values()) == {25}
    chosen = Options(PRIO, handler=HANDLER, maximum_concurrency=7)
    assert set(_scaling(render(app, "lambda", chosen)).values()) == {7}


def test_defaults_are_ten_and_no_reserved_concurrency() -> None:
    doc = render(prio.app, "lambda", Options(PRIO, handler=HANDLER))

    assert set(_scaling(doc).values()) == {10}
    assert doc["Parameters"]["ReservedConcurrency"]["Default"] == 0


def test_maximum_concurrency_over_the_reserved_concurrency_is_refused(configured: Any) -> None:
    app = configured(lambda_maximum_concurrency={"high": 50}, lambda_reserved_concurrency=20)

    with pytest.raises(sqsq.ConfigurationError, match="'high' is over the function's reserved"):
        render(app, "lambda", Options(PRIO, handler=HANDLER))


@pytest.mark.parametrize("value", [1, 1001, {"high": 0}])
def test_maximum_concurrency_outside_2_to_1000_names_the_aws_limit(value: Any) -> None:
    with pytest.raises(sqsq.ConfigurationError, match="Configuring maximum concurrency"):
        sqsq.App("prio-bad", lambda_maximum_concurrency=value)


def test_maximum_concurrency_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQSQ_LAMBDA_MAXIMUM_CONCURRENCY", '{"high": 40}')
    monkeypatch.setenv("SQSQ_LAMBDA_RESERVED_CONCURRENCY", "45")

    settings = sqsq.App("prio-env").settings

    assert settings.lambda_maximum_concurrency == {"high": 40}
    assert settings.lambda_reserved_concurrency == 45


def test_the_simulated_event_source_mapping_reads_each_sources_maximum(
    configured: Any, local_aws: Any
) -> None:
    app = configured(lambda_maximum_concurrency={"high": 3, "low": 2})
    sqsq.resources.apply(app)
    doc = render(app, "lambda", Options(PRIO, handler=HANDLER))

    with EventSourceMapping.from_template(doc, code_dir=ROOT) as esm:
        caps = {s.queue_url.rsplit("/", 1)[1]: s.maximum_concurrency for s in esm.sources}

    assert caps == {"prio-high": 3, "prio-low": 2, "prio-default": 10}


# --- long-poll workers ------------------------------------------------------------------------


def test_the_worker_command_carries_the_queue_priorities(configured: Any, tmp_path: Path) -> None:
    app = configured(queue_weights={"high": 5}, queue_priority="strict")

    ecs = render(app, "ecs", Options(PRIO))
    (task,) = [v for v in ecs["Resources"].values() if v["Type"] == "AWS::ECS::TaskDefinition"]
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert container["Command"][-4:] == ["-Q", "high:5,default:1,low:1", "--priority", "strict"]

    ec2 = dump(render(app, "ec2", Options(PRIO)))
    assert "--log-format json -Q high:5,default:1,low:1 --priority strict\n" in ec2
    for target, document in (("ecs", ecs), ("ec2", yaml.safe_load(ec2))):
        out = tmp_path / f"prio-{target}.yaml"
        out.write_text(dump(document))
        result = cfn_lint(out)
        assert result.returncode == 0, target + result.stdout + result.stderr


def test_without_priorities_the_worker_command_is_unchanged() -> None:
    ecs = render(prio.app, "ecs", Options(PRIO))
    (task,) = [v for v in ecs["Resources"].values() if v["Type"] == "AWS::ECS::TaskDefinition"]
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert container["Command"] == ["worker", PRIO, "--log-format", "json"]


def test_infra_cli_refuses_weights_for_a_queue_no_task_uses(configured: Any) -> None:
    configured(queue_weights={"hgih": 5})

    result = CliRunner().invoke(cli, ["infra", PRIO, "--target", "ecs"])

    assert result.exit_code == 2, result.output
    assert "Error: queue_weights names hgih" in result.output
