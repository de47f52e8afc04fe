"""Type checks on write: each JSON value of a create/update body is checked against its column
and turned into the stored form, the form the Web API returns it in.

Stored forms: Boolean `bool`; Picklist/State/Status/Integer/BigInt `int`; MultiSelectPicklist
the comma string `"1,3"` (ascending, no repeats); DateTime `"YYYY-MM-DDTHH:MM:SSZ"` (UTC, whole
seconds, as Dataverse keeps it); Uniqueidentifier and lookups a lowercase GUID string.

Wrong JSON types and unreadable values are payload errors (`0x80048d19`), as Microsoft.OData
reports them before Dataverse sees the row; an option outside the choice is `0x8004431A` and a
string over its maximum length `0x80044331`, which Dataverse's own validation raises.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.errors import (
    PICKLIST_OUT_OF_RANGE,
    VALIDATION,
    DataverseError,
    payload_error,
)

Checker = Callable[[s.Column, Any, s.TableSchema], Any]

EDM_TYPES = {
    s.STRING: "Edm.String",
    s.MEMO: "Edm.String",
    s.ENTITY_NAME: "Edm.String",
    s.MULTI_SELECT: "Edm.String",
    s.BOOLEAN: "Edm.Boolean",
    s.PICKLIST: "Edm.Int32",
    s.STATE: "Edm.Int32",
    s.STATUS: "Edm.Int32",
    s.INTEGER: "Edm.Int32",
    s.BIGINT: "Edm.Int64",
    s.DATETIME: "Edm.DateTimeOffset",
    s.UNIQUEIDENTIFIER: "Edm.Guid",
    s.LOOKUP: "Edm.Guid",
    s.OWNER: "Edm.Guid",
}
INT32 = (-(2**31), 2**31 - 1)


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return "[object]" if isinstance(value, dict) else "[array]"
    return str(value)


def _wrong_type(column: s.Column, value: Any, table: s.TableSchema) -> DataverseError:
    return payload_error(
        table.entity_set,
        f"Cannot convert the literal '{_literal(value)}' to the expected type "
        f"'{EDM_TYPES.get(column.type, 'Edm.String')}'.",
    )


def _string(column: s.Column, value: Any, table: s.TableSchema) -> Any:
    if not isinstance(value, str):
        raise _wrong_type(column, value, table)
    if column.max_length is not None and len(value) > column.max_length:
        raise DataverseError(
            400,
            VALIDATION,
            f"A validation error occurred.  The length of the '{column.logical_name}' attribute "
            f"of the '{table.logical_name}' entity exceeded the maximum allowed length of "
            f"'{column.max_length}'.",
        )
    return value


def _boolean(column: s.Column, value: Any, table: s.TableSchema) -> Any:
    if not isinstance(value, bool):
        raise _wrong_type(column, value, table)
    return value


def _out_of_range(column: s.Column, value: object, table: s.TableSchema) -> DataverseError:
    accepted = ",".join(str(o.value) for o in column.options)
    return DataverseError(
        400,
        PICKLIST_OUT_OF_RANGE,
        f"A validation error occurred. The value '{value}' of '{column.logical_name}' on record "
        f"of type '{table.logical_name}' is outside the valid range. Accepted Values: {accepted}",
    )


def _integer(column: s.Column, value: Any, table: s.TableSchema) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(column, value, table)
    if column.type != s.BIGINT and not INT32[0] <= value <= INT32[1]:
        raise _wrong_type(column, value, table)
    return value


def _choice(column: s.Column, value: Any, table: s.TableSchema) -> Any:
    number = _integer(column, value, table)
    if number not in column.option_values:
        raise _out_of_range(column, number, table)
    return number


def _multi_select(column: s.Column, value: Any, table: s.TableSchema) -> Any:
    if not isinstance(value, str):
        raise _wrong_type(column, value, table)
    if not value.strip():
        return None
    chosen: set[int] = set()
    for part in value.split(","):
        try:
            number = int(part.strip())
        except ValueError:
            raise _wrong_type(column, value, table) from None
        if number not in column.option_values:
            raise _out_of_range(column, number, table)
        chosen.add(number)
    return ",".join(str(n) for n in sorted(chosen))


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 date or date-time as aware UTC, or None."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _datetime(column: s.Column, value: Any, table: s.TableSchema) -> Any:
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        raise _wrong_type(column, value, table)
    return format_datetime(moment)


def _guid(column: s.Column, value: Any, table: s.TableSchema) -> Any:
    if not isinstance(value, str):
        raise _wrong_type(column, value, table)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _wrong_type(column, value, table) from None


CHECKERS: dict[str, Checker] = {
    s.STRING: _string,
    s.MEMO: _string,
    s.ENTITY_NAME: _string,
    s.BOOLEAN: _boolean,
    s.PICKLIST: _choice,
    s.STATE: _choice,
    s.STATUS: _choice,
    s.MULTI_SELECT: _multi_select,
    s.INTEGER: _integer,
    s.BIGINT: _integer,
    s.DATETIME: _datetime,
    s.UNIQUEIDENTIFIER: _guid,
}


def check_value(column: s.Column, value: Any, table: s.TableSchema) -> Any:
    """The stored form of `value` for `column`, or a DataverseError (None clears)."""
    if value is None:
        return None
    checker = CHECKERS.get(column.type)
    if checker is None:  # lookups are written with @odata.bind, never by value
        raise payload_error(
            table.entity_set,
            f"The property '{column.logical_name}' does not exist on type "
            f"'{table.edm_type}'. Make sure to only use property names that are defined by the "
            "type or mark the type as open type.",
        )
    return checker(column, value, table)


def unknown_column(name: str, table: s.TableSchema) -> DataverseError:
    return payload_error(
        table.entity_set,
        f"The property '{name}' does not exist on type '{table.edm_type}'. Make sure to only use "
        "property names that are defined by the type or mark the type as open type.",
    )


def parse_guid(text: str) -> str | None:
    """A canonical lowercase GUID, or None (braces allowed, as Dataverse accepts them)."""
    try:
        return str(uuid.UUID(text.strip().strip("{}")))
    except ValueError:
        return None


def now_utc() -> str:
    return format_datetime(datetime.now(UTC))
