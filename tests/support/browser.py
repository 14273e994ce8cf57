"""Headless Chromium driven through chromedriver (Selenium), for the dashboard's browser tests.

    paths = find_browser()                       # raises BrowserUnavailable when either is missing
    with open_browser(paths, tmp_dir) as driver:
        driver.get(url)
        set_viewport(driver, PHONE)
        save_screenshot(driver, "overview")       # tests/screenshots/overview-390.png

The system's own browser and driver (Debian's `chromium` and `chromium-driver`) are used: Selenium Manager is never
asked to download one, since the tests run without internet.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS_ENV = "EXTENDQ_SCREENSHOTS_DIR"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
# What a headless Chromium needs here: no sandbox (root in a container), no GPU, a small /dev/shm, and no
# background traffic to Google (no internet; QUIC would only time out).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class BrowserUnavailable(RuntimeError):
    """No Chromium or no chromedriver on this machine."""


@dataclass(frozen=True)
class BrowserPaths:
    """Where the browser and its driver are."""

    browser: Path
    driver: Path


@dataclass(frozen=True)
class Viewport:
    """The size of the page's layout viewport in CSS pixels; `mobile` lays it out as a phone would."""

    width: int
    height: int
    mobile: bool = False


DESKTOP = Viewport(1280, 900)
PHONE = Viewport(390, 844, mobile=True)


def find_browser() -> BrowserPaths:
    """Chromium and chromedriver on PATH (or at EXTENDQ_CHROMIUM / EXTENDQ_CHROMEDRIVER).

    Raises:
        BrowserUnavailable: either is missing; the message says which and how to install them.
    """
    browser = _located("EXTENDQ_CHROMIUM", BROWSER_NAMES)
    driver = _located("EXTENDQ_CHROMEDRIVER", ("chromedriver",))
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    if browser is None or driver is None:
        raise BrowserUnavailable(
            f"no {' and no '.join(missing)} found: install Debian's chromium and chromium-driver "
            "(tools/ensure_browser.sh does it as root)"
        )
    return BrowserPaths(browser=Path(browser), driver=Path(driver))


def _located(variable: str, names: tuple[str, ...]) -> str | None:
    """The file the environment `variable` names (None if it does not exist), else the first of `names` on PATH."""
    given = os.environ.get(variable)
    if given is not None:
        return given if Path(given).is_file() else None
    return next(filter(None, map(shutil.which, names)), None)


def chrome_options(paths: BrowserPaths, user_data_dir: Path, viewport: Viewport = DESKTOP) -> webdriver.ChromeOptions:
    """The options a headless Chromium starts with: FLAGS, a fresh profile in `user_data_dir`, the window size."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(paths.browser)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    # A desktop window is never narrower than 500 px; set_viewport narrows the page itself below that.
    options.add_argument(f"--window-size={max(viewport.width, 500)},{viewport.height}")
    return options


@contextmanager
def open_browser(paths: BrowserPaths, user_data_dir: Path, viewport: Viewport = DESKTOP) -> Iterator[WebDriver]:
    """A headless Chromium with its page at `viewport`, quit when the block ends."""
    service = Service(executable_path=str(paths.driver))
    driver = webdriver.Chrome(service=service, options=chrome_options(paths, user_data_dir, viewport))
    try:
        set_viewport(driver, viewport)
        yield driver
    finally:
        driver.quit()


def set_viewport(driver: WebDriver, viewport: Viewport) -> None:
    """Lay the page out at `viewport` from now on (it holds across page loads, until set again)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": viewport.width, "height": viewport.height, "deviceScaleFactor": 1, "mobile": viewport.mobile},
    )


def horizontal_overflow(driver: WebDriver) -> int:
    """How many CSS pixels the page is wider than its viewport (0: no horizontal scroll)."""
    overflow = driver.execute_script(
        "const root = document.documentElement; return root.scrollWidth - root.clientWidth;"
    )
    return max(0, int(overflow))


def screenshots_dir() -> Path:
    """The folder screenshots go to, made if missing: EXTENDQ_SCREENSHOTS_DIR, or tests/screenshots/."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or ROOT / "tests" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_screenshot(driver: WebDriver, page: str) -> Path:
    """Write the whole page (not only what the viewport shows) to `<page>-<viewport width>.png`; its path."""
    width = int(driver.execute_script("return window.innerWidth;"))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path = screenshots_dir() / f"{page}-{width}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
