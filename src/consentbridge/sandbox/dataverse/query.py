"""Collection queries over a table: `$select`, `$filter`, `$orderby`, `$top`, `$count`,
`Prefer: odata.maxpagesize` with an opaque `$skiptoken` in `@odata.nextLink`.

Filters are checked against the table first (unknown columns, literals of the wrong type, string
functions on non-strings → 400, as Microsoft.OData refuses them). A filter that means "column is
one of these values" on an indexed column is answered from the index; anything else scans.
Without `$orderby` rows come in primary-key order and the paging cookie remembers the last key,
so rows created between pages are neither skipped nor repeated.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from urllib.parse import quote

from consentbridge.sandbox.dataverse import odata
from consentbridge.sandbox.dataverse import odata_eval as ev
from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.errors import bad_query, unknown_property
from consentbridge.sandbox.dataverse.rows import Row
from consentbridge.sandbox.dataverse.tables import Database, Table
from consentbridge.sandbox.dataverse.values import EDM_TYPES

MAX_PAGE_SIZE = 5000
COUNT_LIMIT = 5000
KNOWN_OPTIONS = frozenset(
    {"$select", "$filter", "$orderby", "$top", "$count", "$skiptoken", "$expand", "$format"}
)
_COMPATIBLE = {
    "Edm.String": {"Edm.String"},
    "Edm.Boolean": {"Edm.Boolean"},
    "Edm.Int32": {"Edm.Int32", "Edm.Decimal"},
    "Edm.Int64": {"Edm.Int32", "Edm.Decimal"},
    "Edm.DateTimeOffset": {"Edm.DateTimeOffset", "Edm.Date"},
    "Edm.Guid": {"Edm.Guid", "Edm.String"},
}
_OPERATOR_KINDS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}


@dataclass
class Query:
    select: list[str] | None
    filter: ev.FilterExpr | None
    orderby: list[tuple[str, bool]]
    top: int | None
    count: bool
    cookie: dict[str, Any] | None


def check_options(options: Mapping[str, str], allowed: frozenset[str] = KNOWN_OPTIONS) -> None:
    for name in options:
        if name == "$skip":
            raise bad_query("The query parameter $skip is not supported.")
        if name.startswith("$") and name not in allowed:
            raise bad_query(f"The query parameter {name} is not supported.")
    if options.get("$expand"):
        raise bad_query("The $expand query option is not supported by the sandbox on this table.")


def parse_select(options: Mapping[str, str], schema: s.TableSchema) -> list[str] | None:
    text = options.get("$select")
    if text is None or not text.strip():
        return None
    try:
        names = odata.parse_select(text)
    except odata.ODataQueryError as exc:
        raise bad_query(exc.message) from None
    for name in names:
        column = schema.property(name)
        if column is None or not column.valid_for_read:
            raise unknown_property(name, schema.edm_type)
    return names


def parse_query(options: Mapping[str, str], table: Table, db: Database) -> Query:
    check_options(options)
    schema = table.schema
    select = parse_select(options, schema)
    expr = None
    try:
        if options.get("$filter", "").strip():
            expr = odata.parse_filter(options["$filter"])
        orderby = odata.parse_orderby(options["$orderby"]) if options.get("$orderby") else []
        top = odata.parse_top(options["$top"]) if "$top" in options else None
    except odata.ODataQueryError as exc:
        raise bad_query(exc.message) from None
    if expr is not None:
        FilterChecker(db, schema).check(expr)
    for name, _ in orderby:
        column = schema.property(name)
        if column is None or not column.valid_for_read:
            raise unknown_property(name, schema.edm_type)
    count = options.get("$count", "false").lower()
    if count not in ("true", "false"):
        raise bad_query(f"'{options['$count']}' is not a valid count option.")
    token = options.get("$skiptoken")
    return Query(
        select, expr, orderby, top, count == "true", _read_cookie(token) if token else None
    )


# --- filter checks -------------------------------------------------------------------------


class FilterChecker:
    """Refuses what Microsoft.OData refuses before the query runs: unknown properties,
    comparisons of incompatible types, string functions on non-string columns."""

    def __init__(self, db: Database, schema: s.TableSchema) -> None:
        self.db = db
        self.schema = schema

    def column(self, path: tuple[str, ...]) -> s.Column:
        schema = self.schema
        for segment in path[:-1]:
            navigation = schema.navigations.get(segment)
            if navigation is None:
                raise unknown_property(segment, schema.edm_type)
            schema = self.db.table(navigation.target).schema
        column = schema.property(path[-1])
        if column is None or not column.valid_for_read:
            raise unknown_property(path[-1], schema.edm_type)
        return column

    def check(self, expr: ev.FilterExpr) -> None:
        for path in expr.paths:
            self.column(path)
        # FilterExpr keeps its tree private; the node classes are public in odata_eval.
        stack: list[ev.Node] = [expr._root]
        while stack:
            node = stack.pop()
            if isinstance(node, ev.Compare):
                self._compare(node)
            elif isinstance(node, ev.StringFunction):
                if EDM_TYPES.get(self.column(node.path).type) != "Edm.String":
                    raise bad_query(
                        f"No function signature for the function with name '{node.name}' matches "
                        f"the specified arguments. The function signatures considered are: "
                        f"{node.name}(Edm.String Nullable=true, Edm.String Nullable=true)."
                    )
            elif isinstance(node, ev.BoolProp):
                if self.column(node.path).type != s.BOOLEAN:
                    raise bad_query(
                        "The $filter expression must evaluate to a single boolean value."
                    )
            elif isinstance(node, ev.Not):
                stack.append(node.operand)
            elif isinstance(node, ev.Junction):
                stack.extend(node.operands)

    def _compare(self, node: ev.Compare) -> None:
        sides = (node.left, node.right)
        props = [side for side in sides if isinstance(side, ev.Prop)]
        literals = [side for side in sides if isinstance(side, ev.Literal)]
        if len(props) != 1 or len(literals) != 1 or literals[0].value is None:
            return
        column_type = EDM_TYPES.get(self.column(props[0].path).type, "Edm.String")
        literal_type = literals[0].edm_type
        if literal_type not in _COMPATIBLE.get(column_type, {literal_type}):
            first, second = (
                (column_type, literal_type) if sides[0] is props[0] else (literal_type, column_type)
            )
            raise bad_query(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{first}' and '{second}' for operator kind '{_OPERATOR_KINDS[node.op]}'."
            )


# --- running ---------------------------------------------------------------------------------


@dataclass
class Page:
    rows: list[Row]
    total: int
    next_cookie: dict[str, Any] | None


def matching_rows(table: Table, expr: ev.FilterExpr | None) -> list[Row]:
    """Rows passing the filter, from an index when the filter is an equality on an indexed
    column (the 1,000-id `In` lookups among 50,000 contacts), else by scanning."""
    store = table.store
    if expr is None:
        return list(store)
    lookup = expr.equality_lookup()
    if lookup is not None:
        column = table.schema.property(lookup[0])
        if column is not None and store.is_indexed(lookup[0]) and _folds_exactly(column):
            return store.lookup(lookup[0], lookup[1])
    for name, values in expr.conjunct_lookups():
        column = table.schema.property(name)
        if column is not None and store.is_indexed(name) and _folds_exactly(column):
            candidates = store.lookup(name, values)
            return [row for row in candidates if expr.evaluate(row, table.resolve)]
    return [row for row in store if expr.evaluate(row, table.resolve)]


def _folds_exactly(column: s.Column) -> bool:
    # equality_lookup's contract holds for string, GUID and lookup columns.
    return EDM_TYPES.get(column.type) in ("Edm.String", "Edm.Guid")


def run(
    table: Table, query: Query, page_size: int, restrict: Callable[[Row], bool] | None = None
) -> Page:
    rows = matching_rows(table, query.filter)
    if restrict is not None:
        rows = [row for row in rows if restrict(row)]
    primary = table.schema.primary_id
    if query.orderby:
        rows = ev.sort_rows(rows, [*query.orderby, (primary, False)], table.resolve)
    else:
        rows.sort(key=itemgetter(primary))
    total = len(rows)
    start = 0
    cookie = query.cookie
    if cookie is not None:
        if "last" in cookie and not query.orderby:
            start = bisect.bisect_right([str(r[primary]) for r in rows], str(cookie["last"]))
        else:
            start = int(cookie.get("offset", 0))
    if query.top is not None and cookie is None:
        return Page(rows[: min(query.top, page_size)], total, None)
    page = rows[start : start + page_size]
    more = start + page_size < len(rows)
    next_cookie: dict[str, Any] | None = None
    if more:
        page_number = int(cookie.get("page", 1)) + 1 if cookie else 2
        next_cookie = {"page": page_number}
        if query.orderby:
            next_cookie["offset"] = start + page_size
        else:
            next_cookie["last"] = str(page[-1][primary])
    return Page(page, total, next_cookie)


def page_size_preference(prefer: Mapping[str, str | None]) -> int | None:
    """`odata.maxpagesize` when usable (1…5000; larger values are ignored, as documented)."""
    raw = prefer.get("odata.maxpagesize")
    if raw is None or not re.fullmatch(r"[0-9]{1,9}", raw):
        return None
    size = int(raw)
    return size if 0 < size <= MAX_PAGE_SIZE else None


# --- paging cookies --------------------------------------------------------------------------


def skiptoken(cookie: dict[str, Any]) -> str:
    """A cookie shaped like Dataverse's (`<cookie pagenumber=… pagingcookie=… />`)."""
    inner = base64.urlsafe_b64encode(json.dumps(cookie, separators=(",", ":")).encode()).decode()
    return (
        f'<cookie pagenumber="{cookie.get("page", 2)}" pagingcookie="{inner}" istracking="False" />'
    )


