"""Fixtures for the Didomi emulator's tests: an emulator over a fresh sandbox state, an
in-process client for its API, and a real webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consentbridge.sandbox.common import Limits, Principals, Stats
from consentbridge.sandbox.didomi.emulator import DidomiEmulator
from consentbridge.sandbox.state import SandboxState

BASE_URL = "https://127.0.0.1:8443"


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    # One key for the whole run: generating RSA keys per test would dominate the run time.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def state(signing_key: rsa.RSAPrivateKey) -> SandboxState:
    return SandboxState(
        principals=Principals.generate(), signing_key=signing_key, limits=Limits.cost_free()
    )


@pytest.fixture
async def emulator(state: SandboxState) -> AsyncIterator[DidomiEmulator]:
    emulator = DidomiEmulator(state)
    emulator.configure(webhook_retry_delays_s=[0.02] * 5, webhook_timeout_s=2.0)
    yield emulator
    await emulator.aclose()


@pytest.fixture
async def client(emulator: DidomiEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the emulator's routes, already holding a session token."""
    app = Starlette(routes=emulator.routes())
    headers = {"Authorization": f"Bearer {emulator.session_token()}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers) as c:
        yield c


@pytest.fixture
def org(state: SandboxState) -> dict[str, str]:
    """The query string every Didomi call needs."""
    return {"organization_id": state.principals.didomi.organization_id}


@dataclass
class Receiver:
    """A customer's webhook endpoint with its own OAuth token endpoint.

    `fail_next` answers that many deliveries with `fail_status` before accepting again;
    `require_token` rejects deliveries without a token it issued (401).
    """

    base_url: str = ""
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    fail_next: int = 0
    fail_status: int = 503
    require_token: bool = False
    expires_in: float = 3600
    hits: int = 0

    @property
    def hook_url(self) -> str:
        return f"{self.base_url}/hook"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.deliveries if d["type"] == kind]

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            self.token_requests.append(form)
            if form.get("client_secret") != "hook-secret":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            value = f"tok-{len(self.issued) + 1}"
            self.issued.append(value)
            return JSONResponse(
                {"access_token": value, "token_type": "Bearer", "expires_in": self.expires_in}
            )

        async def hook(request: Request) -> Response:
            self.hits += 1
            if self.require_token:
                presented = request.headers.get("authorization", "").removeprefix("Bearer ")
                if presented not in self.issued or presented in self.revoked:
                    return Response(status_code=401)
            if self.fail_next > 0:
                self.fail_next -= 1
                return Response(status_code=self.fail_status)
            self.headers.append(dict(request.headers))
            self.deliveries.append(await request.json())
            return Response(status_code=202)

        return Starlette(
            routes=[
                Route("/token", token, methods=["POST"]),
                Route("/hook", hook, methods=["POST"]),
            ]
        )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A Receiver served by uvicorn over plain HTTP on 127.0.0.1:<free port>."""
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    receiver.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(receiver.app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield receiver
    server.should_exit = True
    await task
    sock.close()


async def add_webhook(
    client: httpx.AsyncClient, org: dict[str, str], receiver: Receiver, *, oauth: bool = False
) -> dict[str, Any]:
    authentication: dict[str, str] = {}
    if oauth:
        authentication = {
            "url": receiver.token_url,
            "client_id": "didomi",
            "client_secret": "hook-secret",
        }
    response = await client.post(
        "/v1/marketplace/integrations",
        params=org,
        json={
            "type_id": "webhook-http",
            "properties": {"url": receiver.hook_url},
            "authentication": authentication,
        },
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def stats(state: SandboxState) -> Stats:
    return state.stats
