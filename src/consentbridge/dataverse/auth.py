"""Client-credentials tokens from Entra ID through msal, one application object per
integration, cached by msal and refreshed before expiry; evicted on a 401 from Dataverse.

msal is synchronous (requests); calls run in a worker thread so the event loop never blocks,
and an asyncio lock keeps a burst of callers from fetching the same token in parallel. What
the authority (`config.authority_host`) writes is echoed bounded, in errors and in msal's logs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import msal
import requests

from consentbridge.dataverse.errors import AuthError
from consentbridge.logs import get_logger
from consentbridge.remote_text import bounded, bounded_code

log = get_logger("consentbridge.auth")

# Hosts msal knows; for any other authority (the sandbox, a private proxy) instance discovery
# against login.microsoftonline.com is skipped, since it could never succeed.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.microsoftonline.de",
        "login.windows.net",
        "login.microsoft.com",
        "login.sts.microsoft.com",
    }
)

AADSTS_FIXES: dict[int, str] = {
    7000215: "the client secret is wrong — use the secret's Value, not its ID "
    "(config.client_secret)",
    7000222: "the client secret has expired — create a new one in Entra ID and update "
    "config.client_secret",
    7000216: "no client secret was sent — set config.client_secret",
    700016: "the client_id is not an application in this tenant — check config.client_id "
    "and config.tenant_id",
    90002: "the tenant does not exist — check config.tenant_id",
    900023: "the tenant id is malformed — use the directory (tenant) GUID or domain in "
    "config.tenant_id",
    70011: "the token scope is invalid — check config.instance",
    1002012: "the token scope is invalid — check config.instance",
    500011: "the Dataverse environment is not known in this tenant — check config.instance "
    "and config.tenant_id",
    700024: "the client assertion is not valid — check the app's credentials",
    50034: "the tenant is not known — check config.tenant_id",
}


def _first_code(codes: object) -> int | None:
    """The first AADSTS number of `error_codes`, read leniently: the authority is whatever
    `config.authority_host` names, and may send anything there."""
    if isinstance(codes, list) and codes:
        try:
            return int(codes[0])
        except (TypeError, ValueError):
            return None
    return None


def explain_token_error(result: dict[str, Any]) -> AuthError:
    code = _first_code(result.get("error_codes"))
    fix = AADSTS_FIXES.get(code or 0)
    error = bounded_code(result.get("error") or "error")
    if fix:
        return AuthError(f"Entra ID refused the token (AADSTS{code}): {fix}.", code=code)
    description = bounded(str(result.get("error_description") or "").split(" Trace ID:")[0])
    return AuthError(
        f"Entra ID refused the token ({error}): {description or 'no description'}; "
        "check config.client_id, config.client_secret and config.tenant_id.",
        code=code,
    )


class _BoundedMsalLog(logging.Handler):
    """msal logs some answers of the authority in full (a token answer that is not JSON, an
    OpenID discovery error): its warnings and errors go on as our own events, bounded, and
    nowhere else."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record msal could not format must not break the token call
            message = str(record.msg)
        log.log(record.levelno, "auth.msal", source=record.name, message=bounded(message))


def _bound_msal_logs() -> None:
    msal_log = logging.getLogger("msal")
    if not any(isinstance(h, _BoundedMsalLog) for h in msal_log.handlers):
        msal_log.addHandler(_BoundedMsalLog())
    msal_log.propagate = False


_bound_msal_logs()


class _PinnedSession(requests.Session):
    """A session whose own `verify` wins: plain requests lets REQUESTS_CA_BUNDLE /
    CURL_CA_BUNDLE override a session's CA bundle for every call that does not pass one, and
    msal passes none, so `config.ca_bundle` would be ignored wherever those are set."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert
        )
        if verify is None:
            settings["verify"] = self.verify
        return settings


class TokenProvider:
    """Tokens for one integration's application user."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        authority: str,
        scope: str,
        verify: str | bool = True,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._authority = authority
        self._verify = verify
        # Built on first use, in a worker thread: msal fetches the authority's OpenID document
        # in its constructor, which must neither block the event loop nor fail outside
        # `_acquire`'s error translation.
        self._app: msal.ConfidentialClientApplication | None = None
        # The requests session msal sends through (it pins the CA bundle); `aclose` closes it.
        self._session: requests.Session | None = None
        self._scope = scope
        self._lock = asyncio.Lock()
        self._token: str | None = None
        # How the last token request ended, for alerts: None when it was issued, Entra ID's
        # refusal (one sentence, no secret) when it was refused; unset before any answer.
        self.auth_failure: str | None = None
        self.auth_known = False

    def _msal_app(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            session = _PinnedSession()
            session.verify = self._verify
            host = (urlsplit(self._authority).hostname or "").lower()
            try:
                app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._client_secret,
                    authority=self._authority,
                    http_client=session,
                    instance_discovery=host in MICROSOFT_AUTHORITY_HOSTS,
                    timeout=30,
                )
            except BaseException:
                session.close()  # the discovery failed: nothing will ever use this session
                raise
            self._session, self._app = session, app
        return self._app

    def _acquire(self) -> dict[str, Any]:
        try:
            app = self._msal_app()
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[self._scope])
        # OSError: requests reads the CA bundle per connection, and the file may have gone.
        except (requests.RequestException, ValueError, OSError) as exc:
            raise AuthError(
                f"Cannot reach the Entra ID authority ({type(exc).__name__}); check "
                "config.authority_host, config.ca_bundle and the network.",
                transient=True,
            ) from exc
        return result

    async def token(self) -> str:
        async with self._lock:
            result = await asyncio.to_thread(self._acquire)
        if "access_token" not in result:
            refusal = explain_token_error(result)
            self.auth_failure, self.auth_known = refusal.message, True
            raise refusal
        token = str(result["access_token"])
        self._token = token
        self.auth_failure, self.auth_known = None, True
        return token

    async def aclose(self) -> None:
        """Close the HTTP session msal uses, and with it the pooled connections to the
        authority; a later `token()` starts over with a new application object."""
        async with self._lock:
            session, self._session, self._app, self._token = self._session, None, None, None
        if session is not None:
            session.close()

    async def invalidate(self) -> None:
        """Forget cached tokens, after Dataverse answered 401 to one of them."""
        async with self._lock:
            if self._app is not None:
                await asyncio.to_thread(self._app.remove_tokens_for_client)
            self._token = None
