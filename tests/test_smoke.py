"""The quick-start app end to end: boto3 producer, real worker process, results."""

from __future__ import annotations

from typing import Any

from examples.quickstart.app import Order, charge, refund
from sqsq import State


def test_charge_and_refund_round_trip(quickstart: Any, worker: Any) -> None:
    ok = charge.delay(Order(order_id="o-1", cents=500))
    bad = refund.delay("o-2")
    done = worker.run()
    assert done.returncode == 0, done.stderr
    assert ok.get(timeout=5) == {"order_id": "o-1", "charged": 500, "currency": "EUR"}
    assert bad.state is State.FAILURE
    assert bad.record is not None and bad.record.exc_type == "RuntimeError"
