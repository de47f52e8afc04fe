"""Collection queries: `$select`, `$filter` (checked against the table), `$orderby`, `$top`,
`$count`, paging with `odata.maxpagesize` and `$skiptoken`, and index-backed lookups."""

from __future__ import annotations

from typing import Any

import pytest

from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from consentbridge.sandbox.dataverse.odata import parse_filter
from consentbridge.sandbox.dataverse.query import matching_rows
from tests.sandbox.dataverse.conftest import Api, error_code


async def _values(api: Api, **params: str) -> list[dict[str, Any]]:
    response = await api.get("contacts", params=params)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["value"]
    return rows


async def test_select_returns_etag_selected_columns_and_the_id(api: Api) -> None:
    contact_id = await api.create_contact(lastname="Sel", emailaddress1="sel@x.io")
    response = await api.get("contacts", params={"$select": "emailaddress1"})
    body = response.json()
    assert body["@odata.context"] == (
        "https://127.0.0.1:8443/api/data/v9.2/$metadata#contacts(emailaddress1)"
    )
    assert body["value"] == [
        {
            "@odata.etag": body["value"][0]["@odata.etag"],
            "emailaddress1": "sel@x.io",
            "contactid": contact_id,
        }
    ]


async def test_filters_compare_strings_case_insensitively_with_odata_quoting(api: Api) -> None:
    oneil = await api.create_contact(lastname="O'Neil")
    await api.create_contact(lastname="ONeil")
    rows = await _values(api, **{"$filter": "lastname eq 'o''neil'", "$select": "contactid"})
    assert [r["contactid"] for r in rows] == [oneil]


async def test_filters_combine_functions_booleans_and_choices(api: Api) -> None:
    await api.create_contact(lastname="Page1", donotemail=True, preferredcontactmethodcode=2)
    await api.create_contact(lastname="Page2", donotemail=False, preferredcontactmethodcode=2)
    await api.create_contact(lastname="Other", donotemail=True, preferredcontactmethodcode=3)
    rows = await _values(
        api,
        **{
            "$filter": "startswith(lastname,'Page') and (donotemail eq true or "
            "preferredcontactmethodcode eq 3)",
            "$select": "lastname",
        },
    )
    assert [r["lastname"] for r in rows] == ["Page1"]
    both = await _values(api, **{"$filter": "donotemail", "$orderby": "lastname desc"})
    assert [r["lastname"] for r in both] == ["Page1", "Other"]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("lastname eq", "Expression expected"),
        ("lastname eq 'unterminated", "unterminated string"),
        ("cb_nosuchcolumn eq 1", "Could not find a property named 'cb_nosuchcolumn'"),
        ("donotemail eq 'maybe'", "incompatible types"),
        ("preferredcontactmethodcode eq 'x'", "incompatible types"),
        ("contains(donotemail,'x')", "No function signature"),
        ("lastname", "single boolean value"),
    ],
)
async def test_bad_filters_are_400_with_the_odata_code(
    api: Api, expression: str, fragment: str
) -> None:
    response = await api.get("contacts", params={"$filter": expression})
    assert response.status_code == 400
    assert error_code(response) == "0x80060888"
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"$select": "cb_nosuchcolumn"},
        {"$select": "authvalue"},
        {"$orderby": "cb_nosuchcolumn"},
        {"$top": "-1"},
        {"$skip": "10"},
        {"$apply": "groupby((lastname))"},
        {"$count": "maybe"},
        {"$skiptoken": "not a cookie"},
    ],
)
async def test_bad_query_options_are_400(api: Api, params: dict[str, str]) -> None:
    response = await api.get("contacts", params=params)
    assert response.status_code == 400
    assert error_code(response) == "0x80060888"


async def test_a_query_option_given_twice_is_400(api: Api) -> None:
    response = await api.get("contacts?$select=lastname&$select=firstname")
    assert response.status_code == 400