def _read_cookie(token: str) -> dict[str, Any]:
    match = re.search(r'pagingcookie="([A-Za-z0-9_=-]*)"', token)
    try:
        if match is None:
            raise ValueError(token)
        data = json.loads(base64.urlsafe_b64decode(match.group(1)))
        if not isinstance(data, dict):
            raise ValueError(token)
    except (ValueError, binascii.Error):
        raise bad_query("The $skiptoken value is not a valid paging cookie.") from None
    return data


def next_link(
    service_root: str, resource: str, options: Mapping[str, str], cookie: dict[str, Any]
) -> str:
    params = {k: v for k, v in options.items() if k != "$skiptoken"}
    params["$skiptoken"] = skiptoken(cookie)
    encoded = "&".join(f"{k}={quote(v, safe=chr(39) + '(),$:/')}" for k, v in params.items())
    return f"{service_root}{resource}?{encoded}"


def count_value(total: int) -> int:
    return min(total, COUNT_LIMIT)


def iter_props(select: list[str] | None, schema: s.TableSchema) -> Iterator[s.Column]:
    """The readable columns a representation shows, in `$select` order (or schema order)."""
    if select is None:
        yield from (c for c in schema.columns.values() if c.valid_for_read)
        return
    for name in select:
        column = schema.property(name)
        if column is not None:
            yield column
