"""Reverse projection: changed Dataverse columns → a Didomi consent event, and round trips."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentbridge.mapping import (
    AttributeType,
    ColumnSpec,
    ConsentSnapshot,
    MappingValueError,
    PathKind,
    PathTarget,
    PreferenceState,
    Property,
    PropertyMapping,
    PurposeState,
    RawTransform,
    ValueKind,
    coerce_row,
    one_way_columns,
    project,
    resolve,
    reverse_project,
)
from consentbridge.mapping.values import join_selection

MAPPING = PropertyMapping.from_raw(
    [
        {
            "id": "donotbulkemail",
            "value": "consents_purposes_newsletter_enabled",
            "transform": "not",
        },
        {"id": "new_smsoptin", "value": "consents_purposes_{marketing}_preferences_sms_enabled"},
        {
            "id": "preferredcontactmethodcode",
            "value": "consents_purposes_contact_values_channel",
            "transform": {"email": 2, "phone": 3},
        },
        {
            "id": "new_topics",
            "value": "consents_purposes_contact_values_topics",
            "transform": {"news": 1, "offers": 2, "events": 3},
        },
        {"id": "new_offers", "value": "consents_purposes_contact_values_{topics}_offers"},
        {"id": "new_emailok", "value": "consents_channels_email_enabled"},
        {"id": "new_lang", "value": "metadata_lang"},
        {"id": "emailaddress1", "value": "organization_user_id"},
        {
            "id": "new_tier",
            "value": "consents_purposes_newsletter_enabled_li",
            "transform": {"true": 1, "false": 1},
        },
    ]
)
CURRENT = ConsentSnapshot.from_user(
    {
        "organization_user_id": "ada@example.com",
        "consents": {
            "purposes": [{"id": "contact", "values": {"topics": {"value": "news"}}}],
        },
    }
)


def reverse(changed: dict[str, object], current: ConsentSnapshot | None = CURRENT) -> Any:
    return reverse_project(
        MAPPING, changed, organization_user_id="ada@example.com", current=current
    )


def test_each_kind_of_column_maps_back_into_one_event_body() -> None:
    result = reverse(
        {
            "donotbulkemail": True,
            "new_smsoptin": False,
            "preferredcontactmethodcode": 3,
            "new_topics": "3,1",
            "new_emailok": True,
            "new_lang": "de",
            "contactid": "ignored: not mapped",
        }
    )
    assert result.skipped == {}
    assert result.one_way == {}
    assert result.event_body() == {
        "user": {"organization_user_id": "ada@example.com", "metadata": {"lang": "de"}},
        "consents": {
            "purposes": [
                {
                    "id": "contact",
                    "values": {"channel": {"value": "phone"}, "topics": {"value": "events,news"}},
                },
                {"id": "marketing", "preferences": [{"id": "sms", "enabled": False}]},
                {"id": "newsletter", "enabled": False},
            ],
            "channels": [{"id": "email", "enabled": True}],
        },
    }


def test_a_value_toggle_edits_the_current_selection() -> None:
    result = reverse({"new_offers": True})
    assert result.consents == {
        "purposes": [{"id": "contact", "values": {"topics": {"value": "news,offers"}}}]
    }
    result = reverse({"new_offers": False})
    assert result.consents == {
        "purposes": [{"id": "contact", "values": {"topics": {"value": "news"}}}]
    }


def test_a_value_toggle_without_the_current_selection_is_skipped() -> None:
    result = reverse({"new_offers": True}, current=None)
    assert result.is_empty
    assert "needs the user's current selection" in result.skipped["new_offers"]


def test_a_value_toggle_agreeing_with_the_whole_selection_is_sent_once() -> None:
    result = reverse({"new_offers": True, "new_topics": "2"}, current=None)
    assert result.skipped == {}
    assert result.consents == {
        "purposes": [{"id": "contact", "values": {"topics": {"value": "offers"}}}]
    }


def test_columns_that_disagree_about_one_choice_are_both_skipped() -> None:
    result = reverse({"new_offers": False, "new_topics": "1,2"})
    assert result.is_empty
    assert set(result.skipped) == {"new_offers", "new_topics"}
    assert "disagrees with column(s) 'new_topics'" in result.skipped["new_offers"]

    mapping = [
        Property("donotemail", "consents_purposes_newsletter_enabled", "not"),
        Property("new_newsletter", "consents_purposes_newsletter_enabled"),
    ]
    agree = reverse_project(
        mapping, {"donotemail": False, "new_newsletter": True}, organization_user_id="u"
    )
    assert agree.consents == {"purposes": [{"id": "newsletter", "enabled": True}]}
    clash = reverse_project(
        mapping, {"donotemail": True, "new_newsletter": True}, organization_user_id="u"
    )
    assert clash.is_empty and set(clash.skipped) == {"donotemail", "new_newsletter"}


def test_non_invertible_mappings_are_one_way_and_skipped() -> None:
    result = reverse({"emailaddress1": "x@example.com", "new_tier": 1})
    assert result.is_empty
    assert set(result.one_way) == {"emailaddress1", "new_tier"}
    assert "not one-to-one" in result.one_way["new_tier"]
    assert one_way_columns(MAPPING) == result.one_way


def test_a_cleared_yes_no_is_skipped_but_a_cleared_multi_select_means_nothing_selected() -> None:
    result = reverse({"donotbulkemail": None, "new_topics": None})
    assert "cleared" in result.skipped["donotbulkemail"]
    assert result.consents == {"purposes": [{"id": "contact", "values": {"topics": {"value": ""}}}]}


def test_a_multi_select_given_as_a_list_of_options_is_accepted() -> None:
    result = reverse({"new_topics": [2, 1]})
    assert result.consents == {
        "purposes": [{"id": "contact", "values": {"topics": {"value": "news,offers"}}}]
    }


@pytest.mark.parametrize(
    ("changed", "says"),
    [
        ({"preferredcontactmethodcode": 9}, "'preferredcontactmethodcode' holds 9"),
        ({"new_topics": "1,7"}, "option '7'"),
        ({"new_smsoptin": "maybe"}, "'new_smsoptin' holds 'maybe'"),
        ({"donotbulkemail": 1}, "'donotbulkemail' holds 1"),
    ],
)
def test_a_value_the_mapping_cannot_read_back_is_an_error(
    changed: dict[str, object], says: str
) -> None:
    with pytest.raises(MappingValueError, match=says):
        reverse(changed)


def test_an_ambiguous_path_is_written_where_the_current_state_reads_it() -> None:
    prop = Property("new_smsoptin", "consents_purposes_marketing_preferences_sms_enabled")
    long_purpose = ConsentSnapshot.from_user(
        {"consents": {"purposes": [{"id": "marketing_preferences_sms", "enabled": True}]}}
    )
    with_state = reverse_project(
        [prop], {"new_smsoptin": False}, organization_user_id="u", current=long_purpose
    )
    assert with_state.consents == {
        "purposes": [{"id": "marketing_preferences_sms", "enabled": False}]
    }
    without = reverse_project([prop], {"new_smsoptin": False}, organization_user_id="u")
    assert without.consents == {
        "purposes": [{"id": "marketing", "preferences": [{"id": "sms", "enabled": False}]}]
    }


# --- round trips -------------------------------------------------------------------------------

_WORDS = st.sampled_from(["a", "b", "email", "preferences", "values", "channel", "enabled", "li"])
_IDS = st.lists(_WORDS, min_size=1, max_size=3).map("_".join)
_VALUE_IDS = ("v1", "v2", "x_y", "enabled")
_FLAGS = st.none() | st.booleans()
_SELECTIONS = st.none() | st.lists(st.sampled_from(_VALUE_IDS), max_size=3).map(join_selection)
_CHANNELS = st.dictionaries(_IDS, _FLAGS, max_size=2)
_SNAPSHOTS = st.builds(
    ConsentSnapshot,
    st.just("ada@example.com"),
    st.dictionaries(_IDS, st.text(max_size=4) | st.booleans(), max_size=2),
    st.dictionaries(
        _IDS,
        st.builds(
            PurposeState,
            _FLAGS,
            _FLAGS,
            st.dictionaries(_IDS, _SELECTIONS, max_size=2),
            _CHANNELS,
            st.dictionaries(_IDS, st.builds(PreferenceState, _FLAGS, _CHANNELS), max_size=2),
        ),
        max_size=3,
    ),
    _CHANNELS,
)


def _targets_in(snapshot: ConsentSnapshot) -> list[PathTarget]:
    """Every reading that the snapshot holds an object for."""
    K = PathKind
    found = [PathTarget(K.ORGANIZATION_USER_ID)]
    found += [PathTarget(K.METADATA, key=key) for key in snapshot.metadata]
    found += [PathTarget(K.CHANNEL, channel=c) for c in snapshot.channels]
    for p, purpose in snapshot.purposes.items():
        found += [
            PathTarget(K.PURPOSE_ENABLED, purpose=p),
            PathTarget(K.PURPOSE_ENABLED_LI, purpose=p),
        ]
        found += [PathTarget(K.PURPOSE_CHANNEL, purpose=p, channel=c) for c in purpose.channels]
        for pref in purpose.values:
            found.append(PathTarget(K.VALUES, purpose=p, preference=pref))
            found += [
                PathTarget(K.VALUE_SELECTED, purpose=p, preference=pref, value_id=v)
                for v in _VALUE_IDS
            ]
        for pref, state in purpose.preferences.items():
            found.append(PathTarget(K.PREFERENCE, purpose=p, preference=pref))
            found += [
                PathTarget(K.PREFERENCE_CHANNEL, purpose=p, preference=pref, channel=c)
                for c in state.channels
            ]
    return found


@st.composite
def _mappings(
    draw: st.DrawFn, *, plain: bool
) -> tuple[ConsentSnapshot, list[Property], dict[str, ColumnSpec]]:
    """A snapshot, invertible properties reading it (and some reading nothing), column specs."""
    snapshot = draw(_SNAPSHOTS)
    targets = _targets_in(snapshot)
    chosen = draw(st.lists(st.sampled_from(targets), min_size=1, max_size=8))
    chosen += draw(st.lists(_random_target(), max_size=2))
    properties: list[Property] = []
    specs: dict[str, ColumnSpec] = {}
    for index, target in enumerate(chosen):
        column = f"new_c{index}"
        kind = target.value_kind
        transform = draw(_transforms(kind))
        path = target._join(set()) if plain and not isinstance(transform, dict) else target.render()
        prop = Property(column, path, transform)
        properties.append(prop)
        specs[column] = _spec_for(column, resolve(prop.candidates, snapshot).value_kind, transform)
    return snapshot, properties, specs


@st.composite
def _random_target(draw: st.DrawFn) -> PathTarget:
    kind = draw(st.sampled_from([PathKind.PURPOSE_ENABLED, PathKind.CHANNEL, PathKind.VALUES]))
    if kind is PathKind.CHANNEL:
        return PathTarget(kind, channel=draw(_IDS))
    if kind is PathKind.VALUES:
        return PathTarget(kind, purpose=draw(_IDS), preference=draw(_IDS))
    return PathTarget(kind, purpose=draw(_IDS))


def _transforms(kind: ValueKind) -> st.SearchStrategy[RawTransform | None]:
    if kind is ValueKind.BOOLEAN:
        two_ints = st.lists(st.integers(0, 9), min_size=2, max_size=2, unique=True)
        two_texts = st.lists(
            st.sampled_from(["yes", "no", "opt-in"]), min_size=2, max_size=2, unique=True
        )
        return st.one_of(
            st.none(),
            st.just("not"),
            (two_ints | two_texts).map(lambda pair: {"true": pair[0], "false": pair[1]}),
        )
    if kind is ValueKind.SELECTION:
        per_item = {value_id: number for number, value_id in enumerate(_VALUE_IDS, start=1)}
        return st.sampled_from([None, per_item])
    return st.none()


def _spec_for(column: str, kind: ValueKind, transform: object) -> ColumnSpec:
    if isinstance(transform, dict):
        targets = list(transform.values())
        if all(isinstance(target, str) for target in targets):
            return ColumnSpec(column, AttributeType.STRING)
        options = frozenset(int(target) for target in targets)
        if kind is ValueKind.SELECTION:
            return ColumnSpec(column, AttributeType.MULTI_SELECT_PICKLIST, options)
        return ColumnSpec(column, AttributeType.PICKLIST, options)
    if kind is ValueKind.BOOLEAN:
        return ColumnSpec(column, AttributeType.BOOLEAN)
    return ColumnSpec(column, AttributeType.STRING)


def _check_reverse(properties: list[Property], forward: dict[str, object], result: Any) -> None:
    assert result.skipped == {}
    one_way = {prop.id for prop in properties if prop.value == "organization_user_id"}
    assert set(result.one_way) == one_way & set(forward)


@settings(max_examples=100, deadline=None)
@given(_mappings(plain=False))
def test_unambiguous_mappings_round_trip_through_a_fresh_event(
    case: tuple[ConsentSnapshot, list[Property], dict[str, ColumnSpec]],
) -> None:
    snapshot, properties, specs = case
    forward = coerce_row(project(properties, snapshot), specs)
    needs_current = any(t.kind is PathKind.VALUE_SELECTED for p in properties for t in p.candidates)
    result = reverse_project(
        properties,
        forward,
        organization_user_id="ada@example.com",
        current=snapshot if needs_current else None,
    )
    _check_reverse(properties, forward, result)
    event = ConsentSnapshot.from_event(result.event_body())
    assert coerce_row(project(properties, event), specs) == forward


@settings(max_examples=100, deadline=None)
@given(_mappings(plain=True))
def test_ambiguous_mappings_round_trip_through_didomis_merge(
    case: tuple[ConsentSnapshot, list[Property], dict[str, ColumnSpec]],
) -> None:
    snapshot, properties, specs = case
    forward = coerce_row(project(properties, snapshot), specs)
    result = reverse_project(
        properties, forward, organization_user_id="ada@example.com", current=snapshot
    )
    _check_reverse(properties, forward, result)
    merged = ConsentSnapshot.from_user(_merge(_user_json(snapshot), result.event_body()))
    assert coerce_row(project(properties, merged), specs) == forward


@settings(max_examples=100, deadline=None)
@given(_mappings(plain=False), st.data())
def test_changed_columns_land_in_didomi_and_project_back_unchanged(
    case: tuple[ConsentSnapshot, list[Property], dict[str, ColumnSpec]], data: st.DataObject
) -> None:
    """A CRM edit (a column flipped to another valid value) survives Didomi and comes back."""
    snapshot, properties, specs = case
    forward = coerce_row(project(properties, snapshot), specs)
    edited = dict(forward)
    for column, value in forward.items():
        spec = specs[column]
        if spec.attribute_type is AttributeType.BOOLEAN and data.draw(st.booleans()):
            edited[column] = not value
    result = reverse_project(
        properties, edited, organization_user_id="ada@example.com", current=snapshot
    )
    if result.skipped:  # two columns of one choice edited apart: nothing may be sent for them
        assert all("disagrees" in reason for reason in result.skipped.values())
        return
    merged = ConsentSnapshot.from_user(_merge(_user_json(snapshot), result.event_body()))
    again = coerce_row(project(properties, merged), specs)
    for column in result.one_way:
        edited[column] = forward[column]
    assert again == edited


def _user_json(snapshot: ConsentSnapshot) -> dict[str, Any]:
    def channels(entries: Any) -> list[dict[str, Any]]:
        return [{"id": key, "enabled": value} for key, value in entries.items()]

    return {
        "organization_user_id": snapshot.organization_user_id,
        "metadata": dict(snapshot.metadata),
        "consents": {
            "purposes": [
                {
                    "id": pid,
                    "enabled": purpose.enabled,
                    "enabled_li": purpose.enabled_li,
                    "values": {pref: {"value": value} for pref, value in purpose.values.items()},
                    "channels": channels(purpose.channels),
                    "preferences": [
                        {"id": pref, "enabled": state.enabled, "channels": channels(state.channels)}
                        for pref, state in purpose.preferences.items()
                    ],
                }
                for pid, purpose in snapshot.purposes.items()
            ],
            "channels": channels(snapshot.channels),
        },
    }


def _merge(user: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """Didomi's merge of an event into a user: by id, the event's keys replace the user's."""
    merged = copy.deepcopy(user)
    merged["metadata"].update(event["user"].get("metadata", {}))
    consents = merged["consents"]
    for purpose in event["consents"].get("purposes", []):
        into = _by_id(consents["purposes"], purpose["id"])
        for key in ("enabled", "enabled_li"):
            if key in purpose:
                into[key] = purpose[key]
        into.setdefault("values", {}).update(purpose.get("values", {}))
        _merge_channels(into, purpose)
        for pref in purpose.get("preferences", []):
            pref_into = _by_id(into.setdefault("preferences", []), pref["id"])
            if "enabled" in pref:
                pref_into["enabled"] = pref["enabled"]
            _merge_channels(pref_into, pref)
    _merge_channels(consents, event["consents"])
    return merged


def _merge_channels(into: dict[str, Any], source: dict[str, Any]) -> None:
    for channel in source.get("channels", []):
        _by_id(into.setdefault("channels", []), channel["id"])["enabled"] = channel["enabled"]


def _by_id(entries: list[dict[str, Any]], ident: str) -> dict[str, Any]:
    for entry in entries:
        if entry["id"] == ident:
            return entry
    entries.append({"id": ident})
    return entries[-1]
