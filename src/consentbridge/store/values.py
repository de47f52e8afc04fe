"""The value types that go in and out of the store.

Plain frozen dataclasses: the store's callers build and read these, never rows or SQL.
Times are unix seconds (``float``) everywhere inside the store; only the two read models
meant for people (``user_log`` and ``status``) turn them into ISO-8601 strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol, get_args

Direction = Literal["to_dataverse", "to_didomi"]
"""``to_dataverse``: Didomi → CRM. ``to_didomi``: CRM → Didomi (bidirectional mode)."""

DIRECTIONS: tuple[Direction, ...] = get_args(Direction)

SyncStatus = Literal["pending", "synced", "skipped", "retrying", "dead"]
STATUSES: tuple[SyncStatus, ...] = get_args(SyncStatus)

OutcomeKind = Literal["written", "unchanged", "skipped", "retry", "dead"]

CONTACT_TARGET = "contact"
"""The target of a slot written to ``contact`` columns: every slot before targets existed."""
GDPR = "gdpr"
"""The regulation of a slot whose rows serve only GDPR, and of every slot before regulations
were kept (migration 0008): a change without a regulation is GDPR (CONTRACT §7)."""

Columns = dict[str, Any]
Merge = Callable[[Columns | None], Columns | None]
"""Gets the stored columns (``None`` if the user has no row yet) and returns the new columns,
or ``None`` for "no change". It must be pure: it may be called more than once for one item
(an insert race or a retried transaction replays it against the fresh row)."""


class StateKey(NamedTuple):
    """Identifies one desired-state row (a *slot*): one user of one integration in one
    direction, for one target (``contact`` columns, ``contactpointconsent`` rows, …) and one
    regulation, so two targets or two regulations of one user never share a slot.

    ``regulation`` is the regulation the slot's property rows serve, or for rows serving
    several the sorted ids joined by ``+`` (``cpra+gdpr``): every mapped column or consent row
    lives in exactly one slot, so newest-wins holds per column (docs/mapping.md).

    A named tuple: intake hashes, sorts and compares thousands of these per second, and a
    tuple does that in C where an ordered dataclass runs generated Python methods."""

    integration_id: str
    direction: Direction
    organization_user_id: str
    target: str = CONTACT_TARGET
    regulation: str = GDPR


class _InSlot(Protocol):
    """What names a slot: intake items, claims and outcomes all carry these five fields."""

    @property
    def integration_id(self) -> str: ...
    @property
    def direction(self) -> Direction: ...
    @property
    def organization_user_id(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def regulation(self) -> str: ...


def slot_key(item: _InSlot) -> StateKey:
    """The key of the slot ``item`` belongs to."""
    return StateKey(
        item.integration_id,
        item.direction,
        item.organization_user_id,
        item.target,
        item.regulation,
    )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of a user's sync log."""

    integration_id: str
    organization_user_id: str
    direction: Direction
    event: str
    outcome: str
    reason: str
    columns: Columns
    request_id: str | None
    at: float
    target: str = CONTACT_TARGET
    #: The regulation of the change itself (the event's), not the slot's regulation set.
    regulation: str = GDPR
    event_id: str | None = None
    """The Didomi event a received change came from (when it names one)."""


@dataclass(frozen=True, slots=True)
class IntakeItem:
    """One received change to merge into a user's desired state.

    ``log`` is appended when the merge changed the state, ``log_unchanged`` when it did not
    (e.g. an older version arriving late); neither for a duplicate delivery. ``merge`` gets the
    stored columns themselves, not a copy, and must not modify them: it returns new columns,
    or None for no change.
    """

    integration_id: str
    direction: Direction
    organization_user_id: str
    delivery_key: str | None
    merge: Merge
    log: LogEntry | None
    now: float
    log_unchanged: LogEntry | None = None
    target: str = CONTACT_TARGET
    regulation: str = GDPR

    @property
    def key(self) -> StateKey:
        return slot_key(self)


@dataclass(frozen=True, slots=True)
class IgnoredDelivery:
    """A delivery answered 202 that stores nothing but one more in the integration's
    ``ignored`` count (e.g. a Didomi user without an ``organization_user_id``: no contact can
    match it). It rides in the same group commit as the changes, so it costs no round trip of
    its own."""

    integration_id: str
    direction: Direction


Intake = IntakeItem | IgnoredDelivery
"""What intake takes: a change to merge, or a delivery only counted."""

IGNORED_COUNTER = "ignored"
"""The counter of ``IgnoredDelivery`` (``status``: ``"ignored"``)."""


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """``seq`` is the row's version after this item (0 when the user has no row)."""

    duplicate: bool
    changed: bool
    seq: int


@dataclass(frozen=True, slots=True)
class ClaimedState:
    """A row leased to one worker: the desired columns at version ``seq``."""

    integration_id: str
    direction: Direction
    organization_user_id: str
    columns: Columns
    seq: int
    attempts: int
    first_failed_at: float | None
    target: str = CONTACT_TARGET
    regulation: str = GDPR
    # When the row's oldest unwritten change was accepted (for the end-to-end latency).
    pending_since: float | None = None

    @property
    def key(self) -> StateKey:
        return slot_key(self)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker did with a claimed row (``claimed_seq`` is ``ClaimedState.seq``).

    ``next_attempt_at`` is required for ``retry``; ``error`` is kept as ``last_error`` for
    ``retry`` and ``dead``.
    """

    integration_id: str
    direction: Direction
    organization_user_id: str
    claimed_seq: int
    kind: OutcomeKind
    log: LogEntry | None = None
    next_attempt_at: float | None = None
    error: str | None = None
    target: str = CONTACT_TARGET
    regulation: str = GDPR

    @property
    def key(self) -> StateKey:
        return slot_key(self)


@dataclass(frozen=True, slots=True)
class StateRow:
    """Everything the store keeps about one user in one direction."""

    integration_id: str
    direction: Direction
    organization_user_id: str
    columns: Columns
    seq: int
    written_seq: int
    pending: bool
    status: SyncStatus
    attempts: int
    next_attempt_at: float
    pending_since: float | None
    first_failed_at: float | None
    lease_owner: str | None
    lease_until: float | None
    last_error: str | None
    last_success_at: float | None
    updated_at: float
    target: str = CONTACT_TARGET
    regulation: str = GDPR


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A change that failed permanently and waits for a replay."""

    integration_id: str
    direction: Direction
    organization_user_id: str
    last_error: str | None
    attempts: int
    first_failed_at: float | None
    updated_at: float
    target: str = CONTACT_TARGET
    regulation: str = GDPR


def iso_utc(at: float) -> str:
    """Unix seconds → ``2025-01-31T12:00:00.123Z``."""
    text = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
