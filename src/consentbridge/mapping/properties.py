"""``Property`` (one column ← one path, with its transform) and ``PropertyMapping`` (the list).

Both are immutable and validated on construction, so code holding one never re-checks it.
A ``Property`` keeps only the readings of its path that its transform fits: ``"not"`` on an
ambiguous path rules out the comma-list reading, for instance.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from consentbridge.mapping.errors import (
    MappingColumnError,
    MappingConfigError,
    MappingError,
    MappingPathError,
    MappingTransformError,
    Problem,
    show,
)
from consentbridge.mapping.grammar import ParsedPath, PathTarget, parse_path
from consentbridge.mapping.transforms import Transform, check_transform, parse_transform

#: A transform as written in a document: ``"not"`` or ``{"<source>": <column value>, ...}``.
RawTransform = str | Mapping[str, object]

# Dataverse logical names are lower case: a publisher prefix, letters, digits and underscores.
_COLUMN = re.compile(r"[a-z][a-z0-9_]*\Z")
_KEYS = frozenset({"id", "value", "transform"})


@dataclass(frozen=True, slots=True, init=False)
class Property:
    """Write column ``id`` from the Didomi path ``value``, through ``transform`` if given."""

    id: str
    value: str
    transform: Transform | None
    #: The readings of ``value`` that ``transform`` fits, most preferred first.
    path: ParsedPath

    def __init__(
        self, id: str, value: str, transform: RawTransform | Transform | None = None
    ) -> None:
        check_column_name(id)
        parsed = parse_path(value)
        fitted, readings = _fit(parse_transform(transform), parsed)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "transform", fitted)
        object.__setattr__(self, "path", ParsedPath(parsed.text, readings))

    @property
    def candidates(self) -> tuple[PathTarget, ...]:
        return self.path.candidates

    def to_raw(self) -> dict[str, object]:
        """The document form of this property."""
        raw: dict[str, object] = {"id": self.id, "value": self.value}
        if self.transform is not None:
            raw["transform"] = self.transform.to_raw()
        return raw


def check_column_name(name: object) -> str:
    """``name`` if it can be a Dataverse column logical name, else ``MappingColumnError``."""
    if isinstance(name, str) and _COLUMN.match(name):
        return name
    raise MappingColumnError(
        f"{show(name)} is not a column logical name; use the lower-case logical name of a "
        "contact column, such as donotbulkemail or new_smsoptin."
    )


def _fit(
    transform: Transform | None, parsed: ParsedPath
) -> tuple[Transform | None, tuple[PathTarget, ...]]:
    """The transform (normalised) and the readings it fits; the first reading's error if none."""
    if transform is None:
        return None, parsed.candidates
    fitted: Transform | None = None
    readings: list[PathTarget] = []
    first_error: MappingTransformError | None = None
    for target in parsed.candidates:
        try:
            checked = check_transform(transform, target.value_kind)
        except MappingTransformError as error:
            first_error = first_error or error
            continue
        fitted = fitted or checked
        readings.append(target)
    if fitted is None:
        assert first_error is not None  # parse_path never returns zero candidates
        raise first_error
    return fitted, tuple(readings)


@dataclass(frozen=True, slots=True)
class PropertyMapping:
    """The ``properties`` of an integration: each column mapped at most once."""

    properties: tuple[Property, ...]

    def __post_init__(self) -> None:
        problems = _duplicates(list(enumerate(prop.id for prop in self.properties)))
        if problems:
            raise MappingConfigError(problems)

    @classmethod
    def from_raw(cls, raw: object) -> PropertyMapping:
        """Build from a document's ``properties`` list, reporting every problem at once.

        Problem paths are relative to the list (``[1].transform``); prefix them with the
        list's own location (``config.properties``).
        """
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise MappingConfigError(
                [Problem("", 'properties must be a list of {"id", "value", "transform"} objects.')]
            )
        properties: list[tuple[int, Property]] = []
        problems: list[Problem] = []
        for index, item in enumerate(raw):
            try:
                properties.append((index, _property(item, f"[{index}]", problems)))
            except MappingError as error:
                where = f"[{index}].{error.field}" if error.field else f"[{index}]"
                problems.append(Problem(where, str(error)))
        problems.extend(_duplicates([(index, prop.id) for index, prop in properties]))
        if problems:
            raise MappingConfigError(problems)
        return cls(tuple(prop for _, prop in properties))

    def __iter__(self) -> Iterator[Property]:
        return iter(self.properties)

    def __len__(self) -> int:
        return len(self.properties)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(prop.id for prop in self.properties)


def _property(item: object, where: str, problems: list[Problem]) -> Property:
    if not isinstance(item, Mapping):
        raise MappingError('a property must be an object {"id", "value", "transform"?}; fix it so.')
    for key in sorted(set(item) - _KEYS, key=str):
        problems.append(
            Problem(
                f"{where}.{key}",
                f"unknown key {key!r}; a property has only id, value and transform.",
            )
        )
    if "id" not in item:
        raise MappingColumnError("the property has no 'id'; add the column's logical name.")
    if "value" not in item:
        raise MappingPathError("the property has no 'value'; add the Didomi path to read.")
    path = item["value"]
    if not isinstance(path, str):
        raise MappingPathError(
            f"value is {show(path)}; write the Didomi path as a string, such as "
            "consents_purposes_<purpose>_enabled."
        )
    # parse_transform checks the transform's shape at run time, whatever its static type.
    transform = cast("RawTransform | None", item.get("transform"))
    return Property(id=check_column_name(item["id"]), value=path, transform=transform)


def _duplicates(columns: list[tuple[int, str]]) -> list[Problem]:
    """A problem for every column mapped a second time."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for index, column in columns:
        if column in first:
            problems.append(
                Problem(
                    f"[{index}].id",
                    f"column {column!r} is already mapped by properties[{first[column]}]; "
                    "map each column once.",
                )
            )
        else:
            first[column] = index
    return problems
