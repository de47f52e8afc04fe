"""OData v4 query options as Dataverse parses them: `$filter`, `$select`, `$orderby`, `$top`.

This module owns the syntax and is the public face; what a parsed filter means over rows
(collation, NULLs, sorting) lives in :mod:`.odata_eval` and is re-exported here.

`$filter` grammar, loosest first: ``or`` > ``and`` > comparison (``eq ne gt ge lt le``) >
``not`` > primary. As in OData, ``not`` binds tighter than a comparison, so ``not a eq 1`` is an
error and ``not (a eq 1)`` is meant. Primaries: parentheses, literals (``'it''s'``, ``12``,
``1.5``, ``true``, ``null``, bare GUIDs, ``2024-01-01T00:00:00Z``, ``2024-01-01``), property
paths (``name``, ``_parentcustomerid_value``, ``sdkmessageid/name``), ``contains``,
``startswith``, ``endswith``, and ``Microsoft.Dynamics.CRM.In`` / ``NotIn``.

Errors are :class:`ODataQueryError` only, worded like Microsoft.OData (the library Dataverse
parses URLs with) with 0-based positions. Unknown columns are the caller's to report, from
:attr:`FilterExpr.paths`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from .odata_eval import (
    COMPARISON_OPERATORS,
    BoolConst,
    BoolProp,
    Compare,
    Condition,
    FilterExpr,
    InList,
    Junction,
    Literal,
    Node,
    Not,
    Path,
    Prop,
    Resolver,
    StringFunction,
    as_datetime,
    fold,
    resolve_path,
    sort_rows,
)

__all__ = [
    "MAX_DEPTH",
    "FilterExpr",
    "ODataQueryError",
    "Resolver",
    "fold",
    "parse_filter",
    "parse_orderby",
    "parse_select",
    "parse_top",
    "resolve_path",
    "sort_rows",
]

# Nesting allowed for parentheses and `not`. Microsoft.OData allows 800, but each level costs this
# recursive-descent parser several Python frames; no real filter comes near 100.
MAX_DEPTH = 100


class ODataQueryError(ValueError):
    """A query option Dataverse would refuse with HTTP 400."""

    code = "0x80060888"  # the error code Dataverse gives OData URI parsing errors

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
     (?P<ws>[ \t\r\n]+)
    |(?P<guid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?![\w-])
    |(?P<datetime>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?
                  (?:Z|[+-][0-9]{2}:[0-9]{2})?)(?![\w:.+-])
    |(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})(?![\w:.+-])
    |(?P<number>-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)(?![\w.])
    |(?P<ident>[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)
    |(?P<punct>[()\[\],=/])
    """,
    re.VERBOSE | re.ASCII | re.IGNORECASE,
)
_EDM_TYPES = {
    "string": "Edm.String",
    "guid": "Edm.Guid",
    "datetime": "Edm.DateTimeOffset",
    "date": "Edm.Date",
    "number": "Edm.Decimal",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ws, string, guid, datetime, date, number, ident, punct, end
    text: str
    pos: int
    value: object = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "'":
            token = _read_string(text, pos)
        elif text[pos] == '"':
            token = _read_json_string(text, pos)
        else:
            match = _TOKEN_RE.match(text, pos)
            if match is None:
                raise ODataQueryError(
                    f"Syntax error: character '{text[pos]}' is not valid at position {pos} "
                    f"in '{text}'."
                )
            kind, raw = match.lastgroup or "", match.group()
            token = _Token(kind, raw, pos, _literal_value(kind, raw, pos, text))
        if token.kind != "ws":
            tokens.append(token)
        pos += len(token.text)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> _Token:
    """The quoted string at `start`, where `''` stands for one quote."""
    pos = start + 1
    while True:
        quote = text.find("'", pos)
        if quote < 0:
            raise ODataQueryError(
                f"There is an unterminated string literal at position {len(text)} in '{text}'."
            )
        if not text.startswith("''", quote):
            raw = text[start : quote + 1]
            return _Token("string", raw, start, raw[1:-1].replace("''", "'"))
        pos = quote + 2


_JSON = json.JSONDecoder()


def _read_json_string(text: str, start: int) -> _Token:
    """A double-quoted JSON string: only valid as an element of the JSON array that
    `PropertyValues` takes (MS Learn "Filter rows", "Manage single quotes"); elsewhere the
    parser refuses the token like any other unexpected one."""
    try:
        value, end = _JSON.raw_decode(text, start)
    except json.JSONDecodeError:
        raise ODataQueryError(
            f"There is an unterminated string literal at position {start} in '{text}'."
        ) from None
    return _Token("json_string", text[start:end], start, value)


def _literal_value(kind: str, raw: str, pos: int, text: str) -> object:
    try:
        if kind == "guid":
            return uuid.UUID(raw)
        if kind == "datetime":
            return as_datetime(datetime.fromisoformat(raw.upper()))
        if kind == "date":
            return date.fromisoformat(raw)
        if kind == "number":
            return Decimal(raw) if re.search("[.eE]", raw) else int(raw)
    except (ValueError, ArithmeticError):  # bad dates, > 4300 digits, huge exponents
        raise ODataQueryError(
            f"Unrecognized '{_EDM_TYPES[kind]}' literal '{raw}' at '{pos}' in '{text}'."
        ) from None
    return None


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

_KEYWORDS = frozenset({"and", "or", "not", "true", "false", "null", *COMPARISON_OPERATORS})
_STRING_FUNCTIONS = frozenset({"contains", "startswith", "endswith"})
_QUERY_FUNCTIONS = {"Microsoft.Dynamics.CRM.In": False, "Microsoft.Dynamics.CRM.NotIn": True}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_filter(text: str) -> FilterExpr:
    """Parse a `$filter` value (already URL-decoded)."""
    return FilterExpr(text, _Parser(text).parse())


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def parse(self) -> Condition:
        node = self._or()
        if self._peek().kind != "end":
            raise self._error(f"Syntax error at position {self._peek().pos}")
        if isinstance(node, Literal) and not isinstance(node.value, bool):
            raise ODataQueryError("The $filter expression must evaluate to a single boolean value.")
        return self._condition(node, "$filter")

    # Tokens ----------------------------------------------------------------------------------

    def _error(self, message: str) -> ODataQueryError:
        return ODataQueryError(f"{message} in '{self.text}'.")

    def _peek(self) -> _Token:
        return self.tokens[self.index]

    def _advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def _at(self, kind: str, text: str) -> bool:
        token = self._peek()
        return token.kind == kind and token.text == text

    def _skip(self, punct: str) -> bool:
        if self._at("punct", punct):
            self._advance()
            return True
        return False

    def _expect(self, punct: str, expected: str) -> None:
        token = self._advance()
        if token.kind != "punct" or token.text != punct:
            raise self._error(f"{expected} expected at position {token.pos}")

    def _nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error(
                f"Recursion depth exceeded allowed limit of {MAX_DEPTH} at position {pos}"
            )

    # Grammar, loosest first ------------------------------------------------------------------

    def _or(self) -> Node:
        return self._junction("or", self._and)

    def _and(self) -> Node:
        return self._junction("and", self._comparison)

    def _junction(self, word: str, operand: Callable[[], Node]) -> Node:
        first = operand()
        if not self._at("ident", word):
            return first
        operands = [self._condition(first, word)]
        while self._at("ident", word):
            self._advance()
            operands.append(self._condition(operand(), word))
        return Junction.of(word == "and", operands)

    def _comparison(self) -> Node:
        left = self._unary()
        op = self._peek()
        if op.kind != "ident" or op.text not in COMPARISON_OPERATORS:
            return left
        self._advance()
        right = self._unary()
        if not isinstance(left, Literal | Prop) or not isinstance(right, Literal | Prop):
            raise self._error(
                f"The operator '{op.text}' at position {op.pos} needs a property or a literal "
                "on each side"
            )
        if self._peek().kind == "ident" and self._peek().text in COMPARISON_OPERATORS:
            raise self._error(f"Syntax error at position {self._peek().pos}")
        return Compare(op.text, left, right)

    def _unary(self) -> Node:
        if not self._at("ident", "not"):
            return self._primary()
        token = self._advance()
        self._nest(token.pos)
        operand = self._unary()
        self.depth -= 1
        return Not(self._condition(operand, "not"))

    def _primary(self) -> Node:
        token = self._advance()
        if token.kind == "punct" and token.text == "(":
            self._nest(token.pos)
            node = self._or()
            self.depth -= 1
            self._expect(")", "')' or operator")
            return node
        if token.kind in _EDM_TYPES:
            integer = isinstance(token.value, int)
            return Literal(token.value, "Edm.Int32" if integer else _EDM_TYPES[token.kind])
        if token.kind != "ident":
            raise self._error(f"Expression expected at position {token.pos}")
        if token.text in ("true", "false", "null"):
            value = None if token.text == "null" else token.text == "true"
            return Literal(value, "Edm.Boolean" if value is not None else "null")
        if self._at("punct", "("):
            return self._function(token)
        if token.text in _KEYWORDS or "." in token.text:
            raise self._error(f"Expression expected at position {token.pos}")
        return Prop(self._path(token))

    def _path(self, first: _Token) -> Path:
        segments = [first.text]
        while self._skip("/"):
            token = self._advance()
            if not self._is_name(token):
                raise self._error(f"Syntax error at position {token.pos}")
            segments.append(token.text)
        return tuple(segments)

    @staticmethod
    def _is_name(token: _Token) -> bool:
        return token.kind == "ident" and token.text not in _KEYWORDS and "." not in token.text

    # Functions -------------------------------------------------------------------------------

    def _function(self, name: _Token) -> Condition:
        self._advance()  # "("
        if name.text in _STRING_FUNCTIONS:
            return self._string_function(name)
        if name.text in _QUERY_FUNCTIONS:
            return self._in(name, negate=_QUERY_FUNCTIONS[name.text])
        if name.text.startswith("Microsoft.Dynamics.CRM."):
            raise self._error(
                f"The query function '{name.text}' at position {name.pos} is not supported by "
                "the Dataverse sandbox (In and NotIn are)"
            )
        raise ODataQueryError(
            f"An unknown function with name '{name.text}' was found. This may also be a "
            "function import or a key lookup on a navigation property, which is not allowed."
        )

    def _string_function(self, name: _Token) -> StringFunction:
        subject = self._advance()
        if not self._is_name(subject):
            raise self._error(
                f"The first argument of '{name.text}' at position {subject.pos} must be a property"
            )
        path = self._path(subject)
        self._expect(",", "','")
        needle = self._advance()
        if needle.kind != "string":
            raise self._error(
                f"The second argument of '{name.text}' at position {needle.pos} must be a "
                "string literal"
            )
        self._expect(")", "')'")
        return StringFunction(name.text, path, fold(str(needle.value)))

    def _in(self, name: _Token, negate: bool) -> InList:
        column: str | None = None
        values: list[str] | None = None
        while True:
            key = self._advance()
            if key.kind != "ident" or key.text not in ("PropertyName", "PropertyValues"):
                raise self._error(
                    f"'{name.text}' takes PropertyName and PropertyValues, not '{key.text}' "
                    f"at position {key.pos}"
                )
            if (column if key.text == "PropertyName" else values) is not None:
                raise self._error(f"Syntax error at position {key.pos}")
            self._expect("=", "'='")
            if key.text == "PropertyName":
                column = self._in_column()
            else:
                values = self._in_values()
            if self._skip(")"):
                break
            self._expect(",", "')' or ','")
        if column is None or values is None:
            raise self._error(
                f"'{name.text}' at position {name.pos} needs both PropertyName and PropertyValues"
            )
        return InList.of(column, values, negate)

    def _in_column(self) -> str:
        token = self._advance()
        if token.kind != "string" or not _NAME_RE.fullmatch(str(token.value)):
            raise self._error(
                f"PropertyName at position {token.pos} must be a column name in quotes"
            )
        return str(token.value)

    def _in_values(self) -> list[str]:
        """A JSON array of strings. Microsoft.OData's JSON reader also takes single-quoted
        strings, but knows no `''` escape: a doubled quote ends the string, so
        `['O''Brian']` fails as in Dataverse and a quote needs `["O'Brian"]`."""
        self._expect("[", "'['")
        values: list[str] = []
        while True:
            token = self._advance()
            if token.kind not in ("string", "json_string"):
                raise self._error(
                    f"PropertyValues at position {token.pos} must list string literals, "
                    """such as ["a","b"] or ['1','2']"""
                )
            if token.kind == "string" and "''" in token.text:
                raise ODataQueryError(
                    "Invalid JSON. A comma character ',' was expected in scope 'Array'. Every "
                    "two elements in an array and properties of an object must be separated by "
                    "commas."
                )
            values.append(str(token.value))
            if self._skip("]"):
                return values
            self._expect(",", "']' or ','")

    def _condition(self, node: Node, context: str) -> Condition:
        """A node used where a condition is needed: a bare property is a Boolean column."""
        if isinstance(node, Prop):
            return BoolProp(node.path)
        if isinstance(node, Literal):
            if isinstance(node.value, bool):
                return BoolConst(node.value)
            raise self._error(f"A '{node.edm_type}' literal cannot be a condition of '{context}'")
        return node


# --------------------------------------------------------------------------------------------
# $select, $orderby, $top
# --------------------------------------------------------------------------------------------

_ORDER_ITEM_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s+(asc|desc))?\s*")


def _items(text: str) -> Iterable[tuple[int, str]]:
    """Comma-separated items with the position each starts at."""
    pos = 0
    for item in text.split(","):
        yield pos, item
        pos += len(item) + 1


def parse_select(text: str) -> list[str]:
    """Column names of `$select`, in order, without repeats."""
    names: dict[str, None] = {}
    for pos, item in _items(text):
        name = item.strip()
        if not _NAME_RE.fullmatch(name):
            raise ODataQueryError(f"Syntax error at position {pos} in '{text}'.")
        names.setdefault(name)
    return list(names)


def parse_orderby(text: str) -> list[tuple[str, bool]]:
    """`$orderby` as ``(column, descending)`` pairs."""
    order: list[tuple[str, bool]] = []
    for pos, item in _items(text):
        match = _ORDER_ITEM_RE.fullmatch(item)
        if match is None:
            raise ODataQueryError(f"Syntax error at position {pos} in '{text}'.")
        order.append((match.group(1), match.group(2) == "desc"))
    return order


def parse_top(text: str) -> int:
    """`$top` as a non-negative integer."""
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise ODataQueryError(
            f"Invalid value '{text}' for $top query option found. "
            "The $top query option requires a non-negative integer value."
        )
    return int(text)
