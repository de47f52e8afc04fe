"""Target ``contact``: a claimed batch of users' desired column values lands on Dataverse
contacts (the behaviour ConsentBridge always had; moved here from ``sync/forward.py``).

For one batch: one lookup finds every user's contacts with the current values of the mapped
columns; unchanged columns are dropped; what remains goes out as `UpdateMultiple` (and
`CreateMultiple` for new contacts under `upsert_mode`) in chunks. A chunk Dataverse refuses is
replayed through `$batch` with `continue-on-error`, so one bad row becomes that user's dead
letter with Dataverse's error while the others are written. Throttling and server errors are
retried inside the client; what still fails is rescheduled by the retry policy.

Slots of one user for several regulations (rows serving GDPR and rows serving CPRA) may sit in
one batch: their columns are disjoint or of disjoint regulations, and they are sent as one
row per contact (one create per user under `upsert_mode`), so no request names a contact twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from consentbridge.config.integration import CONTACT, Integration, Property
from consentbridge.dataverse.batch import BatchRequest
from consentbridge.dataverse.errors import (
    DataverseError,
    RequestError,
    TransientError,
    from_batch_part,
)
from consentbridge.dataverse.metadata import ColumnInfo
from consentbridge.dataverse.tables import CONTACT_TABLE
from consentbridge.mapping import (
    AttributeType,
    ColumnSpec,
    ConsentSnapshot,
    MappingError,
    coerce,
    project,
)
from consentbridge.mapping import Property as MappingProperty
from consentbridge.store.values import ClaimedState, Outcome
from consentbridge.sync.merge import desired_values
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.targets.base import ForwardRuntime, SlotPlan, TargetBatch, WriteLocks

ENTITY_SET: Final = CONTACT_TABLE.entity_set
PRIMARY_ID: Final = CONTACT_TABLE.primary_id


@dataclass
class _ContactPlan(SlotPlan):
    values: dict[str, Any] = field(default_factory=dict)  # coerced, known columns
    unknown: dict[str, Any] = field(default_factory=dict)  # columns Dataverse does not have
    contacts: list[dict[str, Any]] = field(default_factory=list)
    diffs: dict[str, dict[str, Any]] = field(default_factory=dict)  # contactid → columns
    create: dict[str, Any] | None = None
    # Another slot of the same user creates the contact; this one's columns ride along.
    rides_with: _ContactPlan | None = None


@dataclass
class _Write:
    """One row sent to Dataverse, carrying the columns of one or more slots of one contact."""

    plans: list[_ContactPlan]
    body: dict[str, Any]
    contact_id: str | None = None  # None: a create


def column_spec(info: ColumnInfo) -> ColumnSpec:
    return ColumnSpec(
        logical_name=info.logical_name,
        attribute_type=AttributeType.from_metadata(info.attribute_type, info.attribute_type_name),
        options=info.options,
        max_length=info.max_length,
    )


def same_value(current: Any, wanted: Any) -> bool:
    """Equal as Dataverse stores them (True is not 1 here: a Boolean column is not a choice)."""
    if isinstance(current, bool) or isinstance(wanted, bool):
        return type(current) is type(wanted) and current == wanted
    return bool(current == wanted)


def _lastname(user: str) -> str:
    """Dataverse requires lastname on create; unless the mapping writes one, the contact's
    lastname is the user's organization_user_id (documented in docs/sync.md)."""
    return user[:100]


# Parsed mappings by the identity of the rows (held, so the id cannot be reused while cached):
# parsing the path grammar for every webhook was ~10 % of intake.
_PARSED: dict[tuple[int, ...], tuple[Sequence[Property], list[MappingProperty]]] = {}
_MAX_PARSED = 256


def _parsed(rows: Sequence[Property]) -> list[MappingProperty]:
    key = tuple(id(row) for row in rows)
    cached = _PARSED.get(key)
    if cached is not None and all(a is b for a, b in zip(cached[0], rows, strict=True)):
        return cached[1]
    parsed = [MappingProperty(p.id, p.value, p.transform) for p in rows]
    if len(_PARSED) >= _MAX_PARSED:
        _PARSED.clear()
    _PARSED[key] = (list(rows), parsed)
    return parsed


class ContactTarget:
    """Columns of the Dataverse ``contact`` found by ``config.match_attribute``."""

    name: str = CONTACT

    def project(
        self, integration: Integration, rows: Sequence[Property], snapshot: ConsentSnapshot
    ) -> dict[str, Any]:
        return project(_parsed(rows), snapshot)

    async def write(
        self,
        runtime: ForwardRuntime,
        claims: Sequence[ClaimedState],
        policy: RetryPolicy,
        locks: WriteLocks | None = None,
    ) -> list[Outcome]:
        # Contacts are found by match_attribute and one user's slots are sent together, as
        # they always were; creations under upsert_mode take no lock (docs/journeys.md).
        return await ContactBatch(runtime, claims, policy).run()


