"""POST /oauth/token: the client-credentials grant, form body or HTTP Basic, RFC 6749 errors."""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import httpx
import jwt
import pytest

from consentbridge.context import AppContext
from consentbridge.operations import integrations, tokens

from .support import WEBHOOK_CLIENT, WEBHOOK_SECRET, document

pytestmark = pytest.mark.security

GRANT = {"grant_type": "client_credentials"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    # RFC 6749 §2.3.1: each part form-urlencoded, then joined and base64-encoded.
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}


async def test_form_credentials_get_a_bearer_token_for_the_integration(
    client: httpx.AsyncClient, ctx: AppContext, acme: str
) -> None:
    response = await client.post(
        "/oauth/token",
        data={**GRANT, "client_id": WEBHOOK_CLIENT, "client_secret": WEBHOOK_SECRET},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == tokens.TOKEN_TTL_S
    assert response.headers["cache-control"] == "no-store"
    await tokens.verify_token(ctx, acme, body["access_token"])
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["sub"] == acme


async def test_http_basic_credentials_are_form_decoded(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    secret = "a secret:with+odd/chars=&%"
    await integrations.apply(
        ctx, document("odd-d365", webhook_client="odd.client", webhook_secret=secret)
    )
    response = await client.post("/oauth/token", data=GRANT, headers=basic("odd.client", secret))
    assert response.status_code == 200, response.text
    await tokens.verify_token(ctx, "odd-d365", response.json()["access_token"])


async def test_a_wrong_secret_is_invalid_client_with_a_challenge(
    client: httpx.AsyncClient, acme: str
) -> None:
    response = await client.post(
        "/oauth/token", data={**GRANT, "client_id": WEBHOOK_CLIENT, "client_secret": "nope" * 5}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_an_unknown_client_is_invalid_client(client: httpx.AsyncClient, acme: str) -> None:
    response = await client.post("/oauth/token", data=GRANT, headers=basic("ghost", WEBHOOK_SECRET))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_missing_credentials_are_invalid_client(client: httpx.AsyncClient) -> None:
    response = await client.post("/oauth/token", data=GRANT)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_id": WEBHOOK_CLIENT, "client_secret": WEBHOOK_SECRET}, "invalid_request"),
        ({"grant_type": "password", "client_id": WEBHOOK_CLIENT}, "unsupported_grant_type"),
    ],
)
async def test_grant_type_errors_are_400(
    client: httpx.AsyncClient, acme: str, form: dict[str, str], error: str
) -> None:
    response = await client.post("/oauth/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]


async def test_credentials_in_both_basic_and_form_are_refused(
    client: httpx.AsyncClient, acme: str
) -> None:
    response = await client.post(
        "/oauth/token",
        data={**GRANT, "client_secret": WEBHOOK_SECRET},
        headers=basic(WEBHOOK_CLIENT, WEBHOOK_SECRET),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_repeated_parameter_is_invalid_request(
    client: httpx.AsyncClient, acme: str
) -> None:
    body = (
        f"grant_type=client_credentials&client_id={WEBHOOK_CLIENT}&client_id=x"
        f"&client_secret={WEBHOOK_SECRET}"
    )
    response = await client.post(
        "/oauth/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_json_body_is_invalid_request(client: httpx.AsyncClient, acme: str) -> None:
    response = await client.post(
        "/oauth/token",
        json={**GRANT, "client_id": WEBHOOK_CLIENT, "client_secret": WEBHOOK_SECRET},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_the_secret_is_never_echoed(client: httpx.AsyncClient, acme: str) -> None:
    response = await client.post(
        "/oauth/token", data={**GRANT, "client_id": WEBHOOK_CLIENT, "client_secret": WEBHOOK_SECRET}
    )
    assert WEBHOOK_SECRET not in response.text
