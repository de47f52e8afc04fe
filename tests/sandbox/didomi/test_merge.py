"""Consent merging: an event's partial consents overwrite only what they name."""

from __future__ import annotations

import copy

from consentbridge.sandbox.didomi.merge import empty_consents, merge_consents, normalized


def test_purpose_fields_present_in_the_event_overwrite_and_absent_ones_stay() -> None:
    current = merge_consents(
        None, {"purposes": [{"id": "news", "enabled": True, "enabled_li": True}]}
    )
    merged = merge_consents(current, {"purposes": [{"id": "news", "enabled": False}]})
    assert merged["purposes"] == [{"id": "news", "enabled": False, "enabled_li": True}]


def test_new_purposes_are_appended_and_others_kept() -> None:
    current = merge_consents(None, {"purposes": [{"id": "a", "enabled": True}]})
    merged = merge_consents(current, {"purposes": [{"id": "b", "enabled": False}]})
    assert [p["id"] for p in merged["purposes"]] == ["a", "b"]


def test_values_merge_per_preference_id() -> None:
    current = merge_consents(
        None,
        {"purposes": [{"id": "m", "values": {"topics": {"value": "a,b"}, "freq": {"value": "w"}}}]},
    )
    merged = merge_consents(
        current, {"purposes": [{"id": "m", "values": {"topics": {"value": "c"}}}]}
    )
    assert merged["purposes"][0]["values"] == {"topics": {"value": "c"}, "freq": {"value": "w"}}


def test_preferences_and_their_channels_merge_by_id() -> None:
    current = merge_consents(
        None,
        {
            "purposes": [
                {
                    "id": "m",
                    "preferences": [
                        {
                            "id": "news",
                            "enabled": True,
                            "channels": [
                                {"id": "email", "enabled": True},
                                {"id": "sms", "enabled": True},
                            ],
                        }
                    ],
                }
            ]
        },
    )
    incoming = {
        "purposes": [
            {
                "id": "m",
                "preferences": [{"id": "news", "channels": [{"id": "sms", "enabled": False}]}],
            }
        ]
    }
    pref = merge_consents(current, incoming)["purposes"][0]["preferences"][0]
    assert pref["enabled"] is True
    assert pref["channels"] == [{"id": "email", "enabled": True}, {"id": "sms", "enabled": False}]


def test_top_level_channels_merge_by_id() -> None:
    current = merge_consents(None, {"channels": [{"id": "email", "enabled": True}]})
    merged = merge_consents(current, {"channels": [{"id": "phone", "enabled": False}]})
    assert merged["channels"] == [
        {"id": "email", "enabled": True},
        {"id": "phone", "enabled": False},
    ]


def test_vendors_move_between_enabled_and_disabled() -> None:
    current = merge_consents(None, {"vendors": {"enabled": ["v1", "v2"]}})
    merged = merge_consents(current, {"vendors": {"disabled": ["v1"]}})
    assert merged["vendors"]["enabled"] == ["v2"]
    assert merged["vendors"]["disabled"] == ["v1"]


def test_merging_never_mutates_the_inputs() -> None:
    current = merge_consents(None, {"purposes": [{"id": "a", "values": {"p": {"value": "x"}}}]})
    incoming = {"purposes": [{"id": "a", "values": {"p": {"value": "y"}}}]}
    before_current, before_incoming = copy.deepcopy(current), copy.deepcopy(incoming)
    merged = merge_consents(current, incoming)
    merged["purposes"][0]["values"]["p"]["value"] = "changed"
    assert current == before_current
    assert incoming == before_incoming


def test_normalized_event_consents_always_carry_the_three_blocks() -> None:
    assert normalized({}) == empty_consents()
    assert normalized({"tcfcs": "abc"})["tcfcs"] == "abc"
