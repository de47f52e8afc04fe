"""Sessions: `POST /v1/sessions` trades the private API key and secret for a JWT (1 hour, as
Didomi documents), and every other route checks `Authorization: Bearer <that JWT>`.

Tokens are RS256-signed with the sandbox's key (so they survive a restart with the same state
dir) but carry their own issuer and audience, so an Entra token is refused here and vice versa.
Wrong credentials answer 400 (Didomi's documented status); a missing, malformed, expired or
foreign token answers 401 NotAuthenticated.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from starlette.requests import Request

from consentbridge.sandbox.didomi.errors import DidomiError, bad_request
from consentbridge.sandbox.state import SandboxState

SESSION_LIFETIME_S = 3600
ISSUER = "https://api.didomi.io/v1/sessions"
AUDIENCE = "https://api.didomi.io"


def issue_session_token(state: SandboxState, lifetime_s: int = SESSION_LIFETIME_S) -> str:
    issued = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": state.principals.didomi.api_key,
        "type": "api-key",
        "organization_id": state.principals.didomi.organization_id,
        "iat": issued,
        "exp": issued + lifetime_s,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(
        claims, state.signing_key, algorithm="RS256", headers={"kid": state.signing_kid}
    )


def check_credentials(state: SandboxState, body: object) -> None:
    """Validate a sessions body; raise a 400 for anything but the sandbox's own API key."""
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.", "body")
    kind = body.get("type")
    if kind != "api-key":
        if kind == "email":
            raise bad_request("The sandbox only supports 'api-key' sessions.", "type")
        raise bad_request("'type' must be 'api-key' (or 'email').", "type")
    key, secret = body.get("key"), body.get("secret")
    if not isinstance(key, str) or not key:
        raise bad_request("'key' is required: the private API key.", "key")
    if not isinstance(secret, str) or not secret:
        raise bad_request("'secret' is required: the private API key's secret.", "secret")
    expected = state.principals.didomi
    key_ok = secrets.compare_digest(key.encode(), expected.api_key.encode())
    secret_ok = secrets.compare_digest(secret.encode(), expected.api_secret.encode())
    if not (key_ok and secret_ok):
        raise DidomiError(400, "Invalid API key or secret.", {"key": "invalid credentials"})


def authenticate(state: SandboxState, request: Request) -> dict[str, Any]:
    """The claims of the request's bearer token; raises 401 when there is no valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DidomiError(401, "No auth token: send 'Authorization: Bearer <access_token>'.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token.strip(),
            state.signing_key.public_key(),
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise DidomiError(401, "jwt expired") from None
    except jwt.PyJWTError:
        raise DidomiError(401, "invalid token") from None
    if claims.get("sub") != state.principals.didomi.api_key:
        raise DidomiError(401, "The API key of this token no longer exists.")
    return claims
