"""The dashboard in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium): ``sqsq dashboard`` as a real process, a
real worker process running the tasks, each page loaded, the tasks filtered by state
and name with the page's own form, a failed task opened from the list and its
traceback read. Screenshots of the overview and a task page are saved in
``.artifacts/dashboard/``.

The browser is installed by :func:`browser` when missing (``apt-get install -y
chromium chromium-driver``, as root); the tests skip, saying why, only where it
cannot be installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sqsq import State
from sqsq.resources import apply
from tests.apps.dash import PASSWORD, add, app, boom, flaky, fragile
from tests.helpers import until

ROOT = Path(__file__).resolve().parents[1]
DASH = "tests.apps.dash:app"
#: Where the screenshots go (git-ignored).
ARTIFACTS = ROOT / ".artifacts" / "dashboard"
#: Longest a test waits for what it expects to become true, seconds.
WAIT_S = 60.0
#: The Debian packages of the browser and its driver.
PACKAGES = ("chromium", "chromium-driver")


def _installed() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def _install() -> str | None:
    """Install the browser with apt-get; None when done, else why it could not be."""
    if _installed():
        return None
    if not shutil.which("apt-get"):
        return "no apt-get here to install chromium and chromium-driver"
    if os.geteuid() != 0:
        return "chromium and chromium-driver are missing and installing them needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}"
    return None if _installed() else "apt-get installed no chromium/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (selenium WebDriver), installed first if missing."""
    why = _install()
    if why is not None:
        print(f"skipping the browser tests: {why}", file=sys.stderr)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture
def dashboard(local_aws: Any, worker: Any) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """``sqsq dashboard`` (a real process, any free port) over the dash app while a
    real worker process runs 2 successes, 2 failures and a task that succeeds on its
    second try; yields the dashboard's URL and the ids by kind."""
    apply(app)
    running = worker.start(DASH)
    ids = {
        "ok": [add.delay(i, 2).id for i in range(2)],
        "failed": [boom.delay(f"kaput {i}").id for i in range(2)],
        "flaky": [flaky.delay(2).id],
    }
    for task_id in (i for group in ids.values() for i in group):
        until(lambda t=task_id: app.AsyncResult(t).state.value in ("SUCCESS", "FAILURE"), task_id)
    assert running.poll() is None
    with _dashboard_process(worker) as url:
        yield url, ids


@contextmanager
def _dashboard_process(worker: Any, *args: str) -> Iterator[str]:
    """``sqsq dashboard tests.apps.dash:app ARGS`` on any free port; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sqsq", "dashboard", DASH, "--port", "0", *args],
        cwd=worker.tmp_path,
        env=worker.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "sqsq dashboard did not say where it listens"
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _text(driver: Any, css: str) -> str:
    """The text of the element ``css`` selects, once the page shows it (a click's
    navigation may still be under way when selenium's ``click`` returns)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _arrive(driver: Any, what: Any) -> None:
    """Wait until ``what(driver)`` holds (a navigation ended), at most WAIT_S."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(what)


@pytest.mark.slow
def test_each_page_loads_in_a_browser_filters_work_and_a_failure_shows_its_traceback(
    browser: Any, dashboard: tuple[str, dict[str, list[str]]]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, ids = dashboard
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    browser.get(base + "/")  # one app: the index opens it
    assert browser.current_url == base + "/apps/dash/"
    assert "dash-default" in _text(browser, "#queues")
    assert int(_text(browser, "#worker-count")) >= 1
    browser.save_screenshot(str(ARTIFACTS / "overview.png"))

    for link, heading in [
        ("Errors", "dash: errors"),
        ("Dead letters", "dash: dead letters"),
        ("Schedules", "dash: schedules"),
        ("Workers", "dash: workers"),
        ("Tasks", "dash: tasks"),
    ]:
        browser.find_element(By.LINK_TEXT, link).click()
        _arrive(browser, lambda d, h=heading: _text(d, "h1") == h)
    assert "ValueError" in browser.page_source  # errors were on the way; tasks now

    # filter with the page's own form: FAILURE of boom
    Select(browser.find_element(By.NAME, "state")).select_by_value(State.FAILURE.value)
    browser.find_element(By.NAME, "task").send_keys(boom.name)
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    _arrive(browser, lambda d: "state=FAILURE" in d.current_url)
    assert "task=" in browser.current_url
    links = browser.find_elements(By.CSS_SELECTOR, "a.task-link")
    assert sorted(a.text for a in links) == sorted(ids["failed"])
    names = {td.text for td in browser.find_elements(By.CSS_SELECTOR, "td.task-name")}
    assert names == {boom.name}

    # the flaky task succeeded on its second try: no longer listed, as any success
    browser.get(base + "/apps/dash/tasks")
    listed = {a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.task-link")}
    assert listed == set(ids["failed"])

    # open a failure from the list: its traceback
    browser.get(base + f"/apps/dash/tasks?state=FAILURE&task={boom.name}")
    browser.find_elements(By.CSS_SELECTOR, "a.task-link")[0].click()
    assert _text(browser, "#state") == "FAILURE"
    traceback = _text(browser, "#traceback")
    assert traceback.startswith("Traceback") and "ValueError: kaput" in traceback
    browser.save_screenshot(str(ARTIFACTS / "task.png"))
    # read-only: no action anywhere
    assert not browser.find_elements(By.CSS_SELECTOR, "form[method=post]")

    # the retried task's page: both attempts, by a real worker
    browser.get(base + f"/apps/dash/tasks/{ids['flaky'][0]}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#attempts tr")[1:]
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == ["RETRY", "SUCCESS"]
    assert all(r.find_elements(By.TAG_NAME, "td")[2].text for r in rows)  # the worker


@pytest.mark.slow
def test_replay_a_group_of_failures_from_the_errors_page(
    browser: Any, local_aws: Any, worker: Any, tmp_path: Path
) -> None:
    """--allow-actions, signed in as ops: the errors page's replay link, its dry-run
    count, the replay, then the tasks' pages read SUCCESS (a live worker ran them)."""
    from selenium.webdriver.common.by import By

    apply(app)
    worker.start(DASH)
    fix = tmp_path / "fixed"
    ids = [fragile.delay(str(fix)).id for _ in range(3)]
    for task_id in ids:
        until(lambda t=task_id: app.AsyncResult(t).state is State.FAILURE, task_id)
    fix.write_text("")
    with _dashboard_process(worker, "--allow-actions") as url:
        signed_in = url.replace("http://", f"http://ops:{PASSWORD.replace(' ', '%20')}@")
        browser.get(signed_in + "/apps/dash/errors")
        assert _text(browser, "#user") == "ops"
        row = next(
            r
            for r in browser.find_elements(By.CSS_SELECTOR, "tr.error-group")
            if fragile.name in r.text
        )
        assert "FileNotFoundError" in row.text
        row.find_element(By.CSS_SELECTOR, "a.replay").click()
        assert _text(browser, "#count") == "3"  # the dry run
        assert {app.AsyncResult(i).state for i in ids} == {State.FAILURE}
        browser.find_element(By.ID, "confirm").click()
        assert _text(browser, "#affected") == "3"
        for task_id in ids:
            until(lambda t=task_id: app.AsyncResult(t).state is State.SUCCESS, task_id)
        browser.get(signed_in + f"/apps/dash/tasks/{ids[0]}")
        assert _text(browser, "#state") == "SUCCESS"
        browser.get(signed_in + "/apps/dash/audit")
        assert "replay" in _text(browser, "#audit") and "ops" in _text(browser, "#audit")
