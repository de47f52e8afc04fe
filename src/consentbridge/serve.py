"""Process composition for `consentbridge serve` and `consentbridge worker`: the HTTP service,
the sync workers and (with `--sandbox`) the emulators and a demo integration, in one event loop
with one graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import secrets
import shlex
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from consentbridge.config.files import load_document_file
from consentbridge.config.settings import Settings
from consentbridge.connections import uvicorn_options
from consentbridge.context import AppContext
from consentbridge.listening import listen_tcp
from consentbridge.logs import get_logger
from consentbridge.metrics import metrics_for
from consentbridge.operations import intake
from consentbridge.operations.job_runner import JobRunner
from consentbridge.sync.worker import Worker, WorkerConfig

if TYPE_CHECKING:
    from consentbridge.web.deps import Receivers

log = get_logger("consentbridge.serve")

# Young-generation threshold of the cyclic garbage collector (CPython's default: 700).
YOUNG_GC_THRESHOLD = 10_000


class ManagedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (several servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    config_files: list[Path] = field(default_factory=list)
    worker: bool = True
    sandbox: bool = False
    sandbox_port: int = 8443
    sandbox_state_dir: Path = Path("var/sandbox")
    public_url: str | None = None


def _install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _apply_config_files(ctx: AppContext, files: list[Path]) -> list[str]:
    from consentbridge.operations import lifecycle

    applied = []
    for path in files:
        result = await lifecycle.apply(ctx, load_document_file(path), default_id=path.stem)
        if result.flow_error is not None:
            log.warning(
                "config.flow_error",
                path=str(path),
                integration=result.integration.id,
                reason=result.flow_error,
            )
        applied.append(result.integration.id)
    return applied


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """`consentbridge worker`: sync workers only, against the shared store."""
    stop = stop or asyncio.Event()
    _install_stop_handlers(stop)
    ctx = await AppContext.open(settings)
    worker = Worker(
        ctx.store, ctx.secrets, WorkerConfig.from_settings(settings), metrics=metrics_for(ctx)
    )
    worker.helpers.append(JobRunner.for_worker(ctx, worker.worker_id).run)
    ctx.wake_workers.append(worker.wake)
    task = asyncio.create_task(worker.run())
    helpers: list[asyncio.Task[None]] = []
    metrics_server: tuple[uvicorn.Server, socket.socket] | None = None
    try:
        helpers += _start_alerts(ctx, worker)
        metrics_url = None
        if settings.metrics_port is not None:
            metrics_server, metrics_url = await _serve_metrics(ctx, helpers)
            print(f"metrics: {metrics_url}", flush=True)
        settle_heap()
        log.info("service.started", command="worker", worker=worker.worker_id, metrics=metrics_url)
        await stop.wait()
        log.info("service.stopping", command="worker")
    finally:
        worker.stop()
        if metrics_server is not None:
            metrics_server[0].should_exit = True
        await task
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if metrics_server is not None:
            metrics_server[1].close()
        await ctx.aclose()
        log.info("service.stopped", command="worker")


async def _serve_metrics(
    ctx: AppContext, tasks: list[asyncio.Task[None]]
) -> tuple[tuple[uvicorn.Server, socket.socket], str]:
    """Serve the worker's ``/metrics`` (and health probes) on the configured address; the
    server with its socket, and the URL to scrape."""
    from consentbridge.web.app import create_metrics_app

    settings = ctx.settings
    assert settings.metrics_port is not None
    sock = listen_tcp(settings.metrics_host, settings.metrics_port, backlog=128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_metrics_app(ctx),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = ManagedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    tasks.append(task)
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        sock.close()
        task.result()
    host = settings.metrics_host
    shown = f"[{host}]" if ":" in host else host
    return (server, sock), f"http://{shown}:{port}/metrics"


def _start_alerts(ctx: AppContext, worker: Worker) -> list[asyncio.Task[None]]:
    """The alert checks of this worker, when an alert webhook is configured."""
    from consentbridge.operations import alerts

    monitor = alerts.monitor_from(ctx.settings, ctx.store, worker.registry.auth_states)
    return [] if monitor is None else [asyncio.create_task(monitor.run())]


def settle_heap() -> None:
    """Tune the garbage collector once start-up is over (a whole-process setting: only the
    long-running commands call it).

    After start-up the heap holds ~150,000 objects (modules, the app, SQLAlchemy's and
    pydantic's caches) that live as long as the process. With CPython's defaults every full
    collection walks all of them, and a young collection ran every 700 net allocations —
    several times per webhook group, since a group holds its requests' objects at once. In
    `benchmarks/intake.py` collections took a fifth of the event loop's time. ``gc.freeze``
    moves the start-up objects out of the collector's reach, and a young threshold of
    ``YOUNG_GC_THRESHOLD`` lets a burst of requests finish before a collection; garbage in
    cycles is still collected, a little later (at most ~10,000 young objects wait).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, old)


