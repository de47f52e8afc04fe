"""Alternate keys (`EntityKeyMetadata`): definition, the asynchronous index build, and the key
segment of a URL (`contacts(emailaddress1='a@b.c')`, `contacts(<guid>)`).

As in Dataverse, a new key is `Pending` while its index builds (`activation_s`) and then becomes
`Active`, or `Failed` if rows already share values; only an Active key addresses rows or
constrains writes. Keys are per table; the unique index lives in the table's RowStore.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.errors import (
    KEY_NOT_DEFINED,
    DataverseError,
    bad_query,
    invalid_argument,
)
from consentbridge.sandbox.dataverse.rows import RowStore
from consentbridge.sandbox.dataverse.values import now_utc, parse_guid

PENDING = "Pending"
ACTIVE = "Active"
FAILED = "Failed"
KEY_COLUMN_TYPES = frozenset(
    {s.STRING, s.INTEGER, s.BIGINT, s.DATETIME, s.PICKLIST, s.LOOKUP, s.UNIQUEIDENTIFIER}
)
MAX_KEYS = 10
MAX_KEY_COLUMNS = 16
_SCHEMA_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")


@dataclass
class AlternateKey:
    schema_name: str
    display_name: str
    attributes: tuple[str, ...]
    status: str = PENDING
    metadata_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: float = field(default_factory=time.monotonic)
    created_on: str = field(default_factory=now_utc)

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_name": self.schema_name,
            "display_name": self.display_name,
            "attributes": list(self.attributes),
            "status": self.status,
            "metadata_id": self.metadata_id,
            "created_on": self.created_on,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlternateKey:
        return cls(
            schema_name=data["schema_name"],
            display_name=data["display_name"],
            attributes=tuple(data["attributes"]),
            status=data["status"],
            metadata_id=data["metadata_id"],
            created_on=data.get("created_on") or now_utc(),
        )


class KeyRegistry:
    """The alternate keys of one table, and their unique indexes in its RowStore."""

    def __init__(self, schema: s.TableSchema, store: RowStore, activation_s: float) -> None:
        self.schema = schema
        self.store = store
        self.activation_s = activation_s
        self.keys: dict[str, AlternateKey] = {}

    def all(self) -> list[AlternateKey]:
        self.settle()
        return list(self.keys.values())

    def settle(self) -> None:
        """Finish the index builds whose time has come (lazily, on any use of keys)."""
        now = time.monotonic()
        for key in self.keys.values():
            if key.status == PENDING and now - key.created_at >= self.activation_s:
                self._build(key)

    def _build(self, key: AlternateKey) -> None:
        if self.store.duplicates(key.attributes):
            key.status = FAILED
            return
        self.store.add_unique(key.logical_name, key.attributes)
        key.status = ACTIVE

    def create(self, body: dict[str, Any]) -> AlternateKey:
        schema_name = body.get("SchemaName")
        if not isinstance(schema_name, str) or not _SCHEMA_NAME_RE.fullmatch(schema_name):
            raise invalid_argument("The SchemaName of an entity key must be a valid name.")
        attributes = body.get("KeyAttributes")
        if (
            not isinstance(attributes, list)
            or not attributes
            or not all(isinstance(a, str) for a in attributes)
        ):
            raise invalid_argument("KeyAttributes must list the logical names of the key columns.")
        self.settle()
        if any(k.logical_name == schema_name.lower() for k in self.keys.values()):
            raise invalid_argument(f"An entity key named '{schema_name}' already exists.")
        if len(self.keys) >= MAX_KEYS:
            raise invalid_argument(f"A table can have at most {MAX_KEYS} alternate keys.")
        if len(attributes) > MAX_KEY_COLUMNS or len(set(attributes)) != len(attributes):
            raise invalid_argument(
                f"An entity key takes 1 to {MAX_KEY_COLUMNS} distinct attributes."
            )
        for name in attributes:
            column = self.schema.columns.get(name)
            if column is None:
                raise invalid_argument(
                    f"The attribute '{name}' does not exist on entity '{self.schema.logical_name}'."
                )
            if column.type not in KEY_COLUMN_TYPES:
                raise invalid_argument(
                    f"The attribute '{name}' of type {column.type} cannot be part of an entity key."
                )
        wanted = frozenset(attributes)
        if any(frozenset(k.attributes) == wanted for k in self.keys.values()):
            raise invalid_argument("An entity key with the same attributes already exists.")
        key = AlternateKey(
            schema_name=schema_name,
            display_name=_label_text(body.get("DisplayName")) or schema_name,
            attributes=tuple(attributes),
        )
        self.keys[key.logical_name] = key
        if self.activation_s <= 0:
            self._build(key)
        return key

    def delete(self, key: AlternateKey) -> None:
        self.keys.pop(key.logical_name, None)
        self.store.drop_unique(key.logical_name)

    def find(self, text: str) -> AlternateKey | None:
        """A key by `LogicalName='x'` segment text or by MetadataId."""
        self.settle()
        guid = parse_guid(text)
        for key in self.keys.values():
            if guid is not None and key.metadata_id == guid:
                return key
        match = re.fullmatch(r"\s*LogicalName\s*=\s*'([^']*)'\s*", text)
        if match:
            return self.keys.get(match.group(1).lower())
        return None

    def active_for(self, columns: frozenset[str]) -> AlternateKey | None:
        self.settle()
        for key in self.keys.values():
            if key.status == ACTIVE and frozenset(key.attributes) == columns:
                return key
        return None

    def active(self) -> list[AlternateKey]:
        self.settle()
        return [k for k in self.keys.values() if k.status == ACTIVE]

    def restore(self, keys: list[AlternateKey]) -> None:
        for key in keys:
            self.keys[key.logical_name] = key
            if key.status == ACTIVE:
                self.store.add_unique(key.logical_name, key.attributes)
            elif key.status == PENDING:
                self._build(key)

    def not_defined(self, columns: list[str]) -> DataverseError:
        return DataverseError(
            400,
            KEY_NOT_DEFINED,
            f"The key attributes ({', '.join(columns)}) used in the request are not a defined "
            f"key for the {self.schema.logical_name} entity. Define an alternate key on these "
            "attributes, or wait until its index is Active.",
        )


def _label_text(raw: object) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        for key in ("UserLocalizedLabel",):
            label = raw.get(key)
            if isinstance(label, dict) and isinstance(label.get("Label"), str):
                return str(label["Label"])
        labels = raw.get("LocalizedLabels")
        if isinstance(labels, list):
            for label in labels:
                if isinstance(label, dict) and isinstance(label.get("Label"), str):
                    return str(label["Label"])
    return None


# --- key segments ----------------------------------------------------------------------------

_NAME_VALUE_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*")
_BARE_VALUE_RE = re.compile(r"[^,)\s]+")


def parse_key_segment(text: str) -> str | dict[str, object]:
    """The inside of `entityset(...)`: a row id, or the key column → value pairs.

    Values are OData literals: `'text'` (quotes doubled inside), numbers, `true`/`false`,
    GUIDs and `null`.
    """
    guid = parse_guid(text)
    if guid is not None and "=" not in text:
        return guid
    pairs: dict[str, object] = {}
    pos = 0
    while pos < len(text):
        match = _NAME_VALUE_RE.match(text, pos)
        if match is None:
            raise bad_query(f"Bad Request - Error in query syntax: the key '{text}' is not valid.")
        name = match.group(1)
        value, pos = _read_value(text, match.end())
        if name in pairs:
            raise bad_query(f"The key property '{name}' appears more than once in '{text}'.")
        pairs[name] = value
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if pos < len(text):
            if text[pos] != ",":
                raise bad_query(
                    f"Bad Request - Error in query syntax: the key '{text}' is not valid."
                )
            pos += 1
    if not pairs:
        raise bad_query("The key segment is empty.")
    return pairs


def _read_value(text: str, pos: int) -> tuple[object, int]:
    if pos < len(text) and text[pos] == "'":
        out: list[str] = []
        pos += 1
        while True:
            quote = text.find("'", pos)
            if quote < 0:
                raise bad_query(f"There is an unterminated string literal in the key '{text}'.")
            out.append(text[pos:quote])
            if text.startswith("''", quote):
                out.append("'")
                pos = quote + 2
                continue
            return "".join(out), quote + 1
    match = _BARE_VALUE_RE.match(text, pos)
    if match is None:
        raise bad_query(f"Bad Request - Error in query syntax: the key '{text}' is not valid.")
    raw = match.group()
    value: object
    if raw in ("true", "false"):
        value = raw == "true"
    elif raw == "null":
        value = None
    elif re.fullmatch(r"-?[0-9]+", raw):
        value = int(raw)
    else:
        guid = parse_guid(raw)
        if guid is None:
            raise bad_query(f"Unrecognized literal '{raw}' in the key '{text}'.")
        value = guid
    return value, match.end()
