"""A test client of the sandbox over real HTTPS: Web API calls as an application user, Didomi
API calls with a session, and the control API."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from consentbridge.dataverse.auth import TokenProvider
from consentbridge.dataverse.client import DataverseClient
from tests.support.service import Expecting

API = "/api/data/v9.2"


class SandboxClient:
    def __init__(self, base_url: str, ca_bundle: Path) -> None:
        self.base_url = base_url
        self.ca_bundle = str(ca_bundle)
        self.http = httpx.Client(base_url=base_url, verify=self.ca_bundle, timeout=30)
        self.x = Expecting(self.http)
        self._tokens: dict[str, str] = {}
        self._didomi_token: str | None = None

    def close(self) -> None:
        self.http.close()

    # control ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the first start: no rows, no faults or limits, only the default app."""
        self.x.post("/_sandbox/reset", expect=200)
        self._tokens.clear()
        self._didomi_token = None

    def principals(self) -> dict[str, Any]:
        body: dict[str, Any] = self.x.get("/_sandbox/principals").json()
        return body

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.x.get("/_sandbox/stats").json()
        return body

    def faults(self, **faults: float) -> None:
        self.x.post("/_sandbox/faults", expect=200, json=faults)

    @contextmanager
    def faulted(self, **faults: float) -> Iterator[None]:
        """Inject `faults` for the block; their previous values come back even if it fails."""
        before = self.x.get("/_sandbox/faults").json()
        self.faults(**faults)
        try:
            yield
        finally:
            self.faults(**{name: before[name] for name in faults})

    def limits(self, **limits: float) -> None:
        self.x.post("/_sandbox/limits", expect=200, json=limits)

    def add_column(self, logical_name: str, type_: str, options: list[int] | None = None) -> None:
        body: dict[str, Any] = {"table": "contact", "logical_name": logical_name, "type": type_}
        if options:
            body["options"] = [{"value": v, "label": f"Option {v}"} for v in options]
        self.x.post("/_sandbox/columns", expect=201, json=body)

    def add_app(self, name: str, roles: list[str]) -> dict[str, Any]:
        app: dict[str, Any] = self.x.post(
            "/_sandbox/principals", expect=201, json={"name": name, "roles": roles}
        ).json()
        return app

    def set_roles(self, app: dict[str, Any], roles: list[str]) -> None:
        """Change an app user's security roles (they apply from its next request on)."""
        self.x.patch(f"/_sandbox/principals/{app['client_id']}", expect=200, json={"roles": roles})

    def history(self, contact_id: str) -> list[dict[str, Any]]:
        writes: list[dict[str, Any]] = self.x.get(
            "/_sandbox/history", params={"table": "contact", "id": contact_id}
        ).json()["writes"]
        return writes

    # Dataverse ----------------------------------------------------------------------------
    def token(self, app: dict[str, Any] | None = None) -> str:
        principals = self.principals()
        app = app or principals["apps"][0]
        if app["client_id"] not in self._tokens:
            body = self.x.post(
                f"/{principals['tenant_id']}/oauth2/v2.0/token",
                expect=200,
                data={
                    "grant_type": "client_credentials",
                    "client_id": app["client_id"],
                    "client_secret": app["client_secret"],
                    "scope": f"{self.base_url}/.default",
                },
            ).json()
            self._tokens[app["client_id"]] = body["access_token"]
        return self._tokens[app["client_id"]]

    def dv(
        self,
        method: str,
        path: str,
        *,
        expect: int,
        app: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(app)}", **kwargs.pop("headers", {})}
        return self.x.call(method, f"{API}/{path}", expect=expect, headers=headers, **kwargs)

    def rows(
        self, entity_set: str, select: str, filter_: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"$select": select, **({"$filter": filter_} if filter_ else {})}
        rows: list[dict[str, Any]] = self.dv("GET", entity_set, expect=200, params=params).json()[
            "value"
        ]
        return rows

    def add_step(self, name: str, message: str, endpoint_id: str) -> str:
        """An async post-operation step on `message` of contact calling a service endpoint,
        registered by hand (as an administrator would in the Plug-in Registration Tool)."""
        (sdkmessage,) = self.rows("sdkmessages", "sdkmessageid", f"name eq '{message}'")
        (message_filter,) = self.rows(
            "sdkmessagefilters",
            "sdkmessagefilterid",
            f"primaryobjecttypecode eq 'contact' and sdkmessageid/name eq '{message}'",
        )
        body = {
            "name": name,
            "mode": 1,
            "stage": 40,
            "rank": 1,
            "sdkmessageid@odata.bind": f"/sdkmessages({sdkmessage['sdkmessageid']})",
            "sdkmessagefilterid@odata.bind": (
                f"/sdkmessagefilters({message_filter['sdkmessagefilterid']})"
            ),
            "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
        }
        return _created_id(self.dv("POST", "sdkmessageprocessingsteps", expect=204, json=body))

    def create_contact(self, app: dict[str, Any] | None = None, **columns: Any) -> str:
        columns.setdefault("lastname", "Test")
        return self.create_row("contacts", app=app, **columns)

    def create_row(self, entity_set: str, app: dict[str, Any] | None = None, **columns: Any) -> str:
        """POST a row (``columns`` may hold ``…@odata.bind`` names via ``**{...}``); its id."""
        return _created_id(self.dv("POST", entity_set, expect=204, json=columns, app=app))

    def update_contact(
        self, contact_id: str, app: dict[str, Any] | None = None, **columns: Any
    ) -> None:
        self.update_row("contacts", contact_id, app=app, **columns)

    def update_row(
        self, entity_set: str, row_id: str, app: dict[str, Any] | None = None, **columns: Any
    ) -> None:
        """PATCH an existing row (`If-Match: *`: never an upsert)."""
        self.dv(
            "PATCH",
            f"{entity_set}({row_id})",
            expect=204,
            json=columns,
            app=app,
            headers={"If-Match": "*"},
        )

    def contact(self, contact_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.dv("GET", f"contacts({contact_id})", expect=200).json()
        return body

    def contacts_by(self, column: str, value: str) -> list[dict[str, Any]]:
        literal = "'" + value.replace("'", "''") + "'"
        rows: list[dict[str, Any]] = self.dv(
            "GET", "contacts", expect=200, params={"$filter": f"{column} eq {literal}"}
        ).json()["value"]
        return rows

    # Didomi -------------------------------------------------------------------------------
    @property
    def organization_id(self) -> str:
        return str(self.principals()["didomi"]["organization_id"])

    def didomi(self, method: str, path: str, *, expect: int, **kwargs: Any) -> httpx.Response:
        response = self.didomi_call(method, path, **kwargs)
        assert response.status_code == expect, (
            f"{method} /v1/{path}: expected {expect}, got {response.status_code}: "
            f"{response.text[:800]}"
        )
        return response

    def didomi_call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A Didomi API call whatever its answer (for callers that retry injected faults)."""
        if self._didomi_token is None:
            self._didomi_token = self._session(self.principals()["didomi"])
        params = {"organization_id": self.organization_id, **kwargs.pop("params", {})}
        headers = {"Authorization": f"Bearer {self._didomi_token}"}
        return self.http.request(method, f"/v1/{path}", params=params, headers=headers, **kwargs)

    def _session(self, creds: dict[str, Any]) -> str:
        response = self.http.post(
            "/v1/sessions",
            json={"type": "api-key", "key": creds["api_key"], "secret": creds["api_secret"]},
        )
        assert response.status_code in (200, 201), response.text
        return str(response.json()["access_token"])

    def consent_event(
        self, user: str, purposes: list[dict[str, Any]], **extra: Any
    ) -> dict[str, Any]:
        event = {
            "user": {"organization_user_id": user},
            "consents": {"purposes": purposes},
            **extra,
        }
        created: dict[str, Any] = self.didomi(
            "POST", "consents/events", expect=201, json=event
        ).json()
        return created

    def didomi_events(self, user: str) -> list[dict[str, Any]]:
        """The consent events Didomi holds for the user with this organization_user_id (the
        confirmed GDPR ones, oldest first; none for an unknown user)."""
        events: list[dict[str, Any]] = self.didomi(
            "GET", "consents/events", expect=200, params={"organization_user_id": user}
        ).json()
        return events

    def didomi_user(self, user: str) -> dict[str, Any]:
        body: dict[str, Any] = self.didomi(
            "GET",
            f"consents/users/{quote(user, safe='')}",
            expect=200,
            params={"$by_organization_user_id": "true"},
        ).json()
        return body

    def register_webhook(self, url: str, token_url: str, client_id: str, secret: str) -> None:
        self.didomi(
            "POST",
            "marketplace/integrations",
            expect=201,
            json={
                "type_id": "webhook-http",
                "properties": {"url": url},
                "authentication": {
                    "url": token_url,
                    "client_id": client_id,
                    "client_secret": secret,
                },
            },
        )


def _created_id(response: httpx.Response) -> str:
    entity = response.headers["OData-EntityId"]
    return str(entity[entity.index("(") + 1 : entity.index(")")])


def wait_until(
    check: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}; last={last!r}")


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


class RecordingTransport(httpx.AsyncHTTPTransport):
    """The real HTTPS transport, noting every request it sends (retries too) as
    ``(method, path below /api/data/v9.2/)``, in order."""

    def __init__(self, ca_bundle: str | Path) -> None:
        super().__init__(verify=ssl.create_default_context(cafile=str(ca_bundle)))
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path.removeprefix(f"{API}/")))
        return await super().handle_async_request(request)

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if method != "GET"]


def token_provider(sandbox: SandboxClient, app: dict[str, Any] | None = None) -> TokenProvider:
    """Our msal token provider against the sandbox's Entra ID, for `app` (default: the first)."""
    principals = sandbox.principals()
    app = app or principals["apps"][0]
    return TokenProvider(
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        authority=f"{sandbox.base_url}/{principals['tenant_id']}",
        scope=f"{sandbox.base_url}/.default",
        verify=sandbox.ca_bundle,
    )


@asynccontextmanager
async def dataverse_client(
    sandbox: SandboxClient, app: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[DataverseClient]:
    """Our Dataverse client against the sandbox's Web API, signed in through its Entra ID as
    `app` (default: the first app, System Administrator); `options` go to `DataverseClient`."""
    tokens = token_provider(sandbox, app)
    client = DataverseClient(
        f"{sandbox.base_url}{API}", tokens, verify=sandbox.ca_bundle, **options
    )
    try:
        yield client
    finally:
        await client.aclose()
        await tokens.aclose()
