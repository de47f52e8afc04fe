"""A lean HTTP/1.1 load generator for the intake benchmarks.

A Python HTTP client (httpx) spends ~0.5 ms of CPU per request, so on a 2-core machine it would
measure itself rather than the service. This one keeps `connections` keep-alive connections
open, each sending one prepared request at a time (no pipelining) and reading the answer by
its Content-Length — a few tens of microseconds of CPU per request. Its own CPU time is
reported with the results, so a reader can see how much of the machine it took.

Two modes: closed loop (`run_closed`: every connection sends its next request as soon as the
previous answer arrived — "as fast as the service accepts") and open loop (`run_paced`: one
request every 1/rate seconds whatever the answers, for latency measurements).

Only a 202 counts as accepted; any other answer or a broken connection is recorded and the
request is sent again (on a fresh connection), so nothing posted is silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_ATTEMPTS = 20


@dataclass
class LoadResult:
    requests: int = 0  # distinct requests posted
    accepted: int = 0  # answered 202
    attempts: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # why an attempt was not a 202
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time (user + system) while it ran
    accepted_at: list[float] = field(default_factory=list)  # time.time() of each 202, by index
    latencies_s: list[float] = field(default_factory=list)  # per request, send → 202

    @property
    def rate(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second the load generator used (1.0 = one whole core)."""
        return self.cpu_s / self.elapsed_s if self.elapsed_s else 0.0


def request_bytes(base_url: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One complete HTTP/1.1 POST, ready to write."""
    host = urlsplit(base_url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> int:
        """Send one request and read its answer; the status code."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class _Run:
    def __init__(self, base_url: str, requests: Sequence[bytes]) -> None:
        parts = urlsplit(base_url)
        assert parts.hostname is not None and parts.port is not None
        self.host, self.port = parts.hostname, parts.port
        self.requests = requests
        self.result = LoadResult(requests=len(requests))
        self.result.accepted_at = [0.0] * len(requests)
        self.result.latencies_s = [0.0] * len(requests)

    async def send(self, conn: _Connection, index: int) -> None:
        request = self.requests[index]
        started = time.perf_counter()
        for _ in range(MAX_ATTEMPTS):
            self.result.attempts += 1
            try:
                status = await conn.exchange(request)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                conn.close()
                self.result.refused[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            if status == 202:
                self.result.accepted += 1
                self.result.accepted_at[index] = time.time()
                self.result.latencies_s[index] = time.perf_counter() - started
                return
            self.result.refused[str(status)] += 1
            await asyncio.sleep(0.05)
        raise RuntimeError(f"request {index} got no 202 in {MAX_ATTEMPTS} attempts")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_closed(
    base_url: str,
    requests: Sequence[bytes],
    *,
    connections: int = 64,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Post every request, `connections` at a time, each as soon as a connection is free."""
    run = _Run(base_url, requests)
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        conn = _Connection(run.host, run.port)
        try:
            while next_index < len(requests):
                index = next_index
                next_index += 1
                await run.send(conn, index)
                if progress is not None:
                    progress(run.result.accepted)
        finally:
            conn.close()

    cpu, started = _cpu(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(max(1, min(connections, len(requests))))))
    run.result.elapsed_s = time.perf_counter() - started
    run.result.cpu_s = _cpu() - cpu
    return run.result


async def run_paced(
    base_url: str, requests: Sequence[bytes], *, rate: float, connections: int = 16
) -> LoadResult:
    """Post request i at start + i/rate (open loop), on a pool of keep-alive connections."""
    run = _Run(base_url, requests)
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Connection(run.host, run.port))

    async def one(index: int) -> None:
        conn = await idle.get()
        try:
            await run.send(conn, index)
        finally:
            idle.put_nowait(conn)

    cpu, started = _cpu(), time.perf_counter()
    tasks = []
    for index in range(len(requests)):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    run.result.elapsed_s = time.perf_counter() - started
    run.result.cpu_s = _cpu() - cpu
    while not idle.empty():
        with contextlib.suppress(Exception):
            idle.get_nowait().close()
    return run.result
