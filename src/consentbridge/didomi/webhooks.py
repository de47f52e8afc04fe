"""Didomi webhook payloads: the `{"type", "parameters"}` envelope and its six event types,
reduced to what sync needs — who changed, their consent state, its regulation and its age.

A user without an ``organization_user_id`` (an anonymous visitor) is no error: it is reduced
to an ``AnonymousUser``, which intake counts and otherwise ignores.

Didomi documents no delivery id, so a delivery is identified by a hash of its canonical JSON:
a repeated delivery of the same payload has the same key and is applied once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

EventType = Literal[
    "event.created",
    "event.updated",
    "event.deleted",
    "user.created",
    "user.updated",
    "user.deleted",
]
EVENT_TYPES: tuple[str, ...] = (
    "event.created",
    "event.updated",
    "event.deleted",
    "user.created",
    "user.updated",
    "user.deleted",
)
DEFAULT_REGULATION = "gdpr"


class PayloadError(ValueError):
    """A webhook body that cannot be understood; `path` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One webhook, reduced. `snapshot` is None for deletions (nothing to project)."""

    event_type: str
    organization_user_id: str
    regulation: str
    snapshot: dict[str, Any] | None
    version: int | None
    timestamp: dt.datetime | None
    delivery_key: str
    event_id: str | None = None
    """The Didomi consent event behind the change: the entity's id for `event.*`, the
    `source` event's id for `user.*` (None when Didomi names none)."""

    @property
    def carries_state(self) -> bool:
        return self.snapshot is not None


@dataclass(frozen=True, slots=True)
class AnonymousUser:
    """A webhook about a user Didomi knows only by its own id (a website or app visitor, no
    ``organization_user_id``): Didomi sends these for every consent event of the
    organization, and no contact can ever match one."""

    event_type: str


MAX_VERSION = 2**53
"""Didomi's ``version`` is a JSON number; above 2^53 a JavaScript sender cannot hold it
exactly, so such a value is a corrupt one, not a newer state."""


def delivery_key(body: object) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_timestamp(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(path, f"Field '{path}' must be a JSON object.")
    return value


def _regulation(body: dict[str, Any], parameters: dict[str, Any]) -> str:
    candidates = [body.get("regulation")]
    for key in ("entity", "new_entity", "source", "old_entity"):
        entity = parameters.get(key)
        if isinstance(entity, dict):
            candidates.append(entity.get("regulation"))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip().lower()
    return DEFAULT_REGULATION


def _user_id(entity: dict[str, Any], path: str, is_event: bool) -> str | None:
    """The user's ``organization_user_id``; None when it has none (absent, null or blank)."""
    holder = entity.get("user") if is_event else entity
    if holder is None:
        return None
    holder = _object(holder, f"{path}.user")
    where = f"{path}.user.organization_user_id" if is_event else f"{path}.organization_user_id"
    value = holder.get("organization_user_id")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise PayloadError(where, f"Field '{where}' must be a string.")
    if len(value) > 512:
        raise PayloadError(where, f"Field '{where}' is longer than 512 characters.")
    return value


def _snapshot(entity: dict[str, Any], is_event: bool) -> dict[str, Any]:
    user = entity.get("user") if is_event else entity
    user = user if isinstance(user, dict) else {}
    consents = entity.get("consents")
    return {
        "organization_user_id": user.get("organization_user_id"),
        "metadata": user.get("metadata") if isinstance(user.get("metadata"), dict) else {},
        "consents": consents if isinstance(consents, dict) else {},
    }


def _version(entity: dict[str, Any], path: str) -> int | None:
    value = entity.get("version")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_VERSION:
        raise PayloadError(
            f"{path}.version",
            f"Field '{path}.version' must be an integer from 0 to 2^53 - 1.",
        )
    return value


def parse_webhook(body: object) -> ConsentChange | AnonymousUser:
    """Reduce a Didomi webhook body to a ConsentChange (an ``AnonymousUser`` when the user
    has no ``organization_user_id``), or raise PayloadError. Keys it does not read are
    ignored: Didomi may add fields at any time."""
    envelope = _object(body, "body")
    event_type = envelope.get("type")
    if not isinstance(event_type, str):
        raise PayloadError(
            "type", "Field 'type' is required: one of " + ", ".join(EVENT_TYPES) + "."
        )
    if event_type not in EVENT_TYPES:
        raise PayloadError(
            "type",
            f"Unknown event type '{event_type[:64]}'; expected one of {', '.join(EVENT_TYPES)}.",
        )
    parameters = _object(envelope.get("parameters"), "parameters")
    is_event = event_type.startswith("event.")
    key = "new_entity" if event_type.endswith(".updated") else "entity"
    path = f"parameters.{key}"
    entity = _object(parameters.get(key), path)
    user_id = _user_id(entity, path, is_event)
    if user_id is None:
        return AnonymousUser(event_type)
    deleted = event_type.endswith(".deleted")
    if is_event:
        stamp = parse_timestamp(entity.get("updated_at")) or parse_timestamp(
            entity.get("created_at")
        )
        version = None
    else:
        stamp = parse_timestamp(entity.get("updated_at"))
        version = _version(entity, path)
    if not deleted and "consents" in entity and not isinstance(entity["consents"], dict):
        raise PayloadError(f"{path}.consents", f"Field '{path}.consents' must be a JSON object.")
    if is_event and entity.get("status") == "pending_approval":
        snapshot = None  # Didomi does not merge events awaiting approval; neither do we.
    else:
        snapshot = None if deleted else _snapshot(entity, is_event)
    source = entity if is_event else parameters.get("source")
    event_id = source.get("id") if isinstance(source, dict) else None
    return ConsentChange(
        event_type=event_type,
        organization_user_id=user_id,
        regulation=_regulation(envelope, parameters),
        snapshot=snapshot,
        version=version,
        timestamp=stamp,
        delivery_key=delivery_key(body),
        event_id=event_id if isinstance(event_id, str) and 0 < len(event_id) <= 256 else None,
    )
