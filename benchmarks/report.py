"""What every benchmark shares: run options, the machine description, and the report each one
prints as a table and writes to `benchmarks/results/<name>.json`.

Benchmarks measure and print; they never assert timings. A goal that is not met is shown as
such (and makes `make bench` exit 1) so the README can only quote what was measured."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Options:
    quick: bool
    pg_url: str | None

    @classmethod
    def from_args(cls, *, quick: bool, pg_url: str | None) -> Options:
        return cls(quick=quick, pg_url=pg_url or os.environ.get("CONSENTBRIDGE_TEST_PG_URL"))


@dataclass(frozen=True)
class Goal:
    """A goal from issue #6, with what was measured against it."""

    text: str
    measured: str
    met: bool


@dataclass
class Drained:
    """What a client achieved writing a burst into the sandbox's Dataverse: the `burst`,
    `consent-burst`, `ceiling` and `app-users` runs of ConsentBridge and `burst`'s naive
    sample. `seconds` is the span each benchmark documents; the Dataverse figures are the
    sandbox's own counters over it (`count`)."""

    changes: int = 0
    seconds: float = 0.0
    intake_seconds: float = 0.0
    rows: int = 0  # rows written (changes to one user coalesce into one row)
    requests: int = 0
    throttled: int = 0
    throttled_by_limit: dict[str, int] = field(default_factory=dict)
    execution_s: float = 0.0
    wrong: int = 0
    app_users: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    # Users synced per second between 10 % and 90 % of the backlog: the steady part, without
    # the worker's start and the last batches (which weigh on a short run, not a long burst).
    steady_rate: float = 0.0

    @property
    def rate(self) -> float:
        """Changes per second."""
        return self.changes / self.seconds if self.seconds else 0.0

    @property
    def row_rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def requests_per_1000(self) -> float:
        """Dataverse requests per 1,000 changes."""
        return self.requests / self.changes * 1000 if self.changes else 0.0

    @property
    def throttled_per_1000(self) -> float:
        """429s per 1,000 requests."""
        return self.throttled / self.requests * 1000 if self.requests else 0.0

    def cells(self) -> list[Any]:
        """The report columns every drained run shows, in order: changes, seconds, changes/s,
        requests, requests/1,000 changes, 429s."""
        return [
            self.changes,
            round(self.seconds, 1),
            round(self.rate),
            self.requests,
            round(self.requests_per_1000, 2),
            self.throttled,
        ]

    def count(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """Take the Dataverse figures from two readings of the sandbox's `stats()["dataverse"]`."""
        self.requests = after["requests"] - before["requests"]
        self.throttled = after["throttled"] - before["throttled"]
        self.rows = after["rows_written"] - before["rows_written"]
        self.execution_s = after["execution_s"] - before["execution_s"]
        self.throttled_by_limit = {
            k: after["throttled_by_limit"][k] - before["throttled_by_limit"].get(k, 0)
            for k in after["throttled_by_limit"]
        }


@dataclass
class Report:
    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # When and where a report read back from a results file was measured (None: now, here).
    origin: dict[str, Any] | None = None

    @property
    def goals_met(self) -> bool:
        return all(goal.met for goal in self.goals)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            **(self.origin or stamp()),
            "columns": self.columns,
            "rows": self.rows,
            "goals": [goal.__dict__ for goal in self.goals],
            "data": self.data,
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Report:
        """A report as `to_json` wrote it (to fold runs kept in results files)."""
        return cls(
            name=document["name"],
            title=document["title"],
            columns=document["columns"],
            rows=document["rows"],
            goals=[Goal(**goal) for goal in document["goals"]],
            data=document.get("data", {}),
            notes=document.get("notes", []),
            origin={"measured_at": document["measured_at"], "machine": document["machine"]},
        )

    def save_and_print(self, console: Console | None = None) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)
        # Piped into a log, rich would wrap the table at 80 columns.
        console = console or Console(width=None if sys.stdout.isatty() else 160)
        table = Table(title=self.title)
        for column in self.columns:
            table.add_column(column)
        for row in self.rows:
            table.add_row(*(cell_text(v) for v in row))
        console.print(table)
        for goal in self.goals:
            mark = "[green]met[/green]" if goal.met else "[red]NOT met[/red]"
            console.print(f"  goal: {goal.text} — measured {goal.measured}: {mark}")
        for note in self.notes:
            console.print(f"  note: {note}")
        console.print(f"  written to {path}")
        return path


def cell_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def stamp() -> dict[str, Any]:
    """When and where a run is measured: now, on this machine and commit."""
    return {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}


def machine() -> dict[str, Any]:
    """Where the numbers came from: CPU model and count, memory, OS and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    commit = None
    with contextlib.suppress(OSError):
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
        # A run on uncommitted changes (other than results) says so: its numbers are not that
        # commit's.
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":!results"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        if commit and changed:
            commit += "+uncommitted changes"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "commit": commit,
    }
