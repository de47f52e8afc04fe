"""The Didomi API client: session tokens (cached until shortly before expiry), consent events
(batched by 100 with caller-chosen ids so a retry never duplicates), users, and marketplace
webhook registration."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from consentbridge.remote_text import bounded
from consentbridge.retry_after import parse_retry_after

EVENTS_PER_CALL = 100
TOKEN_MARGIN_S = 120.0
DEFAULT_TOKEN_LIFETIME_S = 3600.0
MAX_ATTEMPTS = 5


class DidomiError(Exception):
    """A Didomi API call failed; `transient` tells whether a retry may succeed."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.transient = transient


def _describe(response: httpx.Response) -> str:
    """Didomi's own message, bounded: `didomi.base_url` may point at any server."""
    try:
        body = response.json()
    except ValueError:
        return bounded(response.reason_phrase) or "no error message"
    if isinstance(body, dict):
        return bounded(body.get("message") or body.get("name") or body)
    return bounded(body)


class DidomiClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        organization_id: str,
        verify: ssl.SSLContext | str | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.organization_id = organization_id
        self._key = api_key
        self._secret = api_secret
        self._http = httpx.AsyncClient(
            verify=verify, transport=transport, timeout=httpx.Timeout(timeout_s)
        )
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = asyncio.Lock()
        self.requests_sent = 0
        # How the last session request ended, for alerts: None when a token was issued, the
        # refusal (one sentence, no secret) when the API key was refused; unset before any.
        self.auth_failure: str | None = None
        self.auth_known = False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _session_token(self, *, refresh: bool = False) -> str:
        async with self._lock:
            if self._token and not refresh and time.time() < self._token_expires - TOKEN_MARGIN_S:
                return self._token
            self.requests_sent += 1
            try:
                response = await self._http.post(
                    f"{self.base_url}/sessions",
                    json={"type": "api-key", "key": self._key, "secret": self._secret},
                )
            except httpx.HTTPError as exc:
                raise DidomiError(
                    f"Cannot reach the Didomi API at {self.base_url} ({type(exc).__name__}); "
                    "check didomi.base_url and the network.",
                    transient=True,
                ) from exc
            if response.status_code >= 500:
                raise DidomiError(
                    f"Didomi answered {response.status_code} to the session request.",
                    status=response.status_code,
                    transient=True,
                )
            if response.status_code >= 300:
                refusal = DidomiError(
                    f"Didomi refused the API key ({response.status_code}: {_describe(response)}); "
                    "check didomi.api_key and didomi.api_secret.",
                    status=response.status_code,
                )
                self.auth_failure, self.auth_known = refusal.message, True
                raise refusal
            try:
                token = str(response.json()["access_token"])
            except (ValueError, KeyError, TypeError):
                # An HTML page or another service at base_url: a setting to fix, so retried.
                raise DidomiError(
                    f"Didomi answered the session request at {self.base_url} without an access "
                    "token; check didomi.base_url.",
                    transient=True,
                ) from None
            self._token = token
            self._token_expires = _expiry(token)
            self.auth_failure, self.auth_known = None, True
            return token

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """One API call with the session token; 401 refreshes once, 429/5xx are retried."""
        query = {"organization_id": self.organization_id, **(params or {})}
        refreshed = False
        attempt = 0
        while True:
            token = await self._session_token()
            self.requests_sent += 1
            try:
                response = await self._http.request(
                    method,
                    f"{self.base_url}/{path.lstrip('/')}",
                    params=query,
                    json=json,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError as exc:
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise DidomiError(
                        f"Didomi did not answer {what} ({type(exc).__name__}).", transient=True
                    ) from exc
                await asyncio.sleep(_backoff(attempt))
                continue
            status = response.status_code
            if status < 300:
                return response
            if status == 401 and not refreshed:
                refreshed = True
                await self._session_token(refresh=True)
                continue
            if status == 429 or status >= 500:
                attempt += 1
                if attempt >= MAX_ATTEMPTS:
                    raise DidomiError(
                        f"Didomi answered {status} to {what}: {_describe(response)}",
                        status=status,
                        transient=True,
                    )
                wait = parse_retry_after(response.headers.get("retry-after"), time.time())
                await asyncio.sleep(wait if wait is not None else _backoff(attempt))
                continue
            raise DidomiError(
                f"Didomi rejected {what} ({status}): {_describe(response)}", status=status
            )

    async def create_events(
        self, events: Sequence[dict[str, Any]], *, disable_integrations: bool = False
    ) -> int:
        """POST consent events in calls of ≤ 100. Events carry their own `id`: a retried call
        whose events already exist answers 409, which counts as done."""
        created = 0
        params = {"$disable_integrations": "true"} if disable_integrations else None
        for start in range(0, len(events), EVENTS_PER_CALL):
            chunk = list(events[start : start + EVENTS_PER_CALL])
            try:
                await self.request(
                    "POST",
                    "consents/events",
                    what=f"{len(chunk)} consent events",
                    params=params,
                    json=chunk,
                )
            except DidomiError as exc:
                if exc.status != 409:
                    raise
                # Some ids exist already (a retry after a lost answer): send one by one,
                # treating "already exists" as done.
                for event in chunk:
                    try:
                        await self.request(
                            "POST",
                            "consents/events",
                            what="a consent event",
                            params=params,
                            json=event,
                        )
                    except DidomiError as inner:
                        if inner.status != 409:
                            raise
            created += len(chunk)
        return created

    async def get_user(self, organization_user_id: str) -> dict[str, Any] | None:
        try:
            response = await self.request(
                "GET",
                f"consents/users/{_path_segment(organization_user_id)}",
                what=f"the Didomi user {organization_user_id!r}",
                params={"$by_organization_user_id": "true"},
            )
        except DidomiError as exc:
            if exc.status == 404:
                return None
            raise
        body: dict[str, Any] = response.json()
        return body

    async def iter_users(self, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            params = {"$limit": str(page_size)}
            if cursor:
                params["$cursor"] = cursor
            response = await self.request(
                "GET", "consents/users", what="the user list", params=params
            )
            try:
                body = response.json()
            except ValueError:
                body = None
            users, cursor = user_page(body)
            for user in users:
                yield user
            if not cursor:
                return

    async def users_page(
        self, cursor: str | None, *, page_size: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the organization's users and the cursor of the next (None at the end).

        Read liberally: a bare array is one last page, and entries that are not objects are
        left out."""
        params = {"$limit": str(page_size)}
        if cursor:
            params["$cursor"] = cursor
        body = (
            await self.request("GET", "consents/users", what="the user list", params=params)
        ).json()
        data = body.get("data", []) if isinstance(body, dict) else body
        users = [u for u in data if isinstance(u, dict)] if isinstance(data, list) else []
        following = body.get("cursor") if isinstance(body, dict) else None
        return users, following if isinstance(following, str) and following else None

    async def register_webhook(
        self, *, url: str, token_url: str, client_id: str, client_secret: str
    ) -> dict[str, Any]:
        body = {
            "type_id": "webhook-http",
            "properties": {"url": url},
            "authentication": {
                "url": token_url,
                "client_id": client_id,
                "client_secret": client_secret,
            },
        }
        response = await self.request(
            "POST", "marketplace/integrations", what="the webhook registration", json=body
        )
        created: dict[str, Any] = response.json()
        return created

    async def list_integrations(self) -> list[dict[str, Any]]:
        response = await self.request("GET", "marketplace/integrations", what="the integrations")
        body = response.json()
        data = body.get("data", body) if isinstance(body, dict) else body
        return list(data) if isinstance(data, list) else []


def user_page(body: object) -> tuple[list[dict[str, Any]], str | None]:
    """The users of one page of ``GET /consents/users`` and the cursor of the next (None on
    the last page). Didomi's guides show ``{"data": [...], "cursor": ...}``; its published
    OpenAPI describes a bare array, which is then the only page. Any other shape raises
    ``DidomiError``: reading it as "no users" would end a backfill early, silently."""
    data: list[object]
    cursor: object = None
    if isinstance(body, list):
        data = body
    elif isinstance(body, dict) and isinstance(body.get("data"), list):
        data, cursor = body["data"], body.get("cursor")
    else:
        raise DidomiError(
            "Didomi answered the user list with neither a list nor an object holding a 'data' "
            "list; check didomi.base_url points at the Didomi API."
        )
    users = [user for user in data if isinstance(user, dict)]
    if len(users) != len(data):
        raise DidomiError(
            "Didomi answered the user list with an entry that is not a JSON object; check "
            "didomi.base_url points at the Didomi API."
        )
    return users, cursor if isinstance(cursor, str) and cursor else None


def _path_segment(value: str) -> str:
    return quote(value, safe="")


def _expiry(token: str) -> float:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        return float(claims["exp"])
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return time.time() + DEFAULT_TOKEN_LIFETIME_S


def _backoff(attempt: int) -> float:
    return min(20.0, 0.5 * 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.2)
