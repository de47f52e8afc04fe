"""The real `consentbridge serve` against raw sockets: a connection that sends nothing, sends
its headers or its body too slowly, or idles after a response is closed (tiny timeouts set
through the settings); connections beyond the maximum are refused; a client that leaves
mid-request leaves no traceback in the log. Only that a connection is closed is asserted,
within a bound far above the timeouts, never how fast."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.service import ADMIN_TOKEN, ServiceProcess

pytestmark = pytest.mark.security

GRACE_S = 15.0  # far above every timeout below: the server must close before this


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    workdir = tmp_path_factory.mktemp("connections")
    process = ServiceProcess(
        workdir,
        worker=False,
        extra_env={
            "CONSENTBRIDGE_HTTP_KEEP_ALIVE_S": "0.5",
            "CONSENTBRIDGE_HTTP_HEADER_TIMEOUT_S": "0.5",
            "CONSENTBRIDGE_HTTP_BODY_TIMEOUT_S": "0.5",
        },
    ).start()
    yield process
    process.stop()


def _connect(service: ServiceProcess) -> socket.socket:
    url = urlsplit(service.base_url)
    assert url.hostname is not None and url.port is not None
    sock = socket.create_connection((url.hostname, url.port), timeout=GRACE_S)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the connection open."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {GRACE_S} s: {received[:200]!r}")
    except ConnectionResetError:
        pass
    return received


def test_a_connection_that_sends_nothing_is_closed(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        assert _read_until_closed(sock) == b""


def test_headers_sent_a_byte_at_a_time_are_cut_off(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + GRACE_S
        try:
            while time.monotonic() < deadline:
                sock.sendall(b"X")  # one byte of a header that never ends
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            return
        pytest.fail("a request whose headers never end kept its connection")


def test_a_body_that_never_ends_gets_408_and_is_closed(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.sendall(
            b"PUT /api/v1/integrations/slow-d365 HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"id": '
        )
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_an_idle_keep_alive_connection_is_closed(service: ServiceProcess) -> None:
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_a_client_that_leaves_mid_body_leaves_no_traceback(service: ServiceProcess) -> None:
    for _ in range(3):
        with _connect(service) as sock:
            sock.sendall(
                b"PUT /api/v1/integrations/gone-d365 HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
                b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"id": '
            )
    # A request after them is answered, so the server has handled their leaving.
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 200 ")
    time.sleep(1.0)  # let the served log flush (a readiness wait, not a timing assertion)
    log = "".join(service.output)
    assert "Traceback" not in log and "ClientDisconnect" not in log, log[-3000:]


def test_connections_beyond_the_maximum_are_refused(tmp_path: Path) -> None:
    service = ServiceProcess(
        tmp_path, worker=False, extra_env={"CONSENTBRIDGE_HTTP_MAX_CONNECTIONS": "3"}
    ).start()
    try:
        held = [_connect(service) for _ in range(3)]
        with _connect(service) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = _read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        for sock in held:
            sock.close()
        time.sleep(0.5)  # the server sees them go
        with _connect(service) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 200 ")
    finally:
        service.stop()
