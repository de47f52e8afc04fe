"""Microsoft's own Dataverse client, unmodified, against the sandbox over real HTTPS.

`PowerPlatform-Dataverse-Client` authenticates with an azure-identity credential (MSAL inside)
and sends its Web API calls through `requests`. Both are pointed at the sandbox the supported
way: the credential gets `authority=<sandbox>` and `connection_verify=<CA>`, and `requests`
trusts the sandbox CA through `REQUESTS_CA_BUNDLE`, which it reads on every request. Nothing in
the SDK is patched; if the sandbox differs from Dataverse where the SDK depends on it, these
tests fail.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse import col
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError
from PowerPlatform.Dataverse.models.upsert import UpsertItem

from consentbridge.sandbox.server import BackgroundSandbox

KEY_NOT_DEFINED = "0x80060890"  # EntityKeyNotDefined
OPTION_OUT_OF_RANGE = "0x8004431A"  # PicklistValueOutOfRange
PAYLOAD_ERROR = "0x80048d19"  # the body does not fit the entity type (unknown column, ...)
REQUESTS_EXCEEDED = "0x80072322"  # service protection: number of requests
JOURNEYS_SEEDS = uuid.UUID("6f1c2a4e-7d0b-5c3e-9a8f-1b2c3d4e5f60")  # docs/sandbox.md
CONSENT_COLUMNS = [
    "firstname",
    "lastname",
    "emailaddress1",
    "donotemail",
    "donotbulkemail",
    "followemail",
    "preferredcontactmethodcode",
]


def _control(sandbox: BackgroundSandbox, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method, f"{sandbox.base_url}/_sandbox/{path}", verify=str(sandbox.ca_bundle), **kwargs
    )
    response.raise_for_status()
    return response.json()


@pytest.fixture
def client(
    sandbox: BackgroundSandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DataverseClient]:
    """A `DataverseClient` signed in as the sandbox's default app (System Administrator)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sandbox.ca_bundle))
    principals = _control(sandbox, "GET", "principals")
    app = principals["apps"][0]
    credential = ClientSecretCredential(
        principals["tenant_id"],
        app["client_id"],
        app["client_secret"],
        authority=sandbox.base_url,
        disable_instance_discovery=True,
        connection_verify=str(sandbox.ca_bundle),
    )
    with credential, DataverseClient(sandbox.base_url, credential) as dataverse:
        yield dataverse
    # An HttpError's traceback keeps the SDK's `requests` response, and through urllib3 its TLS
    # socket, alive in a reference cycle; the shared sandbox waits for open connections when
    # it stops, so collect them now rather than whenever the collector runs.
    gc.collect()


def _service_error_code(error: HttpError) -> str | None:
    code = error.details.get("service_error_code")
    return str(code) if code is not None else None


