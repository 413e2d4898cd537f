"""The hand-kept ECS document agrees with the worker's shutdown timing."""

from __future__ import annotations

import re
from pathlib import Path

from sqsq.settings import Settings
from sqsq.worker import SHUTDOWN_MARGIN_S

ROOT = Path(__file__).resolve().parents[1]


def test_ecs_stop_timeout_covers_the_grace_and_its_margin() -> None:
    text = (ROOT / "infra" / "worker-ecs.yaml").read_text()
    stop_timeout = int(re.search(r"StopTimeout:\s*(\d+)", text).group(1))  # type: ignore[union-attr]
    graces = {float(g) for g in re.findall(r'--grace,\s*"(\d+(?:\.\d+)?)"', text)}
    assert graces, "the worker command names its --grace"
    default_grace = Settings.model_fields["shutdown_grace_s"].default
    for grace in graces | {default_grace}:
        assert stop_timeout >= grace + SHUTDOWN_MARGIN_S
    assert stop_timeout <= 120  # Fargate's largest stopTimeout
