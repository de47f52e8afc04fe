"""The `intake` benchmark's "beside the worker" measurement: durable webhooks/s into a `serve
--no-worker` while a `consentbridge worker` process drains a backlog of the same store at the
same time, on the same two cores.

Before the measured windows each such store is loaded with a backlog (`Size.backlog` changes,
one user each, posted through the same webhook route) and every user the benchmark will post
gets a contact in the sandbox, so the worker's batches really look up and write rows. Then the
sandbox switches to the light cost model of `burst` (40 ms + 0.2 ms per row, the real request
limits): every request takes a Dataverse-like round trip, but the execution-time budget is
never what stops the worker. Against the published model (24 ms per row) one application
user drains ~160 rows/s and the worker mostly waits; cost-free, the sandbox answers at once
and the worker and the sandbox together take both cores. Neither says what the worker's own
CPU does to intake while it drains as fast as Dataverse lets it; the light model does. The
"at the published cost model" rows run the same measurement with the sandbox charging
`Limits()` during their windows (`PUBLISHED_COSTS`): the production case, reported beside.

For each window the worker is started, allowed to begin draining (its backlog shrinks), then
the load generator posts the window and the worker is stopped again — so the other servers'
windows of the round never share the machine with it. The drained count of a window is the
backlog before, plus what the window added, minus the backlog after (status `pending`); a
window in which the backlog ran dry says so.

`CONSENTBRIDGE_BENCH_PROFILE=DIR` (and py-spy in the environment: `pip install py-spy`)
records the worker with `py-spy record --gil --format raw` (samples of the thread that holds
the GIL: where its Python CPU goes) during every window, one file per window
in DIR; `python -m benchmarks.beside FILE…` prints the top functions by own and by inclusive
samples.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import QUIET_ENV, Wired, cpu_seconds, distinct_changes
from consentbridge.sandbox.common import Limits
from tests.reliability.driver import create_contacts, prepare_sandbox
from tests.support.sandbox import SandboxClient
from tests.support.service import WorkerProcess

PROFILE_ENV = "CONSENTBRIDGE_BENCH_PROFILE"
# burst's light cost model (benchmarks/burst.py): a real round trip per request, no
# execution-time ceiling in reach.
LIGHT_COSTS: dict[str, float] = {
    "requests_per_window": 6000,
    "window_s": 300.0,
    "concurrent": 52,
    "cost_base_ms": 40.0,
    "cost_bulk_row_ms": 0.2,
    "cost_write_row_ms": 0.2,
    "cost_read_row_ms": 0.2,
}
# The published model (`Limits()`, as `ceiling` uses it): Dataverse's real execution-time
# ceiling, ~165 rows/s for one application user. The production case, reported beside the
# light-model rows; the worker mostly waits on Dataverse there.
PUBLISHED_COSTS: dict[str, Any] = Limits().public()
LIGHT_MODEL: dict[str, Any] = {**PUBLISHED_COSTS, **LIGHT_COSTS}
"""The light model over the published limits (switching back from `PUBLISHED_COSTS`)."""
# A backlog the published model cannot drain in a window (~165 changes/s) is enough; a few
# batches of 1,000 at least, so that --quick's does not run dry either.
PUBLISHED_BACKLOG_SHARE = 6
PUBLISHED_BACKLOG_MIN = 3_000
DRAINING_TIMEOUT_S = 60.0


@dataclass
class Drain:
    """What the worker did during one measured window."""

    pending_before: int
    pending_after: int
    posted: int
    seconds: float
    worker_cpu_s: float
    sandbox_cpu_s: float
    machine_cpu_s: float  # every process's, the database server's included

    @property
    def drained(self) -> int:
        return self.pending_before + self.posted - self.pending_after

    @property
    def rate(self) -> float:
        return self.drained / self.seconds if self.seconds else 0.0

    @property
    def ran_dry(self) -> bool:
        return self.pending_after == 0

    def data(self) -> dict[str, float | int]:
        return {**self.__dict__, "drained": self.drained, "rate": self.rate}


def users(prefix: str, backlog: int, warmup: int, window: int, rounds: int) -> list[str]:
    """The e-mail addresses `intake._post` posts for a config with `prefix`: its backlog, its
    warm-up and its windows (the prefixes `_post` derives from their tags)."""
    tags = [(backlog, f"{prefix}-backlog-0"), (warmup, f"{prefix}-warmup-0")]
    tags += [(window, f"{prefix}-r{r}-{r}") for r in range(rounds)]
    return [c.user for count, prefix_ in tags for c in distinct_changes(count, prefix_)]


def seed_contacts(sandbox: SandboxClient, emails: list[str]) -> None:
    """The version column and one contact per e-mail, while the sandbox is still cost-free."""
    seeder = prepare_sandbox(sandbox)
    create_contacts(sandbox, sorted(set(emails)), seeder)


def pending(wired: Wired) -> int:
    return int(wired.status()["pending"])


@contextmanager
def draining(
    wired: Wired, sandbox_pid: int, profile: Path | None
) -> Iterator[Callable[[int], Drain]]:
    """A worker draining `wired`'s store for the block; yields the function that ends the
    measurement (given the number of webhooks accepted meanwhile) and returns its `Drain`."""
    worker = WorkerProcess(wired.service, extra_env=dict(QUIET_ENV)).start()
    spy: subprocess.Popen[bytes] | None = None
    try:
        start_pending = pending(wired)
        deadline = time.monotonic() + DRAINING_TIMEOUT_S
        while pending(wired) >= start_pending and time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError("the worker exited:\n" + "".join(worker.output))
            time.sleep(0.2)
        before = pending(wired)
        if profile is not None:
            spy = _py_spy(worker.pid, profile)
        cpu_w, cpu_s, cpu_m = cpu_seconds(worker.pid), cpu_seconds(sandbox_pid), machine_cpu()
        started = time.perf_counter()

        def finish(posted: int) -> Drain:
            seconds = time.perf_counter() - started
            worker_cpu = cpu_seconds(worker.pid) - cpu_w
            sandbox_cpu = cpu_seconds(sandbox_pid) - cpu_s
            machine = machine_cpu() - cpu_m
            return Drain(before, pending(wired), posted, seconds, worker_cpu, sandbox_cpu, machine)

        yield finish
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
        worker.stop()


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat, Linux)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def profile_dir() -> Path | None:
    value = os.environ.get(PROFILE_ENV)
    if not value:
        return None
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        raise RuntimeError(f"{PROFILE_ENV} is set but py-spy is not installed; pip install py-spy.")
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    local = Path(sys.executable).parent / "py-spy"
    exe = str(local) if local.exists() else "py-spy"
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "--format", "raw", "--gil", "-o", str(out), "-r", "200"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize(paths: list[Path], top: int = 25) -> str:
    """The functions most often on top of the stack (own) and anywhere in it (inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = [f.rsplit(":", 1)[0] for f in stack.split(";")]
            if frames:
                own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    lines = [f"{total} samples"]
    for title, counter in (("own", own), ("inclusive", inclusive)):
        lines.append(f"-- {title}")
        for frame, count in counter.most_common(top):
            lines.append(f"{count / total:6.1%}  {frame}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize([Path(p) for p in sys.argv[1:]]))