async def test_maxpagesize_pages_with_an_opaque_skiptoken(api: Api) -> None:
    ids = sorted([await api.create_contact(lastname=f"P{i}") for i in range(5)])
    headers = {"Prefer": "odata.maxpagesize=2"}
    first = await api.get("contacts?$select=contactid&$count=true", headers=headers)
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=2"
    page = first.json()
    assert page["@odata.count"] == 5
    seen = [r["contactid"] for r in page["value"]]
    link = page["@odata.nextLink"]
    assert "$skiptoken=" in link and "pagingcookie" in link
    # Paging remembers the last key, so a row created between pages makes no row repeat or go
    # missing (the new one shows up only if it sorts after that key).
    newcomer = await api.create_contact(lastname="Late")
    while link:
        response = await api.get(link, headers=headers)
        body = response.json()
        seen += [r["contactid"] for r in body["value"]]
        link = body.get("@odata.nextLink")
    assert [i for i in seen if i != newcomer] == ids
    assert len(seen) == len(set(seen))


async def test_pages_follow_orderby(api: Api) -> None:
    for name in ("c", "a", "d", "b"):
        await api.create_contact(lastname=name)
    headers = {"Prefer": "odata.maxpagesize=3"}
    first = (
        await api.get("contacts?$select=lastname&$orderby=lastname desc", headers=headers)
    ).json()
    second = (await api.get(first["@odata.nextLink"], headers=headers)).json()
    assert [r["lastname"] for r in first["value"] + second["value"]] == ["d", "c", "b", "a"]
    assert "@odata.nextLink" not in second


async def test_top_limits_rows_unless_paging_is_asked_for(api: Api) -> None:
    for i in range(4):
        await api.create_contact(lastname=f"T{i}")
    top = (await api.get("contacts?$top=2")).json()
    assert len(top["value"]) == 2 and "@odata.nextLink" not in top
    paged = (await api.get("contacts?$top=2", headers={"Prefer": "odata.maxpagesize=3"})).json()
    assert len(paged["value"]) == 3  # with odata.maxpagesize, $top is ignored
    too_big = await api.get("contacts", headers={"Prefer": "odata.maxpagesize=6000"})
    assert "Preference-Applied" not in too_big.headers  # above 5000 the preference is ignored


async def test_formatted_values_come_with_include_annotations(api: Api) -> None:
    contact_id = await api.create_contact(preferredcontactmethodcode=2, donotemail=True)
    response = await api.get(
        f"contacts({contact_id})?$select=preferredcontactmethodcode,donotemail,_modifiedby_value",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    body = response.json()
    formatted = "@OData.Community.Display.V1.FormattedValue"
    assert body[f"preferredcontactmethodcode{formatted}"] == "Email"
    assert body[f"donotemail{formatted}"] == "Do Not Allow"
    assert body["_modifiedby_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"


async def test_in_lookups_use_the_email_index_and_match_like_a_scan(
    api: Api, emulator: DataverseEmulator
) -> None:
    for i in range(30):
        await api.create_contact(lastname=f"L{i}", emailaddress1=f"User{i}@X.io")
    values = ",".join(f"'user{i}@x.io'" for i in range(0, 30, 3))
    text = f"Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=[{values}])"
    table = emulator.db.table("contact")
    expr = parse_filter(text)
    assert expr.equality_lookup() is not None and table.store.is_indexed("emailaddress1")
    indexed = matching_rows(table, expr)
    scanned = [row for row in table.store if expr.evaluate(row)]
    assert sorted(str(r["contactid"]) for r in indexed) == sorted(
        str(r["contactid"]) for r in scanned
    )
    assert len(indexed) == 10
    rows = await _values(api, **{"$filter": text, "$select": "emailaddress1"})
    assert len(rows) == 10


async def test_lookups_by_id_use_the_primary_key(api: Api) -> None:
    ids = [await api.create_contact(lastname=f"I{i}") for i in range(3)]
    text = " or ".join(f"contactid eq {i}" for i in ids[:2])
    rows = await _values(api, **{"$filter": text, "$select": "lastname"})
    assert sorted(r["lastname"] for r in rows) == ["I0", "I1"]
