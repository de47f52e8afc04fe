"""Property and PropertyMapping: validation on construction, problems located by JSON path."""

from __future__ import annotations

import pytest

from consentbridge.mapping import (
    NOT,
    MappingColumnError,
    MappingConfigError,
    MappingPathError,
    MappingTransformError,
    PathKind,
    Property,
    PropertyMapping,
    ValueMap,
)


def test_a_property_holds_its_parsed_path_and_transform() -> None:
    prop = Property(
        id="donotbulkemail", value="consents_purposes_newsletter_enabled", transform="not"
    )
    assert prop.transform == NOT
    assert [target.kind for target in prop.candidates] == [PathKind.PURPOSE_ENABLED]
    assert prop.to_raw() == {
        "id": "donotbulkemail",
        "value": "consents_purposes_newsletter_enabled",
        "transform": "not",
    }


def test_equal_documents_make_equal_properties() -> None:
    one = Property("new_x", "consents_purposes_p_enabled", {"true": 1})
    two = Property("new_x", "consents_purposes_p_enabled", ValueMap.of({"true": 1}))
    assert one == two
    assert hash(one) == hash(two)


def test_the_transform_rules_out_readings_it_does_not_fit() -> None:
    plain = Property("new_x", "consents_purposes_p_values_a_b")
    assert [t.kind for t in plain.candidates] == [PathKind.VALUE_SELECTED, PathKind.VALUES]
    negated = Property("new_x", "consents_purposes_p_values_a_b", "not")
    assert [t.kind for t in negated.candidates] == [PathKind.VALUE_SELECTED]
    mapped = Property("new_x", "consents_purposes_p_values_a_b", {"email": 2})
    assert [t.kind for t in mapped.candidates] == [PathKind.VALUES]


def test_a_transform_that_fits_no_reading_is_refused() -> None:
    with pytest.raises(MappingTransformError, match='"not" needs a true/false value'):
        Property("new_x", "consents_purposes_p_values_topics", "not")


@pytest.mark.parametrize("column", ["", "DoNotEmail", "1abc", "new-x", None])
def test_a_column_that_is_not_a_logical_name_is_refused(column: object) -> None:
    with pytest.raises(MappingColumnError, match="logical name"):
        Property(column, "consents_purposes_p_enabled")  # type: ignore[arg-type]


def test_from_raw_reports_every_problem_at_its_json_path() -> None:
    raw = [
        {
            "id": "donotbulkemail",
            "value": "consents_purposes_newsletter_enabled",
            "transform": "not",
        },
        {"id": "new_a", "value": "consents_purposes_"},
        {"id": "new_b", "value": "consents_purposes_p_values_t", "transform": "not"},
        {"id": "Bad", "value": "consents_purposes_p_enabled"},
        {"id": "donotbulkemail", "value": "consents_purposes_q_enabled"},
        {"id": "new_c", "value": "consents_purposes_q_enabled", "transfrom": "not"},
        {"value": "consents_purposes_q_enabled"},
        {"id": "new_d"},
        {"id": "new_e", "value": 3},
        "neither",
    ]
    with pytest.raises(MappingConfigError) as caught:
        PropertyMapping.from_raw(raw)
    where = [problem.path for problem in caught.value.problems]
    assert where == [
        "[1].value",
        "[2].transform",
        "[3].id",
        "[5].transfrom",
        "[6].id",
        "[7].value",
        "[8].value",
        "[9]",
        "[4].id",
    ]
    duplicate = caught.value.problems[-1].message
    assert "'donotbulkemail' is already mapped by properties[0]" in duplicate


def test_from_raw_refuses_something_that_is_not_a_list() -> None:
    with pytest.raises(MappingConfigError, match="must be a list"):
        PropertyMapping.from_raw({"id": "x"})


def test_from_raw_builds_the_mapping_in_order() -> None:
    mapping = PropertyMapping.from_raw(
        [
            {
                "id": "donotbulkemail",
                "value": "consents_purposes_newsletter_enabled",
                "transform": "not",
            },
            {"id": "new_smsoptin", "value": "consents_purposes_marketing_preferences_sms_enabled"},
        ]
    )
    assert mapping.columns == ("donotbulkemail", "new_smsoptin")
    assert len(mapping) == 2
    assert [prop.id for prop in mapping] == ["donotbulkemail", "new_smsoptin"]


def test_a_mapping_built_directly_also_refuses_a_column_mapped_twice() -> None:
    prop = Property("new_x", "consents_purposes_p_enabled")
    with pytest.raises(MappingConfigError, match="already mapped"):
        PropertyMapping((prop, prop))


def test_errors_are_value_errors_so_pydantic_validators_report_them() -> None:
    with pytest.raises(ValueError):
        Property("new_x", "nonsense")
    assert issubclass(MappingPathError, ValueError)
