"""Fault 1: idempotent tasks survive a SIGKILLed worker with every effect exactly once.

500 tasks each append their key to a file, guarded by ``idempotency_key="{key}"``.
Keys from 250 on wait at a gate before their effect, so when the first 250 are
done and recorded, every in-flight task is provably *before* its effect. The
worker is then SIGKILLed holding messages with IN_PROGRESS claims; a new worker
takes over the expired leases. Duplicates of finished keys, enqueued again with
new task ids, must not run at all.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sqsq import State
from sqsq.idempotency import item_key, key_pk
from tests.faults.faultapp import lines, record_key
from tests.faults.helpers import set_queue, wait_for

APP = "tests.faults.faultapp:app"
N = 500
HOLD_FROM = 250

pytestmark = pytest.mark.slow


def _completed_keys(app: Any, keys: range) -> int:
    client = app.clients.sync("dynamodb")
    done = 0
    pks = [key_pk(record_key.name, str(k)) for k in keys]
    for i in range(0, len(pks), 100):
        request = {
            app.table_name: {
                "Keys": [item_key(pk) for pk in pks[i : i + 100]],
                "ConsistentRead": True,
            }
        }
        while request:
            response = client.batch_get_item(RequestItems=request)
            done += sum(
                1
                for item in response["Responses"].get(app.table_name, [])
                if item["status"]["S"] == "COMPLETED"
            )
            request = response.get("UnprocessedKeys") or {}
    return done


def test_every_key_exactly_once_after_sigkill(faults: Any, worker: Any, tmp_path: Path) -> None:
    set_queue(faults, "keys", VisibilityTimeout="3")
    out, gate = tmp_path / "keys.txt", tmp_path / "gate"
    gate.touch()
    results = record_key.delay_many((k, str(out), str(gate), HOLD_FROM) for k in range(N))

    first = worker.start(APP, "-Q", "keys", "-c", "10")
    wait_for(lambda: len(lines(str(out))) >= HOLD_FROM, 120, f"{HOLD_FROM} keys written")
    wait_for(
        lambda: _completed_keys(faults, range(HOLD_FROM)) == HOLD_FROM,
        60,
        "the first keys' COMPLETED records",
    )
    assert len(lines(str(out))) == HOLD_FROM  # the rest wait at the gate, before their effect
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL

    gate.unlink()
    duplicates = record_key.delay_many((k, str(out), str(gate), HOLD_FROM) for k in range(50))
    second = worker.start(APP, "-Q", "keys", "-c", "10")
    for result in results + duplicates:
        assert result.get(timeout=120) in range(N)
    second.send_signal(signal.SIGTERM)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr

    written = Counter(int(line) for line in lines(str(out)))
    assert sorted(written) == list(range(N))
    assert set(written.values()) == {1}, [k for k, n in written.items() if n > 1]
    assert all(r.state is State.SUCCESS for r in results)
    for key, result in enumerate(duplicates):
        record = result.record
        assert record is not None and record.value == key
        assert record.extra.get("duplicate_of") == results[key].id