async def run_service(
    settings: Settings,
    options: ServeOptions,
    *,
    stop: asyncio.Event | None = None,
    show_admin_token: bool = False,
) -> None:
    """`consentbridge serve`: HTTP service, workers and optionally the sandbox."""
    from consentbridge.web.app import create_app

    stop = stop or asyncio.Event()
    _install_stop_handlers(stop)
    ctx = await AppContext.open(settings)
    servers: list[tuple[uvicorn.Server, socket.socket]] = []
    tasks: list[asyncio.Task[None]] = []
    alert_tasks: list[asyncio.Task[None]] = []
    worker: Worker | None = None
    try:
        http_sock = listen_tcp(options.host, options.port, backlog=2048)
        port = http_sock.getsockname()[1]
        public_url = options.public_url or settings.public_url or f"http://{options.host}:{port}"
        # Operations run by this process (e.g. enabling the webhook on apply) call back here.
        ctx.settings = dataclasses.replace(ctx.settings, public_url=public_url)
        banner = [f"console: http://{options.host}:{port}/console"]
        if options.sandbox:
            banner += await _start_sandbox(ctx, options, public_url, servers, tasks)
        await _apply_config_files(ctx, options.config_files)
        app = create_app(ctx, receivers=_receivers())
        config = uvicorn.Config(
            app,
            log_config=None,  # uvicorn's errors go through our log handler (logs.py)
            log_level="warning",
            access_log=False,
            lifespan="on",
            backlog=2048,
            # Idle, header and body deadlines and a bound on open connections (connections.py).
            **uvicorn_options(settings),
        )
        web = ManagedServer(config)
        servers.append((web, http_sock))
        tasks.append(asyncio.create_task(web.serve(sockets=[http_sock])))
        if options.worker:
            # The same Metrics as the app's /metrics (both are keyed by this one context).
            worker = Worker(
                ctx.store,
                ctx.secrets,
                WorkerConfig.from_settings(settings),
                metrics=metrics_for(ctx),
            )
            worker.helpers.append(JobRunner.for_worker(ctx, worker.worker_id).run)
            ctx.wake_workers.append(worker.wake)
            tasks.append(asyncio.create_task(worker.run()))
        web_task = tasks[-2] if options.worker else tasks[-1]
        if worker is not None:
            alert_tasks += _start_alerts(ctx, worker)
        while not web.started and not web_task.done():
            await asyncio.sleep(0.02)
        if web_task.done():
            web_task.result()
        if show_admin_token and settings.admin_token is not None:
            # Only the sandbox's own token (kept in var/admin.token) is ever printed.
            banner.append(f"admin_token: {settings.admin_token.get_secret_value()}")
        if options.sandbox:
            banner.append(_write_demo_env(options, public_url, settings, banner))
        for line in banner:
            print(line, flush=True)
        log.info(
            "service.started",
            command="serve",
            url=public_url,
            worker=worker.worker_id if worker is not None else None,
            sandbox=options.sandbox,
        )
        settle_heap()
        await stop.wait()
        log.info("service.stopping", command="serve")
    finally:
        if worker is not None:
            worker.stop()
        for server, _ in servers:
            server.should_exit = True
        for task in alert_tasks:
            task.cancel()  # they run until cancelled
        await asyncio.gather(*alert_tasks, return_exceptions=True)
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 20)
        for _, sock in servers:
            sock.close()
        await ctx.aclose()
        log.info("service.stopped", command="serve")