class ContactBatch(TargetBatch[_ContactPlan]):
    """One claimed batch of contact slots of one integration, from plan to outcomes."""

    def __init__(
        self,
        runtime: ForwardRuntime,
        claims: Sequence[ClaimedState],
        policy: RetryPolicy,
        now: float | None = None,
    ) -> None:
        super().__init__(runtime, [_ContactPlan(c) for c in claims], policy, now)

    async def run(self) -> list[Outcome]:
        try:
            columns = await self.rt.metadata.columns()
            self._coerce(columns)
            await self._lookup(columns)
            self._plan_writes()
            await self._write()
        except DataverseError as exc:
            self.fail_all(list(self.plans.values()), exc)
        for plan in self.plans.values():
            if plan.outcome is None:
                self._settle(plan)
        return self.outcomes()

    def _coerce(self, columns: dict[str, ColumnInfo]) -> None:
        for plan in self.plans.values():
            for column, value in desired_values(plan.claim.columns).items():
                info = columns.get(column)
                if info is None:
                    plan.unknown[column] = value
                    continue
                try:
                    plan.values[column] = coerce(value, column_spec(info))
                except MappingError as exc:
                    self.finish(plan, "dead", str(exc), {column: value}, error=str(exc))
                    break

    async def _lookup(self, columns: dict[str, ColumnInfo]) -> None:
        match = self.integration.config.match_attribute
        mapped = {p.id for p in self.integration.config.rows_of(CONTACT)} & set(columns)
        select = [PRIMARY_ID, match, *sorted(mapped - {match, PRIMARY_ID})]
        open_plans = self.open_plans()
        users = sorted({p.claim.organization_user_id for p in open_plans})
        if not users:
            return
        rows = await self.rt.client.find_by_column(ENTITY_SET, match, users, select)
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            value = row.get(match)
            if isinstance(value, str):
                by_key[value.casefold()].append(row)
        for plan in open_plans:
            plan.contacts = by_key.get(plan.claim.organization_user_id.casefold(), [])

    def _plan_writes(self) -> None:
        match = self.integration.config.match_attribute
        creators: dict[str, _ContactPlan] = {}
        for plan in self.plans.values():
            if plan.outcome is not None:
                continue
            if not plan.contacts:
                if not self.integration.upsert_mode:
                    self.finish(
                        plan,
                        "skipped",
                        f"no matching contact: no contact has {match} equal to this user's "
                        "organization_user_id (upsert_mode is false)",
                    )
                    continue
                user = plan.claim.organization_user_id
                creator = creators.get(user)
                if creator is not None and creator.create is not None:
                    creator.create.update({**plan.values, **plan.unknown})
                    plan.rides_with = creator
                    continue
                plan.create = {
                    match: user,
                    "lastname": _lastname(user),
                    **plan.values,
                    **plan.unknown,
                }
                creators[user] = plan
                continue
            for contact in plan.contacts:
                diff = {c: v for c, v in plan.values.items() if not same_value(contact.get(c), v)}
                diff.update(plan.unknown)
                if diff:
                    plan.diffs[contact[PRIMARY_ID]] = diff
            if not plan.diffs:
                self.finish(
                    plan,
                    "unchanged",
                    "already up to date: every mapped column holds the desired value",
                    {},
                )

    def _writes(self) -> tuple[list[_Write], list[_Write]]:
        """Updates (one per contact, every slot's columns together) and creates."""
        updates: dict[str, _Write] = {}
        creates: list[_Write] = []
        for plan in self.open_plans():
            if plan.rides_with is not None:
                continue
            for contact_id, diff in plan.diffs.items():
                write = updates.setdefault(contact_id, _Write([], {}, contact_id))
                write.plans.append(plan)
                write.body.update(diff)
            if plan.create is not None:
                riders = [p for p in self.plans.values() if p.rides_with is plan]
                creates.append(_Write([plan, *riders], plan.create))
        return list(updates.values()), creates

    async def _write(self) -> None:
        client = self.rt.client
        updates, creates = self._writes()
        suspects: list[_Write] = []
        clean_updates: list[_Write] = []
        clean_creates: list[_Write] = []
        for write in updates:
            (suspects if any(p.unknown for p in write.plans) else clean_updates).append(write)
        for write in creates:
            (suspects if any(p.unknown for p in write.plans) else clean_creates).append(write)
        chunk = self.rt.write_chunk
        for start in range(0, len(clean_updates), chunk):
            part = clean_updates[start : start + chunk]
            try:
                request_id = await client.update_multiple(
                    ENTITY_SET, [{PRIMARY_ID: w.contact_id, **w.body} for w in part]
                )
            except RequestError:
                suspects.extend(part)
                continue
            except DataverseError as exc:
                self.fail_all([p for w in part for p in w.plans], exc)
                continue
            self._mark_written(part, request_id)
        for start in range(0, len(clean_creates), chunk):
            part = clean_creates[start : start + chunk]
            try:
                _, request_id = await client.create_multiple(ENTITY_SET, [w.body for w in part])
            except RequestError:
                suspects.extend(part)
                continue
            except DataverseError as exc:
                self.fail_all([p for w in part for p in w.plans], exc)
                continue
            self._mark_written(part, request_id)
        if suspects:
            await self._isolate(suspects)

    def _request(self, write: _Write, body: dict[str, Any]) -> BatchRequest:
        client = self.rt.client
        if write.contact_id is None:
            return BatchRequest("POST", client.url(ENTITY_SET), body)
        return BatchRequest(
            "PATCH", client.url(f"{ENTITY_SET}({write.contact_id})"), body, {"If-Match": "*"}
        )

    def _own(self, plan: _ContactPlan, write: _Write, body: dict[str, Any]) -> dict[str, Any]:
        """The columns of ``body`` that are this plan's (a shared row carries several)."""
        if write.contact_id is None:
            if len(write.plans) == 1:
                return dict(body)
            mine = {**plan.values, **plan.unknown}
            # The creating slot also wrote the columns every created contact gets.
            base = {self.integration.config.match_attribute, "lastname"} if plan.create else set()
            return {k: v for k, v in body.items() if k in mine or k in base}
        diff = plan.diffs.get(write.contact_id, {})
        return {k: v for k, v in body.items() if k in diff}

    def _mark_written(self, part: Sequence[_Write], request_id: str | None) -> None:
        for write in part:
            for plan in write.plans:
                plan.request_id = request_id or plan.request_id
                plan.written.update(self._own(plan, write, write.body))

    async def _isolate(self, suspects: list[_Write]) -> None:
        """Replay refused rows one by one inside `$batch` to learn which row is bad. A user
        whose row is refused because of columns Dataverse does not know still gets its known
        columns written in a second round: one misconfigured column must not hold back an
        opt-out."""
        open_suspects = [w for w in suspects if any(p.outcome is None for p in w.plans)]
        await self._run_isolated([(w, w.body) for w in open_suspects])
        second: list[tuple[_Write, dict[str, Any]]] = []
        for write in open_suspects:
            unknown = {k for p in write.plans for k in p.unknown}
            failed = any(isinstance(p.failure, RequestError) for p in write.plans)
            if failed and unknown:
                known = {k: v for k, v in write.body.items() if k not in unknown}
                if known:
                    second.append((write, known))
        if second:
            await self._run_isolated(second, keep_failure=True)

    async def _run_isolated(
        self, items: list[tuple[_Write, dict[str, Any]]], *, keep_failure: bool = False
    ) -> None:
        if not items:
            return
        try:
            responses = await self.rt.client.batch(
                [self._request(w, body) for w, body in items],
                what=f"$batch of {len(items)} contact writes",
            )
        except DataverseError as exc:
            self.fail_all([p for w, _ in items for p in w.plans], exc)
            return
        for (write, body), response in zip(items, responses, strict=False):
            for plan in write.plans:
                if response.status < 300:
                    plan.written.update(self._own(plan, write, body))
                    plan.request_id = (
                        response.headers.get("x-ms-service-request-id") or plan.request_id
                    )
                    continue
                if keep_failure and plan.failure is not None:
                    continue
                error = from_batch_part(response, what="the write of this contact")
                # A retryable failure wins (the row may yet be written); else the first stays.
                if (
                    plan.failure is None
                    or isinstance(error, TransientError)
                    or isinstance(plan.failure, TransientError)
                ):
                    plan.failure = error

    def _settle(self, plan: _ContactPlan) -> None:
        if plan.rides_with is not None:
            creator = plan.rides_with
            plan.failure, plan.request_id = creator.failure, creator.request_id
            if plan.failure is None and not plan.written:
                mine = {**plan.values, **plan.unknown}
                plan.written = {k: v for k, v in creator.written.items() if k in mine}
        if self.settle_failure(plan):
            return
        count = len(plan.contacts)
        if plan.create is not None or plan.rides_with is not None:
            reason = "written: created a new contact (upsert_mode is true)"
        elif count > 1:
            reason = f"written: updated all {count} contacts matching this organization_user_id"
        else:
            reason = "written: updated the matching contact"
        self.finish(plan, "written", reason, plan.written)
