"""Browser tests: Debian's Chromium driven by Playwright (no browser download) against the real
service as a subprocess and the sandbox over real HTTPS. Skipped, with one line, when the
`playwright` package or the `chromium` binary is missing or cannot start."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import ServiceProcess

CHROMIUM = os.environ.get("CONSENTBRIDGE_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
WIDE, NARROW = 1280, 390


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install '.[test]')")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
    except Exception as exc:  # any launch failure means: no usable browser here
        playwright.stop()
        pytest.skip(f"Chromium at {CHROMIUM} cannot be launched: {str(exc).splitlines()[0]}")
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path).start()
    yield process
    process.stop()


class Shots:
    """A screenshot per step at 1280 px and 390 px; at 390 px the page must not scroll
    sideways."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.folder = ARTIFACTS / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, step: str) -> None:
        self.count += 1
        for width in (WIDE, NARROW):
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.screenshot(
                path=str(self.folder / f"{self.count:02d}-{step}-{width}.png"), full_page=True
            )
            if width == NARROW:
                scroll = self.page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= NARROW, f"{step}: the page is {scroll} px wide at {NARROW} px"
        self.page.set_viewport_size({"width": WIDE, "height": 900})
