"""Newest-wins merge of desired column values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consentbridge.sync.merge import (
    EVENT_KEY,
    Stamp,
    dataverse_change_time,
    desired_values,
    merge_columns,
)


def test_first_change_creates_every_column() -> None:
    result = merge_columns(None, {"donotemail": True}, Stamp(3, 100.0))
    assert result.value_changed
    assert result.columns["donotemail"] == {"v": True, "ver": 3, "ts": 100.0, "src": "didomi"}


def test_older_version_never_overwrites_newer() -> None:
    newer = merge_columns(None, {"donotemail": True}, Stamp(7, 100.0)).columns
    late = merge_columns(newer, {"donotemail": False}, Stamp(6, 200.0))
    assert not late.touched
    assert late.columns["donotemail"]["v"] is True
    assert "donotemail" in late.stale


def test_same_version_uses_updated_at() -> None:
    first = merge_columns(None, {"c": 1}, Stamp(5, 100.0)).columns
    assert merge_columns(first, {"c": 2}, Stamp(5, 101.0)).value_changed
    assert not merge_columns(first, {"c": 2}, Stamp(5, 99.0)).touched


def test_without_versions_the_later_timestamp_wins() -> None:
    first = merge_columns(None, {"c": 1}, Stamp(None, 100.0, "dataverse")).columns
    assert not merge_columns(first, {"c": 2}, Stamp(9, 50.0)).touched
    assert merge_columns(first, {"c": 2}, Stamp(9, 150.0)).value_changed


def test_equal_value_advances_the_stamp_so_a_late_change_cannot_slip_in() -> None:
    state = merge_columns(None, {"c": "A"}, Stamp(5, 1.0)).columns
    same = merge_columns(state, {"c": "A"}, Stamp(7, 2.0))
    assert same.stamps_advanced and not same.value_changed
    late = merge_columns(same.columns, {"c": "B"}, Stamp(6, 3.0))
    assert not late.touched


def test_reserved_keys_are_not_desired_values() -> None:
    state = merge_columns(None, {"c": 1}, Stamp(1, 1.0)).columns
    state[EVENT_KEY] = "user.updated"
    assert desired_values(state) == {"c": 1}
    again = merge_columns(state, {"c": 2}, Stamp(2, 2.0))
    assert again.columns[EVENT_KEY] == "user.updated"


changes = st.lists(
    st.tuples(st.integers(0, 20), st.floats(0, 1000), st.booleans()), min_size=1, max_size=30
)


@given(changes, st.randoms())
def test_final_state_is_independent_of_delivery_order(
    sequence: list[tuple[int, float, bool]], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    shuffled = list(sequence)
    rnd.shuffle(shuffled)

    def apply(items: list[tuple[int, float, bool]]) -> object:
        state = None
        for version, ts, value in items:
            state = merge_columns(state, {"c": value}, Stamp(version, ts)).columns
        return state

    # Ties (same version and timestamp, different values) are genuinely ambiguous; the winner
    # is the first to arrive. Compare only when the newest stamp is unique.
    newest = max((v, t) for v, t, _ in sequence)
    if sum(1 for v, t, _ in sequence if (v, t) == newest) == 1:
        state_a, state_b = apply(sequence), apply(shuffled)
        assert isinstance(state_a, dict) and isinstance(state_b, dict)
        assert state_a["c"]["v"] == state_b["c"]["v"]


def test_a_crm_change_in_the_same_second_after_a_didomi_change_wins() -> None:
    # Didomi stamped 12:00:00.400; the rep saved at 12:00:00.700, which modifiedon shows as
    # 12:00:00 and whose webhook arrived at .750.
    didomi = merge_columns(None, {"donotemail": False}, Stamp(None, 1000.4, "didomi")).columns
    crm = Stamp(None, dataverse_change_time(1000.0, arrived=1000.75), "dataverse")
    assert crm.ts == 1000.75
    assert merge_columns(didomi, {"donotemail": True}, crm).applied == {"donotemail": True}


def test_a_dataverse_change_is_stamped_no_later_than_its_second_or_its_arrival() -> None:
    assert dataverse_change_time(1000.0, arrived=1000.2) == 1000.2
    assert dataverse_change_time(1000.0, arrived=1009.0) == 1000.999
    assert dataverse_change_time(1000.0, arrived=990.0) == 1000.0  # a clock behind Dataverse's
    assert dataverse_change_time(1000.25, arrived=1009.0) == 1000.25  # sub-second: as given
    assert dataverse_change_time(None, arrived=1009.0) == 1009.0


def test_two_crm_changes_in_one_second_keep_their_order_of_arrival() -> None:
    first = Stamp(None, dataverse_change_time(1000.0, arrived=1000.3), "dataverse")
    second = Stamp(None, dataverse_change_time(1000.0, arrived=1000.6), "dataverse")
    state = merge_columns(None, {"donotemail": True}, first).columns
    assert merge_columns(state, {"donotemail": False}, second).applied == {"donotemail": False}
