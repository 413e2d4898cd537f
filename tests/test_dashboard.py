"""The dashboard over HTTP (sqsq/dashboard/): every page against a live endpoint after
real worker processes ran tasks; filters in the URL; a failed task's traceback; the
app without the listing index; several apps; an idle dashboard makes no request;
no page can be framed or run a script. The browser tests are in
tests/test_dashboard_browser.py."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

import sqsq
from sqsq.resources import apply
from tests.apps.dash import add, app, boom, flaky
from tests.dashboard_helpers import served

DASH = "tests.apps.dash:app"
#: Longest a test waits for what it expects to become true, seconds.
WAIT_S = 60.0


def get(url: str) -> tuple[int, str, dict[str, str]]:
    """``(status, body, headers)`` of a GET (redirects followed; header names lowercase)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, response.read().decode(), headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), {k.lower(): v for k, v in exc.headers.items()}


@pytest.fixture
def dash(local_aws: Any, worker: Any) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """The dash app after a burst worker ran 2 successes, 3 failures and a task that
    failed once (RETRY: the burst worker left before its retry was due); the
    dashboard's URL and the ids by kind."""
    apply(app)
    ids = {
        "ok": [add.delay(i, 1).id for i in range(2)],
        "failed": [boom.delay(f"broken {i}").id for i in range(3)],
        "flaky": [flaky.delay(2).id],
    }
    result = worker.run(DASH)
    assert result.returncode == 0, result.stderr[-2000:]
    with served([app]) as url:
        yield url, ids


def _page(base: str, path: str) -> str:
    status, body, _ = get(base + "/apps/dash" + path)
    assert status == 200, body[-2000:]
    return body


def _task_ids(body: str) -> list[str]:
    return re.findall(r'class="task-link" href="[^"]*/tasks/([^"]+)"', body)


@pytest.mark.slow
def test_every_page_renders_what_the_workers_did(dash: tuple[str, dict[str, list[str]]]) -> None:
    base, ids = dash
    overview = _page(base, "/")
    assert 'id="queues"' in overview and "dash-default" in overview
    tasks = _page(base, "/tasks")
    assert sorted(_task_ids(tasks)) == sorted(ids["failed"] + ids["flaky"])
    errors = _page(base, "/errors")
    assert re.search(r"dash\.boom</td><td>ValueError.*?<td class=\"num\">3</td>", errors, re.S)
    letters = _page(base, "/dead-letters")
    assert all(task_id in letters for task_id in ids["failed"])
    schedules = _page(base, "/schedules")
    assert "rate(5 minutes)" in schedules and "tick" in schedules
    assert "workers" in _page(base, "/workers")


def test_the_overview_shows_each_queues_messages_done_in_the_last_hour(local_aws: Any) -> None:
    """SQS publishes ``NumberOfMessagesDeleted`` per queue each minute (the test
    endpoint has no SQS metrics: the datapoints are put as SQS would); the overview
    sums the last hour's, and older ones are left out."""
    from datetime import UTC, datetime, timedelta

    apply(app)
    now = datetime.now(UTC)
    cloudwatch = app.clients.sync("cloudwatch")
    for minutes_ago, deleted in ((2, 40.0), (30, 17.0), (50, 5.0), (90, 1000.0)):
        cloudwatch.put_metric_data(
            Namespace="AWS/SQS",
            MetricData=[
                {
                    "MetricName": "NumberOfMessagesDeleted",
                    "Dimensions": [{"Name": "QueueName", "Value": app.queue_name("default")}],
                    "Timestamp": now - timedelta(minutes=minutes_ago),
                    "Value": deleted,
                    "Unit": "Count",
                }
            ],
        )
    with served([app]) as url:
        overview = _page(url, "/")
    row = re.search(r"<td>default <span[^>]*>dash-default</span></td>(.*?)</tr>", overview, re.S)
    assert row is not None, overview[-3000:]
    done = re.search(r'<td class="num done"[^>]*>(\d+)</td>', row.group(1))
    assert done is not None, row.group(1)
    from sqsq.testing import external_endpoints

    if external_endpoints() is None:
        assert int(done.group(1)) == 62  # 40 + 17 + 5: the hour's, not the 1,000 before it
    else:  # LocalStack publishes the queue's real deletes too (earlier tests' included)
        assert 62 <= int(done.group(1)) < 1000, done.group(1)


@pytest.mark.slow
def test_a_failed_task_shows_its_exception_traceback_and_attempts(
    dash: tuple[str, dict[str, list[str]]],
) -> None:
    base, ids = dash
    body = _page(base, f"/tasks/{ids['failed'][0]}")
    assert 'id="state">FAILURE' in body
    assert "ValueError</strong>: broken 0" in body
    assert re.search(r'id="traceback">Traceback .*raise ValueError\(note\)', body, re.S)
    ok = _page(base, f"/tasks/{ids['ok'][1]}")
    assert 'id="state">SUCCESS' in ok and 'id="result">2</pre>' in ok


@pytest.mark.slow
def test_a_retried_task_shows_each_attempt_and_leaves_the_list_when_it_succeeds(
    dash: tuple[str, dict[str, list[str]]], worker: Any
) -> None:
    base, ids = dash
    (flaky_id,) = ids["flaky"]
    deadline = time.monotonic() + WAIT_S
    while app.AsyncResult(flaky_id).state is not sqsq.State.SUCCESS:
        assert time.monotonic() < deadline, "the retry never ran"
        time.sleep(0.5)  # the retry is due 1 s after the failure; a burst worker runs it
        assert worker.run(DASH).returncode == 0
    page = _page(base, f"/tasks/{flaky_id}")
    attempts = re.findall(r'state-(\w+)">\1</td>', page.split('id="attempts"')[1])
    assert attempts == ["RETRY", "SUCCESS"]
    assert "Flaky" in page and "try 1" in page
    assert flaky_id not in _task_ids(_page(base, "/tasks"))


