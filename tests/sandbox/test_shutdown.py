"""The background sandbox stops promptly even while clients hold keep-alive connections, and a
client that leaves in the middle of a request is a quiet debug line, not an error traceback."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from consentbridge.sandbox.server import GRACEFUL_SHUTDOWN_S, BackgroundSandbox, start_in_thread
from tests.support.sandbox import SandboxClient, wait_until


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    """Records of the Dataverse pipeline (debug and up) and of uvicorn's error logger, where an
    exception escaping the app would be reported."""
    handler = Records()
    loggers = [
        logging.getLogger("consentbridge.sandbox.dataverse.pipeline"),
        logging.getLogger("uvicorn.error"),
    ]
    levels = [logger.level for logger in loggers]
    loggers[0].setLevel(logging.DEBUG)
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_stop_does_not_wait_for_idle_keep_alive_clients(tmp_path: Path) -> None:
    server = start_in_thread(tmp_path)
    idle = httpx.Client(verify=str(server.ca_bundle))  # never closed before the stop
    try:
        assert idle.get(f"{server.base_url}/_sandbox/stats").status_code == 200
        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started
        assert not server.thread.is_alive()
        assert elapsed < GRACEFUL_SHUTDOWN_S + 3, f"stopping took {elapsed:.1f} s"
    finally:
        idle.close()


def test_a_client_leaving_mid_body_is_logged_at_debug_only(
    sandbox: BackgroundSandbox, records: Records
) -> None:
    control = SandboxClient(sandbox.base_url, sandbox.ca_bundle)
    try:
        token = control.token()
        port = sandbox.prepared.port
        tls = ssl.create_default_context(cafile=str(sandbox.ca_bundle))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            tls.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            conn.sendall(
                (
                    "POST /api/data/v9.2/contacts HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{port}\r\n"
                    f"Authorization: Bearer {token}\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: 100\r\n\r\n"
                    '{"lastname": '
                ).encode()
            )
            time.sleep(0.2)  # the pipeline is now waiting for the rest of the body
        wait_until(lambda: records.records, timeout=10, message="a log line about the disconnect")
        assert [r.getMessage() for r in records.records if r.levelno >= logging.WARNING] == []
        (line,) = [r.getMessage() for r in records.records]
        assert "POST /contacts" in line and "disconnected" in line
        # Nothing was written, and the sandbox goes on serving.
        assert control.stats()["dataverse"]["rows_written"] == 0
        control.dv("GET", "WhoAmI", expect=200)
    finally:
        control.close()
