"""Path suggestions come from what consent states hold, written in the grammar so each one
parses back to what it describes; one path is judged alone with a sentence for the field."""

from __future__ import annotations

from consentbridge.mapping import ConsentSnapshot, parse_path
from consentbridge.mapping.suggest import check_path, suggestions

USER = {
    "organization_user_id": "alice@example.com",
    "metadata": {"plan": "gold"},
    "consents": {
        "purposes": [
            {
                "id": "newsletter",
                "enabled": True,
                "channels": [{"id": "email", "enabled": True}],
                "preferences": [{"id": "weekly", "enabled": False}],
            },
            {"id": "cookies_analytics", "enabled": False, "enabled_li": True},
            {"id": "topics", "values": {"sports": {"value": "football,tennis"}}},
        ],
        "channels": [{"id": "sms", "enabled": False}],
    },
}


def test_every_value_of_a_state_is_suggested_as_a_path_that_parses_back() -> None:
    found = suggestions([ConsentSnapshot.from_user(USER)])
    paths = [s.path for s in found]
    assert paths == sorted(paths)
    for expected in (
        "consents_purposes_newsletter_enabled",
        "consents_purposes_{newsletter}_channel_email_enabled",
        "consents_purposes_{newsletter}_preferences_weekly_enabled",
        "consents_purposes_cookies_analytics_enabled_li",
        "consents_purposes_topics_values_{sports}_tennis",
        "consents_channels_sms_enabled",
        "metadata_plan",
    ):
        assert expected in paths, paths
    # A purpose without a choice of its own is not suggested as one.
    assert "consents_purposes_topics_enabled" not in paths
    # Ids are braced where needed so that each path reads one way only: its own.
    for suggestion in found:
        (reading,) = parse_path(suggestion.path).candidates
        assert reading.describe() == suggestion.describes
    values = [s for s in found if s.value_kind == "selection"]
    assert [s.path for s in values] == ["consents_purposes_topics_values_sports"]


def test_the_same_path_seen_in_many_users_is_suggested_once() -> None:
    snapshot = ConsentSnapshot.from_user(USER)
    once = suggestions([snapshot])
    assert suggestions([snapshot, snapshot]) == once


def test_a_path_is_judged_alone_with_one_sentence_or_what_it_reads() -> None:
    good = check_path("consents_purposes_newsletter_enabled")
    assert good.ok and good.readings == ("purpose 'newsletter'",)
    assert good.value_kinds == ("boolean",)
    bad = check_path("consents_purpose_newsletter")
    assert not bad.ok and bad.error and bad.error.endswith(".")
    empty = check_path("")
    assert not empty.ok and "empty" in (empty.error or "")
