"""The organization's consent users and events, their indexes, and the changes each write makes.

Users are indexed by Didomi id and by `organization_user_id` (several users may share one, as
Didomi documents; the *primary* user of an organization user id is the earliest created one, and
both events naming only that id and `$by_organization_user_id` lookups resolve to it). A user
holds one consent state per regulation and one `version` that every change increments (new
users start at 1). Confirmed events merge into the state in arrival order; `pending_approval`
events are stored but merge only once patched to `confirmed`. Deleting or patching an event
recomputes the state from the user's remaining confirmed events (on top of any consents written
directly on the user, which are kept as the base).

Every write returns `Change`s, the webhook notifications Didomi would send. An event that
creates its user yields `user.created` (the user already holding the event's consents, version
1) then `event.created`; an event for an existing user yields `event.created` then
`user.updated` (`source` = the event); a pending event only `event.created`. `user.updated` from
the users API carries no `source` (no event caused it). Stored objects are never mutated in
place (fields are replaced), so a change's entities stay true snapshots.
"""

from __future__ import annotations

import bisect
import uuid
from typing import Any

from consentbridge.sandbox.didomi.errors import DidomiError, not_found
from consentbridge.sandbox.didomi.merge import merge_consents, normalized
from consentbridge.sandbox.didomi.models import (
    DEFAULT_REGULATION,
    EventInput,
    EventPatch,
    JsonObject,
    UserInput,
    UserRef,
    now_iso,
)
from consentbridge.sandbox.didomi.records import (
    Change,
    EventRecord,
    UserRecord,
    decode_cursor,
    encode_cursor,
)

PAGE_SIZE = 100


