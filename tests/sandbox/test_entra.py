"""Entra ID emulator over real HTTPS: unmodified MSAL gets tokens; errors carry AADSTS codes."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import jwt
import msal
import pytest
import requests

from consentbridge.sandbox.server import BackgroundSandbox


def _principals(sandbox: BackgroundSandbox) -> dict[str, Any]:
    response = httpx.get(f"{sandbox.base_url}/_sandbox/principals", verify=str(sandbox.ca_bundle))
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def _msal_app(
    sandbox: BackgroundSandbox, client_id: str, secret: str, **kwargs: Any
) -> msal.ConfidentialClientApplication:
    session = requests.Session()
    session.verify = str(sandbox.ca_bundle)
    # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE from the environment override
    # `session.verify`; many machines set them to the system bundle.
    session.trust_env = False
    tenant = _principals(sandbox)["tenant_id"]
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=f"{sandbox.base_url}/{tenant}",
        http_client=session,
        **kwargs,
    )


def test_msal_gets_a_token_without_instance_discovery(sandbox: BackgroundSandbox) -> None:
    app = _principals(sandbox)["apps"][0]
    client = _msal_app(sandbox, app["client_id"], app["client_secret"], instance_discovery=False)
    result = client.acquire_token_for_client([f"{sandbox.base_url}/.default"])
    assert result.get("token_type") == "Bearer", result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == sandbox.base_url
    assert claims["appid"] == app["client_id"]
    assert claims["exp"] - claims["iat"] == result["expires_in"]
    # Second call is answered from MSAL's cache: no second token from the sandbox.
    again = client.acquire_token_for_client([f"{sandbox.base_url}/.default"])
    assert again["token_source"] == "cache"


def test_msal_instance_discovery_against_the_sandbox_host(sandbox: BackgroundSandbox) -> None:
    app = _principals(sandbox)["apps"][0]
    client = _msal_app(
        sandbox,
        app["client_id"],
        app["client_secret"],
        instance_discovery=f"{sandbox.base_url}/common/discovery/instance",
    )
    result = client.acquire_token_for_client([f"{sandbox.base_url}/.default"])
    assert "access_token" in result, result


def test_msal_reports_a_wrong_secret_with_aadsts7000215(sandbox: BackgroundSandbox) -> None:
    app = _principals(sandbox)["apps"][0]
    client = _msal_app(sandbox, app["client_id"], "not-the-secret", instance_discovery=False)
    result = client.acquire_token_for_client([f"{sandbox.base_url}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215:")


def _token(sandbox: BackgroundSandbox, **form: str) -> httpx.Response:
    tenant = _principals(sandbox)["tenant_id"]
    return httpx.post(
        f"{sandbox.base_url}/{tenant}/oauth2/v2.0/token",
        data=form,
        verify=str(sandbox.ca_bundle),
    )


def test_secret_in_http_basic_is_accepted(sandbox: BackgroundSandbox) -> None:
    app = _principals(sandbox)["apps"][0]
    tenant = _principals(sandbox)["tenant_id"]
    basic = base64.b64encode(f"{app['client_id']}:{app['client_secret']}".encode()).decode()
    response = httpx.post(
        f"{sandbox.base_url}/{tenant}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": f"{sandbox.base_url}/.default"},
        headers={"Authorization": f"Basic {basic}"},
        verify=str(sandbox.ca_bundle),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("change", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "00000000-0000-0000-0000-000000000001"}, 400, "unauthorized_client", 700016),
        ({"scope": "https://127.0.0.1:1/user.read"}, 400, "invalid_scope", 1002012),
        ({"scope": ""}, 400, "invalid_scope", 70011),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ],
)
def test_token_errors_carry_aadsts_codes(
    sandbox: BackgroundSandbox, change: dict[str, str], status: int, error: str, code: int
) -> None:
    app = _principals(sandbox)["apps"][0]
    form = {
        "grant_type": "client_credentials",
        "client_id": app["client_id"],
        "client_secret": app["client_secret"],
        "scope": f"{sandbox.base_url}/.default",
        **change,
    }
    response = _token(sandbox, **form)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert {"trace_id", "correlation_id", "timestamp"} <= body.keys()


def test_unknown_resource_is_aadsts500011(sandbox: BackgroundSandbox) -> None:
    app = _principals(sandbox)["apps"][0]
    response = _token(
        sandbox,
        grant_type="client_credentials",
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        scope="https://contoso.crm.dynamics.com/.default",
    )
    assert response.status_code == 400
    assert response.json()["error_codes"] == [500011]


def test_unknown_tenant_is_aadsts90002(sandbox: BackgroundSandbox) -> None:
    response = httpx.post(
        f"{sandbox.base_url}/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token",
        data={"grant_type": "client_credentials"},
        verify=str(sandbox.ca_bundle),
    )
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_expires_in_follows_the_configured_lifetime(sandbox: BackgroundSandbox) -> None:
    httpx.post(
        f"{sandbox.base_url}/_sandbox/limits",
        json={"token_lifetime_s": 30},
        verify=str(sandbox.ca_bundle),
    ).raise_for_status()
    app = _principals(sandbox)["apps"][0]
    response = _token(
        sandbox,
        grant_type="client_credentials",
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        scope=f"{sandbox.base_url}/.default",
    )
    assert response.json()["expires_in"] == 30


def test_openid_configuration_names_the_token_endpoint(sandbox: BackgroundSandbox) -> None:
    tenant = _principals(sandbox)["tenant_id"]
    response = httpx.get(
        f"{sandbox.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
        verify=str(sandbox.ca_bundle),
    )
    doc = response.json()
    assert doc["token_endpoint"] == f"{sandbox.base_url}/{tenant}/oauth2/v2.0/token"
    keys = httpx.get(doc["jwks_uri"], verify=str(sandbox.ca_bundle)).json()["keys"]
    assert keys[0]["kty"] == "RSA"


def test_access_token_verifies_against_the_published_signing_key(
    sandbox: BackgroundSandbox,
) -> None:
    principals = _principals(sandbox)
    app, tenant = principals["apps"][0], principals["tenant_id"]
    response = _token(
        sandbox,
        grant_type="client_credentials",
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        scope=f"{sandbox.base_url}/.default",
    )
    body = response.json()
    doc = httpx.get(
        f"{sandbox.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
        verify=str(sandbox.ca_bundle),
    ).json()
    jwks = httpx.get(doc["jwks_uri"], verify=str(sandbox.ca_bundle)).json()["keys"]
    kid = jwt.get_unverified_header(body["access_token"])["kid"]
    key = next(jwt.PyJWK(k) for k in jwks if k["kid"] == kid)
    # Verified signature, audience = the resource the scope named, and a lifetime that
    # matches expires_in: what a resource server (Dataverse) checks.
    claims = jwt.decode(
        body["access_token"], key.key, algorithms=["RS256"], audience=sandbox.base_url
    )
    assert claims["tid"] == tenant
    assert claims["appid"] == app["client_id"]
    assert claims["exp"] - claims["iat"] == body["expires_in"]
