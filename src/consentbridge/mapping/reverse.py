"""Dataverse → Didomi: turn changed column values back into a consent event's content.

Each changed, mapped column is read back through the inverse of its transform to the Didomi choice
its path names; the choices are merged into one ``consents`` fragment (plus user ``metadata``) for
``POST /v1/consents/events``. A column whose mapping cannot be inverted is reported as one-way;
a value that cannot be sent (a cleared choice, two columns disagreeing about one choice, a
value toggle without the current selection) is reported as skipped. Nothing is guessed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consentbridge.mapping.errors import MappingValueError, show
from consentbridge.mapping.grammar import PathKind, PathTarget, ValueKind
from consentbridge.mapping.project import lookup, resolve
from consentbridge.mapping.properties import Property
from consentbridge.mapping.snapshot import ConsentSnapshot
from consentbridge.mapping.transforms import Negation, ValueMap, inverse
from consentbridge.mapping.values import (
    canonical_selection,
    join_selection,
    key_of,
    selection_items,
)


@dataclass(frozen=True, slots=True)
class ReverseResult:
    """What a Dataverse change means for Didomi, and which columns it could not carry."""

    organization_user_id: str
    #: ``{"purposes": [...], "channels": [...]}``, each key only when non-empty.
    consents: dict[str, object] = field(default_factory=dict)
    #: User metadata to merge (from ``metadata_<key>`` paths).
    metadata: dict[str, object] = field(default_factory=dict)
    #: Column → why its mapping only works from Didomi to Dataverse.
    one_way: dict[str, str] = field(default_factory=dict)
    #: Column → why this particular value was not sent.
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to send to Didomi."""
        return not self.consents and not self.metadata

    def event_body(self) -> dict[str, object]:
        """The body of ``POST /v1/consents/events`` (the caller adds ``id`` and ``regulation``)."""
        user: dict[str, object] = {"organization_user_id": self.organization_user_id}
        if self.metadata:
            user["metadata"] = dict(self.metadata)
        return {"user": user, "consents": self.consents}


def one_way_reason(prop: Property) -> str | None:
    """Why ``prop`` cannot carry changes from Dataverse back to Didomi, or ``None`` if it can."""
    if all(target.kind is PathKind.ORGANIZATION_USER_ID for target in prop.candidates):
        return "organization_user_id identifies the user and is never changed from Dataverse"
    if prop.transform is not None:
        reason = inverse(prop.transform).reason
        if reason is not None:
            return f"its transform is not one-to-one: {reason}"
    return None


def one_way_columns(properties: Iterable[Property]) -> dict[str, str]:
    """Column → reason, for every property that only maps from Didomi to Dataverse."""
    reasons = {prop.id: one_way_reason(prop) for prop in properties}
    return {column: reason for column, reason in reasons.items() if reason is not None}


def reverse_project(
    properties: Iterable[Property],
    changed: Mapping[str, object],
    *,
    organization_user_id: str,
    current: ConsentSnapshot | None = None,
) -> ReverseResult:
    """Map changed Dataverse column values (Web API encoding) back to Didomi.

    ``current`` is the user's present Didomi state, if known: it resolves ambiguous paths the
    same way ``project`` does, and supplies the selection that ``_values_<pref>_<value>``
    columns toggle. Columns of ``changed`` that no property maps are ignored. Raises
    ``MappingValueError`` for a value the column's mapping cannot read back.
    """
    one_way: dict[str, str] = {}
    skipped: dict[str, str] = {}
    choices = _Choices()
    for prop in properties:
        if prop.id not in changed:
            continue
        reason = one_way_reason(prop)
        if reason is not None:
            one_way[prop.id] = reason
            continue
        target = resolve(prop.candidates, current)
        value, skip = _read_back(prop, target, changed[prop.id])
        if skip is not None:
            skipped[prop.id] = skip
        else:
            choices.add(target, value, prop.id)
    assigned = choices.settle(current, skipped)
    return ReverseResult(
        organization_user_id,
        consents=_fragment(assigned),
        metadata={target.key: v for target, v in assigned.items() if target.key is not None},
        one_way=one_way,
        skipped=skipped,
    )


