"""Browser tests: Debian's Chromium driven by Playwright (no browser download) against the real
service as a subprocess and the sandbox over real HTTPS. Skipped, with one line, when the
`playwright` package or the `chromium` binary is missing or cannot start."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class AlertInbox(BaseHTTPRequestHandler):
    """An alert webhook (as Slack's would be) that keeps every JSON body posted to it."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Inbox:
    url: str
    received: list[dict[str, Any]]


@pytest.fixture
def alert_inbox() -> Iterator[Inbox]:
    AlertInbox.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlertInbox)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Inbox(f"http://127.0.0.1:{server.server_address[1]}/hook", AlertInbox.received)
    server.shutdown()
    server.server_close()


@pytest.fixture
def service(tmp_path: Path, alert_inbox: Inbox) -> Iterator[ServiceProcess]:
    env = {"CONSENTBRIDGE_ALERT_WEBHOOK_URL": alert_inbox.url}
    process = ServiceProcess(tmp_path, extra_env=env).start()
    yield process
    process.stop()


class Shots:
    """A screenshot per step at 1280 px and 390 px; at 390 px the page must not scroll
    sideways."""

    def __init__(self, page: Any, name: str, secrets: tuple[str, ...] = ()) -> None:
        self.page = page
        self.folder = ARTIFACTS / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.secrets = tuple(s for s in secrets if s)

    def _masks(self) -> list[Any]:
        """Fields that hold a secret the admin typed (a new document before it is sealed):
        masked in the screenshot, so test artifacts never carry a secret."""
        masks = []
        fields = self.page.locator("textarea, input")
        for i in range(fields.count()):
            field = fields.nth(i)
            value = field.input_value() if field.is_visible() else ""
            if any(secret in value for secret in self.secrets):
                masks.append(field)
        return masks

    def __call__(self, step: str) -> None:
        self.count += 1
        for width in (WIDE, NARROW):
            self.page.set_viewport_size({"width": width, "height": 900})
            self.page.screenshot(
                path=str(self.folder / f"{self.count:02d}-{step}-{width}.png"),
                full_page=True,
                mask=self._masks(),
            )
            if width == NARROW:
                scroll = self.page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= NARROW, f"{step}: the page is {scroll} px wide at {NARROW} px"
        self.page.set_viewport_size({"width": WIDE, "height": 900})
