"""The dashboard in a real headless Chromium, served by uvicorn over a real worker and the emulator: what a visitor
sees after a few jobs ran, at desktop and phone widths. Each page's screenshots go to tests/screenshots/."""

from __future__ import annotations

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from tests.e2e.test_pipeline import wait_for
from tests.support.browser import PHONE, horizontal_overflow, save_screenshot, set_viewport
from tests.support.dashboard import DashboardPool

pytestmark = pytest.mark.e2e


def test_the_overview_shows_the_worker_after_jobs_ran_and_fits_desktop_and_phone(
    dashboard: DashboardPool, browser: WebDriver
) -> None:
    # Given five jobs the worker has driven to the end
    jobs = [dashboard.submit(workflow="workflow_processed") for _ in range(5)]
    assert {job.get(timeout=60)["status"] for job in jobs} == {"PROCESSED"}
    wait_for(lambda: dashboard.overview()["workers"], timeout_s=30)
    # When a visitor opens the overview at desktop width
    browser.get(f"{dashboard.url}/")
    # Then it counts the worker, and the page scrolls only down
    assert int(browser.find_element(By.CSS_SELECTOR, 'span[data-count="workers"]').text) >= 1
    assert horizontal_overflow(browser) == 0
    save_screenshot(browser, "overview")
    # And the same holds at a phone's width
    set_viewport(browser, PHONE)
    browser.get(f"{dashboard.url}/")
    assert int(browser.find_element(By.CSS_SELECTOR, 'span[data-count="workers"]').text) >= 1
    assert horizontal_overflow(browser) == 0
    save_screenshot(browser, "overview")
