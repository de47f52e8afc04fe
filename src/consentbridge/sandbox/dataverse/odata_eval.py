"""What parsed OData query options mean over rows, the way Dataverse's SQL reads them.

The syntax lives in :mod:`.odata`; this module owns the semantics:

* strings compare case- and accent-insensitively (default collation ``Latin1_General_CI_AI``),
  always through :func:`fold`, which callers must also use to key any index;
* a comparison that meets a NULL column is *unknown* (three-valued logic), so ``ne``, ``not`` and
  ``NotIn`` do not return NULL rows; only ``eq null`` / ``ne null`` test for NULL;
* a string literal meets a number, date or GUID column by conversion (``'1'`` equals ``1``);
  values that cannot be compared make the condition unknown, never an exception;
* NULL sorts first ascending and last descending, as in SQL Server.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TypeVar

Path = tuple[str, ...]
Resolver = Callable[[Mapping[str, object], Path], object]
RowT = TypeVar("RowT", bound=Mapping[str, object])


def fold(text: str) -> str:
    """Collation key: equal for strings that SQL Server's ``CI_AI`` collation calls equal."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def resolve_path(row: Mapping[str, object], path: Path) -> object:
    """Default resolver: ``row[a]`` for ``a``, nested mappings for ``a/b`` (expanded lookups)."""
    value: object = row
    for segment in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(segment)
    return value


# --------------------------------------------------------------------------------------------
# Values: one comparable key per kind, so a row value and a literal meet on common ground.
# --------------------------------------------------------------------------------------------

_DECIMAL_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_NUMBER_TYPES = (int, float, Decimal)
_KINDS = ("bool", "num", "datetime", "date", "str")


def as_number(text: str) -> Decimal | None:
    """The number a string literal spells, if it spells one (``'12'``, ``'-1.5'``)."""
    return Decimal(text) if _DECIMAL_RE.fullmatch(text) else None


