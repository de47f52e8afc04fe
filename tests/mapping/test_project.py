"""Forward projection: consent state → column values, the absent/null rule, resolution."""

from __future__ import annotations

import pytest

from consentbridge.mapping import (
    ConsentSnapshot,
    MappingValueError,
    PathKind,
    Property,
    PropertyMapping,
    project,
    read_path,
    resolve,
)

USER = {
    "organization_user_id": "ada@example.com",
    "metadata": {"lang": "fr", "score": 7, "tags": ["a"]},
    "consents": {
        "purposes": [
            {
                "id": "newsletter",
                "enabled": True,
                "enabled_li": False,
                "channels": [{"id": "email", "enabled": True}],
                "preferences": [
                    {"id": "weekly", "enabled": False, "channels": [{"id": "sms", "enabled": True}]}
                ],
            },
            {"id": "marketing", "enabled": None, "preferences": [{"id": "sms", "enabled": True}]},
            {
                "id": "contact",
                "values": {"channel": {"value": "email"}, "topics": {"value": "b,a"}},
            },
            {"id": "marketing_preferences_sms", "enabled": False},
            {"id": "unknown_choice", "enabled": None, "values": {"t": {"value": None}}},
        ],
        "channels": [{"id": "email", "enabled": False}],
    },
}
SNAPSHOT = ConsentSnapshot.from_user(USER)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("consents_purposes_newsletter_enabled", True),
        ("consents_purposes_newsletter_enabled_li", False),
        ("consents_purposes_newsletter_channel_email_enabled", True),
        ("consents_purposes_newsletter_preferences_weekly_enabled", False),
        ("consents_purposes_newsletter_preferences_weekly_channel_sms_enabled", True),
        ("consents_purposes_newsletter_preferences_weekly_channels_sms_enabled", True),
        ("consents_purposes_contact_values_topics", "a,b"),
        ("consents_purposes_contact_values_topics_a", True),
        ("consents_purposes_contact_values_topics_c", False),
        ("consents_channels_email_enabled", False),
        ("metadata_lang", "fr"),
        ("metadata_score", 7),
        ("organization_user_id", "ada@example.com"),
    ],
)
def test_each_path_kind_reads_its_value(path: str, expected: object) -> None:
    assert read_path(path, SNAPSHOT) == expected
    assert project([Property("new_col", path)], SNAPSHOT) == {"new_col": expected}


@pytest.mark.parametrize(
    "path",
    [
        "consents_purposes_absent_enabled",  # purpose not in the state
        "consents_purposes_unknown_choice_enabled",  # null: no explicit choice
        "consents_purposes_newsletter_preferences_absent_enabled",
        "consents_purposes_newsletter_channel_fax_enabled",
        "consents_purposes_contact_values_absent",
        "consents_purposes_unknown_choice_values_t",  # null selection
        "consents_purposes_unknown_choice_values_t_x",
        "consents_channels_fax_enabled",
        "metadata_absent",
    ],
)
def test_an_absent_or_null_source_writes_no_column(path: str) -> None:
    assert project([Property("new_col", path)], SNAPSHOT) == {}


def test_a_user_without_organization_user_id_writes_no_column_for_it() -> None:
    assert project([Property("emailaddress1", "organization_user_id")], ConsentSnapshot()) == {}


def test_the_contract_examples_project_as_documented() -> None:
    mapping = PropertyMapping.from_raw(
        [
            {
                "id": "donotbulkemail",
                "value": "consents_purposes_newsletter_enabled",
                "transform": "not",
            },
            {"id": "new_smsoptin", "value": "consents_purposes_marketing_preferences_sms_enabled"},
            {
                "id": "preferredcontactmethodcode",
                "value": "consents_purposes_contact_values_channel",
                "transform": {"email": 2, "phone": 3},
            },
        ]
    )
    assert project(mapping, SNAPSHOT) == {
        "donotbulkemail": False,
        "new_smsoptin": True,
        "preferredcontactmethodcode": 2,
    }


def test_an_ambiguous_path_uses_the_first_reading_whose_ids_exist() -> None:
    path = "consents_purposes_marketing_preferences_sms_enabled"
    both = ConsentSnapshot.from_user(USER)
    # Purpose "marketing" with preference "sms" exists: the preferred reading wins.
    assert read_path(path, both) is True
    only_long_purpose = ConsentSnapshot.from_user(
        {"consents": {"purposes": [{"id": "marketing_preferences_sms", "enabled": False}]}}
    )
    assert read_path(path, only_long_purpose) is False


def test_a_reading_whose_ids_exist_wins_even_when_its_value_is_null() -> None:
    snapshot = ConsentSnapshot.from_user(
        {
            "consents": {
                "purposes": [
                    {"id": "m", "preferences": [{"id": "sms", "enabled": None}]},
                    {"id": "m_preferences_sms", "enabled": True},
                ]
            }
        }
    )
    assert read_path("consents_purposes_m_preferences_sms_enabled", snapshot) is None


def test_resolve_falls_back_to_the_first_reading() -> None:
    prop = Property("new_col", "consents_purposes_marketing_preferences_sms_enabled")
    assert resolve(prop.candidates, ConsentSnapshot()).kind is PathKind.PREFERENCE
    assert resolve(prop.candidates, None).kind is PathKind.PREFERENCE


def test_a_quoted_path_reads_only_its_reading() -> None:
    path = "consents_purposes_{marketing_preferences_sms}_enabled"
    assert read_path(path, SNAPSHOT) is False


def test_a_selection_is_mapped_per_value_for_multi_select_columns() -> None:
    prop = Property("new_topics", "consents_purposes_contact_values_topics", {"a": 1, "b": 2})
    assert project([prop], SNAPSHOT) == {"new_topics": (1, 2)}


def test_an_unmapped_source_value_names_the_column() -> None:
    prop = Property("new_x", "consents_purposes_newsletter_enabled", {"false": 2})
    with pytest.raises(MappingValueError, match="'new_x'"):
        project([prop], SNAPSHOT)


def test_not_on_non_boolean_metadata_is_an_error() -> None:
    with pytest.raises(MappingValueError, match="'new_x'"):
        project([Property("new_x", "metadata_lang", "not")], SNAPSHOT)


def test_structured_metadata_is_passed_on_for_coercion_to_judge() -> None:
    assert project([Property("new_x", "metadata_tags")], SNAPSHOT) == {"new_x": ["a"]}
