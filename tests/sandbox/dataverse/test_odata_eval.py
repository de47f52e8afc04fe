"""What a parsed filter and `$orderby` mean over rows: collation, NULLs, In, index lookups."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentbridge.sandbox.dataverse.odata import fold, parse_filter, resolve_path, sort_rows


def matches(text: str, **row: object) -> bool:
    return parse_filter(text).evaluate(row)


# --- collation ------------------------------------------------------------------------------


def test_string_comparison_ignores_case_and_accents() -> None:
    assert matches("lastname eq 'MÜLLER'", lastname="muller")
    assert matches("contains(fullname,'josé')", fullname="Jose Garcia")
    assert not matches("lastname eq 'Muller'", lastname="Mueller")


def test_string_ordering_ignores_case() -> None:
    assert matches("lastname gt 'a'", lastname="B")
    assert not matches("lastname lt 'A'", lastname="a")
    assert matches("lastname le 'A'", lastname="a")


def test_fold_is_the_collation_key() -> None:
    assert fold("Zoë.O'Brien@Example.COM") == "zoe.o'brien@example.com"
    assert fold("STRASSE") == fold("straße")


# --- NULL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email eq null", True),
        ("null eq email", True),
        ("email ne null", False),
        ("email eq 'x'", False),
        ("email ne 'x'", False),  # as in SQL: a NULL column is not "different from 'x'"
        ("not (email eq 'x')", False),
        ("email gt null", False),
        ("contains(email,'x')", False),
        ("not contains(email,'x')", False),
        ("Microsoft.Dynamics.CRM.NotIn(PropertyName='email',PropertyValues=['x'])", False),
        ("email eq 'x' or email eq null", True),
        ("not (email eq 'x') or true", True),
        ("not (email eq 'x' and false)", True),
        ("email ne 'x' and true", False),  # unknown and true: unknown
        ("not (email eq 'x' or false)", False),  # unknown or false: unknown, and so is its not
    ],
)
def test_null_column_follows_sql_three_valued_logic(text: str, expected: bool) -> None:
    assert matches(text, email=None) is expected


def test_missing_column_reads_as_null() -> None:
    assert matches("email eq null")
    assert not matches("email ne 'x'")


def test_ne_null_finds_set_values() -> None:
    assert matches("email ne null", email="")


# --- types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("n eq 1", Decimal("1.000"), True),
        ("n gt 1.5", 2, True),
        ("n ge 2", 1.999, False),
        ("n eq '7'", 7, True),  # a quoted number meets a numeric column
        ("n gt 'abc'", 7, False),  # incomparable: no match, no exception
        ("n eq true", 1, False),  # Boolean and number are different kinds
        ("d gt 2024-01-01T00:00:00Z", "2024-06-01T08:00:00Z", True),
        ("d lt 2024-01-01T00:00:00Z", datetime(2023, 12, 31, 23, 0), True),  # naive is UTC
        ("d eq 2024-01-01", datetime(2024, 1, 1, 9, 30, tzinfo=UTC), True),
        ("d eq 2024-01-01", "2024-01-01", True),
        ("d gt 2024-01-01", date(2023, 1, 1), False),
        ("g eq 0a6e5e3f-8f2b-4c2a-9d6c-1b2a3c4d5e6f", uuid.UUID(int=0), False),
        ("flag", "yes", False),  # a bare non-Boolean column is never true
    ],
)
def test_values_compare_by_kind(text: str, value: object, expected: bool) -> None:
    column = text.split(" ")[0]
    assert matches(text, **{column: value}) is expected


def test_columns_compare_with_columns() -> None:
    assert matches(
        "modifiedon gt createdon",
        createdon="2024-01-01T00:00:00Z",
        modifiedon=datetime(2024, 2, 1, tzinfo=UTC),
    )


# --- In -------------------------------------------------------------------------------------


def test_in_matches_numbers_and_guids_given_as_strings() -> None:
    in_numbers = "Microsoft.Dynamics.CRM.In(PropertyName='code',PropertyValues=['1','2.50'])"
    assert matches(in_numbers, code=1)
    assert matches(in_numbers, code=Decimal("2.5"))
    assert not matches(in_numbers, code=3)
    contact = uuid.uuid4()
    in_ids = (
        "Microsoft.Dynamics.CRM.In(PropertyName='contactid',"
        f"PropertyValues=['{str(contact).upper()}'])"
    )
    assert matches(in_ids, contactid=contact)


def test_in_with_thousands_of_values_scans_fifty_thousand_rows_quickly() -> None:
    emails = [f"user{i}@example.com" for i in range(50_000)]
    wanted = emails[::10]  # 5,000 values
    listed = ",".join(f"'{e.upper()}'" for e in wanted)
    expr = parse_filter(
        f"Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=[{listed}])"
    )
    rows = [{"emailaddress1": e} for e in emails]
    started = time.perf_counter()
    found = [row for row in rows if expr.evaluate(row)]
    assert len(found) == 5_000
    assert time.perf_counter() - started < 5.0  # a list scan per row would take minutes


# --- navigation -----------------------------------------------------------------------------


def test_default_resolver_walks_expanded_lookups() -> None:
    expr = parse_filter("sdkmessageid/name eq 'update'")
    assert expr.evaluate({"sdkmessageid": {"name": "Update"}})
    assert not expr.evaluate({"sdkmessageid": None})
    assert not expr.evaluate({"sdkmessageid": "not-a-mapping"})
    assert resolve_path({"a": {"b": {"c": 3}}}, ("a", "b", "c")) == 3


def test_custom_resolver_gets_each_path() -> None:
    seen: list[tuple[str, ...]] = []
    messages = {"m1": {"name": "Update"}}

    def resolve(row: Mapping[str, object], path: tuple[str, ...]) -> object:
        seen.append(path)
        if path == ("sdkmessageid", "name"):
            return messages[str(row["_sdkmessageid_value"])]["name"]
        return row.get(path[0])

    expr = parse_filter("sdkmessageid/name eq 'Update' and primaryobjecttypecode eq 'contact'")
    row = {"_sdkmessageid_value": "m1", "primaryobjecttypecode": "contact"}
    assert expr.evaluate(row, resolve=resolve)
    assert seen == [("sdkmessageid", "name"), ("primaryobjecttypecode",)]


# --- equality lookup ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("emailaddress1 eq 'A@x.com'", ("emailaddress1", {"a@x.com"})),
        ("'A@x.com' eq emailaddress1", ("emailaddress1", {"a@x.com"})),
        ("(emailaddress1 eq 'a') or (emailaddress1 eq 'B')", ("emailaddress1", {"a", "b"})),
        (
            "emailaddress1 eq 'a' or Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',"
            "PropertyValues=['b','c'])",
            ("emailaddress1", {"a", "b", "c"}),
        ),
        (
            "contactid eq 0A6E5E3F-8F2B-4C2A-9D6C-1B2A3C4D5E6F",
            ("contactid", {"0a6e5e3f-8f2b-4c2a-9d6c-1b2a3c4d5e6f"}),
        ),
        ("emailaddress1 eq 'a' or fullname eq 'b'", None),
        ("emailaddress1 eq 'a' and fullname eq 'b'", None),
        ("emailaddress1 ne 'a'", None),
        ("emailaddress1 eq null", None),
        ("statecode eq 0", None),
        ("emailaddress1 eq 'a' or contains(emailaddress1,'b')", None),
        ("Microsoft.Dynamics.CRM.NotIn(PropertyName='emailaddress1',PropertyValues=['b'])", None),
        ("sdkmessageid/name eq 'Update'", None),
        ("emailaddress1 eq fullname", None),
    ],
)
def test_equality_lookup_recognises_only_exact_membership(
    text: str, expected: tuple[str, set[str]] | None
) -> None:
    found = parse_filter(text).equality_lookup()
    assert found == (None if expected is None else (expected[0], frozenset(expected[1])))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "msdynmkt_contactpointvalue eq 'A@x.io' and _msdynmkt_purposeid_value eq "
            "0A6E5E3F-8F2B-4C2A-9D6C-1B2A3C4D5E6F and msdynmkt_contactpointtype eq 534120000",
            [
                ("msdynmkt_contactpointvalue", {"a@x.io"}),
                ("_msdynmkt_purposeid_value", {"0a6e5e3f-8f2b-4c2a-9d6c-1b2a3c4d5e6f"}),
            ],
        ),
        ("emailaddress1 eq 'a' or fullname eq 'b'", []),
        ("emailaddress1 eq 'a'", []),
        (
            "(emailaddress1 eq 'a' or emailaddress1 eq 'b') and statecode eq 0",
            [
                ("emailaddress1", {"a", "b"}),
            ],
        ),
    ],
)
def test_conjunct_lookups_name_each_indexable_operand_of_an_and(
    text: str, expected: list[tuple[str, set[str]]]
) -> None:
    found = parse_filter(text).conjunct_lookups()
    assert found == [(column, frozenset(values)) for column, values in expected]


_EMAILS = st.sampled_from(["a@x.com", "A@X.com", "b@x.com", "é@x.com", "e@x.com", "o'b@x.com"])


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_EMAILS, min_size=1, max_size=4), row_value=st.none() | _EMAILS)
def test_equality_lookup_agrees_with_evaluate(values: list[str], row_value: str | None) -> None:
    quoted = [v.replace("'", "''") for v in values]
    text = " or ".join(f"emailaddress1 eq '{v}'" for v in quoted[:-1])
    # PropertyValues is a JSON array: a value with a quote is double-quoted, not doubled.
    last_in = (
        "Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',"
        f"PropertyValues=[{json.dumps(values[-1])}])"
    )
    expr = parse_filter(f"{text} or {last_in}" if text else last_in)
    lookup = expr.equality_lookup()
    assert lookup is not None
    column, keys = lookup
    indexed = row_value is not None and fold(str(row_value)) in keys
    assert expr.evaluate({column: row_value}) is indexed


# --- sorting --------------------------------------------------------------------------------


def test_nulls_sort_first_ascending_and_last_descending() -> None:
    rows: list[dict[str, object]] = [{"n": "b"}, {"n": None}, {"n": "A"}, {}, {"n": "c"}]
    assert [r.get("n") for r in sort_rows(rows, [("n", False)])] == [None, None, "A", "b", "c"]
    assert [r.get("n") for r in sort_rows(rows, [("n", True)])] == ["c", "b", "A", None, None]


def test_sort_by_several_columns_keeps_later_keys_as_tie_breakers() -> None:
    rows = [
        {"last": "smith", "first": "b", "id": 1},
        {"last": "Adams", "first": "z", "id": 2},
        {"last": "Smith", "first": "a", "id": 3},
    ]
    ordered = sort_rows(rows, [("last", True), ("first", False)])
    assert [r["id"] for r in ordered] == [3, 1, 2]


def test_sort_with_mixed_kinds_and_datetimes_does_not_raise() -> None:
    rows: list[dict[str, object]] = [
        {"v": datetime(2024, 1, 2, tzinfo=UTC)},
        {"v": 3},
        {"v": "x"},
        {"v": datetime(2024, 1, 1)},
        {"v": True},
    ]
    assert [r["v"] for r in sort_rows(rows, [("v", False)])] == [
        True,
        3,
        datetime(2024, 1, 1),
        datetime(2024, 1, 2, tzinfo=UTC),
        "x",
    ]
