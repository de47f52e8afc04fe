"""Microsoft Entra ID emulator: the v2.0 client-credentials token endpoint, the OpenID discovery
documents MSAL reads, and verification of the tokens it issues (used by the Dataverse emulator).

Errors follow Entra's documented shape: `{"error", "error_description": "AADSTSnnnn: ...",
"error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consentbridge.sandbox.common import LOOPBACK_HOSTS, App
from consentbridge.sandbox.state import SandboxState

GRANT_CLIENT_CREDENTIALS = "client_credentials"


def _error(status: int, error: str, code: int, message: str) -> JSONResponse:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} "
        f"Timestamp: {stamp}"
    )
    return JSONResponse(
        {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def origin_of(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def same_service(resource: str, request: Request) -> bool:
    """A resource names this sandbox when it is https on a loopback name and our port."""
    parts = urlsplit(resource.rstrip("/"))
    host = (parts.hostname or "").lower()
    port = parts.port or 443
    own_port = request.url.port or 443
    return (
        parts.scheme == "https"
        and host in LOOPBACK_HOSTS
        and port == own_port
        and (parts.path in ("", "/"))
    )


def _client_credentials(form: dict[str, str], request: Request) -> tuple[str | None, str | None]:
    client_id, secret = form.get("client_id"), form.get("client_secret")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return client_id, secret
        basic_id, _, basic_secret = decoded.partition(":")
        from urllib.parse import unquote_plus

        client_id = client_id or unquote_plus(basic_id)
        secret = secret or unquote_plus(basic_secret)
    return client_id, secret


def issue_token(state: SandboxState, app: App, audience: str) -> tuple[str, int]:
    lifetime = state.limits.token_lifetime_s
    issued = int(time.time())
    tenant = state.principals.tenant_id
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "appid": app.client_id,
        "appidacr": "1",
        "idp": f"https://sts.windows.net/{tenant}/",
        "oid": app.object_id,
        "sub": app.object_id,
        "tid": tenant,
        "ver": "1.0",
        "uti": secrets.token_urlsafe(16),
    }
    token = jwt.encode(
        claims, state.signing_key, algorithm="RS256", headers={"kid": state.signing_kid}
    )
    return token, lifetime


@dataclass(frozen=True)
class TokenProblem:
    """Why a bearer token was refused (maps to a 401 at the resource)."""

    reason: str


def verify_token(state: SandboxState, token: str, request: Request) -> App | TokenProblem:
    """Check signature, expiry and audience; return the app user the token belongs to."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            state.signing_key.public_key(),
            algorithms=["RS256"],
            options={"verify_aud": False},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        return TokenProblem("ExpiredAuthTicket: the access token has expired.")
    except jwt.PyJWTError:
        return TokenProblem("InvalidAuthTicket: the access token is not valid.")
    if claims.get("tid") != state.principals.tenant_id:
        return TokenProblem("InvalidAuthTicket: the token was issued for another tenant.")
    if not same_service(str(claims.get("aud", "")), request):
        return TokenProblem("InvalidAuthTicket: the token audience is not this environment.")
    app = state.principals.by_client_id(str(claims.get("appid", "")))
    if app is None:
        return TokenProblem("InvalidAuthTicket: no application user exists for this app.")
    return app


def routes(state: SandboxState) -> list[Route]:
    def tenant_known(tenant: str) -> bool:
        return tenant in (state.principals.tenant_id, "organizations", "common") or "." in tenant

    async def token(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        form = {k: str(v) for k, v in (await request.form()).items()}
        if tenant != state.principals.tenant_id and not tenant.endswith(".onmicrosoft.com"):
            return _error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                "ID and are signing into the correct cloud.",
            )
        grant = form.get("grant_type")
        if not grant:
            return _error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant != GRANT_CLIENT_CREDENTIALS:
            return _error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id, secret = _client_credentials(form, request)
        if not client_id:
            return _error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        app = state.principals.by_client_id(client_id)
        if app is None:
            return _error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You "
                "may have sent your authentication request to the wrong tenant.",
            )
        if not secret:
            return _error(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
            )
        if not secrets.compare_digest(secret.encode(), app.client_secret.encode()):
            return _error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client_id}'.",
            )
        scope = form.get("scope", "")
        scopes = [s for s in scope.split() if s not in ("openid", "profile", "offline_access")]
        if not scopes:
            return _error(
                400,
                "invalid_scope",
                70011,
                "The provided request must include a 'scope' input parameter. The provided "
                f"value for the input parameter 'scope' ('{scope}') is not valid.",
            )
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return _error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = scopes[0][: -len("/.default")]
        if not same_service(resource, request):
            return _error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{tenant}. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
        access_token, lifetime = issue_token(state, app, resource.rstrip("/"))
        state.stats.count("entra_tokens")
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access_token,
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    async def openid_configuration(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if not tenant_known(tenant):
            return _error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        tenant_id = state.principals.tenant_id
        base = origin_of(request)
        return JSONResponse(
            {
                "token_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{tenant_id}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/{tenant_id}/v2.0",
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/logout",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    async def instance_discovery(request: Request) -> Response:
        # MSAL asks this before trusting an unknown authority host.
        endpoint = request.query_params.get("authorization_endpoint", "")
        parts = urlsplit(endpoint)
        tenant = (parts.path.strip("/").split("/") or [""])[0] or "common"
        base = origin_of(request)
        host = request.url.netloc
        discovery = f"{base}/{tenant}/v2.0/.well-known/openid-configuration"
        return JSONResponse(
            {
                "tenant_discovery_endpoint": discovery,
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            }
        )

    async def keys(request: Request) -> Response:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(state.signing_key.public_key(), as_dict=True)
        jwk.update({"kid": state.signing_kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": [jwk]})

    return [
        Route("/common/discovery/instance", instance_discovery, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            openid_configuration,
            methods=["GET"],
        ),
        Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
    ]
