"""One shape for a Didomi consent state, read from a User or an Event.

Didomi sends users (``{"organization_user_id", "metadata", "consents"}``) and events
(``{"user": {...}, "consents"}``); both become a ``ConsentSnapshot`` keyed by id, so paths are
looked up in one place. Unknown keys are ignored; values of the wrong type are refused with
``ConsentStateError`` naming the field, because guessing would write wrong consent to the CRM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consentbridge.mapping.errors import ConsentStateError, show
from consentbridge.mapping.values import canonical_selection


@dataclass(frozen=True, slots=True)
class PreferenceState:
    """A v1 preference under a purpose: its choice and its channels."""

    enabled: bool | None = None
    channels: Mapping[str, bool | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PurposeState:
    """One purpose: its choices, v2 ``values`` (canonical comma lists), channels, v1 preferences."""

    enabled: bool | None = None
    enabled_li: bool | None = None
    values: Mapping[str, str | None] = field(default_factory=dict)
    channels: Mapping[str, bool | None] = field(default_factory=dict)
    preferences: Mapping[str, PreferenceState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConsentSnapshot:
    """A user's consent state (or an event's part of it), keyed by id."""

    organization_user_id: str | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)
    purposes: Mapping[str, PurposeState] = field(default_factory=dict)
    channels: Mapping[str, bool | None] = field(default_factory=dict)

    @classmethod
    def from_user(cls, user: object) -> ConsentSnapshot:
        """Read a Didomi User (``GET /consents/users``, webhook ``entity`` / ``new_entity``)."""
        body = _object(user, "user")
        purposes, channels = _consents(body.get("consents"))
        return cls(
            organization_user_id=_text(body.get("organization_user_id"), "organization_user_id"),
            metadata=_metadata(body.get("metadata"), "metadata"),
            purposes=purposes,
            channels=channels,
        )

    @classmethod
    def from_event(cls, event: object) -> ConsentSnapshot:
        """Read a Didomi Event: the user part comes from ``event.user``."""
        body = _object(event, "event")
        user = _object(body.get("user") or {}, "user")
        purposes, channels = _consents(body.get("consents"))
        return cls(
            organization_user_id=_text(
                user.get("organization_user_id"), "user.organization_user_id"
            ),
            metadata=_metadata(user.get("metadata"), "user.metadata"),
            purposes=purposes,
            channels=channels,
        )

    @classmethod
    def from_entity(cls, entity: object) -> ConsentSnapshot:
        """Read either shape: an object with a ``user`` object is an Event, anything else a User."""
        if isinstance(entity, Mapping) and isinstance(entity.get("user"), Mapping):
            return cls.from_event(entity)
        return cls.from_user(entity)


_Consents = tuple[dict[str, "PurposeState"], dict[str, bool | None]]


def _consents(raw: object) -> _Consents:
    """The purposes and top-level channels of a ``consents`` block."""
    body = _object(raw or {}, "consents")
    purposes: dict[str, PurposeState] = {}
    for where, item in _items(body.get("purposes"), "consents.purposes"):
        ident = _ident(item, where)
        # Didomi keeps purpose ids unique; if a payload repeats one, the last entry wins.
        purposes[ident] = _purpose(item, where)
    return purposes, _channels(body.get("channels"), "consents.channels")


def _purpose(item: Mapping[str, object], where: str) -> PurposeState:
    values: dict[str, str | None] = {}
    raw_values = _object(item.get("values") or {}, f"{where}.values")
    for pref, choice in raw_values.items():
        place = f"{where}.values.{pref}"
        text = _text(_object(choice, place).get("value"), f"{place}.value")
        values[str(pref)] = None if text is None else canonical_selection(text)
    preferences: dict[str, PreferenceState] = {}
    for place, pref_item in _items(item.get("preferences"), f"{where}.preferences"):
        preferences[_ident(pref_item, place)] = PreferenceState(
            enabled=_flag(pref_item.get("enabled"), f"{place}.enabled"),
            channels=_channels(pref_item.get("channels"), f"{place}.channels"),
        )
    return PurposeState(
        enabled=_flag(item.get("enabled"), f"{where}.enabled"),
        enabled_li=_flag(item.get("enabled_li"), f"{where}.enabled_li"),
        values=values,
        channels=_channels(item.get("channels"), f"{where}.channels"),
        preferences=preferences,
    )


def _channels(raw: object, where: str) -> dict[str, bool | None]:
    return {
        _ident(item, place): _flag(item.get("enabled"), f"{place}.enabled")
        for place, item in _items(raw, where)
    }


def _items(raw: object, where: str) -> list[tuple[str, Mapping[str, object]]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConsentStateError(f"{where} is {show(raw)}, not a list; send a JSON array.")
    return [(f"{where}[{i}]", _object(item, f"{where}[{i}]")) for i, item in enumerate(raw)]


def _object(raw: object, where: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise ConsentStateError(f"{where} is {show(raw)}, not an object; send a JSON object.")
    return raw


def _ident(item: Mapping[str, object], where: str) -> str:
    ident = item.get("id")
    if not isinstance(ident, str) or not ident:
        raise ConsentStateError(f"{where}.id is {show(ident)}; every entry needs a string id.")
    return ident


def _flag(raw: object, where: str) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    raise ConsentStateError(f"{where} is {show(raw)}; it must be true, false or null.")


def _text(raw: object, where: str) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    raise ConsentStateError(f"{where} is {show(raw)}; it must be a string or null.")


def _metadata(raw: object, where: str) -> dict[str, object]:
    return dict(_object(raw or {}, where))
