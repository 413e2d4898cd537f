"""The generated documents pass cfn-lint with its informational checks on (nothing
disabled), and the SAM template transforms with aws-sam-translator after the
CodeUri step of ``sam package``. Needs the ``test`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cfnlint  # noqa: F401  (the test extra: a missing one fails, never skips)
import pytest
import samtranslator  # noqa: F401
import yaml

from sqsq.deploy import TARGETS, Options, dump, render
from tests.helpers import cfn_lint

APPS = ["examples.quickstart.app:app", "tests.apps.deployed:app"]


def _write(tmp_path: Path, path: str, target: str, **options: Any) -> Path:
    import sqsq

    document = render(sqsq.load_app(path), target, Options(path, **options))  # type: ignore[arg-type]
    suffix = "-long" if options else ""
    out = tmp_path / f"{path.partition(':')[0].replace('.', '-')}-{target}{suffix}.yaml"
    out.write_text(dump(document))
    return out


def test_cfn_lint_passes_every_generated_document(tmp_path: Path) -> None:
    files = [_write(tmp_path, path, target) for path in APPS for target in TARGETS]
    files += [
        _write(tmp_path, APPS[1], target, long_countdowns=True, step_functions=True)
        for target in TARGETS
    ]
    result = cfn_lint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_fails_a_broken_document(tmp_path: Path) -> None:
    """The check can fail: a wildcard, a queue without Retain, a bad property."""
    file = _write(tmp_path, APPS[0], "ecs")
    document = yaml.safe_load(file.read_text())
    del document["Resources"]["DefaultQueue"]["DeletionPolicy"]
    document["Resources"]["DefaultQueue"]["Properties"]["VisibilityTimeout"] = 50_000
    file.write_text(dump(document))
    result = cfn_lint(file)
    assert result.returncode != 0
    assert "I3011" in result.stdout and "E3034" in result.stdout, result.stdout


class _NoManagedPolicies:
    """The IAM lookup the translator makes for managed policy names; the generated
    function has its own role, so nothing is looked up."""

    def load(self) -> dict[str, str]:
        raise AssertionError("the SAM template should not need managed policies")


@pytest.mark.parametrize("path", APPS)
def test_sam_template_transforms_to_cloudformation(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # the translator's pseudo parameters

    document = yaml.safe_load(_write(tmp_path, path, "lambda").read_text())
    # What `sam package` does: upload CodeUri and point at the S3 object.
    function = document["Resources"]["TaskFunction"]["Properties"]
    assert function["CodeUri"] == "."
    function["CodeUri"] = "s3://sqsq-artifacts/quickstart/0123456789abcdef.zip"
    output: dict[str, Any] = transform(document, {}, _NoManagedPolicies())  # type: ignore[arg-type]
    resources = output["Resources"]
    mappings = {
        k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    sources = [
        k
        for k, v in document["Resources"].items()
        if v["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in v["Properties"]
    ]
    assert len(mappings) == len(sources)
    for mapping in mappings.values():
        properties = mapping["Properties"]
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert properties["ScalingConfig"] == {"MaximumConcurrency": 10}
    (function_out,) = [v for v in resources.values() if v["Type"] == "AWS::Lambda::Function"]
    assert function_out["Properties"]["Code"] == {
        "S3Bucket": "sqsq-artifacts",
        "S3Key": "quickstart/0123456789abcdef.zip",
    }
    # and the transformed document passes cfn-lint too
    out = tmp_path / "transformed.yaml"
    out.write_text(dump(output))
    result = cfn_lint(out)
    assert result.returncode == 0, result.stdout + result.stderr
