"""The real `consentbridge serve` as a subprocess, and an HTTP client for it that states the
status it expects on every call (a mismatch fails with the response body)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

ADMIN_TOKEN = "e2e-admin-token-0123456789-abcdefgh"
METRICS_TOKEN = "e2e-metrics-token-5Tg7Yh"


class Expecting:
    """httpx wrapper: every call names the expected status."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def call(self, method: str, url: str, *, expect: int, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, url, **kwargs)
        assert response.status_code == expect, (
            f"{method} {url}: expected {expect}, got {response.status_code}: {response.text[:800]}"
        )
        return response

    def get(self, url: str, *, expect: int = 200, **kw: Any) -> httpx.Response:
        return self.call("GET", url, expect=expect, **kw)

    def post(self, url: str, *, expect: int, **kw: Any) -> httpx.Response:
        return self.call("POST", url, expect=expect, **kw)

    def put(self, url: str, *, expect: int, **kw: Any) -> httpx.Response:
        return self.call("PUT", url, expect=expect, **kw)

    def patch(self, url: str, *, expect: int, **kw: Any) -> httpx.Response:
        return self.call("PATCH", url, expect=expect, **kw)

    def delete(self, url: str, *, expect: int, **kw: Any) -> httpx.Response:
        return self.call("DELETE", url, expect=expect, **kw)


class _Subprocess:
    """What both process wrappers share: output collected by a thread, a polite stop, a kill."""

    proc: subprocess.Popen[str] | None
    output: list[str]

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class ServiceProcess(_Subprocess):
    """One `consentbridge serve` process on a free port, over a store that outlives it."""

    def __init__(
        self,
        workdir: Path,
        *,
        db_url: str | None = None,
        worker: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.db_url = db_url or f"sqlite:///{workdir / 'consentbridge.db'}"
        self.secret_key = Fernet.generate_key().decode()
        self.worker = worker
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.output: list[str] = []
        self._port = 0

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTBRIDGE_")}
        env.update(
            {
                "CONSENTBRIDGE_DB_URL": self.db_url,
                "CONSENTBRIDGE_SECRET_KEY": self.secret_key,
                "CONSENTBRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
                "CONSENTBRIDGE_METRICS_TOKEN": METRICS_TOKEN,
                "PYTHONUNBUFFERED": "1",
                **self.extra_env,
            }
        )
        return env

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        args = [sys.executable, "-m", "consentbridge.cli", "serve", "--port", str(self._port)]
        if not self.worker:
            args.append("--no-worker")
        self.proc = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("serve exited early:\n" + "".join(self.output))
            self.output.append(line)
            if line.startswith("console: "):
                url = line.split(": ", 1)[1].strip()
                self.base_url = url.rsplit("/console", 1)[0]
                self._port = int(self.base_url.rsplit(":", 1)[1])
                break
        else:
            raise AssertionError("serve did not start:\n" + "".join(self.output))
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    @contextmanager
    def admin(self) -> Iterator[Expecting]:
        with httpx.Client(
            base_url=self.base_url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as client:
            yield Expecting(client)


class WorkerProcess(_Subprocess):
    """One `consentbridge worker` process beside a `ServiceProcess`, over the same store and key."""

    def __init__(self, service: ServiceProcess, *, extra_env: dict[str, str] | None = None) -> None:
        self.service = service
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consentbridge.cli", "worker"],
            cwd=self.service.workdir,
            env={**self.service.env, **self.extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
