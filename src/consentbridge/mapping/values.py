"""String forms of values: the keys of value maps, and canonical comma lists of value ids.

A value map is keyed by strings, so every value read from Didomi or Dataverse needs one string form;
the rules live here so the forward and reverse directions cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable


def key_of(value: object) -> str:
    """The value-map key of a scalar: ``true``/``false``, ``null``, digits, or the text itself.

    Tuples (the result of mapping a multi-valued selection item by item) become a comma list.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return ",".join(key_of(item) for item in value)
    # Floats and anything exotic from user metadata: JSON is the least surprising text form.
    return json.dumps(value, sort_keys=True, default=str)


def selection_items(text: str) -> list[str]:
    """The value ids of a comma list, stripped, without empties or repeats, sorted."""
    return sorted({item.strip() for item in text.split(",") if item.strip()})


def canonical_selection(text: str) -> str:
    """A comma list in canonical form (``" b, a,a"`` -> ``"a,b"``; nothing selected -> ``""``).

    Sorting makes equal selections compare equal, so an unchanged selection never causes a write.
    """
    return join_selection(selection_items(text))


def join_selection(items: Iterable[str]) -> str:
    """Join value ids into the canonical comma list."""
    return ",".join(sorted(set(items)))