def _read_back(prop: Property, target: PathTarget, raw: object) -> tuple[object, str | None]:
    """``(source value, None)``, or ``(None, reason)`` when the value is not to be sent."""
    kind, transform = target.value_kind, prop.transform
    if isinstance(raw, list | tuple) and kind is ValueKind.SELECTION:
        raw = ",".join(key_of(item) for item in raw)  # a multi-select given as a list of options
    if isinstance(transform, ValueMap):
        back = inverse(transform).transform
        assert isinstance(back, ValueMap)  # one_way_reason ruled out non-invertible maps
        found, source = back.lookup(key_of(raw))
        if found:
            return _typed(str(source), kind), None
        if kind is ValueKind.SELECTION and isinstance(raw, str | None):
            return _per_item(prop.id, back, raw), None
    elif isinstance(transform, Negation):
        flag = _as_bool(raw)
        if flag is not None:
            return not flag, None
    elif kind is ValueKind.SELECTION:
        if raw is None or (isinstance(raw, str | int) and not isinstance(raw, bool)):
            return canonical_selection("" if raw is None else str(raw)), None
    elif kind is ValueKind.BOOLEAN:
        flag = _as_bool(raw)
        if flag is not None:
            return flag, None
    elif raw is not None and not isinstance(raw, dict | list):
        return raw, None
    if raw is None:
        return None, "the column was cleared, and Didomi has no way to clear a choice"
    raise MappingValueError(
        f"column {prop.id!r} holds {show(raw)}, which its mapping cannot read back into "
        f"{target.describe()}; add it to the transform or stop editing this column in Dataverse."
    )


def _per_item(column: str, back: ValueMap, raw: str | None) -> str:
    """A multi-select value mapped back option by option."""
    sources: list[str] = []
    for item in [] if raw is None else raw.split(","):
        if not item.strip():
            continue
        found, source = back.lookup(item.strip())
        if not found:
            raise MappingValueError(
                f"column {column!r} holds option {item.strip()!r}, which its transform does not "
                "map back; add the option's value to the transform."
            )
        sources.extend(selection_items(str(source)))
    return join_selection(sources)


def _typed(source: str, kind: ValueKind) -> object:
    """A value-map key back in the type of the path's value."""
    if kind is ValueKind.BOOLEAN:
        return source == "true"
    if kind is ValueKind.SELECTION:
        return canonical_selection(source)
    return source


def _as_bool(raw: object) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if raw in ("true", "false"):
        return raw == "true"
    return None