def _wait_until_key_active(client: DataverseClient, attribute: str) -> None:
    """Dataverse builds a key's index asynchronously (Pending -> Active); clients wait for it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        keys = client.tables.get_alternate_keys("contact")
        if any(k.key_attributes == [attribute] and k.status == "Active" for k in keys):
            return
        time.sleep(0.1)
    raise AssertionError(f"The alternate key on {attribute} never became Active: {keys}")


def test_create_retrieve_update_and_delete_a_contact(client: DataverseClient) -> None:
    contact_id = client.records.create(
        "contact", {"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"}
    )
    assert str(uuid.UUID(contact_id)) == contact_id.lower()

    created = client.records.retrieve("contact", contact_id, select=CONSENT_COLUMNS)
    assert created is not None
    assert created["lastname"] == "Lovelace"
    # The documented defaults of the consent columns.
    assert created["donotemail"] is False
    assert created["followemail"] is True
    assert created["preferredcontactmethodcode"] == 1

    client.records.update(
        "contact", contact_id, {"donotemail": True, "preferredcontactmethodcode": 2}
    )
    updated = client.records.retrieve("contact", contact_id, select=CONSENT_COLUMNS)
    assert updated is not None
    assert updated["donotemail"] is True
    assert updated["preferredcontactmethodcode"] == 2
    assert updated["firstname"] == "Ada"

    client.records.delete("contact", contact_id)
    assert client.records.retrieve("contact", contact_id) is None


def test_choice_labels_resolve_through_the_picklist_metadata(client: DataverseClient) -> None:
    # The SDK turns the label into its value by reading
    # EntityDefinitions(...)/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata.
    contact_id = client.records.create(
        "contact", {"lastname": "Label", "preferredcontactmethodcode": "Phone"}
    )
    record = client.records.retrieve(
        "contact",
        contact_id,
        select=["preferredcontactmethodcode", "donotemail"],
        include_annotations="OData.Community.Display.V1.FormattedValue",
    )
    assert record is not None
    assert record["preferredcontactmethodcode"] == 3
    formatted = "@OData.Community.Display.V1.FormattedValue"
    assert record[f"preferredcontactmethodcode{formatted}"] == "Phone"


def test_retrieve_of_a_missing_row_is_none_and_update_of_it_is_404(
    client: DataverseClient,
) -> None:
    missing = str(uuid.uuid4())
    assert client.records.retrieve("contact", missing) is None
    # The SDK updates with `If-Match: *` (update-only), so a missing row is a 404, not an upsert.
    with pytest.raises(HttpError) as raised:
        client.records.update("contact", missing, {"donotemail": True})
    assert raised.value.status_code == 404
    assert client.records.retrieve("contact", missing) is None


def test_create_multiple_then_list_with_a_filter_across_pages(client: DataverseClient) -> None:
    # A list is sent as one CreateMultiple request; the ids come back in order.
    ids = client.records.create(
        "contact",
        [{"lastname": f"Page{i}", "donotemail": i % 2 == 0} for i in range(7)]
        + [{"lastname": "Other", "donotemail": True}],
    )
    assert len(ids) == 8 and len(set(ids)) == 8

    pages = list(
        client.records.list_pages(
            "contact",
            filter="startswith(lastname,'Page') and donotemail eq true",
            select=["lastname", "contactid"],
            orderby=["lastname asc"],
            page_size=2,
        )
    )
    # Four matches in pages of two: the SDK followed @odata.nextLink once.
    assert [len(page) for page in pages] == [2, 2]
    rows = [row for page in pages for row in page]
    assert [row["lastname"] for row in rows] == ["Page0", "Page2", "Page4", "Page6"]
    assert [row["contactid"] for row in rows] == [ids[0], ids[2], ids[4], ids[6]]

    everything = client.records.list("contact", filter="lastname eq 'Other'")
    assert [row["contactid"] for row in everything] == [ids[7]]


def test_filters_built_with_the_sdk_expression_api(client: DataverseClient) -> None:
    # The SDK writes In as Microsoft.Dynamics.CRM.In(PropertyName=...,PropertyValues=[...]),
    # `not (...)`, `ne null` and `contains(col, 'v')`; the sandbox must read all of them.
    client.records.create(
        "contact",
        [
            {"lastname": "Alpha", "emailaddress1": "a@x.io", "preferredcontactmethodcode": 2},
            {"lastname": "Beta", "preferredcontactmethodcode": 3},
            {"lastname": "Gamma", "emailaddress1": "g@x.io", "preferredcontactmethodcode": 1},
            {"lastname": "Delta", "emailaddress1": "d@x.io", "preferredcontactmethodcode": 5},
        ],
    )

    def names(expression: Any) -> list[str]:
        rows = client.records.list(
            "contact", filter=expression, select=["lastname"], orderby=["lastname asc"]
        )
        return [row["lastname"] for row in rows]

    in_with_email = (
        col("lastname").in_(["Alpha", "Beta", "Delta"]) & col("emailaddress1").is_not_null()
    )
    assert names(in_with_email | col("emailaddress1").endswith("g@x.io")) == [
        "Alpha",
        "Delta",
        "Gamma",
    ]
    outside = ~col("preferredcontactmethodcode").between(2, 3) & col("lastname").contains("a")
    assert names(outside) == ["Delta", "Gamma"]
    assert names(col("emailaddress1").is_null()) == ["Beta"]


def test_update_multiple_changes_every_listed_row(client: DataverseClient) -> None:
    ids = client.records.create("contact", [{"lastname": f"Bulk{i}"} for i in range(4)])
    # A list of ids is sent as one UpdateMultiple request keyed by contactid.
    client.records.update("contact", ids[:3], {"donotbulkemail": True})
    opted_out = client.records.list(
        "contact", filter="donotbulkemail eq true", select=["contactid"]
    )
    assert sorted(row["contactid"] for row in opted_out) == sorted(ids[:3])


def test_upsert_by_alternate_key_creates_then_updates(client: DataverseClient) -> None:
    email = "o'brien@example.com"  # the quote is doubled in the key URL, as OData requires
    item = UpsertItem(alternate_key={"emailaddress1": email}, record={"lastname": "O'Brien"})

    with pytest.raises(HttpError) as no_key:
        client.records.upsert("contact", [item])
    assert no_key.value.status_code == 400
    assert _service_error_code(no_key.value) == KEY_NOT_DEFINED

    key = client.tables.create_alternate_key("contact", "cb_emailaddress1", ["emailaddress1"])
    assert uuid.UUID(key.metadata_id)
    _wait_until_key_active(client, "emailaddress1")

    client.records.upsert("contact", [item])
    client.records.upsert(
        "contact",
        [UpsertItem(alternate_key={"emailaddress1": email}, record={"donotemail": True})],
    )
    rows = list(
        client.records.list(
            "contact", filter="emailaddress1 eq 'o''brien@example.com'", select=CONSENT_COLUMNS
        )
    )
    assert len(rows) == 1, "the second upsert must update the row the first one created"
    assert rows[0]["lastname"] == "O'Brien"
    assert rows[0]["donotemail"] is True
    assert rows[0]["emailaddress1"] == email


def test_upsert_multiple_updates_known_keys_and_creates_new_ones(
    client: DataverseClient,
) -> None:
    client.tables.create_alternate_key("contact", "cb_emailaddress1", ["emailaddress1"])
    _wait_until_key_active(client, "emailaddress1")
    known = client.records.create(
        "contact", {"lastname": "Known", "emailaddress1": "known@example.com"}
    )

    client.records.upsert(
        "contact",
        [
            UpsertItem({"emailaddress1": "known@example.com"}, {"donotphone": True}),
            UpsertItem({"emailaddress1": "new@example.com"}, {"lastname": "New"}),
        ],
    )
    rows = list(
        client.records.list(
            "contact",
            filter="emailaddress1 eq 'known@example.com' or emailaddress1 eq 'new@example.com'",
            select=["contactid", "lastname", "emailaddress1", "donotphone"],
            orderby=["lastname asc"],
        )
    )
    assert [(row["lastname"], row["donotphone"]) for row in rows] == [
        ("Known", True),
        ("New", False),
    ]
    assert rows[0]["contactid"] == known


def test_batch_with_a_change_set_continues_past_a_failed_part(client: DataverseClient) -> None:
    batch = client.batch.new()
    batch.records.create("contact", {"lastname": "Batch1"})
    with batch.changeset() as change_set:
        reference = change_set.records.create("contact", {"lastname": "Batch2"})
        change_set.records.update("contact", reference, {"donotemail": True})
    batch.records.create("contact", {"lastname": "Batch3", "cb_nosuchcolumn": True})
    batch.records.create("contact", {"lastname": "Batch4"})

    result = batch.execute(continue_on_error=True)

    assert [item.status_code for item in result.responses] == [204, 204, 204, 400, 204]
    failure = result.failed[0]
    assert failure.error_code, "a failed part carries Dataverse's error code"
    assert "cb_nosuchcolumn" in (failure.error_message or "")
    batch1, batch2, batch2_updated, batch4 = result.entity_ids
    assert batch2_updated == batch2, "the $1 reference must address the row the change set made"

    rows = client.records.list(
        "contact",
        filter="startswith(lastname,'Batch')",
        select=["contactid", "lastname", "donotemail"],
        orderby=["lastname asc"],
    )
    assert [(row["contactid"], row["lastname"], row["donotemail"]) for row in rows] == [
        (batch1, "Batch1", False),
        (batch2, "Batch2", True),
        (batch4, "Batch4", False),
    ]


def test_batch_without_continue_on_error_stops_at_the_first_failure(
    client: DataverseClient,
) -> None:
    batch = client.batch.new()
    batch.records.create("contact", {"lastname": "Before"})
    batch.records.create("contact", {"lastname": "Broken", "preferredcontactmethodcode": 99})
    batch.records.create("contact", {"lastname": "After"})

    result = batch.execute()

    assert [item.status_code for item in result.responses] == [204, 400]
    assert result.failed[0].error_code == OPTION_OUT_OF_RANGE
    names = {row["lastname"] for row in client.records.list("contact", select=["lastname"])}
    assert names == {"Before"}, "nothing after the failed part runs"


def test_a_failed_change_set_rolls_back_all_its_parts(client: DataverseClient) -> None:
    batch = client.batch.new()
    with batch.changeset() as change_set:
        change_set.records.create("contact", {"lastname": "Atomic1"})
        change_set.records.create("contact", {"lastname": "Atomic2", "donotemail": "yes"})

    result = batch.execute(continue_on_error=True)

    assert result.has_errors
    assert client.records.list("contact", filter="startswith(lastname,'Atomic')").first() is None


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"lastname": "X", "preferredcontactmethodcode": 99}, OPTION_OUT_OF_RANGE),
        ({"lastname": "X", "cb_nosuchcolumn": "v"}, PAYLOAD_ERROR),
    ],
    ids=["option-out-of-range", "unknown-column"],
)
def test_refused_writes_raise_http_error_with_the_dataverse_code(
    client: DataverseClient, record: dict[str, Any], code: str
) -> None:
    with pytest.raises(HttpError) as raised:
        client.records.create("contact", record)
    error = raised.value
    assert error.status_code == 400
    assert error.is_transient is False
    assert _service_error_code(error) == code
    assert next(iter(record.keys() - {"lastname"})) in error.message


def test_service_protection_429_reaches_the_sdk_as_a_transient_error(
    sandbox: BackgroundSandbox, client: DataverseClient
) -> None:
    contact_id = client.records.create("contact", {"lastname": "Throttled"})
    _control(sandbox, "POST", "limits", json={"requests_per_window": 2, "window_s": 60})
    with pytest.raises(HttpError) as raised:
        for _ in range(5):
            client.records.retrieve("contact", contact_id, select=["lastname"])
    error = raised.value
    assert error.status_code == 429
    assert error.is_transient is True
    assert _service_error_code(error) == REQUESTS_EXCEEDED
    retry_after = error.details.get("retry_after")
    assert isinstance(retry_after, int) and retry_after >= 1


def test_the_sdk_creates_and_lists_journeys_consent_rows(client: DataverseClient) -> None:
    # Purposes are seeded with stable ids (docs/sandbox.md); the lookup is bound through its
    # case-sensitive navigation name, and a choice label is resolved through the global
    # option set's metadata.
    commercial = str(uuid.uuid5(JOURNEYS_SEEDS, "purpose/Commercial communications"))
    table = "msdynmkt_contactpointconsent4"
    row = {
        "msdynmkt_contactpointvalue": "sdk@example.com",
        "msdynmkt_contactpointtype": 534120000,
        "msdynmkt_value": 534120001,
        "msdynmkt_logicalreason": 534119999,
        "msdynmkt_purposeId@odata.bind": f"/msdynmkt_purposes({commercial})",
    }
    first = client.records.create(table, row)
    more = client.records.create(
        table,
        [
            {**row, "msdynmkt_contactpointvalue": "two@example.com", "msdynmkt_value": "Opted Out"},
            {**row, "msdynmkt_contactpointvalue": "sdk@example.com"},
        ],
    )
    assert len(more) == 2
    rows = client.records.list(
        table,
        filter=f"_msdynmkt_purposeid_value eq {commercial}",
        select=["msdynmkt_contactpointvalue", "msdynmkt_value", "_msdynmkt_purposeid_value"],
        orderby=["msdynmkt_contactpointvalue asc"],
    )
    found = sorted(
        (r["msdynmkt_contactpointvalue"], r["msdynmkt_value"], r["msdynmkt_contactpointconsent4id"])
        for r in rows
    )
    # No alternate key: the same value, channel and purpose twice is two rows.
    assert found == sorted(
        [
            ("sdk@example.com", 534120001, first),
            ("sdk@example.com", 534120001, more[1]),
            ("two@example.com", 534120002, more[0]),
        ]
    )
    with pytest.raises(HttpError) as raised:
        lowered = {k: v for k, v in row.items() if "@" not in k}
        client.records.create(
            table, {**lowered, "msdynmkt_purposeid@odata.bind": f"/msdynmkt_purposes({commercial})"}
        )
    assert _service_error_code(raised.value) == PAYLOAD_ERROR
