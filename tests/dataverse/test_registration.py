"""Webhook registration in Dataverse: created once, repaired when it drifts, undone on failure."""

from __future__ import annotations

import httpx
import pytest

from consentbridge.dataverse.errors import PrivilegeError
from consentbridge.dataverse.registration import (
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

from .fakes import FakeDataverse

SPEC = WebhookSpec(
    "acme",
    "https://cb.example/webhooks/dataverse/acme",
    's3cr"et&<x>',
    "donotbulkemail,emailaddress1",
)


async def test_first_run_creates_an_endpoint_and_two_async_post_operation_steps() -> None:
    fake = FakeDataverse()
    ensured = await ensure_registration(fake.client(), SPEC)
    (endpoint,) = fake.rows("serviceendpoints")
    assert endpoint["serviceendpointid"] == ensured.endpoint_id
    assert (endpoint["contract"], endpoint["authtype"], endpoint["messageformat"]) == (
        CONTRACT_WEBHOOK,
        AUTHTYPE_HTTP_HEADER,
        MESSAGEFORMAT_JSON,
    )
    assert endpoint["name"] == "consentbridge:acme"
    assert endpoint["url"] == SPEC.url
    steps = {s["name"]: s for s in fake.rows("sdkmessageprocessingsteps")}
    assert set(steps) == {"consentbridge:acme:Create", "consentbridge:acme:Update"}
    for step in steps.values():
        assert (step["mode"], step["stage"]) == (MODE_ASYNC, STAGE_POST_OPERATION)
        assert step["eventhandler_serviceendpoint@odata.bind"] == (
            f"/serviceendpoints({ensured.endpoint_id})"
        )
    assert steps["consentbridge:acme:Update"]["filteringattributes"] == SPEC.filtering_attributes
    assert "filteringattributes" not in steps["consentbridge:acme:Create"]
    assert set(ensured.step_ids) == {"Create", "Update"}
    assert ensured.changed


def test_the_secret_is_escaped_inside_the_header_settings_xml() -> None:
    assert SPEC.auth_value == (
        '<settings><setting name="x-consentbridge-key" value=\'s3cr"et&amp;&lt;x&gt;\' />'
        "</settings>"
    )


async def test_second_run_with_the_same_record_writes_nothing() -> None:
    fake = FakeDataverse()
    first = await ensure_registration(fake.client(), SPEC)
    fake.requests.clear()
    second = await ensure_registration(
        fake.client(), SPEC, recorded_endpoint_id=first.endpoint_id, secret_current=True
    )
    assert fake.writes == []
    assert not second.changed
    assert (second.endpoint_id, second.step_ids) == (first.endpoint_id, first.step_ids)


async def test_drifted_url_filter_and_disabled_step_are_patched_and_reported() -> None:
    fake = FakeDataverse()
    first = await ensure_registration(fake.client(), SPEC)
    update = fake.tables["sdkmessageprocessingsteps"][first.step_ids["Update"]]
    update.update(statecode=1, filteringattributes="donotbulkemail")
    moved = WebhookSpec(
        "acme",
        "https://new.example/webhooks/dataverse/acme",
        SPEC.secret,
        SPEC.filtering_attributes,
    )
    again = await ensure_registration(
        fake.client(), moved, recorded_endpoint_id=first.endpoint_id, secret_current=True
    )
    assert fake.rows("serviceendpoints")[0]["url"] == moved.url
    assert update["statecode"] == 0
    assert update["filteringattributes"] == SPEC.filtering_attributes
    assert len(again.actions) == 3
    assert not any("webhook key" in action for action in again.actions)


async def test_an_unrecorded_endpoint_gets_its_key_set_again() -> None:
    # authvalue cannot be read back: an endpoint we did not record may carry any key.
    fake = FakeDataverse()
    first = await ensure_registration(fake.client(), SPEC)
    fake.tables["serviceendpoints"][first.endpoint_id]["authvalue"] = "stale"
    again = await ensure_registration(fake.client(), SPEC)
    assert fake.tables["serviceendpoints"][first.endpoint_id]["authvalue"] == SPEC.auth_value
    assert any("webhook key" in action for action in again.actions)


async def test_duplicates_under_our_names_are_removed() -> None:
    fake = FakeDataverse()
    first = await ensure_registration(fake.client(), SPEC)
    copy = await ensure_registration(FakeDataverse().client(), SPEC)  # ids from another world
    fake.tables["sdkmessageprocessingsteps"]["dup"] = {
        "sdkmessageprocessingstepid": "dup",
        "name": "consentbridge:acme:Update",
        "statecode": 0,
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({copy.endpoint_id})",
    }
    again = await ensure_registration(
        fake.client(), SPEC, recorded_endpoint_id=first.endpoint_id, secret_current=True
    )
    assert "dup" not in fake.tables["sdkmessageprocessingsteps"]
    assert again.step_ids == first.step_ids
    assert len(fake.rows("sdkmessageprocessingsteps")) == 2


async def test_a_refused_step_removes_the_endpoint_created_in_the_same_run() -> None:
    fake = FakeDataverse()
    fake.fail[("POST", "sdkmessageprocessingsteps")] = 403
    with pytest.raises(PrivilegeError):
        await ensure_registration(fake.client(), SPEC)
    assert fake.rows("serviceendpoints") == []
    assert fake.rows("sdkmessageprocessingsteps") == []


async def test_removal_deletes_steps_before_the_endpoint_and_tolerates_missing_rows() -> None:
    fake = FakeDataverse()
    ensured = await ensure_registration(fake.client(), SPEC)
    del fake.tables["sdkmessageprocessingsteps"][ensured.step_ids["Create"]]
    fake.requests.clear()
    actions = await remove_registration(
        fake.client(), [ensured.step_ids["Create"], ensured.step_ids["Update"]], ensured.endpoint_id
    )
    assert [m for m, _ in fake.writes] == ["DELETE", "DELETE", "DELETE"]
    assert fake.writes[-1][1].startswith("serviceendpoints(")
    assert "already gone" in actions[0] and "deleted" in actions[1]
    found = await find_registration(fake.client(), "acme")
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
