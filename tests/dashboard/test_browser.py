"""The dashboard in a real headless Chromium, served by uvicorn over a real worker and the emulator.

What a visitor sees after jobs ran (counts equal to the store's, a PROCESSED run's extracted fields), what a signed-in
visitor can do (cancel, retry) and what everyone else is refused (403 without the token, 403 without the CSRF
token), and the overview moving with the pool over server-sent events, without a reload. Every page is shot at
desktop and phone widths into tests/screenshots/ (or $EXTENDQ_SCREENSHOTS_DIR) and must not scroll sideways.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from extendq.tasks.base import store_for
from extendq.tasks.job_view import extracted_fields
from extendq.worker.job_search import OUTCOMES
from tests.e2e.test_pipeline import wait_for
from tests.support.browser import DESKTOP, PHONE, Viewport, horizontal_overflow, save_screenshot, set_viewport
from tests.support.dashboard import DASHBOARD_TOKEN, DashboardPool

pytestmark = pytest.mark.e2e

ZOOMED_OUT = Viewport(1600, 1125)  # 1280 x 900 at 80 % zoom: the page lays out 1600 CSS pixels wide
INVOICE = "Invoice #: INV-2041\nVendor: Northwind Traders\nDate: 2026-11-30\nTotal: 1,234.50 EUR"


_READ_COUNTS = """
const counts = {};
for (const el of document.querySelectorAll("[data-count], [data-outcome], [data-state]")) {
  const name = el.dataset.count ? "count:" + el.dataset.count : el.dataset.outcome ? "outcome:" + el.dataset.outcome
    : "state:" + el.dataset.state;
  counts[name] = Number(el.textContent.trim());
}
return counts;
"""


_READ_CHARTS = """
const svgs = [...document.querySelectorAll("figure.chart svg[role='img']")];
return {
  alternatives: svgs.map((svg) => svg.getAttribute("aria-label")),
  labels: [...document.querySelectorAll("figure.chart text.label")].map((label) => label.textContent),
};
"""


def _counts(browser: WebDriver) -> dict[str, int]:
    """Every count the overview shows, read in one go: the live overview may swap its content between two reads of
    the driver (so the overview is only ever read by one script, never element by element)."""
    counts: dict[str, int] = browser.execute_script(_READ_COUNTS)
    return counts


def _count(browser: WebDriver, name: str) -> int:
    return _counts(browser)[name]


def _shoot_everywhere(browser: WebDriver, url: str, name: str) -> None:
    """Screenshots of `url` at desktop and phone width, checking at each (and at 80 % zoom) that nothing scrolls
    sideways."""
    for viewport in (ZOOMED_OUT, PHONE, DESKTOP):
        set_viewport(browser, viewport)
        browser.get(url)
        assert horizontal_overflow(browser) == 0, f"{name} scrolls sideways at {viewport.width} px"
        if viewport is not ZOOMED_OUT:
            save_screenshot(browser, name)


def _sign_in(browser: WebDriver, dashboard: DashboardPool) -> None:
    browser.get(f"{dashboard.url}/login")
    browser.find_element(By.NAME, "token").send_keys(DASHBOARD_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form[action$='/login'] button").click()
    WebDriverWait(browser, 10).until(lambda driver: "signed in as token" in driver.page_source)


@contextmanager
def _signed_in_client(dashboard: DashboardPool) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dashboard.url, timeout=10) as client:
        answer = client.post("/login", data={"token": DASHBOARD_TOKEN})
        assert answer.status_code == 303 and client.cookies
        yield client


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert match is not None, "no CSRF token in the page"
    return match.group(1)


def _actions(dashboard: DashboardPool, job_id: str) -> list[dict[str, Any]]:
    store = store_for(dashboard.settings)
    entries: Any = store.client.xrange(store.keys.events)
    return [fields for _, fields in entries if fields.get("job_id") == job_id and fields.get("state") == "ACTION"]


def test_the_overview_counts_equal_the_stores_after_200_jobs(dashboard: DashboardPool, browser: WebDriver) -> None:
    # Given 200 jobs driven to their end by the worker (and a failed one)
    jobs = [dashboard.submit(workflow="workflow_processed", metadata={"batch": "b200"}) for _ in range(200)]
    failed = dashboard.submit(workflow="workflow_failed")
    assert [job.get(timeout=120)["status"] for job in jobs] == ["PROCESSED"] * 200
    assert failed.get(timeout=60)["status"] == "FAILED"
    wait_for(lambda: dashboard.overview()["workers"], timeout_s=30)
    # When the overview is opened
    browser.get(f"{dashboard.url}/")
    # Then each count is the store's own: nothing in flight, and the last hour's finished jobs by outcome
    store = store_for(dashboard.settings)
    now = time.time()
    shown = _counts(browser)
    assert shown["count:in_flight"] == store.client.zcard(store.keys.due) == 0
    for outcome in OUTCOMES:
        expected = store.client.zcount(store.keys.finished_by("outcome", outcome), now - 3600, "+inf")
        assert shown[f"outcome:{outcome}"] == expected, outcome
    assert shown["outcome:PROCESSED"] >= 200 and shown["outcome:FAILED"] >= 1
    assert shown["count:finished_hour"] == store.client.zcount(store.keys.finished, now - 3600, "+inf")
    assert shown["count:workers"] >= 1
    # And both charts are drawn, with their axes labelled
    charts: dict[str, list[str]] = browser.execute_script(_READ_CHARTS)
    assert len(charts["alternatives"]) >= 2
    assert {"jobs finished", "minute (UTC)", "requests / s", "time (UTC)"} <= set(charts["labels"])
    requests = [text for text in charts["alternatives"] if text.startswith("Extend requests per second")]
    peak = re.search(r"peak (\d+)/s against a limit of 200/s", requests[0])
    assert peak is not None and int(peak.group(1)) >= 1
    _shoot_everywhere(browser, f"{dashboard.url}/", "overview")
    # And the Jobs page finds the 200 by their metadata, a page at a time, each row linking to its job
    _shoot_everywhere(browser, f"{dashboard.url}/jobs?view=finished&q=b200", "jobs")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-job]")
    assert len(rows) == 50
    assert {row.get_attribute("data-job") for row in rows} <= {job.id for job in jobs}
    first = rows[0].get_attribute("data-job")
    browser.find_element(By.CSS_SELECTOR, 'a[rel="next"]').click()
    second = {row.get_attribute("data-job") for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-job]")}
    assert len(second) == 50 and first not in second


def test_a_processed_jobs_page_shows_its_extracted_fields(dashboard: DashboardPool, browser: WebDriver) -> None:
    # Given a job whose run ended PROCESSED
    job = dashboard.submit(workflow="workflow_processed", file={"text": INVOICE}, metadata={"customer": "c-17"})
    run = job.get(timeout=60)
    expected = extracted_fields(run)
    assert expected, "the emulator's run extracted nothing"
    # When its page is opened
    _shoot_everywhere(browser, f"{dashboard.url}/jobs/{job.id}", "job")
    # Then it shows the run, a link to it on Extend, and every extracted field with its value
    assert browser.find_element(By.CSS_SELECTOR, "dd[data-run-status]").text == "PROCESSED"
    assert browser.find_element(By.LINK_TEXT, run["dashboardUrl"]).get_attribute("href") == run["dashboardUrl"]
    shown = {
        row.get_attribute("data-field"): row.find_element(By.TAG_NAME, "td").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#fields tr[data-field]")
    }
    assert shown == {name: value.strip() for name, value in expected.items()}
    events = [item.get_attribute("data-event") for item in browser.find_elements(By.CSS_SELECTOR, "#timeline li")]
    assert events[0] == "enqueued" and events[-1] == "finished" and "run created" in events


def test_cancel_and_retry_need_the_token_and_the_csrf_token(dashboard: DashboardPool, browser: WebDriver) -> None:
    # Given a job in flight for a minute and a job that failed
    long_job = dashboard.submit(workflow="workflow_long")
    failed = dashboard.submit(workflow="workflow_failed")
    assert failed.get(timeout=60)["status"] == "FAILED"
    wait_for(lambda: store_for(dashboard.settings).load(long_job.id), timeout_s=10)
    # When nobody signed in posts, or a signed-in client posts without (or with a wrong) CSRF token
    with httpx.Client(base_url=dashboard.url, timeout=10) as anonymous, _signed_in_client(dashboard) as signed_in:
        csrf = _csrf(signed_in.get(f"/jobs/{long_job.id}").text)
        tries = ((anonymous, {"csrf_token": csrf}), (signed_in, {}), (signed_in, {"csrf_token": "0" * 64}))
        for client, data in tries:
            for path in (f"/jobs/{long_job.id}/cancel", f"/jobs/{failed.id}/retry", "/jobs/retry-failed"):
                assert client.post(path, data=data).status_code == 403, (path, data)
    # Then nothing was done: no action told, the job still runs, and an anonymous page offers no button
    assert _actions(dashboard, long_job.id) == [] and _actions(dashboard, failed.id) == []
    assert long_job.state != "SUCCESS"
    browser.get(f"{dashboard.url}/jobs/{long_job.id}")
    assert browser.find_elements(By.CSS_SELECTOR, "form[action$='/cancel']") == []
    # When a visitor signs in with the token and presses Cancel on the running job
    _sign_in(browser, dashboard)
    browser.get(f"{dashboard.url}/jobs/{long_job.id}")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/cancel'] button").click()
    # Then the job ends CANCELLED, and the events stream tells who cancelled it
    WebDriverWait(browser, 10).until(lambda driver: "Cancel sent" in driver.page_source)
    assert long_job.get(timeout=60)["status"] == "CANCELLED"
    assert [(entry["action"], entry["by"]) for entry in _actions(dashboard, long_job.id)] == [("cancel", "token")]
    # When the visitor presses Retry on the failed job
    browser.get(f"{dashboard.url}/jobs/{failed.id}")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/retry'] button").click()
    # Then the browser lands on the new job's page, a replay of the failed one, which runs to its own end
    WebDriverWait(browser, 10).until(lambda driver: "/jobs/" + failed.id not in driver.current_url)
    new_id = browser.current_url.rsplit("/jobs/", 1)[1].split("?")[0]
    assert new_id != failed.id and "Replay of" in browser.page_source
    replay = store_for(dashboard.settings).load(new_id)
    assert replay is not None and replay.request.replay_of == failed.id
    assert dashboard.producer.AsyncResult(new_id).get(timeout=60)["status"] == "FAILED"
    assert [entry["action"] for entry in _actions(dashboard, failed.id)] == ["retry"]
    # And a second retry of the same job is refused, starting nothing
    with _signed_in_client(dashboard) as signed_in:
        again = signed_in.post(f"/jobs/{failed.id}/retry", data={"csrf_token": csrf})
    assert again.status_code == 409 and new_id in again.text
    assert [entry["action"] for entry in _actions(dashboard, failed.id)] == ["retry"]


def test_the_overview_moves_with_the_pool_without_a_reload(dashboard: DashboardPool, browser: WebDriver) -> None:
    # Given the overview open, marked so that a reload would show
    browser.get(f"{dashboard.url}/")
    browser.execute_script("window.notReloaded = true;")
    before = _count(browser, "count:finished_hour")
    # When three jobs run to their end
    jobs = [dashboard.submit(workflow="workflow_processed") for _ in range(3)]
    assert [job.get(timeout=60)["status"] for job in jobs] == ["PROCESSED"] * 3
    # Then the page counts them within seconds, pushed over server-sent events into the same page
    WebDriverWait(browser, 20).until(lambda driver: _count(driver, "count:finished_hour") >= before + 3)
    assert browser.execute_script("return window.notReloaded === true;")
    assert browser.find_element(By.ID, "live-status").text == "live"


def test_the_review_page_lists_runs_waiting_in_review(
    dashboard: DashboardPool, browser: WebDriver, module_redis: redis.Redis
) -> None:
    # Given a job that watches its run, which waits in NEEDS_REVIEW
    job = dashboard.submit(workflow="workflow_review", needs_review="watch")
    assert job.get(timeout=60)["status"] == "NEEDS_REVIEW"
    # When the Review page is opened
    _shoot_everywhere(browser, f"{dashboard.url}/review", "review")
    # Then the job is listed with its run and how long it has waited
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job="{job.id}"]')
    assert row.find_element(By.CSS_SELECTOR, "td[data-age]").text.endswith(("s", "m"))
    assert store_for(dashboard.settings).load(job.id) is not None
    _shoot_everywhere(browser, f"{dashboard.url}/login", "login")
