"""Marketplace integrations of the organization (`/v1/marketplace/integrations`).

The sandbox implements the one type that matters to a webhook receiver, `webhook-http`, in the
current documented form: `{"type_id": "webhook-http", "properties": {"url": …},
"authentication": {} | {"url": <token URL>, "client_id": …, "client_secret": …}}`. Other
`type_id`s answer 400. The client secret is stored but never echoed back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from consentbridge.sandbox.didomi.errors import bad_request, not_found
from consentbridge.sandbox.didomi.models import JsonObject, Problems, now_iso

WEBHOOK_TYPE = "webhook-http"


@dataclass(frozen=True)
class OAuthClient:
    """Client credentials Didomi uses against the customer's token endpoint."""

    url: str
    client_id: str
    client_secret: str


@dataclass
class Integration:
    id: str
    organization_id: str
    type_id: str
    properties: JsonObject
    authentication: OAuthClient | None
    created_at: str
    updated_at: str

    @property
    def url(self) -> str:
        return str(self.properties["url"])

    def public(self) -> JsonObject:
        auth: JsonObject = {}
        if self.authentication is not None:
            auth = {"url": self.authentication.url, "client_id": self.authentication.client_id}
        return {
            "id": self.id,
            "organization_id": self.organization_id,
            "type_id": self.type_id,
            "properties": self.properties,
            "authentication": auth,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_json(self) -> JsonObject:
        data = self.public()
        if self.authentication is not None:
            data["authentication"] = dict(self.authentication.__dict__)
        return data

    @classmethod
    def from_json(cls, data: JsonObject) -> Integration:
        auth = data.get("authentication") or {}
        return cls(
            id=data["id"],
            organization_id=data["organization_id"],
            type_id=data["type_id"],
            properties=data["properties"],
            authentication=OAuthClient(**auth) if auth else None,
            created_at=data["created_at"],
            updated_at=data["updated_at"],
        )


def _http_url(problems: Problems, value: object, path: str) -> str | None:
    url = problems.string(value, path, required=True)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.add(path, f"'{path}' must be an absolute http(s) URL.")
            return None
    return url


def _authentication(problems: Problems, value: object) -> OAuthClient | None:
    raw = problems.obj(value, "authentication")
    # Authentication is off by default; the older form switched it off with enabled: false.
    if not raw or raw.get("enabled") is False:
        return None
    url = _http_url(problems, raw.get("url"), "authentication.url")
    client_id = problems.string(raw.get("client_id"), "authentication.client_id", required=True)
    secret = problems.string(
        raw.get("client_secret"), "authentication.client_secret", required=True
    )
    if url is None or client_id is None or secret is None:
        return None
    return OAuthClient(url=url, client_id=client_id, client_secret=secret)


def parse_integration(body: object, organization_id: str) -> Integration:
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.", "body")
    type_id = body.get("type_id")
    if type_id != WEBHOOK_TYPE:
        raise bad_request(
            f"Unknown integration type_id {type_id!r}; the sandbox offers '{WEBHOOK_TYPE}'.",
            "type_id",
        )
    problems = Problems()
    properties = problems.obj(body.get("properties"), "properties")
    if properties is None:
        problems.add("properties.url", "'properties.url' is required: the webhook endpoint.")
    else:
        _http_url(problems, properties.get("url"), "properties.url")
    authentication = _authentication(problems, body.get("authentication"))
    problems.raise_if_any("Invalid integration")
    assert properties is not None
    now = now_iso()
    return Integration(
        id=str(uuid.uuid4()),
        organization_id=organization_id,
        type_id=WEBHOOK_TYPE,
        properties=dict(properties),
        authentication=authentication,
        created_at=now,
        updated_at=now,
    )


class IntegrationRegistry:
    """The organization's integrations, in creation order."""

    def __init__(self) -> None:
        self._items: dict[str, Integration] = {}

    def clear(self) -> None:
        self._items.clear()

    def add(self, integration: Integration) -> None:
        self._items[integration.id] = integration

    def all(self) -> list[Integration]:
        return list(self._items.values())

    def get(self, integration_id: str) -> Integration:
        found = self._items.get(integration_id)
        if found is None:
            raise not_found(f"No integration found with ID '{integration_id}'.")
        return found

    def remove(self, integration_id: str) -> Integration:
        found = self.get(integration_id)
        del self._items[integration_id]
        return found

    def webhooks(self) -> list[Integration]:
        return [i for i in self._items.values() if i.type_id == WEBHOOK_TYPE]

    def snapshot(self) -> list[dict[str, Any]]:
        return [i.to_json() for i in self._items.values()]

    def restore(self, data: list[dict[str, Any]]) -> None:
        self.clear()
        for raw in data:
            self.add(Integration.from_json(raw))
