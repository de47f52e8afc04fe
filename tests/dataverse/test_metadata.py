"""Column metadata read from the sandbox's `EntityDefinitions` over HTTPS: types, options and
the default a Create fills in (BooleanAttributeMetadata `DefaultValue`, the choice columns'
`DefaultFormValue`, -1 meaning none), which decides what a Create may send to Didomi."""

from __future__ import annotations

from typing import Any

from consentbridge.dataverse.metadata import MetadataCache, read_contact_columns
from tests.support.sandbox import SandboxClient, dataverse_client


def add_column(sandbox: SandboxClient, **spec: Any) -> None:
    sandbox.x.post("/_sandbox/columns", expect=201, json={"table": "contact", **spec})


async def test_column_defaults_are_read_from_the_attribute_metadata(
    live_sandbox: SandboxClient,
) -> None:
    options = [{"value": v, "label": f"Tier {v}"} for v in (1, 2, 3)]
    add_column(live_sandbox, logical_name="new_optin", type="Boolean", default=True)
    add_column(live_sandbox, logical_name="new_tier", type="Picklist", options=options, default=2)
    add_column(live_sandbox, logical_name="new_level", type="Picklist", options=options)
    add_column(live_sandbox, logical_name="new_days", type="MultiSelectPicklist", options=options)
    async with dataverse_client(live_sandbox) as client:
        columns = await read_contact_columns(client)
    defaults = {name: info.default for name, info in columns.items()}
    assert defaults["donotemail"] is False and defaults["donotbulkemail"] is False
    assert defaults["followemail"] is True  # the one consent column that defaults to true
    assert defaults["preferredcontactmethodcode"] == 1
    assert defaults["statecode"] == 0
    assert defaults["new_optin"] is True
    assert defaults["new_tier"] == 2
    assert defaults["new_level"] is None  # DefaultFormValue -1: no default
    assert defaults["new_days"] is None
    assert defaults["emailaddress1"] is None
    assert columns["new_tier"].options == frozenset({1, 2, 3})


async def test_the_defaults_cost_no_extra_request(live_sandbox: SandboxClient) -> None:
    seen: list[str] = []
    async with dataverse_client(
        live_sandbox, on_request=lambda operation, status: seen.append(operation)
    ) as client:
        cache = MetadataCache(client)
        first = await cache.columns()
        again = await cache.columns()
    assert first is again and first["followemail"].default is True
    assert seen == ["batch"]
