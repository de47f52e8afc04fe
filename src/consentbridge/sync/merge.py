"""The newest-wins merge of a user's desired column values — pure, no I/O.

A user's desired state is stored per column as `{"v": value, "ver": version | None,
"ts": unix seconds, "src": "didomi" | "dataverse"}`. A change carries one stamp for all the
columns it sets; per column, it wins only when its stamp is newer than the stored one:

- both stamps have a Didomi user `version`: higher version wins, then later `ts`;
- otherwise the later `ts` wins (events carry `created_at`/`updated_at`, Dataverse changes
  `modifiedon`; a change without a timestamp is stamped with its arrival time).

Dataverse's `modifiedon` has whole seconds while Didomi stamps milliseconds, so a Dataverse
change is stamped with the latest instant it can have happened: the end of its `modifiedon`
second, or its arrival if that is earlier (`dataverse_change_time`). Otherwise a rep's change
made in the same second as, but after, a Didomi change would count as older and be dropped.

Equal stamps never win, so a duplicate or a replayed change is a no-op. Stamps advance even when
the value is equal, so a late older change cannot slip in afterwards.

A column whose value was set by a Dataverse `Create` (and by nothing newer) carries
`FROM_CREATE: True` in its entry: the reverse worker then sends it only if it differs from the
column's default. Any later change replaces the entry, and with it the mark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ColumnState = dict[str, Any]
# Reserved keys in a desired state start with "~" (never a Dataverse logical name):
# EVENT_KEY holds the type of the last change merged, so the sync log can name it.
EVENT_KEY = "~event"
# REGULATION_KEY holds the regulation of the last change merged (the event's own, where the
# slot's key holds the regulations its rows serve), so the sync log can name it.
REGULATION_KEY = "~regulation"
# EVENT_ID_KEY holds the id of the Didomi event of the last change merged (when it had one):
# consent rows carry it in their reason marker.
EVENT_ID_KEY = "~event_id"
FROM_CREATE = "create"


def dataverse_change_time(modified_on: float | None, arrived: float) -> float:
    """When a Dataverse change happened, as closely as `modifiedon` and its arrival tell."""
    if modified_on is None:
        return arrived
    if modified_on != int(modified_on):
        return modified_on  # sub-second precision: take it as it is
    return min(modified_on + 0.999, max(arrived, modified_on))


@dataclass(frozen=True, slots=True)
class Stamp:
    version: int | None
    ts: float
    source: str = "didomi"

    def beats(self, entry: Mapping[str, Any] | None) -> bool:
        """True when a change with this stamp should replace the stored entry."""
        if entry is None:
            return True
        other_version, other_ts = entry.get("ver"), float(entry.get("ts") or 0.0)
        if (
            self.version is not None
            and other_version is not None
            and (self.version != other_version)
        ):
            return self.version > int(other_version)
        return self.ts > other_ts

    def describe(self) -> str:
        return f"version {self.version}" if self.version is not None else f"ts {self.ts:.3f}"


def describe_entry(entry: Mapping[str, Any]) -> str:
    version = entry.get("ver")
    return f"version {version}" if version is not None else f"ts {float(entry.get('ts') or 0):.3f}"


@dataclass(slots=True)
class MergeResult:
    """The merged columns, whether any *value* changed, and the columns the change lost."""

    columns: ColumnState
    value_changed: bool
    applied: dict[str, Any] = field(default_factory=dict)
    stale: dict[str, str] = field(default_factory=dict)
    stamps_advanced: bool = False

    @property
    def touched(self) -> bool:
        return self.value_changed or self.stamps_advanced


def merge_columns(old: ColumnState | None, values: Mapping[str, Any], stamp: Stamp) -> MergeResult:
    """Merge `values` (column → value) carrying `stamp` into `old`."""
    columns: ColumnState = {
        k: dict(v) if isinstance(v, dict) else v for k, v in (old or {}).items()
    }
    result = MergeResult(columns=columns, value_changed=False)
    for column, value in values.items():
        entry = columns.get(column)
        if not stamp.beats(entry):
            assert entry is not None
            result.stale[column] = (
                f"{stamp.describe()} is not newer than the stored {describe_entry(entry)}"
            )
            continue
        if entry is None or entry.get("v") != value:
            result.value_changed = True
            result.applied[column] = value
        else:
            result.stamps_advanced = True
        columns[column] = {"v": value, "ver": stamp.version, "ts": stamp.ts, "src": stamp.source}
    return result


def mark_from_create(columns: ColumnState, names: Iterable[str], result: MergeResult) -> None:
    """Mark the entries a Create just set (those of `names` its stamp did not lose)."""
    for column in names:
        entry = columns.get(column)
        if column not in result.stale and isinstance(entry, dict):
            entry[FROM_CREATE] = True


def desired_values(columns: ColumnState | None) -> dict[str, Any]:
    return {
        column: entry.get("v")
        for column, entry in (columns or {}).items()
        if not column.startswith("~")
    }


def last_event(columns: ColumnState | None) -> str | None:
    value = (columns or {}).get(EVENT_KEY)
    return value if isinstance(value, str) else None


def last_event_id(columns: ColumnState | None) -> str | None:
    value = (columns or {}).get(EVENT_ID_KEY)
    return value if isinstance(value, str) else None


def last_regulation(columns: ColumnState | None) -> str | None:
    value = (columns or {}).get(REGULATION_KEY)
    return value if isinstance(value, str) else None
