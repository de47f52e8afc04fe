"""Our OAuth 2.0 client-credentials tokens for Didomi's webhook deliveries.

Didomi exchanges an integration's ``webhook_auth`` credentials at ``POST /oauth/token`` for a
bearer token, then sends it with every webhook. A token is a JWT (HS256) whose key is derived,
per integration, from the process secret key (never used raw) together with the integration id,
its webhook client id and client secret. So a token only verifies at its own integration, and
every token of an integration stops working as soon as its webhook secret changes — no
revocation list needed, and any process sharing the store and the key accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from functools import lru_cache
from typing import Final

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consentbridge.config import Integration, Settings, WebhookAuth, load_or_create_key_file
from consentbridge.context import AppContext
from consentbridge.operations.errors import NotFound, Unauthorized

TOKEN_TTL_S: Final = 3600
ALGORITHM: Final = "HS256"
AUDIENCE: Final = "consentbridge-webhooks"
_KEY_LABEL: Final = b"consentbridge/webhook-token/v1"
_REQUIRED_CLAIMS: Final = ["exp", "iat", "sub", "cid", "jti", "aud"]


def same_secret(presented: str, expected: str) -> bool:
    """Compare two secrets in constant time, whatever their lengths."""
    # Hashing first makes both operands 32 bytes, so not even the length leaks.
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


async def issue_token(ctx: AppContext, client_id: str, client_secret: str) -> tuple[str, int]:
    """A bearer token for the integration whose ``webhook_auth`` matches; ``(token, expires_in)``.

    Unknown client id or wrong secret raise ``Unauthorized`` (the route answers
    ``invalid_client``); the message does not say which.
    """
    matches = [
        integration
        for integration in await _integrations_of_client(ctx, client_id)
        if integration.webhook_auth is not None
        and same_secret(client_secret, integration.webhook_auth.client_secret.get_secret_value())
    ]
    if len(matches) != 1:
        raise Unauthorized(
            "The client id or secret is wrong; use the webhook_auth credentials of the integration."
        )
    integration = matches[0]
    assert integration.webhook_auth is not None  # filtered above
    now = int(time.time())
    claims = {
        "sub": integration.id,
        "cid": integration.webhook_auth.client_id,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + TOKEN_TTL_S,
        "jti": uuid.uuid4().hex,
    }
    key = _signing_key(ctx.settings, integration.id, integration.webhook_auth)
    return jwt.encode(claims, key, algorithm=ALGORITHM), TOKEN_TTL_S


async def verify_token(ctx: AppContext, integration_id: str, bearer: str | None) -> None:
    """Accept a token issued for ``integration_id``, or raise.

    ``NotFound`` when the integration does not exist (checked first, so a valid token of
    another integration still gets 404 there); ``Unauthorized`` for a missing, malformed,
    expired or foreign token.
    """
    integration = await ctx.integration(integration_id)
    if integration is None:
        raise NotFound(f"No integration has the id '{integration_id}'; check the webhook URL.")
    if integration.webhook_auth is None:
        raise Unauthorized(
            f"Integration '{integration_id}' has no webhook_auth, so it accepts no token; add "
            "webhook_auth credentials to it and give them to Didomi."
        )
    if not bearer:
        raise Unauthorized(
            "The request has no bearer token; send Authorization: Bearer <token from "
            "POST /oauth/token>."
        )
    _decode(ctx.settings, integration, integration.webhook_auth, bearer)


def _decode(settings: Settings, integration: Integration, auth: WebhookAuth, bearer: str) -> None:
    key = _signing_key(settings, integration.id, auth)
    expires = _verified.get((key, bearer))
    if expires is not None and time.time() < expires:
        return
    try:
        claims = jwt.decode(
            bearer,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "The bearer token has expired; get a new one from POST /oauth/token."
        ) from None
    except jwt.InvalidTokenError:
        raise Unauthorized(
            f"The bearer token is not valid for integration '{integration.id}'; get one from "
            "POST /oauth/token with this integration's webhook_auth credentials."
        ) from None
    # The per-integration key already rules a foreign token out; the claims say it twice.
    if claims.get("sub") != integration.id or claims.get("cid") != auth.client_id:
        raise Unauthorized(f"The bearer token was not issued for integration '{integration.id}'.")
    if len(_verified) >= _MAX_VERIFIED:
        _verified.clear()
    _verified[key, bearer] = float(claims["exp"])


# Tokens already verified, by (signing key, token), with their expiry: Didomi sends the same
# token with every webhook for an hour, and decoding it each time was ~10 % of intake. The key
# is derived from the integration's id and webhook secret, so a changed secret misses here.
_verified: dict[tuple[bytes, str], float] = {}
_MAX_VERIFIED = 4096


async def _integrations_of_client(ctx: AppContext, client_id: str) -> list[Integration]:
    # The client id is not secret, so it is read from the stored documents without decrypting
    # every one; only the candidates are decrypted.
    found: list[Integration] = []
    for integration_id, document in await ctx.store.list_integrations():
        auth = document.get("webhook_auth")
        if isinstance(auth, dict) and auth.get("client_id") == client_id:
            integration = await ctx.integration(integration_id)
            if integration is not None:
                found.append(integration)
    return found


def _signing_key(settings: Settings, integration_id: str, auth: WebhookAuth) -> bytes:
    material = "\0".join((integration_id, auth.client_id, auth.client_secret.get_secret_value()))
    return hmac.new(_root_key(settings), material.encode(), hashlib.sha256).digest()


@lru_cache(maxsize=8)
def _root_key(settings: Settings) -> bytes:
    """The token root key, derived (HKDF-SHA256) from the Fernet secret key of ``settings``.

    Cached: verifying runs for every webhook, and the key file must not be read each time.
    """
    if settings.secret_key is not None:
        fernet_key = settings.secret_key.get_secret_value().encode()
    else:
        fernet_key = load_or_create_key_file(settings.secret_key_file)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_LABEL).derive(
        base64.urlsafe_b64decode(fernet_key)
    )
