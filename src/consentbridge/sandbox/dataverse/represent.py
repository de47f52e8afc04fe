"""Rows as the Web API returns them: `@odata.etag` first, the selected (or all readable)
columns, the primary key always, and — when `Prefer: odata.include-annotations` asks —
formatted values of choice columns and the logical name behind lookups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.query import iter_props
from consentbridge.sandbox.dataverse.rows import Row

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"


def etag(row: Mapping[str, object]) -> str:
    return f'W/"{row.get("versionnumber")}"'


class Annotations:
    """Which annotations `odata.include-annotations` asked for."""

    def __init__(self, preference: str | None) -> None:
        patterns = [p.strip() for p in (preference or "").split(",") if p.strip()]
        self.patterns = patterns

    def wants(self, name: str) -> bool:
        for pattern in self.patterns:
            if pattern in ("*", name):
                return True
            if pattern.endswith(".*") and name.startswith(pattern[:-1]):
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.patterns)


def formatted_value(column: s.Column, value: object) -> str | None:
    if value is None:
        return None
    if column.type == s.BOOLEAN:
        wanted = 1 if value else 0
        return next((o.label for o in column.options if o.value == wanted), None)
    if column.type in (s.PICKLIST, s.STATE, s.STATUS):
        return next((o.label for o in column.options if o.value == value), None)
    if column.type == s.MULTI_SELECT and isinstance(value, str):
        labels = {str(o.value): o.label for o in column.options}
        return "; ".join(labels.get(v, v) for v in value.split(","))
    return None


def represent(
    row: Row,
    schema: s.TableSchema,
    select: list[str] | None,
    annotations: Annotations | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"@odata.etag": etag(row)}
    for column in iter_props(select, schema):
        name = column.property_name
        value = row.get(name)
        if annotations:
            _annotate(out, column, name, value, annotations)
        out[name] = value
    primary = schema.primary_id
    if primary not in out:
        out[primary] = row.get(primary)
    return out


def _annotate(
    out: dict[str, Any], column: s.Column, name: str, value: object, annotations: Annotations
) -> None:
    if annotations.wants(FORMATTED):
        text = formatted_value(column, value)
        if text is not None:
            out[f"{name}@{FORMATTED}"] = text
    if (
        column.type in s.LOOKUP_TYPES
        and value is not None
        and annotations.wants(LOOKUP_LOGICAL_NAME)
    ):
        out[f"{name}@{LOOKUP_LOGICAL_NAME}"] = column.targets[0] if column.targets else None
