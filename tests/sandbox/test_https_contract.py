"""The over-the-wire contract of the sandbox: every status code, header and error code that
issue 2 names for Dataverse and Didomi, asserted once over real HTTPS (httpx trusting only the
sandbox CA, no in-process transport).

The emulators' own tests cover the behaviour in depth in-process; this file proves that what
they return is what a real client receives through TLS, uvicorn and the shared pipeline.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import msal
import pytest
import requests

from consentbridge.sandbox.server import BackgroundSandbox

API = "/api/data/v9.2"
KEY_NOT_DEFINED = "0x80060890"
DUPLICATE_KEY = "0x80060892"
PRIVILEGE_DENIED = "0x80040220"
OPTION_OUT_OF_RANGE = "0x8004431A"
PAYLOAD_ERROR = "0x80048d19"
REQUESTS_EXCEEDED = "0x80072322"
CONCURRENCY_EXCEEDED = "0x80072326"


@dataclass
class Wire:
    """An HTTPS client of the sandbox with the default app's credentials at hand."""

    sandbox: BackgroundSandbox
    http: httpx.Client
    principals: dict[str, Any]
    default_token: str | None = None

    @property
    def default_app(self) -> dict[str, Any]:
        app: dict[str, Any] = self.principals["apps"][0]
        return app

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/_sandbox/{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def token(self, app: dict[str, Any] | None = None) -> str:
        app = app or self.default_app
        response = self.http.post(
            f"/{self.principals['tenant_id']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app["client_id"],
                "client_secret": app["client_secret"],
                "scope": f"{self.sandbox.base_url}/.default",
            },
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def dataverse(
        self, method: str, path: str, *, token: str | None = "default", **kwargs: Any
    ) -> httpx.Response:
        headers = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
        if token == "default":
            self.default_token = self.default_token or self.token()
            token = self.default_token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(kwargs.pop("headers", {}))
        url = path if path.startswith("https://") else f"{API}/{path}"
        return self.http.request(method, url, headers=headers, **kwargs)

    def create_contact(self, **columns: Any) -> str:
        response = self.dataverse("POST", "contacts", json={"lastname": "Doe", **columns})
        assert response.status_code == 204, response.text
        entity_id = response.headers["OData-EntityId"]
        return entity_id[entity_id.rindex("(") + 1 : -1]

    def define_email_key(self) -> None:
        response = self.dataverse(
            "POST",
            "EntityDefinitions(LogicalName='contact')/Keys",
            json={
                "SchemaName": "cb_emailaddress1",
                "DisplayName": {"LocalizedLabels": [{"Label": "Email", "LanguageCode": 1033}]},
                "KeyAttributes": ["emailaddress1"],
            },
        )
        assert response.status_code in (201, 204), response.text
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the index builds asynchronously, as in Dataverse
            keys = self.dataverse("GET", "EntityDefinitions(LogicalName='contact')/Keys").json()
            if any(k.get("EntityKeyIndexStatus") == "Active" for k in keys["value"]):
                return
            time.sleep(0.1)
        raise AssertionError("the email key never became Active")

    def didomi(
        self, method: str, path: str, *, token: str | None = "default", **kwargs: Any
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        if token == "default":
            token = self.didomi_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        params = {"organization_id": self.principals["didomi"]["organization_id"]}
        params.update(kwargs.pop("params", {}))
        return self.http.request(method, f"/v1/{path}", headers=headers, params=params, **kwargs)

    def didomi_token(self) -> str:
        didomi = self.principals["didomi"]
        response = self.http.post(
            "/v1/sessions",
            json={"type": "api-key", "key": didomi["api_key"], "secret": didomi["api_secret"]},
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


@pytest.fixture
def wire(sandbox: BackgroundSandbox) -> Iterator[Wire]:
    with httpx.Client(base_url=sandbox.base_url, verify=str(sandbox.ca_bundle)) as http:
        principals = http.get("/_sandbox/principals").json()
        yield Wire(sandbox, http, principals)


def _error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def _assert_bearer_challenge(response: httpx.Response, tenant_id: str) -> None:
    # Dataverse answers 401 with the authority to ask (Microsoft's ServiceClient probes this).
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer "), challenge
    assert "authorization_uri=" in challenge and tenant_id in challenge, challenge


# --- Dataverse: authentication and authorization ------------------------------------------


def test_dataverse_without_a_token_is_401_with_a_bearer_challenge(wire: Wire) -> None:
    response = wire.dataverse("GET", "contacts", token=None)
    assert response.status_code == 401
    _assert_bearer_challenge(response, wire.principals["tenant_id"])


def test_a_token_for_another_audience_is_401(wire: Wire) -> None:
    # Validly signed by the sandbox key, but a Didomi session: not a token for Dataverse.
    response = wire.dataverse("GET", "contacts", token=wire.didomi_token())
    assert response.status_code == 401
    _assert_bearer_challenge(response, wire.principals["tenant_id"])


def test_an_msal_token_is_accepted_until_it_expires_then_401(wire: Wire) -> None:
    # 2 s rather than 1: `iat` is whole seconds, so a 1 s token may be stale on arrival.
    wire.control("POST", "limits", json={"token_lifetime_s": 2})
    with requests.Session() as session:
        session.verify = str(wire.sandbox.ca_bundle)
        session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment wins
        app = msal.ConfidentialClientApplication(
            wire.default_app["client_id"],
            client_credential=wire.default_app["client_secret"],
            authority=f"{wire.sandbox.base_url}/{wire.principals['tenant_id']}",
            http_client=session,
            instance_discovery=False,
        )
        result = app.acquire_token_for_client([f"{wire.sandbox.base_url}/.default"])
    token = result["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == wire.sandbox.base_url
    assert result["expires_in"] == claims["exp"] - claims["iat"] == 2

    assert wire.dataverse("GET", "contacts", token=token).status_code == 200
    time.sleep(max(0.0, claims["exp"] - time.time()) + 0.2)
    expired = wire.dataverse("GET", "contacts", token=token)
    assert expired.status_code == 401
    _assert_bearer_challenge(expired, wire.principals["tenant_id"])


def test_missing_privilege_is_403_privilege_denied(wire: Wire) -> None:
    salesperson = wire.control(
        "POST", "principals", json={"name": "sales", "roles": ["Salesperson"]}
    )
    token = wire.token(salesperson)
    # The role may read contacts, so the 403 below is about the privilege, not the token.
    assert wire.dataverse("GET", "contacts", token=token).status_code == 200
    response = wire.dataverse(
        "POST",
        "sdkmessageprocessingsteps",
        token=token,
        json={"name": "not allowed", "mode": 1, "stage": 40, "rank": 1},
    )
    assert response.status_code == 403
    assert _error_code(response) == PRIVILEGE_DENIED
    assert "prvCreateSdkMessageProcessingStep" in response.json()["error"]["message"]


# --- Dataverse: contacts ------------------------------------------------------------------


def test_create_is_204_with_odata_entity_id(wire: Wire) -> None:
    response = wire.dataverse("POST", "contacts", json={"lastname": "Plain"})
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["OData-EntityId"].startswith(f"{wire.sandbox.base_url}{API}/contacts(")


def test_return_representation_gives_201_on_create_and_200_on_update(wire: Wire) -> None:
    prefer = {"Prefer": "return=representation"}
    created = wire.dataverse(
        "POST", "contacts?$select=lastname,donotemail", json={"lastname": "Rep"}, headers=prefer
    )
    assert created.status_code == 201
    body = created.json()
    assert body["lastname"] == "Rep" and body["donotemail"] is False
    contact_id = body["contactid"]

    updated = wire.dataverse(
        "PATCH",
        f"contacts({contact_id})?$select=donotemail",
        json={"donotemail": True},
        headers=prefer,
    )
    assert updated.status_code == 200
    assert updated.json()["donotemail"] is True


def test_patch_without_conditions_upserts(wire: Wire) -> None:
    new_id = str(uuid.uuid4())
    response = wire.dataverse("PATCH", f"contacts({new_id})", json={"lastname": "Upserted"})
    assert response.status_code == 204
    fetched = wire.dataverse("GET", f"contacts({new_id})?$select=lastname")
    assert fetched.status_code == 200 and fetched.json()["lastname"] == "Upserted"


def test_if_match_star_on_a_missing_row_is_404(wire: Wire) -> None:
    missing = str(uuid.uuid4())
    response = wire.dataverse(
        "PATCH", f"contacts({missing})", json={"lastname": "X"}, headers={"If-Match": "*"}
    )
    assert response.status_code == 404
    assert wire.dataverse("GET", f"contacts({missing})").status_code == 404


def test_if_none_match_star_on_an_existing_row_is_412(wire: Wire) -> None:
    contact_id = wire.create_contact(lastname="Exists")
    response = wire.dataverse(
        "PATCH",
        f"contacts({contact_id})",
        json={"lastname": "Overwritten"},
        headers={"If-None-Match": "*"},
    )
    assert response.status_code == 412
    kept = wire.dataverse("GET", f"contacts({contact_id})?$select=lastname").json()
    assert kept["lastname"] == "Exists"


def test_a_key_addressed_url_without_a_defined_key_is_400(wire: Wire) -> None:
    response = wire.dataverse("GET", "contacts(emailaddress1='a@b.c')")
    assert response.status_code == 400
    assert _error_code(response) == KEY_NOT_DEFINED


def test_a_duplicate_alternate_key_value_is_412(wire: Wire) -> None:
    wire.define_email_key()
    wire.create_contact(emailaddress1="dup@example.com")
    response = wire.dataverse(
        "POST", "contacts", json={"lastname": "Second", "emailaddress1": "dup@example.com"}
    )
    assert response.status_code == 412
    assert _error_code(response) == DUPLICATE_KEY
    by_key = wire.dataverse("GET", "contacts(emailaddress1='dup@example.com')?$select=lastname")
    assert by_key.status_code == 200 and by_key.json()["lastname"] == "Doe"


@pytest.mark.parametrize(
    "columns",
    [
        {"cb_nosuchcolumn": "x"},
        {"donotemail": "yes"},
        {"preferredcontactmethodcode": "2"},
    ],
    ids=["unknown-column", "wrong-type-boolean", "wrong-type-picklist"],
)
def test_type_checked_writes_are_400(wire: Wire, columns: dict[str, Any]) -> None:
    response = wire.dataverse("POST", "contacts", json={"lastname": "Typed", **columns})
    assert response.status_code == 400
    assert _error_code(response)
    if "cb_nosuchcolumn" in columns:
        # "Error identified in Payload provided by the user for Entity :'contacts' ..."
        assert _error_code(response) == PAYLOAD_ERROR
        assert "cb_nosuchcolumn" in response.json()["error"]["message"]


def test_an_option_out_of_range_is_400_picklist_value_out_of_range(wire: Wire) -> None:
    response = wire.dataverse(
        "POST", "contacts", json={"lastname": "Range", "preferredcontactmethodcode": 99}
    )
    assert response.status_code == 400
    assert _error_code(response) == OPTION_OUT_OF_RANGE


@pytest.mark.parametrize(
    "expression",
    [
        "lastname eq",
        "lastname eq 'unterminated",
        "(lastname eq 'a'",
        "lastname eq 'a' and",
        "contains(lastname)",
        "lastname eq 'a' 'b'",
        "cb_nosuchcolumn eq 1",
        "Microsoft.Dynamics.CRM.In(PropertyName='lastname')",
        "donotemail eq 'maybe'",
        'lastname eq "Doe"',
        "&&",
    ],
)
def test_a_malformed_filter_is_400_never_500(wire: Wire, expression: str) -> None:
    response = wire.dataverse("GET", "contacts", params={"$filter": expression})
    assert response.status_code == 400, response.text
    assert _error_code(response) is not None


def test_odata_string_literals_double_their_quotes(wire: Wire) -> None:
    contact_id = wire.create_contact(lastname="O'Neil")
    wire.create_contact(lastname="ONeil")
    response = wire.dataverse(
        "GET", "contacts", params={"$filter": "lastname eq 'O''Neil'", "$select": "contactid"}
    )
    assert response.status_code == 200
    assert [row["contactid"] for row in response.json()["value"]] == [contact_id]


def test_in_takes_a_json_array_of_values(wire: Wire) -> None:
    # MS Learn "Filter rows": PropertyValues is a JSON array. Values that contain a quote must
    # be double-quoted (["O'Brian"]); doubling the quote inside single quotes is an error there.
    # Microsoft's SDK always double-quotes them.
    obrian, smith = wire.create_contact(lastname="O'Brian"), wire.create_contact(lastname="Smith")
    wire.create_contact(lastname="Jones")

    def ids_in(values: str) -> httpx.Response:
        expression = f"Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues={values})"
        return wire.dataverse(
            "GET", "contacts", params={"$filter": expression, "$select": "contactid"}
        )

    for values, expected in (('["O\'Brian","Smith"]', {obrian, smith}), ("['Smith']", {smith})):
        response = ids_in(values)
        assert response.status_code == 200, response.text
        assert {row["contactid"] for row in response.json()["value"]} == expected
    assert ids_in("['O''Brian','Smith']").status_code == 400


def test_maxpagesize_pages_with_a_next_link(wire: Wire) -> None:
    created = [wire.create_contact(lastname=f"Paged{i}") for i in range(3)]
    first = wire.dataverse(
        "GET",
        "contacts?$select=contactid&$orderby=lastname asc",
        headers={"Prefer": "odata.maxpagesize=2"},
    )
    assert first.status_code == 200
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=2"
    page = first.json()
    next_link = page["@odata.nextLink"]
    assert next_link.startswith(f"{wire.sandbox.base_url}{API}/contacts?")
    second = wire.dataverse("GET", next_link, headers={"Prefer": "odata.maxpagesize=2"})
    assert second.status_code == 200
    last = second.json()
    assert "@odata.nextLink" not in last
    assert [row["contactid"] for row in page["value"] + last["value"]] == created


def test_responses_carry_x_ms_dop_hint(wire: Wire) -> None:
    response = wire.dataverse("GET", "contacts")
    assert response.status_code == 200
    assert int(response.headers["x-ms-dop-hint"]) >= 1


# --- Dataverse: $batch ----------------------------------------------------------------------


def _batch_body(boundary: str, parts: list[str]) -> bytes:
    text = "".join(
        f"--{boundary}\r\nContent-Type: application/http\r\n"
        f"Content-Transfer-Encoding: binary\r\n\r\n{part}\r\n"
        for part in parts
    )
    return (text + f"--{boundary}--\r\n").encode()


def _post_part(lastname: str, extra: str = "") -> str:
    return (
        f"POST {API}/contacts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n"
        f'{{"lastname": "{lastname}"{extra}}}'
    )


def test_a_batch_of_more_than_1000_operations_is_400(wire: Wire) -> None:
    boundary = "batch_too_big"
    parts = [f"GET {API}/contacts?$top=1 HTTP/1.1\r\nAccept: application/json\r\n"] * 1001
    response = wire.dataverse(
        "POST",
        "$batch",
        content=_batch_body(boundary, parts),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert _error_code(response) is not None


def test_continue_on_error_is_200_with_per_part_statuses(wire: Wire) -> None:
    boundary = "batch_continue"
    parts = [
        _post_part("First"),
        _post_part("Broken", ', "preferredcontactmethodcode": 99'),
        _post_part("Third"),
    ]
    response = wire.dataverse(
        "POST",
        "$batch",
        content=_batch_body(boundary, parts),
        headers={
            "Content-Type": f"multipart/mixed; boundary={boundary}",
            "Prefer": "odata.continue-on-error",
        },
    )
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "odata.continue-on-error"
    assert response.headers["Content-Type"].startswith("multipart/mixed")
    statuses = [
        int(line.split()[1]) for line in response.text.splitlines() if line.startswith("HTTP/1.1 ")
    ]
    assert statuses == [204, 400, 204]
    assert OPTION_OUT_OF_RANGE in response.text


# --- Dataverse: service protection ---------------------------------------------------------


def test_too_many_requests_is_429_with_retry_after(wire: Wire) -> None:
    token = wire.token()
    wire.control("POST", "limits", json={"requests_per_window": 3, "window_s": 60})
    statuses = [wire.dataverse("GET", "contacts", token=token).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    throttled = wire.dataverse("GET", "contacts", token=token)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1
    assert _error_code(throttled) == REQUESTS_EXCEEDED


def test_too_many_concurrent_requests_is_429(wire: Wire) -> None:
    token = wire.token()
    wire.control("POST", "limits", json={"concurrent": 1})
    wire.control("POST", "faults", json={"latency_ms": 300})
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def call() -> None:
        response = wire.dataverse("GET", "contacts", token=token)
        with lock:
            responses.append(response)

    _run_together([call] * 4)
    throttled = [r for r in responses if r.status_code == 429]
    assert throttled, [r.status_code for r in responses]
    assert any(r.status_code == 200 for r in responses)
    assert _error_code(throttled[0]) == CONCURRENCY_EXCEEDED
    assert int(throttled[0].headers["Retry-After"]) >= 1


def _run_together(calls: list[Callable[[], None]]) -> None:
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], None]) -> None:
        barrier.wait()
        call()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


# --- Dataverse: webhooks (the sandbox's outbound leg, to a loopback receiver) ---------------


@dataclass
class Receiver:
    """A webhook endpoint on loopback that answers the statuses queued in `answers`, then 200."""

    url: str
    requests: list[tuple[str, dict[str, str], bytes]]
    answers: list[int]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received: list[tuple[str, dict[str, str], bytes]] = []
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", received, answers)
    server.shutdown()
    server.server_close()


def _register_update_webhook(wire: Wire, url: str, mode: int) -> str:
    """Register a webhook on Update of contact the documented Web API way; the endpoint id."""
    messages = wire.dataverse(
        "GET", "sdkmessages", params={"$select": "sdkmessageid", "$filter": "name eq 'Update'"}
    ).json()["value"]
    filters = wire.dataverse(
        "GET",
        "sdkmessagefilters",
        params={
            "$select": "sdkmessagefilterid",
            "$filter": "primaryobjecttypecode eq 'contact' and sdkmessageid/name eq 'Update'",
        },
    ).json()["value"]
    message_id, filter_id = messages[0]["sdkmessageid"], filters[0]["sdkmessagefilterid"]
    endpoint = wire.dataverse(
        "POST",
        "serviceendpoints",
        json={
            "name": "contract-test",
            "contract": 8,
            "url": url,
            "authtype": 5,
            "authvalue": '<settings><setting name="x-api-key" value="s3cret" /></settings>',
            "messageformat": 2,
        },
    )
    assert endpoint.status_code == 204, endpoint.text
    endpoint_id = endpoint.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    step = wire.dataverse(
        "POST",
        "sdkmessageprocessingsteps",
        json={
            "name": "contract-test: Update of contact",
            "mode": mode,
            "stage": 40,
            "rank": 1,
            "filteringattributes": "donotemail",
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
            "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
            "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
        },
    )
    assert step.status_code == 204, step.text
    return endpoint_id


def test_a_webhook_delivery_carries_the_dynamics_headers_and_the_endpoint_auth(
    wire: Wire, receiver: Receiver
) -> None:
    endpoint_id = _register_update_webhook(wire, receiver.url, mode=0)
    endpoint = wire.dataverse("GET", f"serviceendpoints({endpoint_id})").json()
    assert "authvalue" not in endpoint and endpoint["isauthvalueset"] is True  # write-only
    contact_id = wire.create_contact(lastname="Hooked")
    assert receiver.requests == [], "Create has no step; only Update was registered"

    # Sync step (mode 0): delivered before the PATCH answers. The first 503 is retried once.
    receiver.answers.append(503)
    response = wire.dataverse("PATCH", f"contacts({contact_id})", json={"donotemail": True})
    assert response.status_code == 204
    assert len(receiver.requests) == 2
    path, headers, body = receiver.requests[-1]
    assert path == "/hook"
    assert headers["x-api-key"] == "s3cret"
    assert headers["x-ms-dynamics-entity-name"] == "contact"
    assert headers["x-ms-dynamics-request-name"] == "Update"
    assert headers["x-ms-dynamics-organization"]
    assert headers["x-ms-correlation-request-id"] and headers["x-request-id"]
    context = json.loads(body)
    assert context["PrimaryEntityId"] == contact_id
    assert context["MessageName"] == "Update" and context["Stage"] == 40

    # A column outside filteringattributes does not fire the step.
    wire.dataverse("PATCH", f"contacts({contact_id})", json={"firstname": "Quiet"})
    assert len(receiver.requests) == 2


# --- Didomi -----------------------------------------------------------------------------------


def _event(org_user_id: str, event_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "user": {"organization_user_id": org_user_id},
        "consents": {"purposes": [{"id": "marketing", "enabled": True}]},
    }
    if event_id is not None:
        event["id"] = event_id
    return event


def _assert_didomi_error(response: httpx.Response, status: int) -> None:
    body = response.json()
    assert response.status_code == status
    assert body["code"] == status
    assert {"name", "message", "errors"} <= body.keys()


def test_didomi_session_with_a_wrong_secret_is_400(wire: Wire) -> None:
    didomi = wire.principals["didomi"]
    response = wire.http.post(
        "/v1/sessions", json={"type": "api-key", "key": didomi["api_key"], "secret": "wrong"}
    )
    _assert_didomi_error(response, 400)
    # The right secret gets a JWT that lives one hour, as Didomi documents.
    claims = jwt.decode(wire.didomi_token(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


def test_didomi_without_a_token_is_401(wire: Wire) -> None:
    response = wire.didomi("GET", "consents/users", token=None)
    _assert_didomi_error(response, 401)
    assert wire.didomi("GET", "consents/users").status_code == 200


def test_didomi_refuses_a_reused_event_id_with_409(wire: Wire) -> None:
    token = wire.didomi_token()
    first = wire.didomi("POST", "consents/events", token=token, json=_event("a@x.io", "evt-1"))
    assert first.status_code == 201
    again = wire.didomi("POST", "consents/events", token=token, json=_event("b@x.io", "evt-1"))
    _assert_didomi_error(again, 409)


def test_didomi_refuses_more_than_100_events_with_400(wire: Wire) -> None:
    events = [_event(f"user{i}@x.io") for i in range(101)]
    response = wire.didomi("POST", "consents/events", json=events)
    _assert_didomi_error(response, 400)


def test_didomi_users_page_by_100_with_a_cursor(wire: Wire) -> None:
    token = wire.didomi_token()
    for start in (0, 100):
        batch = [_event(f"user{i:03}@x.io") for i in range(start, min(start + 100, 130))]
        created = wire.didomi("POST", "consents/events", token=token, json=batch)
        assert created.status_code == 201, created.text
    first = wire.didomi("GET", "consents/users", token=token).json()
    assert len(first["data"]) == 100 and first["cursor"]
    second = wire.didomi(
        "GET", "consents/users", token=token, params={"$cursor": first["cursor"]}
    ).json()
    assert len(second["data"]) == 30 and second["cursor"] is None
    seen = {u["organization_user_id"] for u in first["data"] + second["data"]}
    assert len(seen) == 130
