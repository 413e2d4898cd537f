"""Fixtures of the fault suite: the fault app's resources on a clean endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def faults(local_aws: Any) -> Iterator[Any]:
    """The fault-suite App, its queues and table created."""
    from sqsq.resources import apply
    from tests.faults.faultapp import app

    apply(app)
    yield app
