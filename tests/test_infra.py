"""The generated ECS document (``sqsq infra --target ecs``) agrees with the worker's
shutdown timing: the container gets its grace as ``SQSQ_SHUTDOWN_GRACE_S`` and a
StopTimeout that covers it plus the margin (tests/test_deploy.py checks the same for
any app and for the systemd unit)."""

from __future__ import annotations

from pathlib import Path

import yaml

from sqsq.settings import Settings
from sqsq.worker import SHUTDOWN_MARGIN_S

ROOT = Path(__file__).resolve().parents[1]


def test_ecs_stop_timeout_covers_the_grace_and_its_margin() -> None:
    document = yaml.safe_load((ROOT / "infra" / "worker-ecs.yaml").read_text())
    (container,) = document["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    stop_timeout = container["StopTimeout"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    grace = float(env["SQSQ_SHUTDOWN_GRACE_S"])
    assert "--grace" not in container["Command"]  # one value: the environment's
    assert grace == Settings.model_fields["shutdown_grace_s"].default
    assert stop_timeout >= grace + SHUTDOWN_MARGIN_S
    assert stop_timeout <= 120  # Fargate's largest stopTimeout
