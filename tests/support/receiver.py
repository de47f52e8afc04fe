"""A real webhook endpoint for tests: a Starlette app served by uvicorn on loopback (plain HTTP,
or HTTPS with the sandbox's certificate) that records every delivery, on any path, and answers
with scripted statuses."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consentbridge.sandbox.tls import TlsFiles


@dataclass
class Receiver:
    """A webhook endpoint: records every delivery (to `url`, or any other path of `base_url`);
    `statuses` scripts the next answers."""

    base_url: str = ""
    paths: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hits: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.hits += 1
            status = self.statuses.pop(0) if self.statuses else 200
            body = await request.body()
            self.paths.append(request.url.path)
            self.raw.append(body)
            self.headers.append(dict(request.headers))
            self.queries.append(dict(request.query_params))
            if 200 <= status < 300:
                self.bodies.append(json.loads(body))
            self.arrived.set()
            return Response(status_code=status)

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        async def enough() -> None:
            while len(self.bodies) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout_s)


@asynccontextmanager
async def serve_receiver(tls: TlsFiles | None = None) -> AsyncIterator[Receiver]:
    """A Receiver served by uvicorn on 127.0.0.1:<free port>, over HTTPS when given TLS files."""
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    scheme = "https" if tls else "http"
    receiver.base_url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    tls_options: dict[str, Any] = {}
    if tls is not None:
        tls_options = {"ssl_certfile": str(tls.server_cert), "ssl_keyfile": str(tls.server_key)}
    config = uvicorn.Config(receiver.app(), log_level="critical", lifespan="off", **tls_options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task
        sock.close()
