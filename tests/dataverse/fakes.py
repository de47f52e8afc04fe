"""A small in-memory stand-in for the Dataverse Web API rows the bidirectional flow touches
(service endpoints, steps, message filters, contacts, WhoAmI, RetrieveUserPrivileges), served
through `httpx.MockTransport` for unit tests. End-to-end tests use the real sandbox instead."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from consentbridge.dataverse.client import DataverseClient

BASE = "https://org.example/api/data/v9.2"
ADMIN_PRIVILEGES = (
    "prvCreateServiceEndpoint",
    "prvCreateSdkMessageProcessingStep",
    "prvDeleteServiceEndpoint",
    "prvDeleteSdkMessageProcessingStep",
)
KEYS = {
    "serviceendpoints": "serviceendpointid",
    "sdkmessageprocessingsteps": "sdkmessageprocessingstepid",
    "contacts": "contactid",
}


class StaticTokens:
    async def token(self) -> str:
        return "token"

    async def invalidate(self) -> None:
        return None


@dataclass
class FakeDataverse:
    user_id: str = "00000000-0000-4000-8000-000000000001"
    privileges: set[str] = field(default_factory=lambda: set(ADMIN_PRIVILEGES))
    tables: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in KEYS}
    )
    messages: dict[str, str] = field(
        default_factory=lambda: {"Create": str(uuid.uuid4()), "Update": str(uuid.uuid4())}
    )
    requests: list[tuple[str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)  # decoded query strings of GETs
    # (method, entity set) → status to answer instead of doing the work
    fail: dict[tuple[str, str], int] = field(default_factory=dict)

    def client(self) -> DataverseClient:
        return DataverseClient(BASE, StaticTokens(), transport=httpx.MockTransport(self.handle))  # type: ignore[arg-type]

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.requests if m != "GET"]

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        return list(self.tables[entity_set].values())

    def add_contact(self, **columns: Any) -> str:
        contact_id = str(uuid.uuid4())
        self.tables["contacts"][contact_id] = {"contactid": contact_id, **columns}
        return contact_id

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/data/v9.2/")
        self.requests.append((request.method, path))
        entity_set = path.split("(", 1)[0]
        if (request.method, entity_set) in self.fail:
            status = self.fail[request.method, entity_set]
            return httpx.Response(status, json={"error": {"code": "0x1", "message": "refused"}})
        if path == "WhoAmI":
            return httpx.Response(200, json={"UserId": self.user_id})
        if path.endswith("RetrieveUserPrivileges()"):
            rows = [{"PrivilegeName": p, "Depth": "Global"} for p in sorted(self.privileges)]
            return httpx.Response(200, json={"RolePrivileges": rows})
        query = " ".join(unquote(v) for v in request.url.params.values())
        if request.method == "GET":
            self.queries.append(query)
            return self._get(entity_set, query)
        if request.method == "POST":
            row_id = str(uuid.uuid4())
            body = json.loads(request.content)
            self.tables[entity_set][row_id] = {KEYS[entity_set]: row_id, "statecode": 0, **body}
            return httpx.Response(204, headers={"OData-EntityId": f"{BASE}/{entity_set}({row_id})"})
        row_id = path[path.index("(") + 1 : path.index(")")]
        row = self.tables[entity_set].get(row_id)
        if row is None:
            return httpx.Response(404, json={"error": {"code": "0x80040217", "message": "gone"}})
        if request.method == "PATCH":
            row.update(json.loads(request.content))
            return httpx.Response(204)
        del self.tables[entity_set][row_id]
        return httpx.Response(204)

    def _get(self, entity_set: str, query: str) -> httpx.Response:
        rows: list[dict[str, Any]]
        if entity_set == "sdkmessages":
            names = re.findall(r"name eq '([^']*)'", query)
            rows = [
                {"sdkmessageid": self.messages[n], "name": n} for n in names if n in self.messages
            ]
        elif entity_set == "sdkmessagefilters":
            name = re.findall(r"sdkmessageid/name eq '([^']*)'", query)[0]
            rows = [{"sdkmessagefilterid": f"filter-{self.messages[name]}"}]
        elif entity_set == "contacts":
            ids = {i.lower() for i in re.findall(r"'([0-9a-fA-F-]{36})'", query)}
            rows = [dict(r) for k, r in self.tables["contacts"].items() if k in ids]
        else:
            wanted = set(re.findall(r"name eq '([^']*)'", query))
            rows = []
            for row in self.tables[entity_set].values():
                if row.get("name") in wanted:
                    out = dict(row)
                    bind = row.get("eventhandler_serviceendpoint@odata.bind", "")
                    if bind:
                        out["_eventhandler_value"] = bind[bind.index("(") + 1 : -1]
                    rows.append(out)
        return httpx.Response(200, json={"value": rows})
