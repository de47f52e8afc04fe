"""The path grammar: every form, ids with underscores, quoting, preference order, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentbridge.mapping import MappingPathError, PathKind, PathTarget, ValueKind, parse_path
from consentbridge.mapping.grammar import FORM_ORDER

K = PathKind


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("consents_purposes_news_enabled", PathTarget(K.PURPOSE_ENABLED, purpose="news")),
        ("consents_purposes_news_enabled_li", PathTarget(K.PURPOSE_ENABLED_LI, purpose="news")),
        (
            "consents_purposes_news_preferences_weekly_enabled",
            PathTarget(K.PREFERENCE, purpose="news", preference="weekly"),
        ),
        (
            "consents_purposes_cookies_preferences_newsletter_channel_email_enabled",
            PathTarget(
                K.PREFERENCE_CHANNEL, purpose="cookies", preference="newsletter", channel="email"
            ),
        ),
        (
            "consents_purposes_cookies_preferences_newsletter_channels_email_enabled",
            PathTarget(
                K.PREFERENCE_CHANNEL, purpose="cookies", preference="newsletter", channel="email"
            ),
        ),
        (
            "consents_purposes_news_channel_sms_enabled",
            PathTarget(K.PURPOSE_CHANNEL, purpose="news", channel="sms"),
        ),
        (
            "consents_purposes_news_channels_sms_enabled",
            PathTarget(K.PURPOSE_CHANNEL, purpose="news", channel="sms"),
        ),
        (
            "consents_purposes_news_values_topics",
            PathTarget(K.VALUES, purpose="news", preference="topics"),
        ),
        (
            "consents_purposes_news_values_topics_sport",
            PathTarget(K.VALUE_SELECTED, purpose="news", preference="topics", value_id="sport"),
        ),
        ("consents_channels_email_enabled", PathTarget(K.CHANNEL, channel="email")),
        ("metadata_lang", PathTarget(K.METADATA, key="lang")),
        ("organization_user_id", PathTarget(K.ORGANIZATION_USER_ID)),
    ],
)
def test_each_form_is_read_as_its_most_structured_reading(path: str, expected: PathTarget) -> None:
    assert parse_path(path).candidates[0] == expected


def test_an_unambiguous_path_has_one_reading() -> None:
    parsed = parse_path("consents_purposes_newsletter_enabled")
    assert parsed.candidates == (PathTarget(K.PURPOSE_ENABLED, purpose="newsletter"),)
    assert not parsed.is_ambiguous


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "consents_purposes_my_purpose_enabled",
            PathTarget(K.PURPOSE_ENABLED, purpose="my_purpose"),
        ),
        ("consents_purposes_a_b_enabled_li", PathTarget(K.PURPOSE_ENABLED_LI, purpose="a_b")),
        ("consents_channels_push_web_enabled", PathTarget(K.CHANNEL, channel="push_web")),
        ("metadata_first_name", PathTarget(K.METADATA, key="first_name")),
        (
            "consents_purposes_{a_b}_preferences_c_d_enabled",
            PathTarget(K.PREFERENCE, purpose="a_b", preference="c_d"),
        ),
    ],
)
def test_ids_with_underscores_are_read_whole_when_only_one_reading_exists(
    path: str, expected: PathTarget
) -> None:
    assert parse_path(path).candidates == (expected,)


def test_an_ambiguous_path_lists_every_reading_in_preference_order() -> None:
    parsed = parse_path("consents_purposes_marketing_preferences_sms_enabled")
    assert parsed.is_ambiguous
    assert parsed.candidates == (
        PathTarget(K.PREFERENCE, purpose="marketing", preference="sms"),
        PathTarget(K.PURPOSE_ENABLED, purpose="marketing_preferences_sms"),
    )


def test_the_didomi_documented_example_prefers_the_deepest_reading() -> None:
    parsed = parse_path("consents_purposes_cookies_preferences_newsletter_channel_email_enabled")
    assert [target.kind for target in parsed.candidates] == [
        K.PREFERENCE_CHANNEL,
        K.PREFERENCE,
        K.PURPOSE_CHANNEL,
        K.PURPOSE_ENABLED,
    ]


def test_splits_of_the_same_form_come_shortest_first_id_first() -> None:
    parsed = parse_path("consents_purposes_p_values_a_b_c")
    assert parsed.candidates == (
        PathTarget(K.VALUE_SELECTED, purpose="p", preference="a", value_id="b_c"),
        PathTarget(K.VALUE_SELECTED, purpose="p", preference="a_b", value_id="c"),
        PathTarget(K.VALUES, purpose="p", preference="a_b_c"),
    )


def test_preference_order_is_deepest_form_first() -> None:
    assert FORM_ORDER[:7] == (
        K.PREFERENCE_CHANNEL,
        K.PREFERENCE,
        K.PURPOSE_CHANNEL,
        K.VALUE_SELECTED,
        K.VALUES,
        K.PURPOSE_ENABLED_LI,
        K.PURPOSE_ENABLED,
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "consents_purposes_{marketing_preferences}_enabled",
            PathTarget(K.PURPOSE_ENABLED, purpose="marketing_preferences"),
        ),
        (
            "consents_purposes_{marketing_preferences_sms}_enabled",
            PathTarget(K.PURPOSE_ENABLED, purpose="marketing_preferences_sms"),
        ),
        (
            "consents_purposes_{marketing}_preferences_sms_enabled",
            PathTarget(K.PREFERENCE, purpose="marketing", preference="sms"),
        ),
        (
            "consents_purposes_p_values_{a_b}",
            PathTarget(K.VALUES, purpose="p", preference="a_b"),
        ),
        (
            "consents_purposes_p_values_{a}_{b}",
            PathTarget(K.VALUE_SELECTED, purpose="p", preference="a", value_id="b"),
        ),
        ("consents_purposes_{enabled}_enabled", PathTarget(K.PURPOSE_ENABLED, purpose="enabled")),
        ("metadata_{first name}", PathTarget(K.METADATA, key="first name")),
        ("consents_channels_{a__b}_enabled", PathTarget(K.CHANNEL, channel="a__b")),
    ],
)
def test_a_quoted_id_pins_one_reading(path: str, expected: PathTarget) -> None:
    assert parse_path(path).candidates == (expected,)


def test_a_quoted_keyword_is_an_id_not_a_keyword() -> None:
    with pytest.raises(MappingPathError):
        parse_path("consents_purposes_news_{enabled}")


def test_value_kinds_follow_the_form() -> None:
    assert parse_path("consents_purposes_p_values_x").value_kinds == {ValueKind.SELECTION}
    assert parse_path("consents_purposes_p_enabled").value_kinds == {ValueKind.BOOLEAN}
    assert parse_path("metadata_x").value_kinds == {ValueKind.ANY}
    assert parse_path("organization_user_id").value_kinds == {ValueKind.TEXT}
    assert parse_path("consents_purposes_p_values_a_b").value_kinds == {
        ValueKind.BOOLEAN,
        ValueKind.SELECTION,
    }


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("", "empty"),
        ("consents_purposes_enabled", "names no purpose"),
        ("consents_purposes_news", "does not say what to read"),
        ("consents_purposes_news_disabled", "does not say what to read"),
        ("consents_purposes_{news}_values", "matches no form"),
        ("consents_purposes__news_enabled", "empty part"),
        ("consents_purposes_news_enabled_", "empty part"),
        ("_consents_purposes_news_enabled", "empty part"),
        ("consents_purposes_{news_enabled", "without closing"),
        ("consents_purposes_{}_enabled", "empty or nested"),
        ("consents_purposes_{a{b}_enabled", "empty or nested"),
        ("consents_purposes_a{b}_enabled", "brace inside a part"),
        ("consents_purposes_{a}b_enabled", "brace inside a part"),
        ("consents_purposes_news enabled", "whitespace"),
        ("consents_purposes_news_enabled\n", "control character"),
        ("consents.purposes.news.enabled", "'.'"),
        ("consents_channels_email", "consents_channels_<channel>_enabled"),
        ("consents_vendors_x_enabled", "must continue"),
        ("metadata", "names no metadata key"),
        ("purposes_news_enabled", "does not start with"),
        ("Consents_purposes_news_enabled", "does not start with"),
        ("organization_user_id_x", "does not start with"),
        ("x" * 300, "limit"),
    ],
)
def test_malformed_paths_are_refused_with_a_sentence_naming_the_fix(path: str, says: str) -> None:
    with pytest.raises(MappingPathError) as caught:
        parse_path(path)
    message = str(caught.value)
    assert says in message
    assert message.endswith(".")
    assert caught.value.field == "value"


def test_a_path_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(MappingPathError, match="must be a string"):
        parse_path(["consents_purposes_x_enabled"])


_PIECES = st.sampled_from(
    [
        "consents", "purposes", "preferences", "values", "channel", "channels", "enabled",
        "li", "metadata", "organization", "user", "id", "a", "b_c", "{q_r}", "{", "}", "", " ",
        ".", "\x00", "é",
    ]
)  # fmt: skip


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=12).map("_".join)))
def test_parse_path_raises_nothing_but_mapping_path_error(text: str) -> None:
    try:
        parsed = parse_path(text)
    except MappingPathError as error:
        assert str(error)
    else:
        assert parsed.candidates


_WORDS = st.sampled_from(["a", "b", "x", "email", "preferences", "values", "channel", "enabled"])
_IDS = st.lists(_WORDS, min_size=1, max_size=3).map("_".join)


@st.composite
def _targets(draw: st.DrawFn) -> PathTarget:
    kind = draw(st.sampled_from(list(PathKind)))
    ids = {
        K.PURPOSE_ENABLED: ("purpose",),
        K.PURPOSE_ENABLED_LI: ("purpose",),
        K.PURPOSE_CHANNEL: ("purpose", "channel"),
        K.PREFERENCE: ("purpose", "preference"),
        K.PREFERENCE_CHANNEL: ("purpose", "preference", "channel"),
        K.VALUES: ("purpose", "preference"),
        K.VALUE_SELECTED: ("purpose", "preference", "value_id"),
        K.CHANNEL: ("channel",),
        K.METADATA: ("key",),
        K.ORGANIZATION_USER_ID: (),
    }[kind]
    return PathTarget(kind, **{name: draw(_IDS) for name in ids})


@given(_targets())
def test_render_writes_a_path_that_reads_back_as_exactly_that_target(target: PathTarget) -> None:
    assert parse_path(target.render()).candidates == (target,)


@given(_targets())
def test_the_unquoted_join_of_ids_always_includes_the_intended_reading(target: PathTarget) -> None:
    plain = target._join(set())
    assert target in parse_path(plain).candidates
