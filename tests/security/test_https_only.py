"""Every URL the service calls out to must be https: ``config.instance``,
``config.authority_host`` and ``didomi.base_url`` given as http (or with credentials in them)
are refused whole through the admin API and the console, naming the field, and nothing is
stored — so no secret is ever sent in clear text. (The sandbox CA is trusted only through
``config.ca_bundle``; there is no switch that turns verification off.)"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import httpx
import pytest

from tests.security.support import ADMIN, ADMIN_TOKEN, API, Tenant, dump_store
from tests.web.support import document

pytestmark = pytest.mark.security

NEW = "initech-d365"
URLS = {
    "config.instance": ("config", "instance"),
    "config.authority_host": ("config", "authority_host"),
    "didomi.base_url": ("didomi", "base_url"),
}
BAD_VALUES = (
    "http://acme.crm4.dynamics.com",
    "HTTP://acme.crm4.dynamics.com",
    "ftp://acme.crm4.dynamics.com",
    "//acme.crm4.dynamics.com",
    "acme.crm4.dynamics.com",
    "https://user:pass@acme.crm4.dynamics.com",
)


def with_url(path: tuple[str, str], value: str) -> dict[str, Any]:
    doc = copy.deepcopy(document(NEW, webhook_client="initech-hooks"))
    doc[path[0]][path[1]] = value
    return doc


@pytest.mark.parametrize("field", list(URLS))
@pytest.mark.parametrize("value", BAD_VALUES)
async def test_a_url_that_is_not_plain_https_is_refused_by_the_api(
    client: httpx.AsyncClient, acme: Tenant, sqlite_url: str, field: str, value: str
) -> None:
    before = dump_store(sqlite_url)
    for integration_id in (NEW, acme.id):  # creating, and replacing a stored integration
        body = with_url(URLS[field], value) | {"id": integration_id}
        response = await client.put(f"{API}/{integration_id}", json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert field in [error["path"] for error in response.json()["errors"]]
    assert dump_store(sqlite_url) == before


async def test_the_same_document_with_https_is_accepted(
    client: httpx.AsyncClient, acme: Tenant
) -> None:
    # The control: only the scheme made the difference above.
    response = await client.put(
        f"{API}/{NEW}", json=document(NEW, webhook_client="i"), headers=ADMIN
    )
    assert response.status_code == 201, response.text


async def test_the_console_refuses_an_http_url_too(
    client: httpx.AsyncClient, acme: Tenant, sqlite_url: str
) -> None:
    signed = await client.post("/console/login", data={"token": ADMIN_TOKEN})
    assert signed.status_code == 303
    page = (await client.get("/console/new")).text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    before = dump_store(sqlite_url)
    doc = with_url(URLS["config.instance"], "http://acme.crm4.dynamics.com")
    response = await client.post(
        "/console/save",
        data={"csrf": match.group(1), "action": "save", "document": json.dumps(doc)},
    )
    assert response.status_code == 422
    assert "config.instance" in response.text and "https" in response.text
    assert dump_store(sqlite_url) == before
