"""Moving a placeholder's change onto its user's row: idempotent, and never over a newer change."""

from __future__ import annotations

from consentbridge.sync.merge import Stamp, merge_columns
from consentbridge.sync.placeholders import is_placeholder, move_merge, placeholder_key

ENTRY = {"v": True, "ver": None, "ts": 100.0, "src": "dataverse"}


def test_placeholder_keys_are_lower_case_contact_ids() -> None:
    key = placeholder_key("6D81597F-0F9F-E711-8122-000D3AA2331C")
    assert key == "contact:6d81597f-0f9f-e711-8122-000d3aa2331c"
    assert is_placeholder(key) and not is_placeholder("ada@example.com")


def test_a_move_replayed_after_a_crash_changes_nothing() -> None:
    move = move_merge({"donotbulkemail": ENTRY}, {}, 0.0, "dataverse.update")
    once = move(None)
    assert once is not None and once["donotbulkemail"]["v"] is True
    assert move(once) is None


def test_a_newer_change_already_on_the_user_row_is_kept() -> None:
    newer = merge_columns(None, {"donotbulkemail": False}, Stamp(None, 200.0, "dataverse")).columns
    move = move_merge({"donotbulkemail": ENTRY}, {}, 0.0, "dataverse.update")
    assert move(newer) is None


def test_re_read_values_carry_the_contacts_modifiedon() -> None:
    move = move_merge({}, {"donotemail": False}, 300.0, "dataverse.update")
    moved = move(None)
    assert moved is not None and moved["donotemail"]["ts"] == 300.0
