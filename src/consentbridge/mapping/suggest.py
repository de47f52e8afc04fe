"""Help for whoever writes a mapping: every path a consent state can answer (the suggestions of
the console's mapping builder), and one path judged on its own (validation as you type).

Pure, like the rest of ``mapping/``: callers bring the snapshots (from the Didomi API or the
store) and get back plain values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from consentbridge.mapping.errors import MappingPathError
from consentbridge.mapping.grammar import PathKind, PathTarget, parse_path
from consentbridge.mapping.snapshot import ConsentSnapshot


@dataclass(frozen=True, slots=True)
class PathSuggestion:
    """A path seen in a consent state, with what it reads in words."""

    path: str
    describes: str
    value_kind: str


@dataclass(frozen=True, slots=True)
class PathVerdict:
    """One path judged alone: ``error`` is the sentence to show beside the field (``None`` when
    the path is valid); ``readings`` describe what a valid path reads, preferred first."""

    path: str
    error: str | None
    readings: tuple[str, ...] = ()
    value_kinds: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


def check_path(path: str) -> PathVerdict:
    """Judge ``path`` with the mapping grammar (``grammar.parse_path``)."""
    try:
        parsed = parse_path(path)
    except MappingPathError as exc:
        return PathVerdict(path, str(exc))
    readings = tuple(target.describe() for target in parsed.candidates)
    kinds = tuple(sorted({target.value_kind.value for target in parsed.candidates}))
    return PathVerdict(path, None, readings, kinds)


def targets_in(snapshot: ConsentSnapshot) -> list[PathTarget]:
    """Every path target ``snapshot`` holds a value for, in a stable order."""
    targets: list[PathTarget] = []
    for purpose_id, purpose in sorted(snapshot.purposes.items()):
        if purpose.enabled is not None:
            targets.append(PathTarget(PathKind.PURPOSE_ENABLED, purpose=purpose_id))
        if purpose.enabled_li is not None:
            targets.append(PathTarget(PathKind.PURPOSE_ENABLED_LI, purpose=purpose_id))
        for channel in sorted(purpose.channels):
            targets.append(
                PathTarget(PathKind.PURPOSE_CHANNEL, purpose=purpose_id, channel=channel)
            )
        for pref_id, preference in sorted(purpose.preferences.items()):
            targets.append(PathTarget(PathKind.PREFERENCE, purpose=purpose_id, preference=pref_id))
            for channel in sorted(preference.channels):
                targets.append(
                    PathTarget(
                        PathKind.PREFERENCE_CHANNEL,
                        purpose=purpose_id,
                        preference=pref_id,
                        channel=channel,
                    )
                )
        for pref_id, selected in sorted(purpose.values.items()):
            targets.append(PathTarget(PathKind.VALUES, purpose=purpose_id, preference=pref_id))
            for value_id in sorted(v for v in (selected or "").split(",") if v):
                targets.append(
                    PathTarget(
                        PathKind.VALUE_SELECTED,
                        purpose=purpose_id,
                        preference=pref_id,
                        value_id=value_id,
                    )
                )
    for channel in sorted(snapshot.channels):
        targets.append(PathTarget(PathKind.CHANNEL, channel=channel))
    for key in sorted(snapshot.metadata):
        targets.append(PathTarget(PathKind.METADATA, key=key))
    return targets


def suggestions(snapshots: Iterable[ConsentSnapshot]) -> list[PathSuggestion]:
    """The distinct paths of ``snapshots``, sorted by path; ids no path can spell are left out."""
    seen: dict[str, PathSuggestion] = {}
    for snapshot in snapshots:
        for target in targets_in(snapshot):
            try:
                path = target.render()
            except MappingPathError:
                continue
            seen.setdefault(path, PathSuggestion(path, target.describe(), target.value_kind.value))
    return [seen[path] for path in sorted(seen)]
