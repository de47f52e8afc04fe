"""Hand-written bad input at the two webhook routes and the admin PUT: invalid JSON, wrong
types, invalid UTF-8, a 10 MB body, 10,000-deep nesting, NUL and lone-surrogate strings, an
unknown event type, a missing user id, SQL/OData metacharacters in ids, huge strings. Each is
a 4xx with a JSON error naming the problem, never a 5xx, and leaves every stored row (delivery
keys, sync states, log, counters, integrations) exactly as it was.

Metacharacters in an ``organization_user_id`` are another matter: ``o'brien@example.com`` is
a real address, so such ids are accepted as data — stored verbatim under that one id, never
interpreted (the last tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx
import pytest

from consentbridge.context import AppContext
from consentbridge.metrics import metrics_for
from tests.security.support import ACME, ADMIN, API, Tenant, dump_store, rows_of, user_updated
from tests.support.bidirectional import webhook_body
from tests.web.support import document

pytestmark = pytest.mark.security

MB: Final = 1_000_000
HUGE: Final = "h" * 900_000
METACHARACTERS: Final = ("'", "%27", ";--", "$filter=", "' or '1'='1", "x')?$select=*")
DIDOMI, DATAVERSE, PUT = "didomi", "dataverse", "put"


@dataclass(frozen=True)
class Bad:
    """One bad request: a body (bytes, or a value sent as JSON), the status it must get, and a
    fragment of the error that names the problem (matched against paths and messages)."""

    body: bytes | Any
    status: int
    names: str


def raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def deep(levels: int) -> bytes:
    return b'{"type": "user.updated", "parameters": ' + b"[" * levels + b"]" * levels + b"}"


def contact(**fields: Any) -> dict[str, Any]:
    body = webhook_body({"donotbulkemail": True, "emailaddress1": "ada@example.com"})
    body.update(fields)
    return body


def attribute(name: str, value: Any) -> dict[str, Any]:
    body = contact()
    body["InputParameters"][0]["value"]["Attributes"].append({"key": name, "value": value})
    return body


def with_user(user: Any) -> dict[str, Any]:
    body = user_updated()
    body["parameters"]["new_entity"]["organization_user_id"] = user
    return body


COMMON: Final = {
    "invalid JSON": Bad(b'{"type": "user.updated", "parameters": {', 400, "not valid JSON"),
    "trailing garbage": Bad(b'{"type": "user.updated"} x', 400, "not valid JSON"),
    "NaN": Bad(b'{"type": NaN}', 400, "not acceptable JSON"),
    "empty body": Bad(b"", 400, "empty"),
    "invalid UTF-8": Bad(b'{"type": "user.\xff\xfeupdated"}', 400, "not valid UTF-8"),
    "UTF-16": Bad('{"type": "user.updated"}'.encode("utf-16"), 400, "UTF-8"),
    "10 MB body": Bad(b'{"pad": "' + b"x" * (10 * MB) + b'"}', 413, "larger than"),
    "10,000-deep nesting": Bad(deep(10_000), 400, "nested deeper than 64"),
    "65-deep nesting": Bad(deep(65), 400, "nested deeper than 64"),
    "NUL in a string": Bad(raw('{"type": "user.updated\\u0000"}'), 400, "NUL"),
    "NUL in a key": Bad(raw('{"type\\u0000": 1}'), 400, "NUL"),
    "lone surrogate": Bad(raw('{"type": "\\ud800"}'), 400, "surrogate"),
    "a 5000-digit number": Bad(b'{"type": ' + b"9" * 5000 + b"}", 400, "digits"),
    "a list": Bad([1, 2, 3], 422, ""),
    "a string": Bad("user.updated", 422, ""),
    "null": Bad(None, 422, ""),
}
SPECIFIC: Final = {
    DIDOMI: {
        "unknown event type": Bad({"type": "user.exploded", "parameters": {}}, 422, "type"),
        "type of the wrong type": Bad({"type": 5, "parameters": {}}, 422, "type"),
        "parameters a string": Bad({"type": "user.updated", "parameters": "x"}, 422, "parameters"),
        # A user without an organization_user_id (anonymous, or blank) is answered 202 and only
        # counted: tests/web/test_webhook_payloads.py.
        "numeric organization_user_id": Bad(with_user(42), 422, "organization_user_id"),
        "huge organization_user_id": Bad(with_user(HUGE), 422, "organization_user_id"),
        "huge event type": Bad({"type": HUGE, "parameters": {}}, 422, "type"),
        "version a string": Bad(
            user_updated()
            | {"parameters": {"new_entity": {"organization_user_id": "a", "version": "9"}}},
            422,
            "version",
        ),
        "consents a list": Bad(
            user_updated()
            | {"parameters": {"new_entity": {"organization_user_id": "a", "consents": []}}},
            422,
            "consents",
        ),
        "purposes a string": Bad(
            user_updated()
            | {
                "parameters": {
                    "new_entity": {"organization_user_id": "a", "consents": {"purposes": HUGE}}
                }
            },
            422,
            "purposes",
        ),
    },
    DATAVERSE: {
        "missing MessageName": Bad(contact(MessageName=None), 422, "MessageName"),
        "missing PrimaryEntityId": Bad(contact(PrimaryEntityId=None), 422, "PrimaryEntityId"),
        "PrimaryEntityId a number": Bad(contact(PrimaryEntityId=7), 422, "PrimaryEntityId"),
        "InputParameters a string": Bad(contact(InputParameters="x"), 422, "InputParameters"),
        "PostEntityImages an object": Bad(contact(PostEntityImages={}), 422, "PostEntityImages"),
        "huge MessageName is data, huge id": Bad(
            contact(PrimaryEntityId=None, MessageName=HUGE), 422, "PrimaryEntityId"
        ),
        "PrimaryEntityId not a GUID": Bad(contact(PrimaryEntityId="x')"), 422, "PrimaryEntityId"),
        "Depth a word": Bad(contact(Depth="deep"), 422, "Depth"),
        "Depth an object": Bad(contact(Depth={"a": 1}), 422, "Depth"),
        "Depth negative": Bad(contact(Depth=-1), 422, "Depth"),
        "OperationId an object": Bad(contact(OperationId={"a": 1}), 422, "OperationId"),
        "modifiedon not a date": Bad(attribute("modifiedon", "soonZ"), 422, "modifiedon"),
        "modifiedon a number": Bad(attribute("modifiedon", 17), 422, "modifiedon"),
        "a /Date()/ out of range": Bad(
            attribute("modifiedon", "/Date(99999999999999999)/"), 422, "modifiedon"
        ),
        "option set values not a list": Bad(
            attribute("donotbulkemail", {"__type": "OptionSetValueCollection:", "Values": 5}),
            422,
            "donotbulkemail",
        ),
        "option set value not an integer": Bad(
            attribute("donotbulkemail", {"__type": "OptionSetValue:", "Value": "one"}),
            422,
            "donotbulkemail",
        ),
        "multi-select of strings": Bad(
            attribute("donotbulkemail", ["a", "b"]), 422, "donotbulkemail"
        ),
    },
    PUT: {
        "unknown key": Bad(document(ACME) | {"surprise": 1}, 422, "surprise"),
        "missing config": Bad({"id": ACME, "organization_id": "acme"}, 422, "config"),
        "config a list": Bad(document(ACME) | {"config": []}, 422, "config"),
        "properties a string": Bad(
            document(ACME) | {"config": document(ACME)["config"] | {"properties": "x"}},
            422,
            "config.properties",
        ),
        "huge client_id": Bad(
            document(ACME) | {"config": document(ACME)["config"] | {"client_id": HUGE}},
            422,
            "config.client_id",
        ),
        "another id in the body": Bad(document(ACME) | {"id": "other-d365"}, 422, "id"),
        "metacharacters in the body id": Bad(document(ACME) | {"id": "acme';--"}, 422, "id"),
    },
}


def target(route: str, integration_id: str = ACME) -> tuple[str, str]:
    quoted = quote(integration_id, safe="")
    if route == PUT:
        return "PUT", f"{API}/{quoted}"
    return "POST", f"/webhooks/{route}/{quoted}"


def credentials(route: str, tenant: Tenant) -> dict[str, str]:
    return {DIDOMI: tenant.bearer, DATAVERSE: tenant.key_header, PUT: ADMIN}[route]


async def send(
    client: httpx.AsyncClient, route: str, tenant: Tenant, body: Any, integration_id: str = ACME
) -> httpx.Response:
    method, url = target(route, integration_id)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**credentials(route, tenant), "content-type": "application/json"}
    return await client.request(method, url, content=content, headers=headers)


def assert_refused(response: httpx.Response, bad: Bad) -> None:
    assert response.status_code == bad.status, response.text[:300]
    body = response.json()
    if "errors" in body:
        assert body["errors"], body
        named = " ".join(f"{e['path']} {e['message']}" for e in body["errors"])
    else:
        named = body["error"]
    assert bad.names in named, named[:300]
    assert len(response.content) < 4000, "an error must not echo a huge input"


CASES: Final = [
    pytest.param(route, bad, id=f"{route}: {name}")
    for route in (DIDOMI, DATAVERSE, PUT)
    for name, bad in {**COMMON, **SPECIFIC[route]}.items()
]


@pytest.mark.parametrize(("route", "bad"), CASES)
async def test_bad_input_is_a_4xx_naming_the_problem_and_changes_nothing(
    client: httpx.AsyncClient, acme: Tenant, sqlite_url: str, route: str, bad: Bad
) -> None:
    before = dump_store(sqlite_url)
    response = await send(client, route, acme, bad.body)
    assert response.status_code < 500, response.text[:300]
    assert_refused(response, bad)
    assert dump_store(sqlite_url) == before


@pytest.mark.parametrize("route", [DIDOMI, DATAVERSE, PUT])
@pytest.mark.parametrize("meta", METACHARACTERS)
async def test_metacharacters_in_the_integration_id_find_nothing_and_change_nothing(
    client: httpx.AsyncClient, acme: Tenant, sqlite_url: str, route: str, meta: str
) -> None:
    before = dump_store(sqlite_url)
    body = {
        DIDOMI: user_updated(),
        DATAVERSE: contact(),
        PUT: document(ACME + meta) | {"id": ACME + meta},
    }[route]
    for integration_id in (ACME + meta, meta):
        response = await send(client, route, acme, body, integration_id)
        expected = Bad(body, 422 if route == PUT else 404, "id" if route == PUT else "")
        assert_refused(response, expected)
    assert dump_store(sqlite_url) == before


@pytest.mark.parametrize("meta", METACHARACTERS)
async def test_metacharacters_in_a_user_id_are_stored_verbatim_under_that_id_only(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant, sqlite_url: str, meta: str
) -> None:
    neighbour = await send(client, DIDOMI, acme, user_updated("bob@example.com"))
    assert neighbour.status_code == 202
    before = rows_of(dump_store(sqlite_url), ACME)["sync_states"]
    user = f"o{meta}brien@example.com"
    response = await send(client, DIDOMI, acme, user_updated(user))
    assert response.status_code == 202, response.text
    after = rows_of(dump_store(sqlite_url), ACME)["sync_states"]
    added = [row for row in after if row not in before]
    assert [row["organization_user_id"] for row in added] == [user]
    assert [row for row in after if row in before] == before, "another user's row changed"
    log = await client.get(f"{API}/{ACME}/users/{quote(user, safe='')}/log", headers=ADMIN)
    assert log.status_code == 200
    assert log.json()["organization_user_id"] == user
    state = await ctx.store.get_state(ACME, "to_dataverse", user)
    assert state is not None and state.pending


async def test_a_rejected_delivery_is_counted_but_not_as_accepted(
    client: httpx.AsyncClient, ctx: AppContext, acme: Tenant
) -> None:
    for bad in (COMMON["invalid JSON"], SPECIFIC[DIDOMI]["unknown event type"]):
        await send(client, DIDOMI, acme, bad.body)
    sample = metrics_for(ctx).registry.get_sample_value
    name = "consentbridge_webhooks_received_total"
    assert sample(name, {"integration": ACME, "source": "didomi", "outcome": "invalid"}) == 2
    assert sample(name, {"integration": ACME, "source": "didomi", "outcome": "accepted"}) is None
