"""What the intake, burst and latency benchmarks share: the sandbox in a process of its own, the
real `consentbridge serve` (tests/support/service.py) wired to it like the e2e tests do, webhook
requests prepared for the load generator, and small measurements (CPU time of a process,
percentiles).

The sandbox runs as a separate process, not in a thread of the benchmark: the load generator
lives here, and a sandbox sharing its GIL would slow both and blur what is measured. It keeps
no snapshot (`persist=False`), so stopping it after 50,000 contacts costs nothing.

`python -m benchmarks.harness DIR [--published-costs]` is that sandbox process: it prints the
banner lines of `consentbridge sandbox` (base_url, ca_bundle, …) and serves until terminated.
It starts cost-free like the test sandboxes, or with the published cost model when asked.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks.loadgen import request_bytes
from tests.e2e.conftest import connect, integration_document, webhook_token
from tests.reliability.driver import PROPERTIES, Change
from tests.support.sandbox import SandboxClient
from tests.support.service import ServiceProcess

QUIET_ENV = {"CONSENTBRIDGE_LOG_LEVEL": "WARNING"}
STARTUP_TIMEOUT_S = 60.0


class SandboxProcess:
    """The sandbox emulators in a child process (see the module docstring)."""

    def __init__(self, state_dir: Path, *, published_costs: bool = False) -> None:
        self.state_dir = state_dir
        # False: cost-free, like the test sandboxes (benchmarks that want a cost set their own
        # through /_sandbox/limits); True: the published cost model of `consentbridge sandbox`.
        self.published_costs = published_costs
        self.proc: subprocess.Popen[str] | None = None
        self.banner: dict[str, str] = {}
        self.output: list[str] = []

    def start(self) -> SandboxProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.harness",
                str(self.state_dir),
                *(["--published-costs"] if self.published_costs else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "didomi_api_secret" not in self.banner:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start:\n" + "".join(self.output))
            self.output.append(line)
            key, sep, value = line.strip().partition(": ")
            if sep:
                self.banner[key] = value
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def base_url(self) -> str:
        return self.banner["base_url"]

    @property
    def ca_bundle(self) -> Path:
        return Path(self.banner["ca_bundle"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self) -> SandboxClient:
        return SandboxClient(self.base_url, self.ca_bundle)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Delivery(Protocol):
    """A change a benchmark posts: `Change` (contact columns) or `consent_burst.ConsentChange`."""

    def body(self) -> dict[str, Any]: ...


@dataclass
class Wired:
    """A running `serve` with one integration on the sandbox and a webhook token for it."""

    service: ServiceProcess
    document: dict[str, Any]
    token: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def integration_id(self) -> str:
        return str(self.document["id"])

    def webhook_path(self) -> str:
        return f"/webhooks/didomi/{self.integration_id}"

    def requests(self, changes: Iterable[Delivery]) -> list[bytes]:
        """One prepared HTTP request per change (`user.updated` webhooks with the token)."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        path = self.webhook_path()
        return [
            request_bytes(self.service.base_url, path, headers, json.dumps(c.body()).encode())
            for c in changes
        ]

    def status(self) -> dict[str, Any]:
        with self.service.admin() as api:
            body: dict[str, Any] = api.get(
                f"/api/v1/integrations/{self.integration_id}/status"
            ).json()
        return body


@contextmanager
def serving(
    workdir: Path,
    sandbox: SandboxClient,
    *,
    db_url: str | None = None,
    worker: bool = True,
    env: dict[str, str] | None = None,
    credentials: Sequence[dict[str, Any]] = (),
    properties: Sequence[dict[str, Any]] = PROPERTIES,
) -> Iterator[Wired]:
    """`consentbridge serve` in `workdir` with `properties` (default: the reliability mapping,
    newsletter consent and the change's version) as an integration on the sandbox, writing as
    the sandbox's first app and the apps of `credentials` (`config.credentials`); stopped on
    exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    service = ServiceProcess(
        workdir, db_url=db_url, worker=worker, extra_env={**QUIET_ENV, **(env or {})}
    )
    service.start(timeout=STARTUP_TIMEOUT_S)
    try:
        wanted = integration_document(sandbox, [dict(p) for p in properties])
        if credentials:
            wanted["config"]["credentials"] = [
                {"client_id": app["client_id"], "client_secret": app["client_secret"]}
                for app in credentials
            ]
        document = connect(sandbox, service, wanted, register_webhook=False)
        yield Wired(service, document, webhook_token(service, document))
    finally:
        service.stop()


def distinct_changes(count: int, prefix: str, *, start: int = 0) -> list[Change]:
    """`count` changes, each to a user of its own (version 1, newsletter off for odd users)."""
    return [
        Change(f"{prefix}-{i:07d}@example.com", 1, i % 2 == 0) for i in range(start, start + count)
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 to 100) by the nearest-rank method; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def load_note(elapsed_s: float, cpu_s: float) -> str:
    """How much of the machine the load generator itself took."""
    share = cpu_s / elapsed_s if elapsed_s else 0.0
    return (
        f"the load generator (this process, {os.cpu_count()} cores in the machine) used "
        f"{share:.0%} of one core while posting: it competes with the service for the CPU"
    )


def _serve_sandbox(state_dir: Path, published_costs: bool) -> None:
    from consentbridge.sandbox.common import Limits
    from consentbridge.sandbox.server import prepare_sandbox

    limits = Limits() if published_costs else Limits.cost_free()
    prepared = prepare_sandbox("127.0.0.1", 0, state_dir, persist=False, limits=limits)
    for line in prepared.banner():
        print(line, flush=True)
    asyncio.run(prepared.serve())


if __name__ == "__main__":
    _serve_sandbox(Path(sys.argv[1]), "--published-costs" in sys.argv[2:])
