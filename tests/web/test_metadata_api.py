"""The admin API behind the mapping builder, against the sandbox over real HTTPS: the live
`contact` columns with their types, the seeded Journeys purposes with their topics, the Didomi
paths seen for the organization, and one path judged with the mapping grammar."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient

ID = "acme-d365"
URL = f"/api/v1/integrations/{ID}"
PROPERTIES = [{"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"}]


async def _put(client: httpx.AsyncClient, admin: dict[str, str], sandbox: SandboxClient) -> None:
    response = await client.put(
        URL, json=integration_document(sandbox, PROPERTIES, id=ID), headers=admin
    )
    assert response.status_code == 201, response.text


async def test_columns_come_from_live_metadata_with_their_types(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    live_sandbox.add_column("new_smsoptin", "Picklist", options=[1, 2])
    await _put(client, admin, live_sandbox)
    response = await client.get(f"{URL}/metadata/columns", headers=admin)
    assert response.status_code == 200, response.text
    columns = {c["logical_name"]: c for c in response.json()["columns"]}
    assert columns["donotbulkemail"]["attribute_type"] == "BooleanType"
    assert columns["donotbulkemail"]["writable"] is True
    assert columns["new_smsoptin"]["options"] == [1, 2]
    # A column no mapping can write is listed with the reason, after the writable ones.
    listed = [c["logical_name"] for c in response.json()["columns"]]
    unwritable = [c for c in columns.values() if not c["writable"]]
    assert unwritable and all(c["problem"] for c in unwritable)
    assert listed.index(unwritable[0]["logical_name"]) > listed.index("donotbulkemail")


async def test_journeys_purposes_come_with_their_topics(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    seeded = live_sandbox.x.get("/_sandbox/purposes").json()["purposes"]
    await _put(client, admin, live_sandbox)
    response = await client.get(f"{URL}/metadata/purposes", headers=admin)
    assert response.status_code == 200, response.text
    purposes = {p["purpose_id"]: p for p in response.json()["purposes"]}
    assert set(purposes) == {p["id"] for p in seeded}
    for purpose in seeded:
        assert purposes[purpose["id"]]["name"] == purpose["name"]
        assert {t["topic_id"] for t in purposes[purpose["id"]]["topics"]} == {
            t["id"] for t in purpose["topics"]
        }


async def test_paths_seen_in_didomi_are_suggested(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    live_sandbox.consent_event(
        "carol@example.com",
        [{"id": "sms_offers", "enabled": True, "channels": [{"id": "sms", "enabled": True}]}],
    )
    await _put(client, admin, live_sandbox)
    response = await client.get(f"{URL}/paths", headers=admin)
    assert response.status_code == 200, response.text
    paths = {p["path"]: p for p in response.json()["paths"]}
    assert "consents_purposes_newsletter_enabled" in paths  # from the mapping itself
    assert paths["consents_purposes_sms_offers_enabled"]["describes"] == "purpose 'sms_offers'"
    assert any("sms_offers" in p and "channel" in p for p in paths)


async def test_a_path_is_judged_with_the_grammar(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    await _put(client, admin, live_sandbox)
    bad = await client.get(f"{URL}/paths/check", params={"value": "purposes_x"}, headers=admin)
    assert bad.status_code == 200
    assert bad.json()["ok"] is False and bad.json()["error"].endswith(".")
    unknown = await client.get(
        "/api/v1/integrations/nobody/paths/check", params={"value": "x"}, headers=admin
    )
    assert unknown.status_code == 404
    stranger = await client.get(f"{URL}/metadata/columns")
    assert stranger.status_code == 401
