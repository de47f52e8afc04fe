"""Logical values → the Dataverse Web API JSON encoding of a column's type.

Boolean ``true``/``false``; Picklist/State/Status an option value (int); MultiSelectPicklist a
sorted comma string of option values (``"1,3"``; nothing selected → ``null``); String/Memo a
string within the column's maximum length; DateTime ISO-8601 UTC (``…Z``, whole seconds);
Integer a 32-bit int. Anything else is a ``MappingValueError`` naming column, value and fix —
values are never truncated or guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from consentbridge.mapping.errors import MappingColumnError, MappingValueError, show
from consentbridge.mapping.values import key_of

_INT32 = range(-(2**31), 2**31)
_DIGITS = re.compile(r"[+-]?[0-9]{1,12}\Z")
_EARLIEST_YEAR = 1753  # Dataverse DateTime columns start on 1753-01-01


class AttributeType(StrEnum):
    """Column types a consent mapping can write (Dataverse ``AttributeType`` names)."""

    BOOLEAN = "Boolean"
    PICKLIST = "Picklist"
    STATE = "State"
    STATUS = "Status"
    MULTI_SELECT_PICKLIST = "MultiSelectPicklist"
    STRING = "String"
    MEMO = "Memo"
    DATETIME = "DateTime"
    INTEGER = "Integer"

    @classmethod
    def from_metadata(
        cls, attribute_type: str, attribute_type_name: str | None = None
    ) -> AttributeType:
        """From ``AttributeType`` (and ``AttributeTypeName.Value``) of Dataverse metadata.

        Multi-select choices report ``AttributeType`` ``Virtual`` with the type name
        ``MultiSelectPicklistType``.
        """
        if attribute_type == "Virtual" and attribute_type_name == "MultiSelectPicklistType":
            return cls.MULTI_SELECT_PICKLIST
        try:
            return cls(attribute_type)
        except ValueError:
            supported = ", ".join(member.value for member in cls)
            raise MappingColumnError(
                f"a column of type {attribute_type!r} cannot receive consent values; map a "
                f"column of one of these types instead: {supported}."
            ) from None


_OPTION_TYPES = frozenset({AttributeType.PICKLIST, AttributeType.STATE, AttributeType.STATUS})
_TEXT_TYPES = frozenset({AttributeType.STRING, AttributeType.MEMO})


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """What coercion needs to know about a column (from Dataverse metadata or the sandbox)."""

    logical_name: str
    attribute_type: AttributeType
    #: The option values of a choice column; ``None`` when unknown (not checked then).
    options: frozenset[int] | None = None
    #: The maximum length of a text column; ``None`` when unknown.
    max_length: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.attribute_type, AttributeType):
            kind = AttributeType.from_metadata(str(self.attribute_type))
            object.__setattr__(self, "attribute_type", kind)


def coerce(value: object, column: ColumnSpec) -> object:
    """``value`` in the Web API encoding of ``column``'s type; ``None`` clears the column."""
    kind = column.attribute_type
    if value is None:
        return None
    if isinstance(value, tuple | list):
        return _coerce_many(tuple(value), column)
    if kind is AttributeType.BOOLEAN:
        return _boolean(value, column)
    if kind in _OPTION_TYPES:
        return _option(value, column)
    if kind is AttributeType.MULTI_SELECT_PICKLIST:
        return _multi((value,), value, column)
    if kind in _TEXT_TYPES:
        return _text(value, column)
    if kind is AttributeType.DATETIME:
        return _datetime(value, column)
    return _integer(value, column)


def coerce_row(
    values: Mapping[str, object], columns: Mapping[str, ColumnSpec]
) -> dict[str, object]:
    """Coerce every column of a projected row; a column without a spec is an error."""
    row: dict[str, object] = {}
    for name, value in values.items():
        spec = columns.get(name)
        if spec is None:
            raise MappingValueError(
                f"column {name!r} is not a known contact column; check the property's id "
                "against the table's columns."
            )
        row[name] = coerce(value, spec)
    return row


