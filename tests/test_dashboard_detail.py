"""A task's page over HTTP: what its result item keeps for it (sqsq/detail.py) — the
arguments of a failure (cut at 4 KB), a chain step's parent, root and next step, a
chord member's chord, members and callback, an idempotent task's key and its state —
after real worker processes ran them; and ``result_arguments="never"`` keeps none."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sqsq
from sqsq.detail import MAX_ARGUMENTS_BYTES
from sqsq.resources import apply
from tests.apps.dash import add, app, boom, charge
from tests.dashboard_helpers import served
from tests.test_dashboard import DASH, WAIT_S, get

pytestmark = pytest.mark.slow


@pytest.fixture
def base(local_aws: Any) -> Iterator[str]:
    """The dash app's resources, and its dashboard's URL."""
    apply(app)
    with served([app]) as url:
        yield url


def _run_until(worker: Any, ready: Callable[[], bool], what: str) -> None:
    """Burst workers until ``ready()`` (workflow steps are sent as their parent settles)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = worker.run(DASH)
        assert result.returncode == 0, result.stderr[-2000:]
        if ready():
            return
        assert time.monotonic() < deadline, f"never: {what}"


def _page(base: str, task_id: str) -> str:
    status, body, _ = get(f"{base}/apps/dash/tasks/{task_id}")
    assert status == 200, body[-2000:]
    return body


def _dd(body: str, element: str) -> str:
    """The text of the ``<dd id=element>`` (or ``<pre>``) of a page, unescaped."""
    found = re.search(rf'id="{element}">(.*?)</(dd|pre)>', body, re.S)
    assert found, f"no #{element} on the page"
    return html.unescape(found.group(1))


def _links(fragment: str) -> list[str]:
    return re.findall(r'class="task-link" href="/apps/dash/tasks/([^"]+)"', fragment)


def test_a_failed_task_shows_its_arguments_and_a_success_keeps_none(base: str, worker: Any) -> None:
    failed = boom.delay("card declined")
    big = boom.delay("x" * (2 * MAX_ARGUMENTS_BYTES))
    ok = add.delay(2, 3)
    _run_until(worker, lambda: app.AsyncResult(big.id).ready(), "the failures stored")
    body = _page(base, failed.id)
    assert _dd(body, "arguments") == '{"args":["card declined"],"kwargs":{}}'
    assert 'id="arguments-cut"' not in body
    cut = _page(base, big.id)
    assert len(_dd(cut, "arguments")) == MAX_ARGUMENTS_BYTES and 'id="arguments-cut"' in cut
    assert 'id="arguments"' not in _page(base, ok.id)  # "listed": not kept for successes


def test_a_failed_chain_step_links_its_parent_root_and_next_step(base: str, worker: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    first, failing, last = f"first-{suffix}", f"failing-{suffix}", f"last-{suffix}"
    sqsq.chain(
        add.s(1, 2).set(task_id=first),
        boom.si("step 2").set(task_id=failing),
        add.si(0, 0).set(task_id=last),
    ).delay()
    _run_until(worker, lambda: app.AsyncResult(failing).ready(), "the chain's failing step")
    body = _page(base, failing)
    assert 'id="state">FAILURE' in body
    assert _links(_dd(body, "parent")) == [first]
    assert _dd(body, "root") == "the parent"  # the chain's first step is both
    assert _links(_dd(body, "next")) == [last]
    assert _dd(body, "arguments") == '{"args":["step 2"],"kwargs":{}}'
    # the step that never ran is marked (ChainError) and its page still opens
    assert 'id="state">FAILURE' in _page(base, last)


def test_a_chord_member_links_its_chord_members_and_callback(base: str, worker: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    good, bad, callback = f"good-{suffix}", f"bad-{suffix}", f"callback-{suffix}"
    sqsq.chord(
        [add.s(1, 1).set(task_id=good), boom.si("member").set(task_id=bad)],
        add.si(5, 5).set(task_id=callback),
    ).delay()
    _run_until(worker, lambda: app.AsyncResult(callback).ready(), "the chord's callback marked")
    body = _page(base, bad)
    assert re.match(r"member 1 of chord \S+", _dd(body, "chord"))
    assert _links(_dd(body, "chord-callback")) == [callback]
    assert _links(_dd(body, "chord-members")) == [good]  # itself is not a link
    assert bad in _dd(body, "chord-members")
    assert "2 of 2 members counted" in _dd(body, "chord-progress")
    assert _links(_dd(body, "chord-progress")) == [bad]  # failed by this member


def test_an_idempotent_task_shows_its_key_and_state(base: str, worker: Any) -> None:
    first = charge.delay("o-7", 500)
    _run_until(worker, lambda: app.AsyncResult(first.id).ready(), "the first charge")
    again = charge.delay("o-7", 500)
    _run_until(worker, lambda: app.AsyncResult(again.id).ready(), "the duplicate")
    body = _page(base, first.id)
    assert _dd(body, "key-pk") == "idem#tests.apps.dash.charge#o-7"
    assert _dd(body, "key-status") == "COMPLETED"  # by its owner's result: this task
    assert _dd(body, "key-owner") == "this task"
    duplicate = _page(base, again.id)
    assert _dd(duplicate, "key-status") == "COMPLETED"
    assert _links(_dd(duplicate, "key-owner")) == [first.id]


def test_result_arguments_never_keeps_none(local_aws: Any, worker: Any) -> None:
    apply(app)
    failed = boom.delay("secret")
    result = worker.run(DASH, SQSQ_RESULT_ARGUMENTS="never")
    assert result.returncode == 0, result.stderr[-2000:]
    record = app.AsyncResult(failed.id)
    assert record.state is sqsq.State.FAILURE
    with served([app]) as url:
        assert 'id="arguments"' not in _page(url, failed.id)