@pytest.mark.slow
def test_filters_live_in_the_url(dash: tuple[str, dict[str, list[str]]]) -> None:
    base, ids = dash
    assert sorted(_task_ids(_page(base, "/tasks?state=FAILURE&task=tests.apps.dash.boom"))) == (
        sorted(ids["failed"])
    )
    assert _task_ids(_page(base, "/tasks?state=RETRY")) == ids["flaky"]
    assert _task_ids(_page(base, "/tasks?state=STARTED")) == []
    assert _task_ids(_page(base, "/tasks?task=tests.apps.dash.add")) == []
    assert _task_ids(_page(base, "/tasks?since=2000-01-01&until=2000-01-02")) == []
    assert len(_task_ids(_page(base, "/tasks?since=1h&error=ValueError"))) == 3
    status, body, _ = get(base + "/apps/dash/tasks?since=yesterday-ish")
    assert status == 400 and "bad filter" in body
    # the id box opens a task
    assert 'id="state">SUCCESS' in _page(base, f"/tasks?id={ids['ok'][0]}")


@pytest.mark.slow
def test_an_idle_dashboard_makes_no_request(dash: tuple[str, dict[str, list[str]]]) -> None:
    base, _ = dash
    _page(base, "/")
    before = app.clients.counter.snapshot()
    time.sleep(2)  # a wait for background activity, if there were any; not a timing claim
    assert app.clients.counter.snapshot() == before
    _page(base, "/workers")
    assert app.clients.counter.snapshot() != before


@pytest.mark.slow
def test_without_the_index_tasks_say_what_it_would_add_and_open_by_id(
    quickstart: sqsq.App, worker: Any
) -> None:
    from examples.quickstart.app import build_report

    done = build_report.delay(3, 0)
    assert worker.run().returncode == 0
    with served([quickstart]) as base:
        status, tasks, _ = get(f"{base}/apps/{quickstart.name}/tasks")
        assert status == 200
        assert 'id="no-index"' in tasks and "listing_index=True" in tasks
        status, errors, _ = get(f"{base}/apps/{quickstart.name}/errors")
        assert status == 200 and 'id="no-index"' in errors
        status, overview, _ = get(f"{base}/apps/{quickstart.name}/")
        assert status == 200 and 'id="queues"' in overview
        status, page, _ = get(f"{base}/apps/{quickstart.name}/tasks?id={done.id}")
        assert status == 200 and 'id="state">SUCCESS' in page
        status, unknown, _ = get(f"{base}/apps/{quickstart.name}/tasks/nope")
        assert status == 404 and 'id="unknown"' in unknown


def test_several_apps_one_dashboard_and_unknown_ones_are_404(
    quickstart: sqsq.App, local_aws: Any
) -> None:
    apply(app)
    with served([quickstart, app]) as base:
        status, index, _ = get(base + "/")
        assert status == 200
        assert f'href="/apps/{quickstart.name}/"' in index and 'href="/apps/dash/"' in index
        assert get(base + "/apps/dash/")[0] == 200
        assert get(f"{base}/apps/{quickstart.name}/")[0] == 200
        assert get(base + "/apps/other/")[0] == 404


def test_pages_cannot_be_framed_or_run_scripts(local_aws: Any) -> None:
    apply(app)
    with served([app]) as base:
        status, body, headers = get(base + "/apps/dash/schedules")
    assert status == 200
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "<script" not in body


def test_a_task_id_is_escaped_not_interpreted(local_aws: Any) -> None:
    apply(app)
    with served([app]) as base:
        status, body, _ = get(base + "/apps/dash/tasks/%3Cb%3Ex%3C%2Fb%3E")
    assert status == 404
    assert "<b>x</b>" not in body and "&lt;b&gt;x&lt;/b&gt;" in body


def test_without_the_extra_the_command_names_it(local_aws: Any) -> None:
    """An install without Starlette (simulated: the module is blocked) gets a one-line
    error naming the extra, exit 2, no traceback."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['starlette'] = None; "
        "sys.argv = ['sqsq', 'dashboard', 'tests.apps.dash:app']; "
        "from sqsq.__main__ import main; main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "needs sqsq[dashboard]" in done.stderr and "pip install 'sqsq[dashboard]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_command_listens_on_this_machine_only_by_default() -> None:
    from click.testing import CliRunner

    import sqsq.cli.commands  # noqa: F401  (registers the commands, as `sqsq` does)
    from sqsq.cli import cli
    from sqsq.dashboard import DEFAULT_HOST

    assert DEFAULT_HOST == "127.0.0.1"
    option = next(p for p in cli.commands["dashboard"].params if p.name == "host")
    assert option.default == DEFAULT_HOST
    assert CliRunner().invoke(cli, ["dashboard", "--help"]).exit_code == 0


def test_a_page_whose_aws_calls_fail_says_so(local_aws: Any) -> None:
    """An unreachable endpoint (a closed port): a 502 page naming the call, the
    dashboard goes on serving."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = sqsq.App("dash", endpoint_url=f"http://127.0.0.1:{port}", listing_index=True)
    with served([unreachable]) as base:
        status, body, _ = get(base + "/apps/dash/tasks/some-id")
        assert status == 502 and 'id="error"' in body and "GetItem" in body
        assert get(base + "/apps/dash/schedules")[0] == 200
