"""``POST /oauth/token``: the client-credentials grant (RFC 6749 §4.4) Didomi uses before it
delivers webhooks. Client credentials come in the form body or as HTTP Basic (§2.3.1); errors
are the RFC's ``{"error", "error_description"}`` with its status codes (§5.2)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from consentbridge.operations import tokens
from consentbridge.operations.errors import InvalidInput, Unauthorized
from consentbridge.web import responses
from consentbridge.web.body import FORM_TYPE, read_form
from consentbridge.web.deps import ContextDep
from consentbridge.web.errors import log_auth_failure

router = APIRouter(tags=["oauth"])

GRANT_TYPE: Final = "client_credentials"
# Token responses must not be cached (RFC 6749 §5.1).
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CHALLENGE: Final = {"WWW-Authenticate": 'Basic realm="consentbridge"'}

_FORM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": [GRANT_TYPE]},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
        "scope": {"type": "string", "description": "ignored"},
    },
}
_ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        headers = {**_NO_STORE, **(_CHALLENGE if self.status == 401 else {})}
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers=headers,
        )


@router.post(
    "/oauth/token",
    openapi_extra={
        "requestBody": {"required": True, "content": {FORM_TYPE: {"schema": _FORM_SCHEMA}}}
    },
    responses={
        200: {
            "description": "A bearer token for the integration's webhooks.",
            "content": {
                "application/json": {
                    "example": {"access_token": "…", "token_type": "Bearer", "expires_in": 3600}
                }
            },
        },
        400: {
            "description": "invalid_request or unsupported_grant_type",
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        },
        401: {
            "description": "invalid_client",
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        },
        **responses.errors(413),
    },
)
async def issue_token(request: Request, ctx: ContextDep) -> JSONResponse:
    """Exchange an integration's `webhook_auth` credentials for a bearer token.

    Form body (`application/x-www-form-urlencoded`) with `grant_type=client_credentials` and
    either `client_id` + `client_secret` fields or HTTP Basic authentication. Answers
    `{"access_token", "token_type": "Bearer", "expires_in"}`; the token is valid for the
    webhooks of that one integration only.
    """
    try:
        try:
            form = await read_form(request, ctx.settings.max_body_bytes)
        except InvalidInput as exc:
            raise OAuthError(400, "invalid_request", exc.issues[0].message) from None
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError(400, "invalid_request", "The grant_type parameter is missing.")
        if grant_type != GRANT_TYPE:
            raise OAuthError(
                400, "unsupported_grant_type", f"Only grant_type={GRANT_TYPE} is supported."
            )
        client_id, client_secret = _client_credentials(request, form)
        try:
            token, expires_in = await tokens.issue_token(ctx, client_id, client_secret)
        except Unauthorized as exc:
            raise OAuthError(401, "invalid_client", exc.message) from None
    except OAuthError as exc:
        if exc.status == 401:
            log_auth_failure(request, "oauth_client", exc.description)
        return exc.response()
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": expires_in},
        headers=_NO_STORE,
    )


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """``(client_id, client_secret)`` from HTTP Basic or the form — one method, not both."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if not client_id or client_secret is None:
            raise OAuthError(
                401,
                "invalid_client",
                "Client authentication is missing; send client_id and client_secret in the "
                "form or as HTTP Basic.",
            )
        return client_id, client_secret
    if "client_secret" in form:
        raise OAuthError(
            400,
            "invalid_request",
            "Send the client credentials either as HTTP Basic or in the form, not both.",
        )
    client_id, client_secret = _basic(authorization)
    if form.get("client_id", client_id) != client_id:
        raise OAuthError(
            400, "invalid_request", "The form client_id differs from the HTTP Basic one."
        )
    return client_id, client_secret


def _basic(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError(
            401, "invalid_client", "Use HTTP Basic (or form fields) for client authentication."
        )
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    client_id, colon, client_secret = decoded.partition(":")
    if not colon or not client_id:
        raise OAuthError(
            401, "invalid_client", "The HTTP Basic credentials are not client_id:client_secret."
        )
    # RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
    return unquote_plus(client_id), unquote_plus(client_secret)