def _coerce_many(values: tuple[object, ...], column: ColumnSpec) -> object:
    """A selection mapped item by item: several values for one column."""
    kind = column.attribute_type
    if not values:
        return None  # nothing selected clears the column
    if kind is AttributeType.MULTI_SELECT_PICKLIST:
        return _multi(values, values, column)
    if kind in _TEXT_TYPES:
        return _text(key_of(values), column)
    if len(values) == 1:
        return coerce(values[0], column)
    raise _error(
        column,
        values,
        "it holds several values",
        "map it to a MultiSelectPicklist or String column, or map the whole selection to one "
        "value in the transform",
    )


def _boolean(value: object, column: ColumnSpec) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _error(column, value, "a Yes/No column takes true or false", _map_hint('"true"'))


def _option(value: object, column: ColumnSpec) -> int:
    number = _as_int(value)
    if number is None:
        raise _error(
            column, value, "a choice column takes an option value (an integer)", _map_hint("2")
        )
    return _check_option(number, value, column)


def _check_option(number: int, value: object, column: ColumnSpec) -> int:
    if number not in _INT32:
        raise _error(column, value, "it is outside the 32-bit range", "map an option value")
    if column.options is not None and number not in column.options:
        listed = ", ".join(str(option) for option in sorted(column.options)) or "none"
        raise _error(
            column,
            value,
            f"{number} is not one of the column's options ({listed})",
            "map the source value to one of them with a transform",
        )
    return number


def _multi(values: tuple[object, ...], shown: object, column: ColumnSpec) -> str | None:
    numbers: set[int] = set()
    for item in values:
        parts = item.split(",") if isinstance(item, str) else [item]
        for part in parts:
            if isinstance(part, str) and not part.strip():
                continue
            number = _as_int(part.strip() if isinstance(part, str) else part)
            if number is None:
                raise _error(
                    column,
                    shown,
                    "a multi-select choice column takes option values (integers)",
                    _map_hint("1"),
                )
            numbers.add(_check_option(number, shown, column))
    return ",".join(str(number) for number in sorted(numbers)) or None


def _text(value: object, column: ColumnSpec) -> str:
    if isinstance(value, dict | list) or (isinstance(value, float) and not math.isfinite(value)):
        raise _error(column, value, "it is not a single value", "map a key holding a string")
    text = key_of(value)
    if column.max_length is not None and len(text) > column.max_length:
        raise _error(
            column,
            value,
            f"it is {len(text)} characters long, over the column's maximum of {column.max_length}",
            "widen the column or map a shorter value",
        )
    return text


def _datetime(value: object, column: ColumnSpec) -> str:
    moment = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        raise _error(
            column,
            value,
            "a date-time column takes an ISO-8601 date-time",
            "map a value such as 2025-01-31T09:00:00Z",
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a date-time without an offset is taken as UTC
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        moment = moment.replace(year=1)  # shifted past year 1 or 9999: out of range either way
    if moment.year < _EARLIEST_YEAR:
        raise _error(
            column, value, "it is outside Dataverse's date range", "map a date from 1753 to 9999"
        )
    return moment.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _integer(value: object, column: ColumnSpec) -> int:
    number = _as_int(value)
    if number is None:
        raise _error(column, value, "a whole-number column takes an integer", _map_hint("1"))
    if number not in _INT32:
        raise _error(column, value, "it is outside the 32-bit range", "map a smaller number")
    return number


def _as_int(value: object) -> int | None:
    """An int from an int, an integral float or a string of ASCII digits; booleans are not ints."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        return int(value.strip())
    return None


def _map_hint(example: str) -> str:
    return f'map the source value with a transform such as {{"<source value>": {example}}}'


def _error(column: ColumnSpec, value: object, why: str, fix: str) -> MappingValueError:
    return MappingValueError(
        f"column {column.logical_name!r} ({column.attribute_type.value}) cannot take "
        f"{show(value)}: {why}; {fix}."
    )
