"""The processes under test: one `consentbridge serve` and any number of `consentbridge worker`
processes over one store, the reliability integration connected to the sandbox, and a view of
the store's leases (which process holds claimed rows right now) read straight from the database,
so that a kill can be aimed at a worker in the middle of a batch."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e.conftest import connect, integration_document
from tests.reliability.driver import PROPERTIES, Deliverer
from tests.support.sandbox import SandboxClient
from tests.support.service import ServiceProcess, WorkerProcess

# Short leases so that the rows of a killed worker come back within seconds, not minutes;
# small batches so that a run has many of them to be killed in the middle of.
FLEET_ENV = {
    "CONSENTBRIDGE_LEASE_S": "4",
    "CONSENTBRIDGE_BATCH_SIZE": "200",
    "CONSENTBRIDGE_LOG_LEVEL": "WARNING",
}


class Fleet:
    def __init__(
        self,
        workdir: Path,
        *,
        db_url: str | None = None,
        workers: int = 0,
        serve_worker: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.serve = ServiceProcess(
            workdir, db_url=db_url, worker=serve_worker, extra_env={**FLEET_ENV, **(env or {})}
        )
        self.workers = [WorkerProcess(self.serve) for _ in range(workers)]
        self.document: dict[str, Any] = {}
        self.seen_lease_holders: set[int] = set()

    @property
    def db_url(self) -> str:
        return self.serve.db_url

    @property
    def integration_id(self) -> str:
        return str(self.document["id"])

    def start(self, sandbox: SandboxClient, *, register_webhook: bool = False) -> Fleet:
        self.serve.start()
        self.document = connect(
            sandbox,
            self.serve,
            integration_document(sandbox, PROPERTIES),
            register_webhook=register_webhook,
        )
        for worker in self.workers:
            worker.start()
        return self

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.serve.stop()

    def deliverer(self, *, concurrency: int = 32) -> Deliverer:
        return Deliverer(
            self.serve.base_url,
            self.integration_id,
            self.document["webhook_auth"],
            concurrency=concurrency,
        )

    def status(self) -> dict[str, Any]:
        with self.serve.admin() as api:
            body: dict[str, Any] = api.get(
                f"/api/v1/integrations/{self.integration_id}/status"
            ).json()
        return body

    def output(self) -> str:
        lines = list(self.serve.output)
        for index, worker in enumerate(self.workers):
            lines += [f"[worker {index}] {line}" for line in worker.output]
        return "".join(lines[-200:])

    # -- leases ------------------------------------------------------------------------------

    def leases_by_pid(self) -> Counter[int]:
        """Live leases per process id (worker ids are `host:pid:random`)."""
        query = (
            "SELECT lease_owner, count(*) FROM sync_states "
            "WHERE lease_owner IS NOT NULL AND lease_until > {now} GROUP BY lease_owner"
        )
        rows = query_store(self.db_url, query.format(now=repr(time.time())))
        held: Counter[int] = Counter()
        for owner, count in rows:
            parts = str(owner).split(":")
            if len(parts) >= 3 and parts[-2].isdigit():
                held[int(parts[-2])] += int(count)
        self.seen_lease_holders |= set(held)
        return held

    def wait_for_lease(self, pid: int, timeout: float) -> bool:
        """True once process `pid` holds a lease (it is in the middle of a batch)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.leases_by_pid().get(pid):
                return True
            time.sleep(0.02)
        return False


def query_store(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    """A read straight from the store's database (never through the service)."""
    try:
        if db_url.startswith("sqlite:///"):
            with closing(sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=5)) as conn:
                return list(conn.execute(sql))
        with psycopg.connect(db_url, connect_timeout=5) as conn:
            return list(conn.execute(sql))
    except (sqlite3.Error, psycopg.Error):
        return []  # the schema may not exist yet, or the file is being created
