"""Warnings for valid but surprising mappings (shown by ``integrations validate``)."""

from __future__ import annotations

import pytest

from consentbridge.mapping import (
    MappingPathError,
    Property,
    lint_path,
    lint_properties,
    lint_property,
)


def test_a_clear_path_has_no_warning() -> None:
    assert lint_path("consents_purposes_newsletter_enabled") == []
    assert lint_path("consents_purposes_{marketing}_preferences_sms_enabled") == []


def test_an_ambiguous_path_is_reported_with_the_form_that_pins_each_reading() -> None:
    [warning] = lint_path("consents_purposes_marketing_preferences_sms_enabled")
    assert "can be read 2 ways" in warning
    assert "consents_purposes_{marketing}_preferences_sms_enabled" in warning
    assert "consents_purposes_{marketing_preferences_sms}_enabled" in warning


def test_a_misspelt_keyword_inside_an_id_is_reported() -> None:
    [warning] = lint_path("consents_purposes_news_preference_weekly_enabled")
    assert "contains 'preference'" in warning and "'preferences'" in warning
    assert lint_path("consents_purposes_{news_preference_weekly}_enabled") == []


def test_metadata_keys_are_free_text() -> None:
    assert lint_path("metadata_value") == []


def test_a_malformed_path_is_an_error_not_a_warning() -> None:
    with pytest.raises(MappingPathError):
        lint_path("consents_purposes")


def test_a_transform_narrowing_a_path_to_one_reading_silences_the_ambiguity() -> None:
    prop = Property("new_x", "consents_purposes_p_values_a_b", {"email": 1})
    assert lint_property(prop) == []


def test_a_yes_no_value_map_missing_a_key_is_reported() -> None:
    prop = Property("new_x", "consents_purposes_p_enabled", {"true": 1})
    [warning] = lint_property(prop)
    assert 'no "false" key' in warning


def test_lint_properties_locates_each_warning() -> None:
    properties = [
        Property("new_a", "consents_purposes_p_enabled"),
        Property("new_b", "consents_purposes_p_enabled", {"false": 1}),
        Property("new_c", "consents_purposes_m_preferences_s_enabled"),
    ]
    assert [problem.path for problem in lint_properties(properties)] == [
        "[1].transform",
        "[2].value",
    ]