class ConsentStore:
    """Users and events of one organization (single-threaded: used from the event loop)."""

    def __init__(self, organization_id: str) -> None:
        self.organization_id = organization_id
        self.clear()

    def clear(self) -> None:
        self._seq = 0
        self._users: dict[str, UserRecord] = {}
        self._by_org_user_id: dict[str, list[str]] = {}
        self._user_seqs: list[int] = []
        self._user_by_seq: dict[int, str] = {}
        self._events: dict[str, EventRecord] = {}
        self._events_by_user: dict[str, list[str]] = {}

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- users: indexes ---------------------------------------------------------------------

    def _add_user(self, user: UserRecord) -> None:
        self._users[user.id] = user
        self._user_seqs.append(user.seq)  # seqs only grow, so the list stays sorted
        self._user_by_seq[user.seq] = user.id
        self._index_org_user_id(user)

    def _index_org_user_id(self, user: UserRecord) -> None:
        if user.organization_user_id is not None:
            ids = self._by_org_user_id.setdefault(user.organization_user_id, [])
            bisect.insort(ids, user.id, key=lambda uid: self._users[uid].seq)

    def _unindex_org_user_id(self, user: UserRecord) -> None:
        key = user.organization_user_id
        if key is not None and key in self._by_org_user_id:
            ids = self._by_org_user_id[key]
            ids.remove(user.id)
            if not ids:
                del self._by_org_user_id[key]

    def _new_user(self, user_id: str | None, org_user_id: str | None, now: str) -> UserRecord:
        user = UserRecord(
            id=user_id or str(uuid.uuid4()),
            organization_id=self.organization_id,
            seq=self._next_seq(),
            created_at=now,
            updated_at=now,
            organization_user_id=org_user_id,
        )
        self._add_user(user)
        return user

    def find_user(self, key: str, *, by_organization_user_id: bool = False) -> UserRecord | None:
        if not by_organization_user_id:
            return self._users.get(key)
        ids = self._by_org_user_id.get(key)
        return self._users[ids[0]] if ids else None

    def require_user(self, key: str, *, by_organization_user_id: bool = False) -> UserRecord:
        user = self.find_user(key, by_organization_user_id=by_organization_user_id)
        if user is None:
            kind = "organization user ID" if by_organization_user_id else "ID"
            raise not_found(f"No user found with {kind} '{key}'.")
        return user

    def users_with(self, *, user_id: str | None, org_user_id: str | None) -> list[UserRecord]:
        if user_id is not None:
            user = self._users.get(user_id)
            users = [user] if user else []
            if org_user_id is not None:
                users = [u for u in users if u.organization_user_id == org_user_id]
            return users
        return [self._users[uid] for uid in self._by_org_user_id.get(org_user_id or "", [])]

    def list_users(
        self, *, cursor: str | None, limit: int, org_user_id: str | None, regulation: str
    ) -> tuple[list[JsonObject], str | None]:
        """One page in creation order, and the cursor of the next page (None at the end)."""
        after = decode_cursor(cursor) if cursor else 0
        if org_user_id is not None:
            seqs = [self._users[uid].seq for uid in self._by_org_user_id.get(org_user_id, [])]
        else:
            seqs = self._user_seqs
        start = bisect.bisect_right(seqs, after)
        page = seqs[start : start + limit]
        more = start + limit < len(seqs)
        users = [self._users[self._user_by_seq[seq]].view(regulation) for seq in page]
        return users, encode_cursor(page[-1]) if more and page else None

    # --- events -----------------------------------------------------------------------------

    def get_event(self, event_id: str) -> EventRecord | None:
        return self._events.get(event_id)

    def list_events(
        self, users: list[UserRecord], statuses: set[str], regulations: set[str]
    ) -> list[JsonObject]:
        records = [
            self._events[eid]
            for user in users
            for eid in self._events_by_user.get(user.id, [])
            if self._events[eid].data["status"] in statuses
            and self._events[eid].regulation in regulations
        ]
        records.sort(key=lambda r: (r.data["created_at"], r.seq))
        return [r.data for r in records]

    def _check_new_event_ids(self, inputs: list[EventInput], batch: bool) -> None:
        seen: set[str] = set()
        errors: dict[str, str] = {}
        for i, event in enumerate(inputs):
            if event.id is None:
                continue
            path = f"[{i}].id" if batch else "id"
            if event.id in self._events or event.id in seen:
                errors[path] = f"An event with ID '{event.id}' already exists."
            seen.add(event.id)
        if errors:
            first = next(iter(errors.values()))
            raise DidomiError(409, first + " No event of this request was created.", errors)

    def _resolve_user(self, event: EventInput, now: str) -> tuple[UserRecord, bool]:
        ref = event.user
        if ref.id is not None:
            user = self._users.get(ref.id)
            if user is None:
                return self._new_user(ref.id, ref.organization_user_id, now), True
            if user.organization_user_id is None and ref.organization_user_id is not None:
                # Didomi assigns the id "if the user does not already have one".
                user.organization_user_id = ref.organization_user_id
                self._index_org_user_id(user)
            return user, False
        if ref.organization_user_id is not None:
            user = self.find_user(ref.organization_user_id, by_organization_user_id=True)
            if user is not None:
                return user, False
        return self._new_user(None, ref.organization_user_id, now), True

    def create_events(
        self, inputs: list[EventInput], *, batch: bool
    ) -> tuple[list[JsonObject], list[Change]]:
        """Store and merge the events, all or none (ids are checked before anything is written)."""
        self._check_new_event_ids(inputs, batch)
        created: list[JsonObject] = []
        changes: list[Change] = []
        for event in inputs:
            now = now_iso()
            user, is_new = self._resolve_user(event, now)
            data = self._event_data(event, user, now)
            record = EventRecord(seq=self._next_seq(), user_id=user.id, data=data)
            self._events[data["id"]] = record
            self._events_by_user.setdefault(user.id, []).append(data["id"])
            created.append(data)
            changes.extend(self._after_new_event(record, event, user, is_new, now))
        return created, changes

    def _event_data(self, event: EventInput, user: UserRecord, now: str) -> JsonObject:
        user_part = event.user.public()
        user_part["id"] = user.id
        if user.organization_user_id is not None:
            user_part["organization_user_id"] = user.organization_user_id
        data: JsonObject = {
            "id": event.id or str(uuid.uuid4()),
            "organization_id": self.organization_id,
            "created_at": event.created_at or now,
            "updated_at": now,
            "status": event.status,
            "regulation": event.regulation,
            "user": user_part,
            "consents": normalized(event.consents),
            "metadata": event.metadata or {},
            "proofs_id": event.proofs_id or [],
        }
        if event.delegate is not None:
            data["delegate"] = event.delegate
        return data

    def _after_new_event(
        self, record: EventRecord, event: EventInput, user: UserRecord, is_new: bool, now: str
    ) -> list[Change]:
        regulation = record.regulation
        before = user.view(regulation)
        if record.confirmed:
            self._apply_user_fields(user, event)
            user.consents = {
                **user.consents,
                regulation: merge_consents(user.consents.get(regulation), event.consents),
            }
            if not is_new:
                self._touch(user, now)
        event_change = Change("event.created", regulation, {"entity": record.data}, user.id)
        if is_new:
            user_change = Change(
                "user.created", regulation, {"entity": user.view(regulation)}, user.id
            )
            return [user_change, event_change]
        if not record.confirmed:
            return [event_change]
        parameters = {
            "source": record.data,
            "old_entity": before,
            "new_entity": user.view(regulation),
        }
        return [event_change, Change("user.updated", regulation, parameters, user.id)]

    @staticmethod
    def _apply_user_fields(user: UserRecord, event: EventInput) -> None:
        ref = event.user
        if ref.metadata:
            user.metadata = {**user.metadata, **ref.metadata}
        if ref.country is not None:
            user.country = ref.country
        if ref.last_seen_country is not None:
            user.last_seen_country = ref.last_seen_country

    @staticmethod
    def _touch(user: UserRecord, now: str) -> None:
        user.version += 1
        user.updated_at = now

    def _recompute(self, user: UserRecord, regulation: str) -> None:
        state = user.base_consents.get(regulation)
        for event_id in self._events_by_user.get(user.id, []):
            record = self._events[event_id]
            if record.confirmed and record.regulation == regulation:
                state = merge_consents(state, record.data["consents"])
        consents = dict(user.consents)
        if state is None:
            consents.pop(regulation, None)
        else:
            consents[regulation] = state
        user.consents = consents

    def patch_event(self, event_id: str, patch: EventPatch) -> tuple[JsonObject, list[Change]]:
        record = self._events.get(event_id)
        if record is None:
            raise not_found(f"No event found with ID '{event_id}'.")
        now = now_iso()
        old = record.data
        was_confirmed = record.confirmed
        data = dict(old)
        if patch.status is not None:
            data["status"] = patch.status
        if patch.consents is not None:
            data["consents"] = normalized(patch.consents)
        data["updated_at"] = now
        record.data = data
        regulation = record.regulation
        changes = [
            Change(
                "event.updated",
                regulation,
                {"source": data, "old_entity": old, "new_entity": data},
                record.user_id,
            )
        ]
        user = self._users[record.user_id]
        if was_confirmed or record.confirmed:
            before = user.view(regulation)
            if not was_confirmed:
                self._apply_user_fields(user, _user_fields_of(data))
            self._recompute(user, regulation)
            self._touch(user, now)
            parameters = {"source": data, "old_entity": before, "new_entity": user.view(regulation)}
            changes.append(Change("user.updated", regulation, parameters, user.id))
        return data, changes

    def delete_event(self, event_id: str) -> list[Change]:
        record = self._events.pop(event_id, None)
        if record is None:
            raise not_found(f"No event found with ID '{event_id}'.")
        self._events_by_user[record.user_id].remove(event_id)
        regulation = record.regulation
        changes = [Change("event.deleted", regulation, {"entity": record.data}, record.user_id)]
        if record.confirmed:
            user = self._users[record.user_id]
            before = user.view(regulation)
            self._recompute(user, regulation)
            self._touch(user, now_iso())
            parameters = {
                "source": record.data,
                "old_entity": before,
                "new_entity": user.view(regulation),
            }
            changes.append(Change("user.updated", regulation, parameters, user.id))
        return changes

    # --- users: writes ----------------------------------------------------------------------

    def create_user(self, data: UserInput) -> tuple[JsonObject, list[Change]]:
        if data.id is not None and data.id in self._users:
            raise DidomiError(
                409, f"A user with ID '{data.id}' already exists.", {"id": "already exists"}
            )
        user = self._new_user(data.id, data.organization_user_id, now_iso())
        self._write_user_fields(user, data)
        view = user.view()
        return view, [Change("user.created", DEFAULT_REGULATION, {"entity": view}, user.id)]

    def patch_user(
        self, key: str, data: UserInput, *, by_organization_user_id: bool
    ) -> tuple[JsonObject, list[Change]]:
        user = self.require_user(key, by_organization_user_id=by_organization_user_id)
        if data.version is not None and data.version != user.version:
            raise DidomiError(
                409,
                f"Version {data.version} is stale: the user is at version {user.version}.",
                {"version": "does not match the current version"},
            )
        before = user.view()
        if "organization_user_id" in data.fields:
            self._unindex_org_user_id(user)
            user.organization_user_id = data.organization_user_id
            self._index_org_user_id(user)
        self._write_user_fields(user, data)
        self._touch(user, now_iso())
        after = user.view()
        parameters = {"old_entity": before, "new_entity": after}
        return after, [Change("user.updated", DEFAULT_REGULATION, parameters, user.id)]

    @staticmethod
    def _write_user_fields(user: UserRecord, data: UserInput) -> None:
        if data.metadata is not None:
            user.metadata = dict(data.metadata)
        if data.country is not None:
            user.country = data.country
        if data.last_seen_country is not None:
            user.last_seen_country = data.last_seen_country
        if data.consents is not None:
            # Deprecated direct write: merged like an event and kept as the recompute base.
            user.consents = {
                **user.consents,
                DEFAULT_REGULATION: merge_consents(
                    user.consents.get(DEFAULT_REGULATION), data.consents
                ),
            }
            user.base_consents = {
                **user.base_consents,
                DEFAULT_REGULATION: merge_consents(
                    user.base_consents.get(DEFAULT_REGULATION), data.consents
                ),
            }

    def delete_user(
        self, key: str, *, by_organization_user_id: bool
    ) -> tuple[JsonObject, list[Change]]:
        """Remove the user and its events (Didomi erases the user's history with it)."""
        user = self.require_user(key, by_organization_user_id=by_organization_user_id)
        view = user.view()
        self._unindex_org_user_id(user)
        del self._users[user.id]
        index = bisect.bisect_left(self._user_seqs, user.seq)
        del self._user_seqs[index]
        del self._user_by_seq[user.seq]
        for event_id in self._events_by_user.pop(user.id, []):
            del self._events[event_id]
        return view, [Change("user.deleted", DEFAULT_REGULATION, {"entity": view}, user.id)]

    # --- persistence ------------------------------------------------------------------------

    def snapshot(self) -> JsonObject:
        return {
            "seq": self._seq,
            "users": [self._users[self._user_by_seq[s]].to_json() for s in self._user_seqs],
            "events": [
                {"seq": r.seq, "user_id": r.user_id, "data": r.data}
                for r in sorted(self._events.values(), key=lambda r: r.seq)
            ],
        }

    def restore(self, data: JsonObject) -> None:
        self.clear()
        for raw in data.get("users", []):
            self._add_user(UserRecord(**raw))
        for raw in data.get("events", []):
            record = EventRecord(seq=raw["seq"], user_id=raw["user_id"], data=raw["data"])
            self._events[record.data["id"]] = record
            self._events_by_user.setdefault(record.user_id, []).append(record.data["id"])
        self._seq = int(data.get("seq", 0))


def _user_fields_of(event: JsonObject) -> EventInput:
    """The user-level fields an approved event carries (metadata, countries)."""
    user: dict[str, Any] = event.get("user", {})
    ref = UserRef(
        metadata=user.get("metadata"),
        country=user.get("country"),
        last_seen_country=user.get("last_seen_country"),
    )
    return EventInput(None, None, event["status"], event["regulation"], ref, {})
