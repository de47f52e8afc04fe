"""`consentbridge sandbox` starts quickly, prints its banner, and serves verified HTTPS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509

BANNER_KEYS = [
    "base_url",
    "ca_bundle",
    "tenant_id",
    "client_id",
    "client_secret",
    "didomi_organization_id",
    "didomi_api_key",
    "didomi_api_secret",
]


def _start(state_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str], float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "consentbridge.cli",
            "sandbox",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    while len(lines) < len(BANNER_KEYS):
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(
                f"sandbox exited early: {proc.stderr.read() if proc.stderr else ''}"
            )
        key, _, value = line.strip().partition(": ")
        lines[key] = value
    return proc, lines, time.monotonic() - started


def _ready_after(base_url: str, ca: str, started: float) -> float:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/_sandbox/stats", verify=ca).raise_for_status()
            return time.monotonic() - started
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("sandbox never answered")


def test_sandbox_command_prints_banner_and_serves_https(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    t0 = time.monotonic()
    proc, lines, _ = _start(state_dir)
    try:
        assert list(lines) == BANNER_KEYS
        assert lines["ca_bundle"] == str(state_dir / "ca.pem")
        assert lines["base_url"].startswith("https://127.0.0.1:")
        ready = _ready_after(lines["base_url"], lines["ca_bundle"], t0)
        # Measured and printed, never asserted: timings do not belong in tests.
        print(f"sandbox ready after {ready:.2f} s")
        cert = x509.load_pem_x509_certificate((state_dir / "ca.pem").read_bytes())
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        # Plain-text verification against the system store must fail: the CA is private.
        try:
            httpx.get(f"{lines['base_url']}/_sandbox/stats")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("the sandbox certificate was trusted without ca.pem")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_restart_keeps_credentials_and_ca(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    proc, first, _ = _start(state_dir)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    ca_before = (state_dir / "ca.pem").read_bytes()
    proc, second, _ = _start(state_dir)
    try:
        for key in ("tenant_id", "client_id", "client_secret", "didomi_api_key"):
            assert first[key] == second[key]
        assert (state_dir / "ca.pem").read_bytes() == ca_before
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
