"""The audit chain's hashing rules and read models: pure code, no SQL (``audit.py`` has that).

Each sealed log entry carries ``hash = sha256(prev_hash || canonical)``: ``prev_hash`` is the
hex hash of the entry sealed just before it (``GENESIS`` for the first one), as ASCII bytes;
``canonical`` is the UTF-8 JSON of the entry's fields listed for its scheme version ``hash_v``
plus ``v``, ``seal_seq`` and ``sealed_at``, with sorted keys, no spaces and no ASCII escaping.
Times are ISO-8601 UTC strings to the microsecond, so a checker in any language rebuilds the
exact bytes from an export. ``docs/audit.md`` shows a checker.

Scheme versions are explicit and only ever added: an entry keeps the version it was sealed
with, so old entries still verify after a new field joins the hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

GENESIS: Final = "0" * 64
"""The ``prev_hash`` of an integration's first sealed entry."""

BASE_FIELDS: Final = (
    "id",
    "integration_id",
    "organization_user_id",
    "at",
    "direction",
    "event",
    "outcome",
    "reason",
    "columns",
    "request_id",
    "event_id",
)
SCHEME_FIELDS: Final[dict[int, tuple[str, ...]]] = {
    1: BASE_FIELDS,
    # Helper H2 (issue 12, another branch) adds `target` and `regulation` to sync_log; from
    # then on entries are sealed with scheme 2, which hashes them too. Scheme-1 entries still
    # verify with the fields they were sealed with.
    2: (*BASE_FIELDS, "target", "regulation"),
}
TIME_FIELDS: Final = frozenset({"at"})

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_GMTIME: Final = 253_402_300_800  # 10000-01-01: strftime's %Y has four digits up to here


def current_scheme(columns: set[str] | frozenset[str]) -> int:
    """The newest scheme whose fields are all columns of the log table."""
    return max(v for v, names in SCHEME_FIELDS.items() if set(names) <= columns)


def iso_us(at: float) -> str:
    """Unix seconds → ``2025-01-31T12:00:00.123456Z`` (rounded to the microsecond)."""
    seconds, micros = divmod(round(at * 1_000_000), 1_000_000)
    if 0 <= seconds < _MAX_GMTIME:
        return f"{_iso_second(seconds)}.{micros:06d}Z"
    stamp = _EPOCH + timedelta(seconds=seconds, microseconds=micros)
    return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=256)
def _iso_second(seconds: int) -> str:
    # Sealing formats two times per entry, and a burst's entries share their seconds: the
    # strftime was a third of ``canonical``'s time in a profile of a draining worker.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


# One encoder for every entry: ``json.dumps`` with options builds a new one per call.
_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical(fields: Mapping[Any, Any], *, scheme: int, seal_seq: int, sealed_at: float) -> bytes:
    """The bytes hashed for one entry: ``fields`` holds at least the scheme's fields."""
    names = SCHEME_FIELDS[scheme]
    document: dict[str, Any] = {
        name: iso_us(fields[name]) if name in TIME_FIELDS else fields[name] for name in names
    }
    document.update(v=scheme, seal_seq=seal_seq, sealed_at=iso_us(sealed_at))
    return _ENCODER.encode(document).encode("utf-8")


def chain_hash(prev_hash: str, canonical_bytes: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_bytes).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One log entry with its seal (``seal_seq`` … ``hash`` are None until it is sealed).

    ``extra`` holds the log's columns beyond scheme 1 (``target``, ``regulation`` once they
    exist), so that export shows them and verification can hash them."""

    id: int
    integration_id: str
    organization_user_id: str
    at: float
    direction: str
    event: str
    outcome: str
    reason: str
    columns: dict[str, Any]
    request_id: str | None
    event_id: str | None
    seal_seq: int | None
    sealed_at: float | None
    hash_v: int | None
    prev_hash: str | None
    hash: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """Every hashable field by name (scheme 1's and ``extra``)."""
        base = {name: getattr(self, name) for name in BASE_FIELDS}
        return {**base, **self.extra}

    def recomputed_hash(self) -> str | None:
        """The hash this entry's stored fields give; None when it is unsealed or its scheme
        is unknown."""
        if (
            self.seal_seq is None
            or self.sealed_at is None
            or self.prev_hash is None
            or self.hash_v not in SCHEME_FIELDS
        ):
            return None
        fields = self.fields()
        if not set(SCHEME_FIELDS[self.hash_v]) <= fields.keys():
            return None
        data = canonical(
            fields, scheme=self.hash_v, seal_seq=self.seal_seq, sealed_at=self.sealed_at
        )
        return chain_hash(self.prev_hash, data)


BreakKind = Literal["edited", "deleted", "inserted", "reordered"]


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first entry at which the chain stops proving anything, and why (one sentence)."""

    kind: BreakKind
    seal_seq: int | None
    entry_id: int | None
    message: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What ``audit verify`` found for one integration.

    ``head_seq``/``head_hash`` are the chain's last seal (export them now and then: a later
    verification that still passes through them proves nothing before them changed).
    ``anchor_seq``/``anchor_hash``: the last entry retention deleted (0 and ``GENESIS``
    before any). Warnings do not fail verification."""

    integration_id: str
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    anchor_seq: int
    anchor_hash: str
    first_bad: ChainBreak | None
    unsealed: int
    oldest_unsealed_at: float | None
    sealed_late: int
    first_sealed_late_id: int | None
    warnings: tuple[str, ...] = ()
