"""Fixtures for the Dataverse emulator's tests: an emulator over a fresh sandbox state, an
in-process Web API client holding a token of the default app (System Administrator), and a
real webhook receiver on loopback (`tests.support.receiver`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette

from consentbridge.sandbox.common import App, Limits, Principals, new_app
from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from consentbridge.sandbox.entra import issue_token
from consentbridge.sandbox.state import SandboxState
from tests.support.receiver import Receiver, serve_receiver

BASE_URL = "https://127.0.0.1:8443"
API = "/api/data/v9.2"


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
async def emulator(state: SandboxState) -> AsyncIterator[DataverseEmulator]:
    emulator = DataverseEmulator(state)
    emulator.configure(key_activation_s=0.0, webhook_timeout_s=5.0)
    yield emulator
    await emulator.aclose()


@dataclass
class Api:
    """A Web API client of the emulator, signed in as `app` (see `as_app`)."""

    http: httpx.AsyncClient
    state: SandboxState
    app: App

    def token(self, app: App | None = None) -> str:
        return issue_token(self.state, app or self.app, BASE_URL)[0]

    def as_app(self, app: App) -> Api:
        return Api(self.http, self.state, app)

    def add_app(self, name: str, roles: list[str]) -> Api:
        app = new_app(name, roles)
        self.state.principals.apps.append(app)
        return self.as_app(app)

    async def request(
        self, method: str, path: str, *, token: str | None = "", **kwargs: Any
    ) -> httpx.Response:
        headers = {"Accept": "application/json", "OData-Version": "4.0"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token or self.token()}"
        headers.update(kwargs.pop("headers", None) or {})
        url = path if path.startswith("https://") else f"{API}/{path}"
        return await self.http.request(method, url, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def create_contact(self, **columns: Any) -> str:
        response = await self.post("contacts", json={"lastname": "Doe", **columns})
        assert response.status_code == 204, response.text
        return entity_id(response)

    async def define_key(self, *columns: str, name: str = "cb_key") -> dict[str, Any]:
        response = await self.post(
            "EntityDefinitions(LogicalName='contact')/Keys",
            json={"SchemaName": name, "DisplayName": name, "KeyAttributes": list(columns)},
        )
        assert response.status_code == 204, response.text
        keys = await self.get("EntityDefinitions(LogicalName='contact')/Keys")
        found: dict[str, Any] = next(k for k in keys.json()["value"] if k["SchemaName"] == name)
        return found


def entity_id(response: httpx.Response) -> str:
    header = response.headers["OData-EntityId"]
    return header[header.rindex("(") + 1 : -1]


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.fixture
async def api(emulator: DataverseEmulator, state: SandboxState) -> AsyncIterator[Api]:
    app = Starlette(routes=emulator.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield Api(http, state, state.principals.apps[0])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A Receiver over plain HTTP on loopback."""
    async with serve_receiver() as served:
        yield served