async def _start_sandbox(
    ctx: AppContext,
    options: ServeOptions,
    public_url: str,
    servers: list[tuple[uvicorn.Server, socket.socket]],
    tasks: list[asyncio.Task[None]],
) -> list[str]:
    from consentbridge import demo
    from consentbridge.operations import integrations
    from consentbridge.sandbox.server import prepare_sandbox

    prepared = prepare_sandbox("127.0.0.1", options.sandbox_port, options.sandbox_state_dir)
    prepared.server = ManagedServer(prepared.server.config)
    servers.append((prepared.server, prepared.sock))
    tasks.append(asyncio.create_task(prepared.serve()))
    while not prepared.server.started:
        if tasks[-1].done():
            tasks[-1].result()
        await asyncio.sleep(0.02)
    ca = str(prepared.tls.ca_cert)
    principals = prepared.state.principals.public()
    document = demo.demo_document(
        principals, prepared.base_url, ca, demo.demo_webhook_secret(options.sandbox_state_dir)
    )
    await integrations.apply(ctx, document)
    await demo.seed_contacts(prepared.base_url, ca, principals)
    await demo.register_didomi_webhook(document, public_url, ca)
    return [f"sandbox: {line}" for line in prepared.banner()] + [
        f"demo integration: {demo.DEMO_ID} (contacts alice@example.com, bob@example.com)"
    ]


def _receivers() -> Receivers | None:
    """The webhook receivers: the real ones, unless a benchmark asked for unstored intake."""
    from consentbridge.web.deps import Receivers

    if os.environ.get(intake.UNSTORED_INTAKE_ENV) != "1":
        return None
    log.warning(
        "intake.unstored",
        reason=f"{intake.UNSTORED_INTAKE_ENV}=1: Didomi webhooks are answered 202 WITHOUT "
        "being stored (benchmark mode); never set it outside benchmarks/intake.py",
    )
    return Receivers(didomi=intake.receive_didomi_unstored)


def _write_demo_env(
    options: ServeOptions, public_url: str, settings: Settings, banner: list[str]
) -> str:
    """`var/demo.env` (0600) so the README's demo commands need no copy and paste."""
    values = dict(
        line.removeprefix("sandbox: ").split(": ", 1)
        for line in banner
        if line.startswith("sandbox: ")
    )
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    lines = {
        "SERVICE_URL": public_url,
        "ADMIN_TOKEN": token,
        "SANDBOX_URL": values.get("base_url", ""),
        "SANDBOX_CA": values.get("ca_bundle", ""),
        "DIDOMI_ORG": values.get("didomi_organization_id", ""),
        "DIDOMI_API_KEY": values.get("didomi_api_key", ""),
        "DIDOMI_API_SECRET": values.get("didomi_api_secret", ""),
    }
    path = options.sandbox_state_dir.parent / "demo.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"{key}={shlex.quote(value)}\n" for key, value in lines.items())
    return f"demo env: {path}"


def generate_admin_token() -> str:
    return secrets.token_urlsafe(24)


SANDBOX_ADMIN_TOKEN_FILE = "admin.token"


def sandbox_admin_token(folder: Path) -> str:
    """The admin token of `serve --sandbox`: the one kept in ``folder/admin.token``, else a new
    one written there (0600, folder 0700), so a restart keeps the console session, the
    README's `var/demo.env` and any script using it valid."""
    path = folder / SANDBOX_ADMIN_TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_text().strip()
        if len(kept) >= 32:
            return kept
    token = generate_admin_token()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A new name then an atomic rename: a reader never sees half a token.
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(temporary, path)
    return token
