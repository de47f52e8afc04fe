"""Warnings about mappings that are valid but likely to surprise (for ``integrations validate``).

Errors stop a document; these do not. They flag paths with several readings, ids that look like a
misspelt keyword, and value maps that leave a true/false value unmapped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from consentbridge.mapping.errors import Problem
from consentbridge.mapping.grammar import PathTarget, ValueKind, parse_path
from consentbridge.mapping.properties import Property
from consentbridge.mapping.transforms import ValueMap

# A part of an id that is one slip away from a keyword of the grammar.
_NEAR_MISSES = {
    "preference": "preferences",
    "value": "values",
    "purpose": "purposes",
    "enable": "enabled",
    "consent": "consents",
}
# Metadata keys are free text, so only consent ids are checked.
_ID_FIELDS = ("purpose", "preference", "channel", "value_id")


def lint_path(path: str) -> list[str]:
    """Warnings about ``path``; ``MappingPathError`` if it is malformed."""
    return _path_warnings(path, parse_path(path).candidates)


def lint_property(prop: Property) -> list[str]:
    """Warnings about one property: its path (as its transform narrows it) and its value map."""
    warnings = _path_warnings(prop.value, prop.candidates)
    transform = prop.transform
    if isinstance(transform, ValueMap) and any(
        target.value_kind is ValueKind.BOOLEAN for target in prop.candidates
    ):
        keys = {key for key, _ in transform.entries}
        for missing in sorted({"true", "false"} - keys):
            warnings.append(
                f'the transform has no "{missing}" key, so a {missing} choice will fail to sync; '
                f'add "{missing}": <column value>.'
            )
    return warnings


def lint_properties(properties: Iterable[Property]) -> list[Problem]:
    """Every warning of every property, located like validation problems (``[1].value``)."""
    problems: list[Problem] = []
    for index, prop in enumerate(properties):
        for warning in lint_property(prop):
            field = "transform" if warning.startswith("the transform") else "value"
            problems.append(Problem(f"[{index}].{field}", warning))
    return problems


def _path_warnings(path: str, candidates: Sequence[PathTarget]) -> list[str]:
    warnings: list[str] = []
    if len(candidates) > 1:
        readings = "; ".join(
            f"{target.describe()} (write {target.render()})" for target in candidates
        )
        warnings.append(
            f"path {path!r} can be read {len(candidates)} ways: {readings}; the first whose ids "
            "exist in the user's consents is used, so write the form you mean to pin it."
        )
    for target in candidates[:1]:
        for name in _ID_FIELDS:
            ident = getattr(target, name)
            if ident is None or f"{{{ident}}}" in path:
                continue  # quoted ids are taken as written
            for part in ident.split("_"):
                if part in _NEAR_MISSES:
                    warnings.append(
                        f"the {name.replace('_', ' ')} id {ident!r} contains {part!r}, which looks "
                        f"like the keyword {_NEAR_MISSES[part]!r} misspelt; fix the keyword, or "
                        f"write the id as {{{ident}}} if it is right."
                    )
    return warnings
