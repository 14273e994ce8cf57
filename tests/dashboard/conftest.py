"""The dashboard's browser-test fixtures: a headless Chromium (`browser`) and the dashboard served over real HTTP with
a real worker and the emulator (`dashboard`), each started once per module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.support.browser import DESKTOP, BrowserPaths, BrowserUnavailable, find_browser, open_browser, set_viewport
from tests.support.dashboard import DashboardPool


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false"}


@pytest.fixture(scope="session")
def browser_paths() -> BrowserPaths:
    """Chromium and chromedriver; without them the browser tests skip, except under CI, where they fail."""
    try:
        return find_browser()
    except BrowserUnavailable as exc:
        reason = str(exc)
    if _in_ci():
        pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium(browser_paths: BrowserPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module, with a fresh profile."""
    with open_browser(browser_paths, tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture
def browser(chromium: WebDriver) -> WebDriver:
    """The module's Chromium, as a new visitor sees it: desktop viewport (1280x900), no cookies."""
    chromium.delete_all_cookies()
    set_viewport(chromium, DESKTOP)
    return chromium


@pytest.fixture(scope="module")
def dashboard(
    browser_paths: BrowserPaths, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardPool]:
    """The dashboard served by uvicorn on the module's Redis database, over one real worker and the emulator.

    It asks for `browser_paths` only so that a test skipped for want of a browser starts no pool first.
    """
    with DashboardPool(module_redis_url, home=tmp_path_factory.mktemp("dashboard")) as pool:
        yield pool
