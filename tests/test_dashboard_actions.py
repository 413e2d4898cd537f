"""The dashboard's actions (sqsq/dashboard/actions.py) over HTTP: refused by a
read-only dashboard (403, no button); with ``--allow-actions`` a user is needed on
every page (HTTP basic or a trusted identity header) and the user's CSRF token on
every POST; a replay by filter counts first (dry run), then moves the failures back
and a real worker turns them into SUCCESS; retry one, revoke one, redrive a DLQ by
filter; one audit item per action."""

from __future__ import annotations

import base64
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import sqsq
from sqsq import State
from sqsq.dashboard import actions
from sqsq.resources import apply
from tests.apps.dash import PASSWORD, add, app, fragile
from tests.dashboard_helpers import served

DASH = "tests.apps.dash:app"
OPS = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()


def call(
    url: str, data: dict[str, str] | None = None, auth: str | None = OPS, **headers: str
) -> tuple[int, str]:
    """``(status, body)`` of a GET (or a form POST when ``data`` is given)."""
    request = urllib.request.Request(
        url,
        data=urlencode(data).encode() if data is not None else None,
        headers={**({"Authorization": auth} if auth else {}), **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _csrf(body: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', body)
    assert found, "no action form on the page"
    return found.group(1)


@contextmanager
def _failed(worker: Any, tmp_path: Path, count: int) -> Iterator[tuple[list[str], Path]]:
    """``count`` fragile tasks run by a real worker and failed (their file missing):
    their ids and the file that fixes them."""
    fix = tmp_path / "fixed"
    ids = [fragile.delay(str(fix)).id for _ in range(count)]
    assert worker.run(DASH).returncode == 0
    assert {app.AsyncResult(i).state for i in ids} == {State.FAILURE}
    yield ids, fix


@pytest.fixture
def dash(local_aws: Any) -> sqsq.App:
    apply(app)
    return app


@pytest.mark.slow
def test_a_read_only_dashboard_refuses_actions_and_shows_no_button(
    dash: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    with _failed(worker, tmp_path, 1) as (ids, _), served([dash]) as base:
        status, page = call(f"{base}/apps/dash/tasks/{ids[0]}", auth=None)
        assert status == 200 and "FileNotFoundError" in page
        assert 'name="csrf"' not in page and 'id="retry"' not in page
        status, body = call(f"{base}/apps/dash/actions/retry", {"task_id": ids[0]})
        assert status == 403 and "--allow-actions" in body
        assert 'id="replay"' not in call(f"{base}/apps/dash/tasks", auth=None)[1]
    assert actions.audit_log(dash) == []
    assert app.AsyncResult(ids[0]).state is State.FAILURE


def test_actions_need_a_user_on_every_page_and_a_csrf_token_on_every_post(
    dash: sqsq.App,
) -> None:
    with served([dash], allow_actions=True) as base:
        assert call(f"{base}/apps/dash/", auth=None)[0] == 401
        wrong = "Basic " + base64.b64encode(b"ops:wrong").decode()
        assert call(f"{base}/apps/dash/", auth=wrong)[0] == 401
        status, page = call(f"{base}/apps/dash/dead-letters")
        assert status == 200 and 'id="user">ops<' in page
        status, body = call(f"{base}/apps/dash/actions/revoke", {"task_id": "t-1"})
        assert status == 403 and "CSRF" in body
        forged = actions.csrf_token(b"another secret", "dash", "ops")
        status, _ = call(f"{base}/apps/dash/actions/revoke", {"task_id": "t-1", "csrf": forged})
        assert status == 403
    assert actions.audit_log(dash) == []


def test_allow_actions_without_any_user_is_refused(local_aws: Any) -> None:
    from sqsq.dashboard import create_app

    with pytest.raises(sqsq.ConfigurationError, match="dashboard_users"):
        create_app([sqsq.App("nobody")], allow_actions=True)


def test_a_trusted_identity_header_names_the_user(local_aws: Any) -> None:
    proxied = sqsq.App("dash", listing_index=True, dashboard_identity_header="X-Amzn-Oidc-Identity")
    apply(proxied)
    with served([proxied], allow_actions=True) as base:
        assert call(f"{base}/apps/dash/", auth=None)[0] == 401
        status, page = call(f"{base}/apps/dash/", auth=None, **{"X-Amzn-Oidc-Identity": "ana"})
        assert status == 200 and 'id="user">ana<' in page


@pytest.mark.slow
def test_replay_by_filter_counts_first_then_the_failures_succeed(
    dash: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    with _failed(worker, tmp_path, 3) as (ids, fix):
        other = add.delay(1, 2)  # a success: never listed, never replayed
        assert worker.run(DASH).returncode == 0
        fix.write_text("")
        with served([dash], allow_actions=True) as base:
            query = {"task": fragile.name, "error": "FileNotFoundError", "since": "1h"}
            status, dry = call(f"{base}/apps/dash/replay?{urlencode(query)}")
            assert status == 200, dry
            assert re.search(r'id="count">3<', dry)
            assert all(app.AsyncResult(i).state is State.FAILURE for i in ids)  # nothing moved
            status, done = call(f"{base}/apps/dash/actions/replay", {**query, "csrf": _csrf(dry)})
            assert status == 200 and 'id="affected">3<' in done
        assert worker.run(DASH).returncode == 0
        assert {app.AsyncResult(i).state for i in ids} == {State.SUCCESS}
        assert app.AsyncResult(other.id).state is State.SUCCESS
    (row,) = actions.audit_log(dash)
    assert (row.who, row.action, row.count) == ("ops", "replay", 3)
    assert row.detail["task"] == fragile.name and row.detail["tasks"] == 3


@pytest.mark.slow
def test_retry_one_revoke_one_and_redrive_by_filter(
    dash: sqsq.App, worker: Any, tmp_path: Path
) -> None:
    with _failed(worker, tmp_path, 3) as (ids, fix):
        fix.write_text("")
        pending = add.delay(2, 2)  # not run yet: revoked below
        with served([dash], allow_actions=True) as base:
            status, page = call(f"{base}/apps/dash/tasks/{ids[0]}")
            assert status == 200 and 'id="retry"' in page
            status, done = call(
                f"{base}/apps/dash/actions/retry", {"task_id": ids[0], "csrf": _csrf(page)}
            )
            assert status == 200 and 'id="affected">1<' in done
            token = _csrf(page)
            status, done = call(
                f"{base}/apps/dash/actions/revoke", {"task_id": pending.id, "csrf": token}
            )
            assert status == 200
            assert worker.run(DASH).returncode == 0
            assert app.AsyncResult(ids[0]).state is State.SUCCESS
            assert {app.AsyncResult(i).state for i in ids[1:]} == {State.FAILURE}
            assert app.AsyncResult(pending.id).state is State.REVOKED
            status, done = call(
                f"{base}/apps/dash/actions/redrive",
                {"queue": "default", "task": fragile.name, "error": "", "csrf": token},
            )
            assert status == 200 and 'id="affected">2<' in done
        assert worker.run(DASH).returncode == 0
        assert {app.AsyncResult(i).state for i in ids} == {State.SUCCESS}
    log = actions.audit_log(dash)
    assert [(r.action, r.count) for r in log] == [("redrive", 2), ("revoke", 1), ("retry", 1)]
