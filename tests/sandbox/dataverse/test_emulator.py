"""The interface the sandbox server and `/_sandbox/` use: custom columns, per-row history,
reset, snapshots and options."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from consentbridge.sandbox.state import SandboxState
from tests.sandbox.dataverse.conftest import Api, error_code


async def test_custom_boolean_columns_take_their_default_everywhere(
    api: Api, emulator: DataverseEmulator
) -> None:
    before = await api.create_contact()
    created = emulator.add_column(
        {"table": "contact", "logical_name": "new_smsoptin", "type": "Boolean"}
    )
    assert created == {
        "table": "contact",
        "logical_name": "new_smsoptin",
        "type": "Boolean",
        "default": False,  # described, so a snapshot restores it
    }
    after = await api.create_contact(new_smsoptin=True)
    rows = (await api.get("contacts?$select=new_smsoptin&$orderby=createdon")).json()["value"]
    by_id = {r["contactid"]: r["new_smsoptin"] for r in rows}
    assert by_id == {before: False, after: True}
    bad = await api.post("contacts", json={"lastname": "X", "new_smsoptin": "yes"})
    assert error_code(bad) == "0x80048d19"


async def test_custom_choice_and_text_columns_are_type_checked(
    api: Api, emulator: DataverseEmulator
) -> None:
    emulator.add_column(
        {
            "logical_name": "new_channel",
            "type": "Picklist",
            "options": [{"value": 100000000, "label": "SMS"}],
        }
    )
    emulator.add_column(
        {
            "logical_name": "new_channels",
            "type": "MultiSelectPicklist",
            "options": [{"value": 1, "label": "A"}, {"value": 2, "label": "B"}],
        }
    )
    emulator.add_column({"logical_name": "new_code", "type": "String", "max_length": 5})
    emulator.add_column({"logical_name": "new_since", "type": "DateTime"})
    contact_id = await api.create_contact(
        new_channel=100000000, new_channels="2,1,2", new_code="abcde", new_since="2025-03-01"
    )
    row = (await api.get(f"contacts({contact_id})")).json()
    assert row["new_channels"] == "1,2"
    assert row["new_since"] == "2025-03-01T00:00:00Z"
    checks: list[tuple[dict[str, Any], str]] = [
        ({"new_channel": 1}, "0x8004431A"),
        ({"new_channels": "1,7"}, "0x8004431A"),
        ({"new_channels": "1,x"}, "0x80048d19"),
        ({"new_code": "abcdef"}, "0x80044331"),
        ({"new_since": "yesterday"}, "0x80048d19"),
    ]
    for columns, code in checks:
        response = await api.post("contacts", json={"lastname": "X", **columns})
        assert (response.status_code, error_code(response)) == (400, code), columns


@pytest.mark.parametrize(
    "spec",
    [
        {"logical_name": "smsoptin", "type": "Boolean"},
        {"logical_name": "new_smsoptin", "type": "Money"},
        {"logical_name": "new_pick", "type": "Picklist"},
        {
            "logical_name": "new_pick",
            "type": "Picklist",
            "options": [{"value": 1, "label": "A"}, {"value": 1, "label": "B"}],
        },
        {"logical_name": "new_text", "type": "String", "max_length": 0},
        {"table": "account", "logical_name": "new_x", "type": "Boolean"},
        {"logical_name": "lastname", "type": "String"},
    ],
)
def test_bad_column_specs_raise_one_sentence(
    emulator: DataverseEmulator, spec: dict[str, Any]
) -> None:
    with pytest.raises(ValueError) as raised:
        emulator.add_column(spec)
    message = str(raised.value)
    assert message.endswith(".") and "\n" not in message


def test_a_column_cannot_be_added_twice(emulator: DataverseEmulator) -> None:
    emulator.add_column({"logical_name": "new_once", "type": "Boolean"})
    with pytest.raises(ValueError, match="already has a column 'new_once'"):
        emulator.add_column({"logical_name": "new_once", "type": "Boolean"})


async def test_history_lists_every_write_with_its_columns(
    api: Api, emulator: DataverseEmulator
) -> None:
    sales = api.add_app("sales", ["Salesperson"])
    contact_id = await api.create_contact(lastname="H", emailaddress1="h@x.io")
    await sales.patch(f"contacts({contact_id})", json={"donotemail": True})
    await api.delete(f"contacts({contact_id})")
    history = emulator.history("contact", contact_id)
    assert history is not None
    assert [(h["operation"], h["app"], h["columns"]) for h in history] == [
        ("Create", api.app.name, {"lastname": "H", "emailaddress1": "h@x.io"}),
        ("Update", "sales", {"donotemail": True}),
        ("Delete", api.app.name, {}),
    ]
    assert history[1]["systemuserid"] == sales.app.systemuserid
    assert history[0]["at"].endswith("Z")
    assert emulator.history("contact", "00000000-0000-0000-0000-000000000001") is None
    assert emulator.history("contacts", contact_id.upper()) == history


async def test_history_hides_endpoint_secrets(api: Api, emulator: DataverseEmulator) -> None:
    response = await api.post(
        "serviceendpoints",
        json={
            "name": "h",
            "contract": 8,
            "url": "https://h.example.com",
            "authtype": 4,
            "authvalue": "secret-key",
        },
    )
    endpoint_id = response.headers["OData-EntityId"].rsplit("(", 1)[1][:-1]
    history = emulator.history("serviceendpoint", endpoint_id)
    assert history is not None and history[0]["columns"]["authvalue"] == "***"


async def test_reset_drops_rows_columns_keys_and_registrations(
    api: Api, emulator: DataverseEmulator
) -> None:
    emulator.add_column({"logical_name": "new_flag", "type": "Boolean"})
    await api.define_key("emailaddress1")
    await api.create_contact(emailaddress1="r@x.io")
    emulator.reset()
    assert (await api.get("contacts")).json()["value"] == []
    assert (await api.get("EntityDefinitions(LogicalName='contact')/Keys")).json()["value"] == []
    assert (await api.post("contacts", json={"lastname": "X", "new_flag": True})).status_code == 400
    messages = (await api.get("sdkmessages?$filter=name eq 'Update'")).json()["value"]
    assert len(messages) == 1  # system rows come back


async def test_snapshots_restore_rows_keys_columns_and_history(
    api: Api, emulator: DataverseEmulator, state: SandboxState
) -> None:
    emulator.add_column({"logical_name": "new_flag", "type": "Boolean"})
    await api.define_key("emailaddress1")
    contact_id = await api.create_contact(emailaddress1="snap@x.io", new_flag=True)
    saved = json.loads(json.dumps(emulator.snapshot()))
    copy = DataverseEmulator(state)
    copy.restore(saved)
    restored = copy.db.table("contact")
    row = restored.store.get(contact_id)
    assert row is not None and row["new_flag"] is True
    assert [k.status for k in restored.keys.all()] == ["Active"]
    assert restored.store.unique_conflict({**row, "contactid": "other"}) is not None
    assert copy.history("contact", contact_id) == emulator.history("contact", contact_id)
    assert copy.db.version == emulator.db.version
    await copy.aclose()


def test_options_are_validated(emulator: DataverseEmulator) -> None:
    with pytest.raises(ValueError):
        emulator.configure(nonsense=1)
    with pytest.raises(ValueError):
        emulator.configure(webhook_lanes=0)
    emulator.configure(organization_name="contoso", webhook_verify=False)
    assert emulator.organization.name == "contoso"