def as_datetime(value: object) -> datetime | None:
    """An aware datetime (naive ones are UTC, as Dataverse stores them), or None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:  # upper(): the string may arrive folded, and ISO 8601 wants "T" and "Z"
            return as_datetime(datetime.fromisoformat(value.upper()))
        except ValueError:
            return None
    return None


def _key(value: object) -> tuple[str, object]:
    """A (kind, key) pair; keys of one kind are mutually comparable."""
    if isinstance(value, bool):
        return ("bool", int(value))
    if isinstance(value, _NUMBER_TYPES):
        return ("num", value)
    if isinstance(value, datetime):
        return ("datetime", as_datetime(value))
    if isinstance(value, date):
        return ("date", value)
    if isinstance(value, uuid.UUID):
        return ("str", str(value))
    return ("str", fold(value if isinstance(value, str) else str(value)))


def _convert(text: str, kind: str) -> object:
    if kind == "num":
        return as_number(text)
    parsed = as_datetime(text) if kind in ("datetime", "date") else None
    if kind == "date" and parsed is not None:
        return parsed.date()
    return parsed


def _coerce(a: tuple[str, object], b: tuple[str, object]) -> tuple[object, object] | None:
    """Bring two keys to one kind, converting a string side if it reads as the other kind."""
    (kind_a, key_a), (kind_b, key_b) = a, b
    if kind_a == kind_b:
        return key_a, key_b
    if kind_a == "str" and isinstance(key_a, str):
        converted = _convert(key_a, kind_b)
        return None if converted is None else (converted, key_b)
    if kind_b == "str" and isinstance(key_b, str):
        converted = _convert(key_b, kind_a)
        return None if converted is None else (key_a, converted)
    if {kind_a, kind_b} == {"date", "datetime"}:
        first, second = (k.date() if isinstance(k, datetime) else k for k in (key_a, key_b))
        return first, second
    return None


_ORDER_TESTS: dict[str, Callable[[int], bool]] = {
    "eq": lambda c: c == 0,
    "ne": lambda c: c != 0,
    "gt": lambda c: c > 0,
    "ge": lambda c: c >= 0,
    "lt": lambda c: c < 0,
    "le": lambda c: c <= 0,
}
COMPARISON_OPERATORS = frozenset(_ORDER_TESTS)


def _compare(op: str, left: object, right: object) -> bool | None:
    pair = _coerce(_key(left), _key(right))
    if pair is None:
        return None
    a, b = pair
    try:
        order = (a > b) - (a < b)  # type: ignore[operator]
    except TypeError:
        return None
    return _ORDER_TESTS[op](order)


# --------------------------------------------------------------------------------------------
# Syntax tree. Conditions evaluate to True / False / None (unknown); operands to a value.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: object
    edm_type: str  # for error messages: Edm.String, Edm.Int32, ...


@dataclass(frozen=True, slots=True)
class Prop:
    path: Path


Operand = Literal | Prop


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Operand
    right: Operand

    def eval(self, row: Mapping[str, object], resolve: Resolver) -> bool | None:
        left, right = _value(self.left, row, resolve), _value(self.right, row, resolve)
        if _is_null(self.left) or _is_null(self.right):
            # `x eq null` is SQL's IS NULL: the only comparison that can be true for NULL.
            if self.op in ("eq", "ne"):
                return (left is None and right is None) == (self.op == "eq")
            return None
        if left is None or right is None:
            return None
        return _compare(self.op, left, right)


@dataclass(frozen=True, slots=True)
class StringFunction:
    name: str  # contains / startswith / endswith
    path: Path
    needle: str  # folded

    def eval(self, row: Mapping[str, object], resolve: Resolver) -> bool | None:
        value = resolve(row, self.path)
        if not isinstance(value, str):
            return None
        haystack = fold(value)
        if self.name == "contains":
            return self.needle in haystack
        if self.name == "startswith":
            return haystack.startswith(self.needle)
        return haystack.endswith(self.needle)


@dataclass(frozen=True, slots=True)
class InList:
    """``Microsoft.Dynamics.CRM.In`` / ``NotIn``: set membership, however many values."""

    path: Path
    values: frozenset[str]  # folded
    numbers: frozenset[Decimal]  # the values that spell numbers, for numeric columns
    negate: bool

    @classmethod
    def of(cls, column: str, values: Iterable[str], negate: bool) -> InList:
        listed = list(values)
        numbers = (as_number(v) for v in listed)
        return cls(
            path=(column,),
            values=frozenset(fold(v) for v in listed),
            numbers=frozenset(n for n in numbers if n is not None),
            negate=negate,
        )

    def eval(self, row: Mapping[str, object], resolve: Resolver) -> bool | None:
        value = resolve(row, self.path)
        if value is None:
            return None
        if isinstance(value, _NUMBER_TYPES) and not isinstance(value, bool):
            number = Decimal(str(value))
            found = number.is_finite() and number in self.numbers
        else:
            found = _key(value)[1] in self.values
        return found != self.negate


@dataclass(frozen=True, slots=True)
class BoolProp:
    """A bare property used as a condition (a Boolean column)."""

    path: Path

    def eval(self, row: Mapping[str, object], resolve: Resolver) -> bool | None:
        value = resolve(row, self.path)
        return value if isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class BoolConst:
    value: bool

    def eval(self, row: Mapping[str, object], resolve: Resolver) -> bool | None:
        return self.value


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition

    def eval(self, row: Mapping[str, object], resolve: Resolver) -> bool | None:
        result = self.operand.eval(row, resolve)
        return None if result is None else not result


@dataclass(frozen=True, slots=True)
class Junction:
    """`and` / `or` over any number of operands, kept flat so long chains never recurse."""

    is_and: bool
    operands: tuple[Condition, ...]

    @classmethod
    def of(cls, is_and: bool, operands: Iterable[Condition]) -> Junction:
        flat: list[Condition] = []
        for operand in operands:
            if isinstance(operand, Junction) and operand.is_and == is_and:
                flat.extend(operand.operands)
            else:
                flat.append(operand)
        return cls(is_and, tuple(flat))

    def eval(self, row: Mapping[str, object], resolve: Resolver) -> bool | None:
        unknown = False
        for operand in self.operands:
            result = operand.eval(row, resolve)
            if result is None:
                unknown = True
            elif result != self.is_and:
                return result  # False decides an `and`, True decides an `or`
        return None if unknown else self.is_and


Condition = Compare | StringFunction | InList | BoolProp | BoolConst | Not | Junction
Node = Condition | Operand


def _value(node: Operand, row: Mapping[str, object], resolve: Resolver) -> object:
    return node.value if isinstance(node, Literal) else resolve(row, node.path)


def _is_null(node: Operand) -> bool:
    return isinstance(node, Literal) and node.value is None


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, Junction):
        return node.operands
    return ()


class FilterExpr:
    """A parsed `$filter`: evaluate it on rows, list what it reads, find an index lookup."""

    __slots__ = ("_root", "paths", "text")

    def __init__(self, text: str, root: Condition) -> None:
        self.text = text
        self._root = root
        # Every property path the filter reads, in order of first appearance.
        self.paths: tuple[Path, ...] = _collect_paths(root)

    @property
    def columns(self) -> tuple[str, ...]:
        """The first segment of every path: the columns of the queried table it reads."""
        return tuple(dict.fromkeys(path[0] for path in self.paths))

    def evaluate(self, row: Mapping[str, object], resolve: Resolver | None = None) -> bool:
        """True if the row matches; unknown (NULL met a comparison) counts as no match."""
        return self._root.eval(row, resolve or resolve_path) is True

    def equality_lookup(self) -> tuple[str, frozenset[str]] | None:
        """``(column, folded values)`` if the filter means "column is one of these strings".

        Holds for ``c eq 'v'``, ``In(PropertyName='c', ...)`` and ``or`` of those on one column,
        with string or GUID literals. Rows then match exactly when ``fold(str(row[c]))`` is in
        the set (for string, GUID and lookup columns), so an index keyed that way can replace
        a scan.
        """
        root = self._root
        parts = root.operands if isinstance(root, Junction) and not root.is_and else (root,)
        column: str | None = None
        values: set[str] = set()
        for part in parts:
            found = _equality_of(part)
            if found is None or (column is not None and found[0] != column):
                return None
            column = found[0]
            values.update(found[1])
        return None if column is None else (column, frozenset(values))

    def conjunct_lookups(self) -> list[tuple[str, frozenset[str]]]:
        """``equality_lookup`` of each operand of a top-level ``and``: every row the filter
        matches is among the rows any one of them selects (then evaluate the whole filter)."""
        root = self._root
        if not (isinstance(root, Junction) and root.is_and):
            return []
        found = (FilterExpr(self.text, operand).equality_lookup() for operand in root.operands)
        return [lookup for lookup in found if lookup is not None]

    def __repr__(self) -> str:
        return f"FilterExpr({self.text!r})"


def _equality_of(node: Condition) -> tuple[str, frozenset[str]] | None:
    if isinstance(node, InList) and not node.negate:
        return node.path[0], node.values
    if isinstance(node, Compare) and node.op == "eq":
        prop, literal = node.left, node.right
        if isinstance(prop, Literal):
            prop, literal = literal, prop
        if (
            isinstance(prop, Prop)
            and len(prop.path) == 1
            and isinstance(literal, Literal)
            and isinstance(literal.value, str | uuid.UUID)
        ):
            return prop.path[0], frozenset([str(_key(literal.value)[1])])
    return None


def _collect_paths(root: Node) -> tuple[Path, ...]:
    found: dict[Path, None] = {}
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Prop | BoolProp | StringFunction | InList):
            found.setdefault(node.path)
        stack.extend(reversed(_children(node)))
    return tuple(found)


# --------------------------------------------------------------------------------------------
# Sorting
# --------------------------------------------------------------------------------------------


def _sort_key(value: object) -> tuple[int, int, object]:
    if value is None:
        return (0, 0, 0)
    kind, key = _key(value)
    if isinstance(key, datetime):
        return (1, _KINDS.index(kind), key.timestamp())
    return (1, _KINDS.index(kind), key)


def sort_rows(
    rows: Iterable[RowT], orderby: Sequence[tuple[str, bool]], resolve: Resolver | None = None
) -> list[RowT]:
    """Rows in `$orderby` order, as SQL Server sorts: NULL first ascending, last descending.

    Strings sort by :func:`fold`; values of different kinds in one column never raise.
    """
    get = resolve or resolve_path
    result = list(rows)
    for name, descending in reversed(orderby):  # stable sorts, least significant key first
        result.sort(key=_column_key(get, (name,)), reverse=descending)
    return result


def _column_key(
    get: Resolver, path: Path
) -> Callable[[Mapping[str, object]], tuple[int, int, object]]:
    return lambda row: _sort_key(get(row, path))
