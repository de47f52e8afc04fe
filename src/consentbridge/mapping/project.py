"""Didomi → Dataverse: read each property's path in a snapshot and apply its transform.

``resolve`` picks the reading of an ambiguous path (the first, in preference order, whose ids are
all present in the snapshot); ``lookup`` reads it; ``project`` does both for every property and
leaves out columns whose source is absent or null, so an unknown choice never overwrites the CRM.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from consentbridge.mapping.grammar import ParsedPath, PathKind, PathTarget, parse_path
from consentbridge.mapping.properties import Property
from consentbridge.mapping.snapshot import ConsentSnapshot, PurposeState
from consentbridge.mapping.transforms import apply_transform
from consentbridge.mapping.values import selection_items

#: ``(found, value)``: ``found`` is false when an id the reading names is not in the snapshot.
Lookup = tuple[bool, object]
_NOT_FOUND: Lookup = (False, None)


def project(properties: Iterable[Property], snapshot: ConsentSnapshot) -> dict[str, object]:
    """Column → logical value (transformed, not yet coerced) for every property with a value.

    Raises ``MappingValueError`` when a transform cannot map the value it reads.
    """
    columns: dict[str, object] = {}
    for prop in properties:
        target = resolve(prop.candidates, snapshot)
        _, value = lookup(target, snapshot)
        if value is None:
            continue  # absent or null: write nothing for this column
        columns[prop.id] = apply_transform(prop.transform, value, target.value_kind, column=prop.id)
    return columns


def read_path(path: str | ParsedPath | Property, snapshot: ConsentSnapshot) -> object:
    """The value a path reads in ``snapshot`` before any transform; ``None`` if absent or null."""
    if isinstance(path, Property):
        candidates = path.candidates
    else:
        candidates = (parse_path(path) if isinstance(path, str) else path).candidates
    return lookup(resolve(candidates, snapshot), snapshot)[1]


def resolve(candidates: Sequence[PathTarget], snapshot: ConsentSnapshot | None) -> PathTarget:
    """The first reading whose ids are all present in ``snapshot``; else the first reading."""
    if snapshot is not None:
        for target in candidates:
            if lookup(target, snapshot)[0]:
                return target
    return candidates[0]


def lookup(target: PathTarget, snapshot: ConsentSnapshot) -> Lookup:
    """Read one reading of a path in a snapshot."""
    kind = target.kind
    if kind is PathKind.ORGANIZATION_USER_ID:
        user_id = snapshot.organization_user_id
        return (user_id is not None, user_id)
    if kind is PathKind.METADATA:
        return _entry(snapshot.metadata, target.key)
    if kind is PathKind.CHANNEL:
        return _entry(snapshot.channels, target.channel)
    purpose = snapshot.purposes.get(target.purpose or "")
    if purpose is None:
        return _NOT_FOUND
    return _lookup_in_purpose(target, purpose)


def _lookup_in_purpose(target: PathTarget, purpose: PurposeState) -> Lookup:
    kind = target.kind
    if kind is PathKind.PURPOSE_ENABLED:
        return (True, purpose.enabled)
    if kind is PathKind.PURPOSE_ENABLED_LI:
        return (True, purpose.enabled_li)
    if kind is PathKind.PURPOSE_CHANNEL:
        return _entry(purpose.channels, target.channel)
    if kind in (PathKind.PREFERENCE, PathKind.PREFERENCE_CHANNEL):
        preference = purpose.preferences.get(target.preference or "")
        if preference is None:
            return _NOT_FOUND
        if kind is PathKind.PREFERENCE:
            return (True, preference.enabled)
        return _entry(preference.channels, target.channel)
    found, selection = _entry(purpose.values, target.preference)
    if kind is PathKind.VALUES or not found or selection is None:
        return (found, selection)
    assert isinstance(selection, str)
    return (True, target.value_id in selection_items(selection))


def _entry(entries: Mapping[str, object], key: str | None) -> Lookup:
    if key is None or key not in entries:
        return _NOT_FOUND
    return (True, entries[key])
