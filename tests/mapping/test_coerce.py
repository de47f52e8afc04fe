"""Coercion of logical values to the Web API encoding of each Dataverse column type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentbridge.mapping import (
    AttributeType,
    ColumnSpec,
    MappingColumnError,
    MappingValueError,
    coerce,
    coerce_row,
)

AT = AttributeType


def col(
    kind: AttributeType, options: set[int] | None = None, max_length: int | None = None
) -> ColumnSpec:
    return ColumnSpec("new_col", kind, None if options is None else frozenset(options), max_length)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (AT.BOOLEAN, True, True),
        (AT.BOOLEAN, False, False),
        (AT.BOOLEAN, "true", True),
        (AT.BOOLEAN, "false", False),
        (AT.BOOLEAN, 1, True),
        (AT.BOOLEAN, 0, False),
        (AT.PICKLIST, 2, 2),
        (AT.PICKLIST, "3", 3),
        (AT.PICKLIST, (4,), 4),
        (AT.STATE, 1, 1),
        (AT.STATUS, 534120001, 534120001),
        (AT.MULTI_SELECT_PICKLIST, (3, 1, 3), "1,3"),
        (AT.MULTI_SELECT_PICKLIST, "3, 1", "1,3"),
        (AT.MULTI_SELECT_PICKLIST, 5, "5"),
        (AT.MULTI_SELECT_PICKLIST, ("2", 1), "1,2"),
        (AT.STRING, "a,b", "a,b"),
        (AT.STRING, True, "true"),
        (AT.STRING, False, "false"),
        (AT.STRING, 42, "42"),
        (AT.STRING, 1.5, "1.5"),
        (AT.STRING, ("x", "y"), "x,y"),
        (AT.MEMO, "long text", "long text"),
        (AT.DATETIME, "2025-01-31T09:00:00Z", "2025-01-31T09:00:00Z"),
        (AT.DATETIME, "2025-01-31T10:00:00.123+01:00", "2025-01-31T09:00:00Z"),
        (AT.DATETIME, "2025-01-31T09:00:00", "2025-01-31T09:00:00Z"),
        (AT.DATETIME, "2025-01-31", "2025-01-31T00:00:00Z"),
        (
            AT.DATETIME,
            datetime(2025, 1, 31, 4, tzinfo=timezone(timedelta(hours=-5))),
            "2025-01-31T09:00:00Z",
        ),
        (AT.INTEGER, 7, 7),
        (AT.INTEGER, "-7", -7),
        (AT.INTEGER, 3.0, 3),
    ],
)
def test_values_take_the_web_api_encoding_of_the_column_type(
    kind: AttributeType, value: object, expected: object
) -> None:
    result = coerce(value, col(kind))
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("kind", list(AttributeType))
def test_null_and_an_empty_selection_clear_every_column_type(kind: AttributeType) -> None:
    assert coerce(None, col(kind)) is None
    assert coerce((), col(kind)) is None


def test_a_multi_select_with_nothing_selected_is_null() -> None:
    assert coerce("", col(AT.MULTI_SELECT_PICKLIST)) is None


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        (col(AT.BOOLEAN), "yes", "takes true or false"),
        (col(AT.BOOLEAN), 2, "takes true or false"),
        (col(AT.PICKLIST), True, "option value"),
        (col(AT.PICKLIST), "email", "option value"),
        (col(AT.PICKLIST, {1, 2}), 7, "7 is not one of the column's options (1, 2)"),
        (col(AT.PICKLIST), 2**40, "32-bit"),
        (col(AT.PICKLIST), (1, 2), "several values"),
        (col(AT.MULTI_SELECT_PICKLIST, {1, 2}), (1, 3), "3 is not one of the column's options"),
        (col(AT.MULTI_SELECT_PICKLIST), "a,b", "option values"),
        (col(AT.MULTI_SELECT_PICKLIST), (True,), "option values"),
        (col(AT.STRING, max_length=3), "abcd", "over the column's maximum of 3"),
        (col(AT.STRING), {"a": 1}, "not a single value"),
        (col(AT.STRING), float("nan"), "not a single value"),
        (col(AT.DATETIME), "yesterday", "ISO-8601"),
        (col(AT.DATETIME), 1735689600, "ISO-8601"),
        (col(AT.DATETIME), "1700-01-01T00:00:00Z", "date range"),
        (col(AT.DATETIME), "0001-01-01T00:00:00+01:00", "date range"),
        (col(AT.INTEGER), True, "integer"),
        (col(AT.INTEGER), 1.5, "integer"),
        (col(AT.INTEGER), 2**31, "32-bit"),
        (col(AT.INTEGER), "\u0661", "integer"),  # an Arabic-Indic digit one
    ],
)
def test_a_value_the_column_cannot_take_is_one_sentence_naming_column_value_and_fix(
    column: ColumnSpec, value: object, says: str
) -> None:
    with pytest.raises(MappingValueError) as caught:
        coerce(value, column)
    message = str(caught.value)
    assert says in message
    assert message.startswith(f"column 'new_col' ({column.attribute_type.value}) cannot take ")
    assert message.endswith(".")


def test_a_picklist_value_among_the_options_is_accepted() -> None:
    assert coerce(2, col(AT.PICKLIST, {1, 2, 3})) == 2


def test_a_string_at_the_maximum_length_is_accepted() -> None:
    assert coerce("abc", col(AT.STRING, max_length=3)) == "abc"


def test_attribute_types_come_from_dataverse_metadata() -> None:
    assert AttributeType.from_metadata("Picklist") is AT.PICKLIST
    assert (
        AttributeType.from_metadata("Virtual", "MultiSelectPicklistType")
        is AT.MULTI_SELECT_PICKLIST
    )
    with pytest.raises(MappingColumnError, match="'Lookup' cannot receive consent values"):
        AttributeType.from_metadata("Lookup")


def test_a_column_spec_accepts_the_type_by_name() -> None:
    spec = ColumnSpec("donotemail", "Boolean")  # type: ignore[arg-type]
    assert spec.attribute_type is AT.BOOLEAN
    with pytest.raises(MappingColumnError):
        ColumnSpec("x", "Money")  # type: ignore[arg-type]


def test_coerce_row_coerces_each_column_and_refuses_unknown_ones() -> None:
    specs = {
        "donotemail": ColumnSpec("donotemail", AT.BOOLEAN),
        "new_topics": ColumnSpec("new_topics", AT.MULTI_SELECT_PICKLIST),
    }
    assert coerce_row({"donotemail": True, "new_topics": (2, 1)}, specs) == {
        "donotemail": True,
        "new_topics": "1,2",
    }
    with pytest.raises(MappingValueError, match="'nope' is not a known contact column"):
        coerce_row({"nope": 1}, specs)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.from_regex(r"[+-]?[0-9]{1,14}(,[0-9]{1,3})*", fullmatch=True),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.datetimes().map(lambda moment: moment.isoformat()),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3).map(tuple),
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=3), _SCALARS, max_size=2),
)
_COLUMNS = st.builds(
    ColumnSpec,
    st.just("new_col"),
    st.sampled_from(list(AttributeType)),
    st.none() | st.frozensets(st.integers(-3, 10), max_size=4),
    st.none() | st.integers(0, 20),
)


@given(_VALUES, _COLUMNS)
def test_coerce_raises_nothing_but_mapping_value_error(value: object, column: ColumnSpec) -> None:
    try:
        result = coerce(value, column)
    except MappingValueError as error:
        assert str(error).startswith("column 'new_col'")
    else:
        assert result is None or isinstance(result, bool | int | str)


@given(st.datetimes(min_value=datetime(1800, 1, 1), timezones=st.just(UTC)))
def test_date_times_come_out_as_utc_whole_seconds_with_z(moment: datetime) -> None:
    text = coerce(moment.isoformat(), col(AT.DATETIME))
    assert isinstance(text, str) and text.endswith("Z")
    assert datetime.fromisoformat(text) == moment.replace(microsecond=0)
