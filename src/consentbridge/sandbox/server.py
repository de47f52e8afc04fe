"""Runs the sandbox over real HTTPS with uvicorn: in the foreground (`consentbridge sandbox`),
beside the service (`serve --sandbox`), or in a background thread for tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from consentbridge.listening import listen_tcp
from consentbridge.sandbox.app import Sandbox, build_sandbox
from consentbridge.sandbox.common import Limits
from consentbridge.sandbox.state import SandboxState
from consentbridge.sandbox.tls import TlsFiles, ensure_tls_files

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443
DEFAULT_STATE_DIR = Path("var/sandbox")
STARTUP_TIMEOUT_S = 20.0
GRACEFUL_SHUTDOWN_S = 2


@dataclass
class PreparedSandbox:
    """A bound socket, TLS files and the ASGI app, ready for `uvicorn.Server.serve`."""

    sandbox: Sandbox
    tls: TlsFiles
    sock: socket.socket
    server: uvicorn.Server

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def base_url(self) -> str:
        host = self.sock.getsockname()[0]
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    @property
    def state(self) -> SandboxState:
        return self.sandbox.state

    def banner(self) -> list[str]:
        """The start-up lines of CONTRACT §7 (credentials are the sandbox's own, not secrets)."""
        principals = self.state.principals
        app = principals.apps[0]
        return [
            f"base_url: {self.base_url}",
            f"ca_bundle: {self.tls.ca_cert}",
            f"tenant_id: {principals.tenant_id}",
            f"client_id: {app.client_id}",
            f"client_secret: {app.client_secret}",
            f"didomi_organization_id: {principals.didomi.organization_id}",
            f"didomi_api_key: {principals.didomi.api_key}",
            f"didomi_api_secret: {principals.didomi.api_secret}",
        ]

    async def serve(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve until stopped; ``on_started`` runs once the server is up — and handles
        SIGINT/SIGTERM itself, so a caller that signals after seeing the banner cannot catch
        the process half-started (where a signal could leave it hanging)."""
        task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        if on_started is not None:
            while not self.server.started and not task.done():
                await asyncio.sleep(0.01)
            if self.server.started:
                on_started()
        await task


def prepare_sandbox(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    state_dir: Path | None = DEFAULT_STATE_DIR,
    *,
    persist: bool = True,
    limits: Limits | None = None,
) -> PreparedSandbox:
    """Load or create state and certificates, bind the port and build the app; the limits and
    cost model are the published ones unless `limits` says otherwise."""
    folder = state_dir or Path(".")
    tls = ensure_tls_files(folder)
    state = SandboxState.load(state_dir, limits)
    sandbox = build_sandbox(state, persist=persist and state_dir is not None)
    sock = listen_tcp(host, port, backlog=1024)
    config = uvicorn.Config(
        sandbox.app,
        ssl_certfile=str(tls.server_cert),
        ssl_keyfile=str(tls.server_key),
        log_config=None,  # a process that configured logging keeps its own handlers
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
        # Stopping waits at most this long for open connections (keep-alive clients, requests
        # held by injected faults) before closing them, so shutdown never hangs on a client.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        backlog=1024,
    )
    return PreparedSandbox(sandbox, tls, sock, uvicorn.Server(config))


@dataclass
class BackgroundSandbox:
    """A sandbox served from a thread of this process (for tests)."""

    prepared: PreparedSandbox
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return self.prepared.base_url

    @property
    def ca_bundle(self) -> Path:
        return self.prepared.tls.ca_cert

    @property
    def sandbox(self) -> Sandbox:
        return self.prepared.sandbox

    def stop(self) -> None:
        self.prepared.server.should_exit = True
        self.thread.join(timeout=15)
        self.prepared.sock.close()


def start_in_thread(
    state_dir: Path, host: str = DEFAULT_HOST, port: int = 0, *, limits: Limits | None = None
) -> BackgroundSandbox:
    """A sandbox for tests: cost-free (`Limits.cost_free()`) unless `limits` are given, so that
    the suite is not served at Dataverse's pace."""
    prepared = prepare_sandbox(
        host, port, state_dir, persist=False, limits=limits or Limits.cost_free()
    )
    thread = threading.Thread(
        target=lambda: asyncio.run(prepared.serve()), name="sandbox", daemon=True
    )
    thread.start()
    started = threading.Event()

    def wait() -> None:
        while not prepared.server.started and thread.is_alive():
            threading.Event().wait(0.02)
        started.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    if not started.wait(STARTUP_TIMEOUT_S) or not prepared.server.started:
        raise RuntimeError("The sandbox did not start within 20 s; see the log above.")
    return BackgroundSandbox(prepared, thread)
