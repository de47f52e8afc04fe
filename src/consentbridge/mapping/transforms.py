"""Transforms between a path's value and a column's value: ``"not"`` and value maps.

A transform is parsed from the document once (``parse_transform``), checked against the kind of
value its path reads (``check_transform``), applied forward (``apply_transform``) and, for the
Dataverse → Didomi direction, inverted (``inverse``). Value maps are keyed by the string form of
the source value (``values.key_of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consentbridge.mapping.errors import MappingTransformError, MappingValueError, show
from consentbridge.mapping.grammar import ValueKind
from consentbridge.mapping.values import canonical_selection, key_of, selection_items

#: What a value map may produce: the JSON scalars a Dataverse column can take.
Target = bool | int | str | None

_KIND_TEXT = {
    ValueKind.BOOLEAN: "true/false",
    ValueKind.SELECTION: "a comma list of value ids",
    ValueKind.TEXT: "a string",
    ValueKind.ANY: "a metadata value",
}


@dataclass(frozen=True, slots=True)
class Negation:
    """The ``"not"`` transform: true ↔ false; null and absent stay as they are."""

    def to_raw(self) -> str:
        return "not"


NOT = Negation()


@dataclass(frozen=True, slots=True)
class ValueMap:
    """A value map: source value (string form) → column value. Keys are unique."""

    entries: tuple[tuple[str, Target], ...]

    @classmethod
    def of(cls, mapping: Mapping[str, Target]) -> ValueMap:
        return cls(tuple(mapping.items()))

    def as_dict(self) -> dict[str, Target]:
        return dict(self.entries)

    def to_raw(self) -> dict[str, Target]:
        return self.as_dict()

    def lookup(self, key: str) -> tuple[bool, Target]:
        """``(True, target)`` if ``key`` is mapped, else ``(False, None)``."""
        for source, target in self.entries:
            if source == key:
                return True, target
        return False, None


Transform = Negation | ValueMap


@dataclass(frozen=True, slots=True)
class Inversion:
    """The inverse of a transform, or why there is none (exactly one of the two is set)."""

    transform: Transform | None
    reason: str | None = None


def parse_transform(raw: object) -> Transform | None:
    """Read a document's ``transform``: absent/``None``, ``"not"``, or a value map object."""
    if raw is None or isinstance(raw, Negation | ValueMap):
        return raw
    if isinstance(raw, str):
        if raw == "not":
            return NOT
        raise MappingTransformError(
            f'transform {show(raw)} is not known; use "not" or a value map such as '
            '{"true": 1, "false": 2}.'
        )
    if not isinstance(raw, Mapping):
        raise MappingTransformError(
            f'transform must be "not" or an object mapping source values to column values, '
            f"not {type(raw).__name__}."
        )
    if not raw:
        raise MappingTransformError(
            "transform is an empty value map; list the source values, "
            'as in {"true": 1, "false": 2}.'
        )
    entries: list[tuple[str, Target]] = []
    for key, target in raw.items():
        if not isinstance(key, str):
            raise MappingTransformError(
                f"transform key {show(key)} is not a string; write source values as strings."
            )
        if target is not None and not isinstance(target, bool | int | str):
            raise MappingTransformError(
                f"transform maps {key!r} to {show(target)}; a column value must be an integer, "
                "a string, true, false or null."
            )
        entries.append((key, target))
    return ValueMap(tuple(entries))


def check_transform(transform: Transform, kind: ValueKind) -> Transform:
    """``transform`` made ready for a path of ``kind``, or ``MappingTransformError`` if unfit.

    On comma-list paths the keys are put in canonical form (``"b, a"`` → ``"a,b"``).
    """
    if isinstance(transform, Negation):
        if kind in (ValueKind.BOOLEAN, ValueKind.ANY):
            return transform
        raise MappingTransformError(
            f'transform "not" needs a true/false value, but the path reads {_KIND_TEXT[kind]}; '
            "use a value map instead."
        )
    if kind is ValueKind.BOOLEAN:
        for key, _ in transform.entries:
            if key not in ("true", "false"):
                raise MappingTransformError(
                    f"transform key {key!r} can never match because the path reads true/false; "
                    'use the keys "true" and "false".'
                )
        return transform
    if kind is ValueKind.SELECTION:
        return _check_selection_map(transform)
    return transform


def _check_selection_map(transform: ValueMap) -> ValueMap:
    entries: dict[str, Target] = {}
    for key, target in transform.entries:
        canonical = canonical_selection(key)
        if canonical in entries:
            raise MappingTransformError(
                f"transform keys {canonical!r} and {key!r} name the same selection; keep one."
            )
        # A per-item target of null would silently drop an item; only "nothing selected" may
        # clear the column.
        if target is None and canonical:
            raise MappingTransformError(
                f'transform maps {key!r} to null, which only the empty selection "" may do; '
                "map it to a column value."
            )
        entries[canonical] = target
    return ValueMap.of(entries)


def apply_transform(
    transform: Transform | None, value: object, kind: ValueKind, *, column: str
) -> object:
    """The column's logical value for a (non-null) source value; ``MappingValueError`` if none."""
    if transform is None:
        return value
    if isinstance(transform, Negation):
        if isinstance(value, bool):
            return not value
        raise MappingValueError(
            f'column {column!r} reads {show(value)}, but transform "not" needs true or false; '
            "remove the transform or use a value map."
        )
    if isinstance(value, dict | list):
        raise MappingValueError(
            f"column {column!r} reads {show(value)}, which a value map cannot match; "
            "map a metadata key that holds a single value."
        )
    found, target = transform.lookup(key_of(value))
    if found:
        return target
    if kind is ValueKind.SELECTION and isinstance(value, str):
        return _apply_per_item(transform, value, column)
    raise MappingValueError(
        f"column {column!r} reads {show(value)}, which its transform does not map; "
        f'add "{key_of(value)}": <column value> to the transform.'
    )


def _apply_per_item(transform: ValueMap, value: str, column: str) -> tuple[Target, ...]:
    """Map a selection value id by value id (for multi-select columns)."""
    targets: list[Target] = []
    missing: list[str] = []
    for item in selection_items(value):
        found, target = transform.lookup(item)
        if found:
            targets.append(target)
        else:
            missing.append(item)
    if missing:
        raise MappingValueError(
            f"column {column!r} reads the selection {show(value)}, but its transform maps "
            f"neither the whole selection nor the value id(s) {', '.join(map(repr, missing))}; "
            "add them to the transform."
        )
    return tuple(targets)


def inverse(transform: Transform) -> Inversion:
    """The transform that maps column values back, or the reason there is none.

    ``"not"`` is its own inverse; a value map inverts only if no two sources share a target (by
    string form, so ``1`` and ``"1"`` collide). The inverse of a value map is keyed by the string
    form of the column value and yields the source key.
    """
    if isinstance(transform, Negation):
        return Inversion(transform)
    back: dict[str, str] = {}
    for source, target in transform.entries:
        key = key_of(target)
        if key in back:
            return Inversion(
                None,
                f"{back[key]!r} and {source!r} both map to {show(target)}, so a column value "
                "cannot tell which was chosen",
            )
        back[key] = source
    return Inversion(ValueMap.of(back))
