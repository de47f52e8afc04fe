"""Webhook registration in the sandbox's Dataverse over HTTPS: created once, repaired when it
drifts, undone on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.errors import DataverseError, PrivilegeError
from consentbridge.dataverse.registration import (
    AUTH_HEADER,
    AUTHTYPE_HTTP_HEADER,
    CONTRACT_WEBHOOK,
    MESSAGEFORMAT_JSON,
    MODE_ASYNC,
    STAGE_POST_OPERATION,
    WebhookSpec,
    ensure_registration,
    entity_id,
    find_registration,
    normalize_attributes,
    remove_registration,
)
from tests.support.receiver import serve_receiver
from tests.support.sandbox import RecordingTransport, SandboxClient, dataverse_client

SPEC = WebhookSpec(
    "acme",
    "https://cb.example/webhooks/dataverse/acme",
    's3cr"et&<x>',
    "donotbulkemail,emailaddress1",
)
NAMED = "startswith(name,'consentbridge:acme')"


@dataclass
class Dataverse:
    """Our client against the sandbox, every request it sends recorded; and the sandbox itself,
    read and changed directly through its Web API as another administrator would."""

    client: DataverseClient
    transport: RecordingTransport
    sandbox: SandboxClient

    @property
    def writes(self) -> list[tuple[str, str]]:
        return self.transport.writes

    def endpoints(self) -> list[dict[str, Any]]:
        return self.sandbox.rows(
            "serviceendpoints",
            "serviceendpointid,name,url,contract,authtype,messageformat,isauthvalueset",
            NAMED,
        )

    def steps(self) -> list[dict[str, Any]]:
        return self.sandbox.rows(
            "sdkmessageprocessingsteps",
            "sdkmessageprocessingstepid,name,mode,stage,statecode,filteringattributes,"
            "_eventhandler_value,_sdkmessageid_value",
            NAMED,
        )

    def delete(self, entity_set: str, row_id: str) -> None:
        self.sandbox.dv("DELETE", f"{entity_set}({row_id})", expect=204)


@pytest.fixture
async def dataverse(live_sandbox: SandboxClient) -> AsyncIterator[Dataverse]:
    transport = RecordingTransport(live_sandbox.ca_bundle)
    async with dataverse_client(live_sandbox, transport=transport) as client:
        yield Dataverse(client, transport, live_sandbox)


async def test_first_run_creates_an_endpoint_and_two_async_post_operation_steps(
    dataverse: Dataverse,
) -> None:
    ensured = await ensure_registration(dataverse.client, SPEC)
    (endpoint,) = dataverse.endpoints()
    assert endpoint["serviceendpointid"] == ensured.endpoint_id
    assert (endpoint["contract"], endpoint["authtype"], endpoint["messageformat"]) == (
        CONTRACT_WEBHOOK,
        AUTHTYPE_HTTP_HEADER,
        MESSAGEFORMAT_JSON,
    )
    assert endpoint["name"] == "consentbridge:acme"
    assert endpoint["url"] == SPEC.url
    assert endpoint["isauthvalueset"] is True
    steps = {s["name"]: s for s in dataverse.steps()}
    assert set(steps) == {"consentbridge:acme:Create", "consentbridge:acme:Update"}
    for step in steps.values():
        assert (step["mode"], step["stage"], step["statecode"]) == (
            MODE_ASYNC,
            STAGE_POST_OPERATION,
            0,
        )
        assert step["_eventhandler_value"] == ensured.endpoint_id
    assert steps["consentbridge:acme:Update"]["filteringattributes"] == SPEC.filtering_attributes
    assert steps["consentbridge:acme:Create"]["filteringattributes"] is None
    assert ensured.step_ids == {
        "Create": steps["consentbridge:acme:Create"]["sdkmessageprocessingstepid"],
        "Update": steps["consentbridge:acme:Update"]["sdkmessageprocessingstepid"],
    }
    assert ensured.changed


def test_the_secret_is_escaped_inside_the_header_settings_xml() -> None:
    # The first test shows that Dataverse (the sandbox) accepts it.
    assert SPEC.auth_value == (
        '<settings><setting name="x-consentbridge-key" value=\'s3cr"et&amp;&lt;x&gt;\' />'
        "</settings>"
    )


async def test_second_run_with_the_same_record_writes_nothing(dataverse: Dataverse) -> None:
    first = await ensure_registration(dataverse.client, SPEC)
    dataverse.transport.requests.clear()
    second = await ensure_registration(
        dataverse.client, SPEC, recorded_endpoint_id=first.endpoint_id, secret_current=True
    )
    assert dataverse.writes == []
    assert not second.changed
    assert (second.endpoint_id, second.step_ids) == (first.endpoint_id, first.step_ids)


async def test_drifted_url_filter_and_disabled_step_are_patched_and_reported(
    dataverse: Dataverse,
) -> None:
    first = await ensure_registration(dataverse.client, SPEC)
    update_id = first.step_ids["Update"]
    dataverse.sandbox.update_row(
        "sdkmessageprocessingsteps",
        update_id,
        statecode=1,
        statuscode=2,
        filteringattributes="donotbulkemail",
    )
    moved = WebhookSpec(
        "acme",
        "https://new.example/webhooks/dataverse/acme",
        SPEC.secret,
        SPEC.filtering_attributes,
    )
    again = await ensure_registration(
        dataverse.client, moved, recorded_endpoint_id=first.endpoint_id, secret_current=True
    )
    assert dataverse.endpoints()[0]["url"] == moved.url
    (update,) = [s for s in dataverse.steps() if s["sdkmessageprocessingstepid"] == update_id]
    assert update["statecode"] == 0
    assert update["filteringattributes"] == SPEC.filtering_attributes
    assert len(again.actions) == 3
    assert not any("webhook key" in action for action in again.actions)


async def test_an_unrecorded_endpoint_gets_its_key_set_again(dataverse: Dataverse) -> None:
    # authvalue cannot be read back: an endpoint we did not record may carry any key. What
    # Dataverse sends with its next delivery shows which key the endpoint holds.
    async with serve_receiver() as receiver:
        spec = WebhookSpec("acme", receiver.url, SPEC.secret, SPEC.filtering_attributes)
        first = await ensure_registration(dataverse.client, spec)
        stale = '<settings><setting name="x-consentbridge-key" value="stale" /></settings>'
        dataverse.sandbox.update_row("serviceendpoints", first.endpoint_id, authvalue=stale)
        again = await ensure_registration(dataverse.client, spec)
        assert again.endpoint_id == first.endpoint_id
        assert any("webhook key" in action for action in again.actions)
        dataverse.sandbox.create_contact(emailaddress1="ada@example.com")
        await receiver.wait_for(1, timeout_s=20)
    assert receiver.headers[0][AUTH_HEADER] == SPEC.secret


async def test_duplicates_under_our_names_are_removed(dataverse: Dataverse) -> None:
    first = await ensure_registration(dataverse.client, SPEC)
    # An earlier enable whose record was lost left a second endpoint and Update step.
    response = dataverse.sandbox.dv(
        "POST",
        "serviceendpoints",
        expect=204,
        json={
            "name": SPEC.name,
            "contract": CONTRACT_WEBHOOK,
            "url": SPEC.url,
            "authtype": AUTHTYPE_HTTP_HEADER,
            "authvalue": SPEC.auth_value,
        },
    )
    extra_endpoint = entity_id(response)
    extra_step = dataverse.sandbox.add_step("consentbridge:acme:Update", "Update", extra_endpoint)
    again = await ensure_registration(
        dataverse.client, SPEC, recorded_endpoint_id=first.endpoint_id, secret_current=True
    )
    # The step goes first: Dataverse refuses to delete an endpoint that steps still use.
    assert dataverse.writes[-2:] == [
        ("DELETE", f"sdkmessageprocessingsteps({extra_step})"),
        ("DELETE", f"serviceendpoints({extra_endpoint})"),
    ]
    assert again.step_ids == first.step_ids and again.endpoint_id == first.endpoint_id
    assert [e["serviceendpointid"] for e in dataverse.endpoints()] == [first.endpoint_id]
    assert sorted(s["sdkmessageprocessingstepid"] for s in dataverse.steps()) == sorted(
        first.step_ids.values()
    )


async def test_a_refused_step_removes_the_endpoint_created_in_the_same_run(
    dataverse: Dataverse,
) -> None:
    # Dataverse refuses an Update step filtering on a column the contact table lacks.
    spec = WebhookSpec("acme", SPEC.url, SPEC.secret, "donotbulkemail,new_nosuchcolumn")
    with pytest.raises(DataverseError, match="new_nosuchcolumn"):
        await ensure_registration(dataverse.client, spec)
    assert dataverse.endpoints() == []
    assert dataverse.steps() == []
    assert [m for m, _ in dataverse.writes] == ["POST", "POST", "POST", "DELETE", "DELETE"]


async def test_a_step_refused_for_lack_of_privilege_is_undone_too(
    live_sandbox: SandboxClient,
) -> None:
    # The System Administrator role is withdrawn while the registration runs, just after the
    # endpoint was created (so the step is refused with 403), and restored before the undo.
    app = live_sandbox.principals()["apps"][0]

    def observe(operation: str, status: int) -> None:
        if (operation, status) == ("create", 204):
            live_sandbox.set_roles(app, ["Salesperson"])
        elif status == 403:
            live_sandbox.set_roles(app, ["System Administrator"])

    async with dataverse_client(live_sandbox, on_request=observe) as client:
        with pytest.raises(PrivilegeError):
            await ensure_registration(client, SPEC)
        found = await find_registration(client, "acme")
    assert found.endpoints == [] and found.steps == []


async def test_removal_deletes_steps_before_the_endpoint_and_tolerates_missing_rows(
    dataverse: Dataverse,
) -> None:
    ensured = await ensure_registration(dataverse.client, SPEC)
    dataverse.delete("sdkmessageprocessingsteps", ensured.step_ids["Create"])
    dataverse.transport.requests.clear()
    actions = await remove_registration(
        dataverse.client,
        [ensured.step_ids["Create"], ensured.step_ids["Update"]],
        ensured.endpoint_id,
    )
    assert dataverse.writes == [
        ("DELETE", f"sdkmessageprocessingsteps({ensured.step_ids['Create']})"),
        ("DELETE", f"sdkmessageprocessingsteps({ensured.step_ids['Update']})"),
        ("DELETE", f"serviceendpoints({ensured.endpoint_id})"),
    ]
    assert "already gone" in actions[0] and "deleted" in actions[1]
    found = await find_registration(dataverse.client, "acme")
    assert found.endpoints == [] and found.steps == []


def test_filtering_attributes_are_compared_in_canonical_form() -> None:
    assert normalize_attributes(" EmailAddress1,donotbulkemail,,donotbulkemail") == (
        "donotbulkemail,emailaddress1"
    )
    assert normalize_attributes(None) == ""


def test_created_row_id_comes_from_the_odata_entity_id_header() -> None:
    response = httpx.Response(
        204, headers={"OData-EntityId": "https://x/api/data/v9.2/serviceendpoints(ABC-1)"}
    )
    assert entity_id(response) == "abc-1"
    assert entity_id(httpx.Response(201, json={"serviceendpointid": "{DEF}"})) == "def"


CONSENT_SPEC = WebhookSpec(
    SPEC.integration_id,
    SPEC.url,
    SPEC.secret,
    SPEC.filtering_attributes,
    (("msdynmkt_contactpointconsent4", "msdynmkt_value"),),
)


async def test_consent_row_steps_are_registered_beside_the_contact_ones_and_removed_when_unneeded(
    dataverse: Dataverse,
) -> None:
    ensured = await ensure_registration(dataverse.client, CONSENT_SPEC)
    assert sorted(ensured.step_ids) == [
        "Create",
        "Update",
        "msdynmkt_contactpointconsent4:Create",
        "msdynmkt_contactpointconsent4:Update",
    ]
    filters = {s["name"]: s["filteringattributes"] for s in dataverse.steps()}
    assert filters["consentbridge:acme:msdynmkt_contactpointconsent4:Update"] == "msdynmkt_value"
    again = await ensure_registration(
        dataverse.client,
        CONSENT_SPEC,
        recorded_endpoint_id=ensured.endpoint_id,
        secret_current=True,
    )
    assert again.actions == [] and again.step_ids == ensured.step_ids
    # The mapping lost its consent rows: their steps go, the contact ones stay.
    fewer = await ensure_registration(
        dataverse.client, SPEC, recorded_endpoint_id=ensured.endpoint_id, secret_current=True
    )
    assert sorted(fewer.step_ids) == ["Create", "Update"]
    assert sorted(s["name"] for s in dataverse.steps()) == [
        "consentbridge:acme:Create",
        "consentbridge:acme:Update",
    ]
    assert sum("no longer needs" in a for a in fewer.actions) == 2
