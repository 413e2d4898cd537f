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
from sqsq.dynamodb import result_key
from sqsq.idempotency import item_key, key_pk
from tests.faults.faultapp import lines, record_key
from tests.faults.helpers import set_queue, wait_for

APP = "tests.faults.faultapp:app"
N = 500
HOLD_FROM = 250

pytestmark = pytest.mark.slow


def _items(app: Any, keys: list[Any]) -> list[Any]:
    """The items at ``keys`` (BatchGetItem, consistent)."""
    client = app.clients.sync("dynamodb")
    found: list[Any] = []
    for i in range(0, len(keys), 100):
        request = {app.table_name: {"Keys": keys[i : i + 100], "ConsistentRead": True}}
        while request:
            response = client.batch_get_item(RequestItems=request)
            found += response["Responses"].get(app.table_name, [])
            request = response.get("UnprocessedKeys") or {}
    return found


def _completed_keys(app: Any, keys: range) -> int:
    """Keys whose run ended: the key item COMPLETED, or its owner's result item final
    (the key item points to it, see ``sqsq.idempotency``)."""
    held = _items(app, [item_key(key_pk(record_key.name, str(k))) for k in keys])
    done = sum(1 for item in held if item["status"]["S"] == "COMPLETED")
    owners = [result_key(i["task_id"]["S"]) for i in held if i["status"]["S"] == "IN_PROGRESS"]
    final = {"SUCCESS", "FAILURE"}
    return done + sum(1 for item in _items(app, owners) if item["state"]["S"] in final)


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
