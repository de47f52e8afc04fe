"""The OData query-option syntax the Dataverse sandbox accepts, and the errors it gives."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentbridge.sandbox.dataverse.odata import (
    MAX_DEPTH,
    FilterExpr,
    ODataQueryError,
    parse_filter,
    parse_orderby,
    parse_select,
    parse_top,
)


def matches(text: str, **row: object) -> bool:
    return parse_filter(text).evaluate(row)


# --- precedence -----------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    text = "a eq 1 or b eq 1 and c eq 1"
    assert matches(text, a=1, b=0, c=0)  # a or (b and c)
    assert not matches(text, a=0, b=1, c=0)


def test_parentheses_override_precedence() -> None:
    text = "(a eq 1 or b eq 1) and c eq 1"
    assert not matches(text, a=1, b=0, c=0)
    assert matches(text, a=0, b=1, c=1)


def test_not_applies_to_the_parenthesised_condition() -> None:
    assert matches("not (a eq 1) and b eq 2", a=2, b=2)
    assert not matches("not (a eq 1 or b eq 2)", a=2, b=2)


def test_not_binds_tighter_than_comparison_like_odata() -> None:
    # OData reads `not a eq 1` as `(not a) eq 1`, which Dataverse rejects.
    with pytest.raises(ODataQueryError, match="needs a property or a literal on each side"):
        parse_filter("not a eq 1")


def test_not_of_a_function_and_of_a_boolean_column() -> None:
    assert matches("not contains(name,'x') and not donotemail", name="abc", donotemail=False)
    assert not matches("not donotemail", donotemail=True)


def test_long_and_chains_are_flat_not_deep() -> None:
    text = " and ".join(f"c{i} eq {i}" for i in range(3000))
    row = {f"c{i}": i for i in range(3000)}
    assert parse_filter(text).evaluate(row)


# --- literals -------------------------------------------------------------------------------


def test_doubled_quote_is_one_quote_in_a_string_literal() -> None:
    expr = parse_filter("emailaddress1 eq 'o''brien+x@ex.com'")
    assert expr.evaluate({"emailaddress1": "o'brien+x@ex.com"})
    assert not expr.evaluate({"emailaddress1": "o''brien+x@ex.com"})


def test_literal_may_stand_on_either_side() -> None:
    assert matches("'Ann' eq firstname", firstname="ann")
    assert matches("5 gt n", n=4)
    assert not matches("5 gt n", n=5)


@pytest.mark.parametrize(
    ("text", "row_value"),
    [
        ("v eq 12", 12),
        ("v eq -3", -3),
        ("v eq 1.50", Decimal("1.5")),
        ("v eq 2.5", 2.5),
        ("v eq 1e3", 1000),
        ("v eq true", True),
        ("v eq false", False),
        (
            "v eq 0A6E5E3F-8F2B-4C2A-9D6C-1B2A3C4D5E6F",
            uuid.UUID("0a6e5e3f-8f2b-4c2a-9d6c-1b2a3c4d5e6f"),
        ),
        ("v eq 0a6e5e3f-8f2b-4c2a-9d6c-1b2a3c4d5e6f", "0A6E5E3F-8F2B-4C2A-9D6C-1B2A3C4D5E6F"),
        ("v eq 2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("v eq 2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("v eq 2024-01-01T00:00:00.1234567Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("v eq 2024-03-05", date(2024, 3, 5)),
    ],
)
def test_literal_kinds_match_their_row_values(text: str, row_value: object) -> None:
    assert matches(text, v=row_value)


def test_bare_guid_literal_against_a_lookup_value() -> None:
    step = "5c1e6f4a-0000-4000-8000-000000000001"
    expr = parse_filter(f"statuscode eq 31 and _owningextensionid_value eq {step}")
    assert expr.evaluate({"statuscode": 31, "_owningextensionid_value": step.upper()})
    assert expr.columns == ("statuscode", "_owningextensionid_value")


# --- functions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "expected"),
    [("contains", True), ("startswith", False), ("endswith", True)],
)
def test_string_functions(function: str, expected: bool) -> None:
    assert matches(f"{function}(emailaddress1,'EXAMPLE.com')", emailaddress1="a@example.com") is (
        expected
    )


def test_in_and_not_in_take_string_values() -> None:
    text = (
        "Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',"
        "PropertyValues=['A@x.com','b@x.com'])"
    )
    assert matches(text, emailaddress1="a@X.com")
    assert not matches(text, emailaddress1="c@x.com")
    negated = text.replace(".In(", ".NotIn(")
    assert matches(negated, emailaddress1="c@x.com")
    assert not matches(negated, emailaddress1="b@x.com")


def test_in_arguments_may_come_in_either_order_with_spaces() -> None:
    text = "Microsoft.Dynamics.CRM.In( PropertyValues = [ '1' , '2' ] , PropertyName = 'n' )"
    assert matches(text, n=2)


# --- navigation and columns -----------------------------------------------------------------


def test_navigation_paths_are_listed_as_segments() -> None:
    expr = parse_filter("primaryobjecttypecode eq 'contact' and sdkmessageid/name eq 'Update'")
    assert expr.paths == (("primaryobjecttypecode",), ("sdkmessageid", "name"))
    assert expr.columns == ("primaryobjecttypecode", "sdkmessageid")


def test_paths_cover_every_kind_of_reference_once_in_order() -> None:
    expr = parse_filter(
        "flag or contains(b,'x') or Microsoft.Dynamics.CRM.NotIn(PropertyName='c',"
        "PropertyValues=['1']) or (a eq d and a ne null)"
    )
    assert expr.paths == (("flag",), ("b",), ("c",), ("a",), ("d",))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("emailaddress1 eq", "Expression expected at position 16 in 'emailaddress1 eq'."),
        ("", "Expression expected at position 0 in ''."),
        ("(a eq 1", "')' or operator expected at position 7 in '(a eq 1'."),
        ("a eq 1)", "Syntax error at position 6 in 'a eq 1)'."),
        ("a eq 1 b", "Syntax error at position 7 in 'a eq 1 b'."),
        ("a eq 1 eq 2", "Syntax error at position 7 in 'a eq 1 eq 2'."),
        ("a eq 'x", "There is an unterminated string literal at position 7 in 'a eq 'x'."),
        ("a eq 'it''s", "There is an unterminated string literal at position 11 in 'a eq 'it''s'."),
        ("a eq #", "Syntax error: character '#' is not valid at position 5 in 'a eq #'."),
        (
            "a eq 2024-13-01",
            "Unrecognized 'Edm.Date' literal '2024-13-01' at '5' in 'a eq 2024-13-01'.",
        ),
        ("a eq and", "Expression expected at position 5 in 'a eq and'."),
        ("a/ eq 1", "Syntax error at position 3 in 'a/ eq 1'."),
        ("'x'", "The $filter expression must evaluate to a single boolean value."),
        (
            "a eq 1 and 'x'",
            "A 'Edm.String' literal cannot be a condition of 'and' in 'a eq 1 and 'x''.",
        ),
        ("contains(a,'x'", "')' expected at position 14 in 'contains(a,'x''."),
        (
            "contains('x',a)",
            "The first argument of 'contains' at position 9 must be a property in "
            "'contains('x',a)'.",
        ),
        (
            "contains(a,1)",
            "The second argument of 'contains' at position 11 must be a string "
            "literal in 'contains(a,1)'.",
        ),
        (
            "tolower(a) eq 'x'",
            "An unknown function with name 'tolower' was found. This may also be "
            "a function import or a key lookup on a navigation property, which is not allowed.",
        ),
    ],
)
def test_malformed_filters_give_dataverse_worded_errors(text: str, message: str) -> None:
    with pytest.raises(ODataQueryError) as caught:
        parse_filter(text)
    assert caught.value.message == message
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='a')",
            "needs both PropertyName and PropertyValues",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=[1])",
            "must list string literals",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=[])",
            "must list string literals",
        ),
        ("Microsoft.Dynamics.CRM.In(PropertyName=a,PropertyValues=['1'])", "must be a column name"),
        ("Microsoft.Dynamics.CRM.In(Property='a')", "takes PropertyName and PropertyValues"),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyName='b')",
            "Syntax error at position 43",
        ),
        (
            "Microsoft.Dynamics.CRM.In(PropertyName='a',PropertyValues=['1'] x",
            "')' or ',' expected",
        ),
        ("Microsoft.Dynamics.CRM.LastXDays(PropertyName='a',PropertyValue=3)", "not supported"),
    ],
)
def test_malformed_query_functions_are_rejected(text: str, fragment: str) -> None:
    with pytest.raises(ODataQueryError, match=re.escape(fragment)):
        parse_filter(text)


def test_error_carries_the_dataverse_error_code() -> None:
    with pytest.raises(ODataQueryError) as caught:
        parse_filter("a eq")
    assert caught.value.code == "0x80060888"


def test_nesting_up_to_the_limit_parses() -> None:
    text = "(" * MAX_DEPTH + "a eq 1" + ")" * MAX_DEPTH
    assert matches(text, a=1)


def test_depth_counts_nesting_not_the_number_of_groups() -> None:
    text = " and ".join(["(a eq 1)", "not (a eq 2)", "not b"] * MAX_DEPTH)
    assert matches(text, a=1, b=False)


@pytest.mark.parametrize("opening", ["(", "not ", "not ("])
def test_ten_thousand_levels_of_nesting_fail_fast(opening: str) -> None:
    text = opening * 10_000 + "a eq 1" + ")" * (10_000 * opening.count("("))
    # Refused by depth before any recursion (timings are never asserted: the machine is shared).
    with pytest.raises(ODataQueryError, match="Recursion depth exceeded allowed limit"):
        parse_filter(text)


def test_huge_integer_literal_is_a_query_error_not_a_value_error() -> None:
    with pytest.raises(ODataQueryError, match=r"Unrecognized 'Edm\.Decimal' literal"):
        parse_filter("a eq " + "9" * 5000)


# --- fuzzing --------------------------------------------------------------------------------

_PIECES = [
    "a",
    "b",
    "sdkmessageid/name",
    "_x_value",
    "eq",
    "ne",
    "gt",
    "le",
    "and",
    "or",
    "not",
    "(",
    ")",
    ",",
    "'x'",
    "'o''b'",
    "'",
    "''",
    "null",
    "true",
    "1",
    "-2.5",
    "1e9",
    "0a6e5e3f-8f2b-4c2a-9d6c-1b2a3c4d5e6f",
    "2024-01-01T00:00:00Z",
    "2024-02-30",
    "contains(",
    "startswith",
    "Microsoft.Dynamics.CRM.In(",
    "Microsoft.Dynamics.CRM.NotIn",
    "PropertyName=",
    "PropertyValues=[",
    "]",
    "=",
    "/",
    "[",
    "Microsoft.Dynamics.CRM.X(",
    "é",
    "{0}",
    "%",
]
_ROW = {"a": 1, "b": "B", "_x_value": None, "sdkmessageid": {"name": "Update"}, "n": 2.5}


def _must_parse_or_refuse(text: str) -> None:
    try:
        expr = parse_filter(text)
    except ODataQueryError:
        return
    assert isinstance(expr, FilterExpr)
    assert isinstance(expr.evaluate(_ROW), bool)
    expr.equality_lookup()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=25).map(" ".join))
def test_token_soup_parses_or_raises_only_query_errors(text: str) -> None:
    _must_parse_or_refuse(text)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_random_text_parses_or_raises_only_query_errors(text: str) -> None:
    _must_parse_or_refuse(text)


# --- $select, $orderby, $top ----------------------------------------------------------------


def test_select_lists_columns_in_order_without_repeats() -> None:
    assert parse_select("fullname, emailaddress1,_parentcustomerid_value,fullname") == [
        "fullname",
        "emailaddress1",
        "_parentcustomerid_value",
    ]


@pytest.mark.parametrize(("text", "position"), [("", 0), ("a,,b", 2), ("a,b c", 2), ("a,*", 2)])
def test_select_rejects_malformed_lists(text: str, position: int) -> None:
    with pytest.raises(ODataQueryError, match=f"Syntax error at position {position} in "):
        parse_select(text)


def test_orderby_reads_directions() -> None:
    assert parse_orderby("lastname desc,firstname, createdon asc") == [
        ("lastname", True),
        ("firstname", False),
        ("createdon", False),
    ]


@pytest.mark.parametrize("text", ["", "a down", "a desc desc", "a,", "a desc b"])
def test_orderby_rejects_malformed_items(text: str) -> None:
    with pytest.raises(ODataQueryError, match="Syntax error at position"):
        parse_orderby(text)


def test_top_reads_a_non_negative_integer() -> None:
    assert parse_top("0") == 0
    assert parse_top("5000") == 5000


@pytest.mark.parametrize("text", ["", "-1", "1.5", " 5", "ten", "9" * 19])
def test_top_rejects_anything_else(text: str) -> None:
    with pytest.raises(ODataQueryError) as caught:
        parse_top(text)
    assert caught.value.message == (
        f"Invalid value '{text}' for $top query option found. "
        "The $top query option requires a non-negative integer value."
    )