class _Choices:
    """The Didomi choices a change makes, with the columns that make each (to spot conflicts)."""

    def __init__(self) -> None:
        self.values: dict[PathTarget, dict[object, list[str]]] = defaultdict(dict)
        # (purpose, preference) -> value id -> selected? -> columns
        self.toggles: dict[tuple[str, str], dict[str, dict[bool, list[str]]]] = defaultdict(
            lambda: defaultdict(dict)
        )

    def add(self, target: PathTarget, value: object, column: str) -> None:
        if target.kind is PathKind.VALUE_SELECTED:
            assert target.purpose and target.preference and target.value_id
            by_value = self.toggles[(target.purpose, target.preference)][target.value_id]
            by_value.setdefault(bool(value), []).append(column)
        else:
            # Values read back are JSON scalars, so they can key the disagreement check.
            self.values[target].setdefault(value, []).append(column)

    def settle(
        self, current: ConsentSnapshot | None, skipped: dict[str, str]
    ) -> dict[PathTarget, object]:
        """One value per choice; every column of a disagreement goes to ``skipped``."""
        assigned: dict[PathTarget, object] = {}
        for target, by_value in self.values.items():
            if len(by_value) == 1:
                assigned[target] = next(iter(by_value))
            else:
                _conflict(by_value.values(), target, skipped)
        for (purpose, preference), toggles in self.toggles.items():
            selection = PathTarget(PathKind.VALUES, purpose=purpose, preference=preference)
            self._apply_toggles(selection, toggles, assigned, current, skipped)
        return assigned

    def _apply_toggles(
        self,
        selection: PathTarget,
        toggles: dict[str, dict[bool, list[str]]],
        assigned: dict[PathTarget, object],
        current: ConsentSnapshot | None,
        skipped: dict[str, str],
    ) -> None:
        toggle_columns = [c for by in toggles.values() for cs in by.values() for c in cs]
        if any(len(by) > 1 for by in toggles.values()):
            _conflict([toggle_columns], selection, skipped)
            return
        wanted = {value_id: next(iter(by)) for value_id, by in toggles.items()}
        if selection in assigned:  # a column maps the whole selection too: they must agree
            items = set(selection_items(str(assigned[selection])))
            if any((value_id in items) != on for value_id, on in wanted.items()):
                columns = self.values[selection][assigned[selection]]
                del assigned[selection]
                _conflict([columns, toggle_columns], selection, skipped)
            return
        base = lookup(selection, current)[1] if current is not None else None
        if not isinstance(base, str):
            for column in toggle_columns:
                skipped[column] = (
                    f"setting one value of {selection.describe()} needs the user's current "
                    "selection, which is not known"
                )
            return
        items = {item for item in selection_items(base) if wanted.get(item, True)}
        assigned[selection] = join_selection(items | {v for v, on in wanted.items() if on})


def _conflict(groups: Iterable[list[str]], target: PathTarget, skipped: dict[str, str]) -> None:
    columns = sorted({column for group in groups for column in group})
    for column in columns:
        others = ", ".join(repr(other) for other in columns if other != column)
        skipped[column] = (
            f"it disagrees with column(s) {others} about {target.describe()}, so neither is sent"
        )


def _fragment(assigned: Mapping[PathTarget, object]) -> dict[str, object]:
    """The ``consents`` body for the assigned choices, sorted by id for stable event ids."""
    purposes: dict[str, dict[str, Any]] = {}
    channels: dict[str, object] = {}
    for target, value in assigned.items():
        kind = target.kind
        if kind is PathKind.CHANNEL:
            channels[str(target.channel)] = value
            continue
        if target.purpose is None:
            continue  # metadata
        purpose = purposes.setdefault(target.purpose, {"id": target.purpose})
        if kind is PathKind.PURPOSE_ENABLED:
            purpose["enabled"] = value
        elif kind is PathKind.PURPOSE_ENABLED_LI:
            purpose["enabled_li"] = value
        elif kind is PathKind.PURPOSE_CHANNEL:
            purpose.setdefault("channels", {})[target.channel] = value
        elif kind is PathKind.VALUES:
            purpose.setdefault("values", {})[target.preference] = {"value": value}
        else:
            preferences = purpose.setdefault("preferences", {})
            pref = preferences.setdefault(target.preference, {"id": target.preference})
            if kind is PathKind.PREFERENCE:
                pref["enabled"] = value
            else:
                pref.setdefault("channels", {})[target.channel] = value
    fragment: dict[str, object] = {}
    if purposes:
        fragment["purposes"] = [_finish_purpose(purposes[key]) for key in sorted(purposes)]
    if channels:
        fragment["channels"] = _channel_list(channels)
    return fragment


def _finish_purpose(purpose: dict[str, Any]) -> dict[str, Any]:
    if "channels" in purpose:
        purpose["channels"] = _channel_list(purpose["channels"])
    if "values" in purpose:
        purpose["values"] = dict(sorted(purpose["values"].items()))
    if "preferences" in purpose:
        preferences = purpose["preferences"]
        purpose["preferences"] = [preferences[key] for key in sorted(preferences)]
        for pref in purpose["preferences"]:
            if "channels" in pref:
                pref["channels"] = _channel_list(pref["channels"])
    return purpose


def _channel_list(channels: Mapping[str, object]) -> list[dict[str, object]]:
    return [{"id": key, "enabled": channels[key]} for key in sorted(channels)]
