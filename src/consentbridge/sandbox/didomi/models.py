"""Validation of request bodies (consent events, users) into normalized input objects.

Field types follow Didomi's OpenAPI schemas (`consent-events-input`, `consent-users-input-*`).
Every problem found is reported at once in the error's `errors` map, keyed by the field's path
in the request body (`[3].consents.purposes[0].id` for the fourth event of a batch). The sandbox
holds no configuration tree, so any purpose, preference, value or channel id is accepted; keys
the schemas do not know are kept as sent (Didomi may accept more than its published schema).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from consentbridge.sandbox.didomi.errors import DidomiError

DEFAULT_REGULATION = "gdpr"
STATUS_CONFIRMED = "confirmed"
STATUS_PENDING = "pending_approval"
STATUSES = (STATUS_CONFIRMED, STATUS_PENDING)
MAX_EVENTS_PER_CALL = 100
VENDOR_LISTS = ("enabled", "disabled", "enabled_li", "disabled_li")

JsonObject = dict[str, Any]


def format_time(moment: dt.datetime) -> str:
    """ISO-8601 in UTC with milliseconds, as Didomi writes dates (`2019-08-07T10:45:11.000Z`)."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return format_time(dt.datetime.now(dt.UTC))


class Problems:
    """Collects field errors and raises them together as one 400."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, message)

    def raise_if_any(self, summary: str) -> None:
        if self.errors:
            first = next(iter(self.errors.values()))
            message = first if len(self.errors) == 1 else f"{summary}: {first}"
            raise DidomiError(400, message, self.errors)

    def string(self, value: object, path: str, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.add(path, f"'{path}' is required.")
            return None
        if not isinstance(value, str) or (required and not value):
            kind = "a non-empty string" if required else "a string"
            self.add(path, f"'{path}' must be {kind}.")
            return None
        return value

    def obj(self, value: object, path: str) -> JsonObject | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add(path, f"'{path}' must be an object.")
            return None
        return value

    def flag(self, value: object, path: str) -> None:
        """Consent flags are true, false or null (no explicit choice)."""
        if value is not None and not isinstance(value, bool):
            self.add(path, f"'{path}' must be true, false or null.")

    def timestamp(self, value: object, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            self.add(path, f"'{path}' must be an ISO-8601 date, e.g. 2024-05-01T10:00:00Z.")
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return format_time(parsed)


def _channels(problems: Problems, value: object, path: str) -> list[JsonObject]:
    if not isinstance(value, list):
        problems.add(path, f"'{path}' must be an array.")
        return []
    channels: list[JsonObject] = []
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        if not isinstance(item, dict):
            problems.add(item_path, f"'{item_path}' must be an object.")
            continue
        problems.string(item.get("id"), f"{item_path}.id", required=True)
        problems.flag(item.get("enabled"), f"{item_path}.enabled")
        problems.obj(item.get("metadata"), f"{item_path}.metadata")
        channels.append(dict(item))
    return channels


def _preferences(problems: Problems, value: object, path: str) -> list[JsonObject]:
    preferences = _channels(problems, value, path)
    for i, pref in enumerate(preferences):
        if "channels" in pref:
            pref["channels"] = _channels(problems, pref["channels"], f"{path}[{i}].channels")
    return preferences


def _values(problems: Problems, value: object, path: str) -> JsonObject:
    """v2 preference values: `{prefId: {"value": "a,b"}}`."""
    if not isinstance(value, dict):
        problems.add(path, f"'{path}' must be an object keyed by preference id.")
        return {}
    values: JsonObject = {}
    for pref_id, entry in value.items():
        entry_path = f"{path}.{pref_id}"
        if not isinstance(entry, dict):
            problems.add(entry_path, f'\'{entry_path}\' must be an object like {{"value": "a,b"}}.')
            continue
        problems.string(entry.get("value"), f"{entry_path}.value")
        values[pref_id] = dict(entry)
    return values


def _purpose(problems: Problems, item: object, path: str) -> JsonObject | None:
    if not isinstance(item, dict):
        problems.add(path, f"'{path}' must be an object.")
        return None
    problems.string(item.get("id"), f"{path}.id", required=True)
    problems.flag(item.get("enabled"), f"{path}.enabled")
    problems.flag(item.get("enabled_li"), f"{path}.enabled_li")
    problems.obj(item.get("metadata"), f"{path}.metadata")
    purpose = dict(item)
    if "values" in purpose:
        purpose["values"] = _values(problems, purpose["values"], f"{path}.values")
    if "channels" in purpose:
        purpose["channels"] = _channels(problems, purpose["channels"], f"{path}.channels")
    if "preferences" in purpose:
        purpose["preferences"] = _preferences(
            problems, purpose["preferences"], f"{path}.preferences"
        )
    return purpose


def _vendors(problems: Problems, value: object, path: str) -> JsonObject:
    if not isinstance(value, dict):
        problems.add(path, f"'{path}' must be an object.")
        return {}
    vendors = dict(value)
    for key in VENDOR_LISTS:
        ids = vendors.get(key)
        if ids is None:
            continue
        if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
            problems.add(f"{path}.{key}", f"'{path}.{key}' must be an array of vendor ids.")
    return vendors


def parse_consents(problems: Problems, value: object, path: str) -> JsonObject:
    """A (partial) consents block; returns a shallow-normalized copy."""
    if not isinstance(value, dict):
        problems.add(path, f"'{path}' must be an object.")
        return {}
    consents = dict(value)
    if "purposes" in consents:
        raw = consents["purposes"]
        if not isinstance(raw, list):
            problems.add(f"{path}.purposes", f"'{path}.purposes' must be an array.")
            consents["purposes"] = []
        else:
            parsed = [_purpose(problems, p, f"{path}.purposes[{i}]") for i, p in enumerate(raw)]
            consents["purposes"] = [p for p in parsed if p is not None]
    if "channels" in consents:
        consents["channels"] = _channels(problems, consents["channels"], f"{path}.channels")
    if "vendors" in consents:
        consents["vendors"] = _vendors(problems, consents["vendors"], f"{path}.vendors")
    if "tcfcs" in consents:
        problems.string(consents["tcfcs"], f"{path}.tcfcs")
    return consents


@dataclass
class UserRef:
    """The `user` of an event: who the event is about."""

    id: str | None = None
    organization_user_id: str | None = None
    metadata: JsonObject | None = None
    country: str | None = None
    last_seen_country: str | None = None

    def public(self) -> JsonObject:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class EventInput:
    id: str | None
    created_at: str | None
    status: str
    regulation: str
    user: UserRef
    consents: JsonObject
    metadata: JsonObject | None = None
    delegate: JsonObject | None = None
    proofs_id: list[str] | None = None


def _user_ref(problems: Problems, value: object, path: str) -> UserRef:
    if value is None:
        return UserRef()
    raw = problems.obj(value, path)
    if raw is None:
        return UserRef()
    return UserRef(
        id=problems.string(raw.get("id"), f"{path}.id"),
        organization_user_id=problems.string(
            raw.get("organization_user_id"), f"{path}.organization_user_id"
        ),
        metadata=problems.obj(raw.get("metadata"), f"{path}.metadata"),
        country=problems.string(raw.get("country"), f"{path}.country"),
        last_seen_country=problems.string(
            raw.get("last_seen_country"), f"{path}.last_seen_country"
        ),
    )


def _event(problems: Problems, raw: object, prefix: str, organization_id: str) -> EventInput:
    path = f"{prefix}." if prefix else ""
    if not isinstance(raw, dict):
        problems.add(prefix or "body", "An event must be a JSON object.")
        return EventInput(None, None, STATUS_CONFIRMED, DEFAULT_REGULATION, UserRef(), {})
    org = problems.string(raw.get("organization_id"), f"{path}organization_id")
    if org is not None and org != organization_id:
        problems.add(
            f"{path}organization_id",
            f"'{path}organization_id' ({org}) differs from the organization_id query parameter.",
        )
    status = problems.string(raw.get("status"), f"{path}status") or STATUS_CONFIRMED
    if status not in STATUSES:
        problems.add(f"{path}status", f"'{path}status' must be one of {', '.join(STATUSES)}.")
    if "consents" not in raw:
        problems.add(f"{path}consents", f"'{path}consents' is required.")
    delegate = problems.obj(raw.get("delegate"), f"{path}delegate")
    if delegate is not None:
        problems.string(delegate.get("id"), f"{path}delegate.id", required=True)
    proofs = raw.get("proofs_id")
    if proofs is not None and (
        not isinstance(proofs, list) or not all(isinstance(p, str) for p in proofs)
    ):
        problems.add(f"{path}proofs_id", f"'{path}proofs_id' must be an array of strings.")
        proofs = None
    event_id = problems.string(raw.get("id"), f"{path}id")
    if event_id == "":
        problems.add(f"{path}id", f"'{path}id' must not be empty.")
    return EventInput(
        id=event_id or None,
        created_at=problems.timestamp(raw.get("created_at"), f"{path}created_at"),
        status=status,
        regulation=problems.string(raw.get("regulation"), f"{path}regulation")
        or DEFAULT_REGULATION,
        user=_user_ref(problems, raw.get("user"), f"{path}user"),
        consents=parse_consents(problems, raw.get("consents", {}), f"{path}consents"),
        metadata=problems.obj(raw.get("metadata"), f"{path}metadata"),
        delegate=delegate,
        proofs_id=proofs,
    )


def parse_events(body: object, organization_id: str) -> tuple[list[EventInput], bool]:
    """One event or an array of at most 100; returns the events and whether it was an array."""
    problems = Problems()
    if isinstance(body, list):
        if not body:
            raise DidomiError(400, "Send at least one event.", {"body": "empty array"})
        if len(body) > MAX_EVENTS_PER_CALL:
            raise DidomiError(
                400,
                f"A batch holds at most {MAX_EVENTS_PER_CALL} events; {len(body)} were sent.",
                {"body": f"array longer than {MAX_EVENTS_PER_CALL}"},
            )
        events = [_event(problems, raw, f"[{i}]", organization_id) for i, raw in enumerate(body)]
        problems.raise_if_any("Invalid events")
        return events, True
    event = _event(problems, body, "", organization_id)
    problems.raise_if_any("Invalid event")
    return [event], False


@dataclass
class EventPatch:
    status: str | None = None
    consents: JsonObject | None = None


def parse_event_patch(body: object) -> EventPatch:
    if not isinstance(body, dict):
        raise DidomiError(400, "The body must be a JSON object.", {"body": "not an object"})
    problems = Problems()
    raw: JsonObject = body
    status = problems.string(raw.get("status"), "status")
    if status is not None and status not in STATUSES:
        problems.add("status", f"'status' must be one of {', '.join(STATUSES)}.")
    consents = parse_consents(problems, raw["consents"], "consents") if "consents" in raw else None
    problems.raise_if_any("Invalid event update")
    return EventPatch(status=status, consents=consents)


@dataclass
class UserInput:
    """Fields of `POST`/`PATCH /consents/users`; `fields` lists those present in the body."""

    id: str | None = None
    organization_user_id: str | None = None
    metadata: JsonObject | None = None
    country: str | None = None
    last_seen_country: str | None = None
    version: int | None = None
    consents: JsonObject | None = None
    fields: set[str] = field(default_factory=set)


def parse_user(body: object, organization_id: str, *, creating: bool) -> UserInput:
    if not isinstance(body, dict):
        raise DidomiError(400, "The body must be a JSON object.", {"body": "not an object"})
    problems = Problems()
    raw: JsonObject = body
    org = problems.string(raw.get("organization_id"), "organization_id")
    if org is not None and org != organization_id:
        problems.add("organization_id", "'organization_id' differs from the query parameter.")
    version = raw.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        problems.add("version", "'version' must be an integer.")
        version = None
    user = UserInput(
        id=problems.string(raw.get("id"), "id") if creating else None,
        organization_user_id=problems.string(
            raw.get("organization_user_id"), "organization_user_id"
        ),
        metadata=problems.obj(raw.get("metadata"), "metadata"),
        country=problems.string(raw.get("country"), "country"),
        last_seen_country=problems.string(raw.get("last_seen_country"), "last_seen_country"),
        version=version,
        consents=parse_consents(problems, raw["consents"], "consents")
        if raw.get("consents") is not None
        else None,
        fields={k for k in raw if raw[k] is not None},
    )
    problems.raise_if_any("Invalid user")
    return user
