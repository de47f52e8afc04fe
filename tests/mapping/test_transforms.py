"""Transforms: parsing, fitness for a path's kind, applying them, and their inverses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentbridge.mapping import (
    NOT,
    MappingTransformError,
    MappingValueError,
    ValueKind,
    ValueMap,
    apply_transform,
    check_transform,
    inverse,
    parse_transform,
)
from consentbridge.mapping.values import key_of

B, S, T, A = ValueKind.BOOLEAN, ValueKind.SELECTION, ValueKind.TEXT, ValueKind.ANY


def test_not_and_value_maps_are_parsed() -> None:
    assert parse_transform(None) is None
    assert parse_transform("not") == NOT
    assert parse_transform({"true": 1, "false": None}) == ValueMap((("true", 1), ("false", None)))


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("NOT", "is not known"),
        ("negate", "is not known"),
        ({}, "empty value map"),
        ({"true": 1.5}, "must be an integer, a string, true, false or null"),
        ({"true": [1]}, "must be an integer"),
        ({1: 2}, "not a string"),
        (["not"], "not list"),
        (3, "not int"),
    ],
)
def test_malformed_transforms_are_refused(raw: object, says: str) -> None:
    with pytest.raises(MappingTransformError, match=says) as caught:
        parse_transform(raw)
    assert caught.value.field == "transform"


@pytest.mark.parametrize(
    ("transform", "kind", "says"),
    [
        (NOT, S, "comma list"),
        (NOT, T, "a string"),
        (ValueMap.of({"yes": 1}), B, 'use the keys "true" and "false"'),
        (ValueMap.of({"a,b": 1, "b, a": 2}), S, "name the same selection"),
        (ValueMap.of({"a": None}), S, "only the empty selection"),
    ],
)
def test_a_transform_unfit_for_the_paths_kind_is_refused(
    transform: ValueMap, kind: ValueKind, says: str
) -> None:
    with pytest.raises(MappingTransformError, match=says):
        check_transform(transform, kind)


def test_not_fits_booleans_and_metadata() -> None:
    assert check_transform(NOT, B) == NOT
    assert check_transform(NOT, A) == NOT


def test_selection_map_keys_are_made_canonical() -> None:
    checked = check_transform(ValueMap.of({" b,a": 1, "c": 2, "": None}), S)
    assert checked == ValueMap.of({"a,b": 1, "c": 2, "": None})


def test_not_negates_booleans_and_refuses_anything_else() -> None:
    assert apply_transform(NOT, True, B, column="c") is False
    assert apply_transform(NOT, False, B, column="c") is True
    with pytest.raises(MappingValueError, match=r"'c'.*needs true or false"):
        apply_transform(NOT, "yes", A, column="c")


def test_a_value_map_looks_up_the_string_form_of_the_value() -> None:
    transform = ValueMap.of({"true": 1, "false": 2, "7": "seven"})
    assert apply_transform(transform, True, B, column="c") == 1
    assert apply_transform(transform, False, B, column="c") == 2
    assert apply_transform(transform, 7, A, column="c") == "seven"


def test_an_unmapped_value_is_an_error_naming_column_value_and_fix() -> None:
    with pytest.raises(MappingValueError) as caught:
        apply_transform(ValueMap.of({"true": 1}), False, B, column="donotemail")
    assert "'donotemail'" in str(caught.value)
    assert "False" in str(caught.value)
    assert 'add "false"' in str(caught.value)


def test_a_selection_is_mapped_whole_first_then_value_by_value() -> None:
    transform = ValueMap.of({"email": 2, "phone": 3, "email,phone": 9})
    assert apply_transform(transform, "email", S, column="c") == 2
    assert apply_transform(transform, "email,phone", S, column="c") == 9
    by_item = ValueMap.of({"email": 2, "phone": 3, "post": 5})
    assert apply_transform(by_item, "email,post", S, column="c") == (2, 5)
    assert apply_transform(by_item, "", S, column="c") == ()


def test_a_selection_with_an_unmapped_value_id_names_it() -> None:
    with pytest.raises(MappingValueError, match="'fax'"):
        apply_transform(ValueMap.of({"email": 2}), "email,fax", S, column="c")


def test_a_value_map_cannot_match_a_structured_metadata_value() -> None:
    with pytest.raises(MappingValueError, match="single value"):
        apply_transform(ValueMap.of({"a": 1}), {"nested": 1}, A, column="c")


def test_no_transform_passes_the_value_through() -> None:
    assert apply_transform(None, "a,b", S, column="c") == "a,b"


def test_not_is_its_own_inverse() -> None:
    assert inverse(NOT).transform == NOT


def test_a_one_to_one_map_inverts_by_string_form_of_targets() -> None:
    inverted = inverse(ValueMap.of({"true": 1, "false": None}))
    assert inverted.reason is None
    assert inverted.transform == ValueMap.of({"1": "true", "null": "false"})


@pytest.mark.parametrize(
    "transform",
    [
        ValueMap.of({"true": 1, "false": 1}),
        ValueMap.of({"a": 1, "b": "1"}),
        ValueMap.of({"a": True, "b": "true"}),
    ],
)
def test_a_map_that_is_not_one_to_one_has_no_inverse_and_says_why(transform: ValueMap) -> None:
    inverted = inverse(transform)
    assert inverted.transform is None
    assert inverted.reason is not None and "both map to" in inverted.reason


@given(st.booleans())
def test_not_applied_twice_is_the_identity(value: bool) -> None:
    once = apply_transform(NOT, value, B, column="c")
    assert once is not value
    assert apply_transform(NOT, once, B, column="c") is value


_TARGETS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))


@given(st.dictionaries(st.text(min_size=1, max_size=4), _TARGETS, min_size=1, max_size=6))
def test_an_invertible_map_maps_every_target_back_to_its_source(raw: dict[str, object]) -> None:
    transform = parse_transform(raw)
    assert isinstance(transform, ValueMap)
    inverted = inverse(transform)
    one_to_one = len({key_of(target) for target in raw.values()}) == len(raw)
    assert (inverted.transform is not None) == one_to_one
    if isinstance(inverted.transform, ValueMap):
        for source, target in raw.items():
            assert inverted.transform.lookup(key_of(target)) == (True, source)
        twice = inverse(inverted.transform).transform
        assert isinstance(twice, ValueMap)
        assert twice.as_dict() == {key: key_of(target) for key, target in raw.items()}
