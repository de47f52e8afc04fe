"""The HTTP front: bearer tokens and the 401 challenge, the headers every response carries,
security roles, and the counters `/_sandbox/stats` reports."""

from __future__ import annotations

import time
import uuid

import jwt

from consentbridge.sandbox.entra import issue_token
from consentbridge.sandbox.state import SandboxState
from tests.sandbox.dataverse.conftest import BASE_URL, Api, error_code


def _assert_challenge(api: Api, challenge: str) -> None:
    tenant = api.state.principals.tenant_id
    assert challenge == (
        f"Bearer authorization_uri={BASE_URL}/{tenant}/oauth2/authorize, resource_id={BASE_URL}"
    )


async def test_a_request_without_a_token_is_401_with_the_challenge(api: Api) -> None:
    response = await api.get("contacts", token=None)
    assert response.status_code == 401
    _assert_challenge(api, response.headers["WWW-Authenticate"])
    assert response.headers["OData-Version"] == "4.0"


async def test_expired_and_foreign_tokens_are_401(api: Api, state: SandboxState) -> None:
    state.limits.token_lifetime_s = -1
    expired = issue_token(state, api.app, BASE_URL)[0]
    state.limits.token_lifetime_s = 3599
    response = await api.get("contacts", token=expired)
    assert response.status_code == 401
    assert "ExpiredAuthTicket" in response.json()["error"]["message"]
    other_audience = issue_token(state, api.app, "https://127.0.0.1:9999")[0]
    assert (await api.get("contacts", token=other_audience)).status_code == 401
    claims = {"aud": BASE_URL, "tid": state.principals.tenant_id, "exp": time.time() + 60}
    forged = jwt.encode(claims, "not-the-signing-key-of-the-sandbox-at-all", algorithm="HS256")
    assert (await api.get("contacts", token=forged)).status_code == 401
    basic = await api.get("contacts", token=None, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


async def test_responses_carry_dataverse_headers(api: Api, state: SandboxState) -> None:
    response = await api.get("contacts")
    assert response.headers["OData-Version"] == "4.0"
    request_id = response.headers["x-ms-service-request-id"]
    assert str(uuid.UUID(request_id)) == request_id
    assert response.headers["REQ_ID"] == request_id
    assert response.headers["x-ms-dop-hint"] == "5"
    assert response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "5999"
    state.limits.dop_hint = 12
    again = await api.get("contacts")
    assert again.headers["x-ms-dop-hint"] == "12"
    assert again.headers["x-ms-service-request-id"] != request_id
    assert again.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "5998"


async def test_who_am_i_names_the_application_user(api: Api) -> None:
    sales = api.add_app("sales", ["Salesperson"])
    body = (await sales.get("WhoAmI")).json()
    assert body["UserId"] == sales.app.systemuserid
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
    assert set(body) == {"@odata.context", "BusinessUnitId", "UserId", "OrganizationId"}
    assert (await sales.get("WhoAmI()")).status_code == 200


async def test_a_function_called_with_post_is_no_http_resource(api: Api) -> None:
    # MS Learn troubleshooting, "No HTTP resource was found that matches the request URI":
    # WhoAmI is a function, so POST finds no resource; the code is empty.
    response = await api.post("WhoAmI")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "",
            "message": "No HTTP resource was found that matches the request URI "
            "'https://127.0.0.1:8443/api/data/v9.2/WhoAmI'.",
        }
    }


async def test_retrieve_user_privileges_lists_what_the_roles_grant(api: Api) -> None:
    sales = api.add_app("sales", ["Salesperson"])
    path = f"systemusers({sales.app.systemuserid})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
    body = (await sales.get(path)).json()
    names = {p["PrivilegeName"] for p in body["RolePrivileges"]}
    assert {"prvReadContact", "prvWriteContact", "prvCreateContact"} <= names
    assert "prvDeleteContact" not in names
    assert "prvCreateServiceEndpoint" in {
        p["PrivilegeName"]
        for p in (await api.get(path.replace(sales.app.systemuserid, api.app.systemuserid))).json()[
            "RolePrivileges"
        ]
    }
    # Another user's privileges need prvReadUser; an unknown user is 404, a bad id 400.
    nobody = api.add_app("nobody", [])
    assert (await nobody.get(path)).status_code == 403
    own = path.replace(sales.app.systemuserid, nobody.app.systemuserid)
    assert (await nobody.get(own)).json()["RolePrivileges"] == []
    missing = path.replace(sales.app.systemuserid, str(uuid.uuid4()))
    assert (await api.get(missing)).status_code == 404
    assert (await api.get(path.replace(sales.app.systemuserid, "nope"))).status_code == 400


async def test_each_request_runs_as_its_app_user(api: Api) -> None:
    sales = api.add_app("sales", ["Salesperson"])
    contact_id = await sales.create_contact()
    row = (await api.get(f"contacts({contact_id})")).json()
    assert row["_createdby_value"] == row["_ownerid_value"] == sales.app.systemuserid
    denied = await sales.delete(f"contacts({contact_id})")  # Salesperson has no delete
    assert denied.status_code == 403
    assert error_code(denied) == "0x80040220"
    assert "prvDeleteContact" in denied.json()["error"]["message"]
    nobody = api.add_app("nobody", [])
    assert (await nobody.get("contacts")).status_code == 403


async def test_stats_count_requests_operations_and_apps(api: Api, state: SandboxState) -> None:
    state.stats.reset()
    sales = api.add_app("sales", ["Salesperson"])
    contact_id = await api.create_contact()
    await api.patch(f"contacts({contact_id})", json={"donotemail": True})
    await sales.get(f"contacts({contact_id})")
    await api.get("WhoAmI")
    await api.get("EntityDefinitions(LogicalName='contact')/Keys")
    await api.get("contacts", token=None)
    stats = state.stats.public()["dataverse"]
    assert stats["requests"] == 6
    assert stats["by_operation"] == {
        "POST contacts": 1,
        "PATCH contacts": 1,
        "GET contacts": 1,
        "WhoAmI": 1,
        "GET EntityDefinitions/Keys": 1,
    }
    assert stats["by_app"] == {api.app.name: 4, "sales": 1}
    assert stats["rows_written"] == 2


async def test_the_service_document_lists_entity_sets(api: Api) -> None:
    for path in ("", "/"):
        response = await api.request("GET", f"https://127.0.0.1:8443/api/data/v9.2{path}")
        names = [item["name"] for item in response.json()["value"]]
        assert "contacts" in names and "sdkmessageprocessingsteps" in names
