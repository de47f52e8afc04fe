"""How an event's partial `consents` merge into a user's consent state (pure functions).

Didomi documents that an event "updates the consent status of the user" and that a client need
not send the prior state. The rules applied here: purposes, top-level channels, and a purpose's
channels and preferences are matched by `id`; for a matched item every field present in the
event overwrites the stored one (`null` included: it means "no explicit choice"), fields absent
from the event are kept; `values` merge per preference id; vendors move between the enabled and
disabled lists; anything else (e.g. `tcfcs`) is overwritten. Inputs are never mutated: the result
shares nothing with the event, so stored states stay valid snapshots.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

JsonObject = dict[str, Any]

# Vendor lists that exclude each other: a vendor enabled by an event leaves the disabled list.
_VENDOR_PAIRS = (("enabled", "disabled"), ("enabled_li", "disabled_li"))


def empty_consents() -> JsonObject:
    return {
        "purposes": [],
        "channels": [],
        "vendors": {"enabled": [], "disabled": [], "enabled_li": [], "disabled_li": []},
    }


def _merge_channel(current: JsonObject, incoming: JsonObject) -> JsonObject:
    merged = dict(current)
    for key, value in incoming.items():
        if key == "channels" and isinstance(value, list):
            merged[key] = merge_by_id(current.get("channels") or [], value, _merge_channel)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge_by_id(
    current: list[JsonObject],
    incoming: list[JsonObject],
    merge_item: Callable[[JsonObject, JsonObject], JsonObject] = _merge_channel,
) -> list[JsonObject]:
    """Items matched by `id` merge field by field; new ids are appended in the event's order."""
    result = list(current)
    position = {item.get("id"): i for i, item in enumerate(result)}
    for item in incoming:
        index = position.get(item.get("id"))
        if index is None:
            position[item.get("id")] = len(result)
            result.append(merge_item({}, item))
        else:
            result[index] = merge_item(result[index], item)
    return result


def _merge_purpose(current: JsonObject, incoming: JsonObject) -> JsonObject:
    merged = dict(current)
    for key, value in incoming.items():
        if key == "values" and isinstance(value, dict):
            values = dict(current.get("values") or {})
            values.update(copy.deepcopy(value))
            merged[key] = values
        elif key in ("channels", "preferences") and isinstance(value, list):
            merged[key] = merge_by_id(current.get(key) or [], value, _merge_channel)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_vendors(current: JsonObject, incoming: JsonObject) -> JsonObject:
    merged = {key: list(ids) for key, ids in current.items() if isinstance(ids, list)}
    for positive, negative in _VENDOR_PAIRS:
        for key, other in ((positive, negative), (negative, positive)):
            added = incoming.get(key)
            if not isinstance(added, list):
                continue
            target = merged.setdefault(key, [])
            merged[other] = [v for v in merged.get(other, []) if v not in added]
            target.extend(v for v in added if v not in target)
    return merged


def merge_consents(current: JsonObject | None, incoming: JsonObject) -> JsonObject:
    """The state after applying `incoming` (a partial consents block) over `current`."""
    merged = dict(current) if current is not None else empty_consents()
    for key, value in incoming.items():
        if key == "purposes" and isinstance(value, list):
            merged[key] = merge_by_id(merged.get("purposes") or [], value, _merge_purpose)
        elif key == "channels" and isinstance(value, list):
            merged[key] = merge_by_id(merged.get("channels") or [], value, _merge_channel)
        elif key == "vendors" and isinstance(value, dict):
            merged[key] = _merge_vendors(merged.get("vendors") or {}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def normalized(consents: JsonObject) -> JsonObject:
    """An event's consents as stored and returned: the merge of the event over nothing, so an
    event always carries `purposes`, `channels` and `vendors` (Didomi requires `vendors`)."""
    return merge_consents(None, consents)
