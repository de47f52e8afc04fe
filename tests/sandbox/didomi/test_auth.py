"""Sessions and bearer tokens: the API key buys a 1-hour JWT that every other route demands."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from consentbridge.sandbox.didomi import auth
from consentbridge.sandbox.didomi.emulator import DidomiEmulator
from consentbridge.sandbox.state import SandboxState

from .conftest import BASE_URL


@pytest.fixture
async def anonymous(emulator: DidomiEmulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=Starlette(routes=emulator.routes()))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def _credentials(state: SandboxState) -> dict[str, str]:
    didomi = state.principals.didomi
    return {"type": "api-key", "key": didomi.api_key, "secret": didomi.api_secret}


async def test_the_api_key_and_secret_buy_a_one_hour_token(
    anonymous: httpx.AsyncClient, state: SandboxState, org: dict[str, str]
) -> None:
    response = await anonymous.post("/v1/sessions", json=_credentials(state))
    assert response.status_code == 201
    token = response.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    users = await anonymous.get(
        "/v1/consents/users", params=org, headers={"Authorization": f"Bearer {token}"}
    )
    assert users.status_code == 200


async def test_a_wrong_secret_is_a_400_with_a_didomi_error_body(
    anonymous: httpx.AsyncClient, state: SandboxState
) -> None:
    body = {**_credentials(state), "secret": "wrong"}
    response = await anonymous.post("/v1/sessions", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == 400
    assert error["name"] == "BadRequest"
    assert error["message"]
    assert isinstance(error["errors"], dict)


async def test_routes_without_a_token_answer_401(
    anonymous: httpx.AsyncClient, org: dict[str, str]
) -> None:
    response = await anonymous.get("/v1/consents/users", params=org)
    assert response.status_code == 401
    assert response.json()["name"] == "NotAuthenticated"


async def test_an_expired_token_answers_401(
    anonymous: httpx.AsyncClient, state: SandboxState, org: dict[str, str]
) -> None:
    token = jwt.encode(
        {
            "iss": auth.ISSUER,
            "aud": auth.AUDIENCE,
            "sub": state.principals.didomi.api_key,
            "iat": int(time.time()) - 3601,
            "exp": int(time.time()) - 1,
        },
        state.signing_key,
        algorithm="RS256",
    )
    response = await anonymous.get(
        "/v1/consents/users", params=org, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


async def test_session_lifetime_is_configurable(emulator: DidomiEmulator) -> None:
    emulator.configure(session_lifetime_s=60)
    claims = jwt.decode(emulator.session_token(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60


async def test_a_token_signed_by_the_same_key_for_another_service_is_refused(
    anonymous: httpx.AsyncClient, state: SandboxState, org: dict[str, str]
) -> None:
    entra_like = jwt.encode(
        {"aud": BASE_URL, "iss": "https://sts.windows.net/x/", "exp": time.time() + 60},
        state.signing_key,
        algorithm="RS256",
    )
    response = await anonymous.get(
        "/v1/consents/users", params=org, headers={"Authorization": f"Bearer {entra_like}"}
    )
    assert response.status_code == 401


async def test_organization_id_is_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/consents/users")
    assert response.status_code == 400
    assert "organization_id" in response.json()["errors"]


async def test_another_organization_is_forbidden(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/consents/users", params={"organization_id": "someone-else"})
    assert response.status_code == 403
    assert response.json()["name"] == "Forbidden"
