"""Reverse sync (`to_didomi`): contact changes made in the CRM, and changes of Journeys consent
rows (unsubscribes, preference centres), become Didomi consent events.

For one claimed batch:

1. **Placeholders** (`contact:<id>`: the webhook did not name the user) are resolved with one
   batched lookup by `contactid`; each change is merged into the real user's row (per-column
   stamps, so a replay changes nothing) *before* the placeholder's outcome is recorded, so a
   crash in between only repeats the move.
2. For each user, a column a `Create` set to the column's default (from the cached column
   metadata) is **not sent**: a form posts every default, and an untouched default is nobody's
   consent choice. Every column is then compared with the `to_dataverse` state (what Didomi
   holds, as far as ConsentBridge knows): an equal value is a **no-op** (echo layer 2) and is
   not sent; a
   value whose Didomi stamp beats the Dataverse one lost a **conflict** (Didomi's change is newer)
   and is dropped with a log line naming both stamps; the rest is mapped back through the
   mapping's reverse projection (one-way columns are listed and skipped).
3. One consent event per user goes to `POST /consents/events` in calls of ≤ 100. Its id is a
   uuid5 of the integration, the user and the column stamps, so a retried batch never
   duplicates an event (Didomi answers 409, which counts as done).
4. The sent values are merged into the `to_dataverse` state with a Dataverse stamp, so Didomi's
   echo (`user.updated` carrying the same values) writes nothing to Dataverse (echo layer 3).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from consentbridge.config.integration import (
    CONTACT,
    CONTACT_POINT_CONSENT,
    Integration,
    slot_regulations,
)
from consentbridge.dataverse.errors import AuthError, DataverseError, TransientError
from consentbridge.didomi.client import EVENTS_PER_CALL, DidomiClient, DidomiError
from consentbridge.mapping import (
    ConsentSnapshot,
    MappingValueError,
    PathKind,
    Property,
    reverse_project,
)
from consentbridge.mapping.consent import NOT_SET
from consentbridge.store import Store
from consentbridge.store.values import (
    ClaimedState,
    Direction,
    IntakeItem,
    LogEntry,
    Outcome,
    OutcomeKind,
    StateRow,
    iso_utc,
)
from consentbridge.sync.consent_changes import column_value, reverse_projection
from consentbridge.sync.consent_changes import is_placeholder as is_consent_placeholder
from consentbridge.sync.consent_reverse import resolve_placeholders
from consentbridge.sync.merge import (
    EVENT_KEY,
    FROM_CREATE,
    Stamp,
    dataverse_change_time,
    merge_columns,
)
from consentbridge.sync.placeholders import (
    CONTACT_KEY,
    PLACEHOLDER_PREFIX,
    REREAD_CREATE_KEY,
    REREAD_KEY,
    Merge,
    is_placeholder,
    move_merge,
)
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.runtime import IntegrationRuntime

DIRECTION: Final[Direction] = "to_didomi"
FORWARD: Final[Direction] = "to_dataverse"
EVENT = "dataverse.change"
SOURCE = "dataverse"
# Fixed namespace of consent event ids: uuid5(EVENT_NAMESPACE, integration|user|stamps).
EVENT_NAMESPACE = uuid.UUID("6f1d7c1e-3b0a-5f43-9a52-2d4c1e0b7a11")
_LOG_OUTCOME: dict[OutcomeKind, str] = {
    "written": "written",
    "unchanged": "unchanged",
    "skipped": "skipped",
    "retry": "retrying",
    "dead": "dead_letter",
}


def _entries(columns: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c: e for c, e in columns.items() if not c.startswith("~") and isinstance(e, dict)}


def _same(a: Any, b: Any) -> bool:
    """Equal as Dataverse values (a Boolean is not the integer 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _stamp_text(entry: Mapping[str, Any]) -> str:
    version = entry.get("ver")
    at = iso_utc(float(entry.get("ts") or 0.0))
    return f"{entry.get('src', 'didomi')} {at}" + (f" (version {version})" if version else "")


def event_id(integration_id: str, user: str, columns: Mapping[str, tuple[Any, float]]) -> str:
    """Deterministic: the same change of the same user always gets the same event id."""
    material = json.dumps(
        [integration_id, user, sorted([c, v, ts] for c, (v, ts) in columns.items())],
        sort_keys=True,
        default=str,
    )
    return str(uuid.uuid5(EVENT_NAMESPACE, material))


def sent_merge(values: Mapping[str, tuple[Any, float]]) -> Merge:
    """Record values sent to Didomi in the `to_dataverse` state, each with its Dataverse stamp."""

    def merge(old: dict[str, Any] | None) -> dict[str, Any] | None:
        columns = old
        touched = False
        for column, (value, ts) in values.items():
            result = merge_columns(columns, {column: value}, Stamp(None, ts, SOURCE))
            columns, touched = result.columns, touched or result.touched
        if not touched or columns is None:
            return None
        columns[EVENT_KEY] = "dataverse.sent"
        return columns

    return merge


@dataclass
class _Plan:
    claim: ClaimedState
    outcome: Outcome | None = None
    send: dict[str, tuple[Any, float]] = field(default_factory=dict)  # column → (value, ts)
    notes: list[str] = field(default_factory=list)
    event: dict[str, Any] | None = None
    defaulted: list[str] = field(default_factory=list)  # a Create's untouched defaults

    @property
    def user(self) -> str:
        return self.claim.organization_user_id


class ReverseBatch:
    """One claimed `to_didomi` batch of one integration, from plan to outcomes."""

    def __init__(
        self,
        store: Store,
        runtime: IntegrationRuntime,
        claims: Sequence[ClaimedState],
        policy: RetryPolicy,
        now: float | None = None,
    ) -> None:
        self.store = store
        self.rt = runtime
        self.integration: Integration = runtime.integration
        self.policy = policy
        self.now = now if now is not None else time.time()
        # A batch holds one target's slots: contact columns, or consent rows (whose slot
        # columns are their `consent_key`s holding the `msdynmkt_value` choice, projected
        # back under ids of their own: `reverse_projection`).
        self.target = claims[0].target if claims else CONTACT
        self.properties = [
            Property(p.id, p.value, p.transform) for p in self.integration.config.rows_of(CONTACT)
        ]
        self.plans = [_Plan(c) for c in claims]

    # -- outcomes ----------------------------------------------------------------------------

    def _finish(
        self,
        plan: _Plan,
        kind: OutcomeKind,
        reason: str,
        columns: dict[str, Any] | None = None,
        *,
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        event = plan.claim.columns.get(EVENT_KEY)
        plan.outcome = Outcome(
            integration_id=self.integration.id,
            direction=DIRECTION,
            organization_user_id=plan.user,
            claimed_seq=plan.claim.seq,
            kind=kind,
            log=LogEntry(
                integration_id=self.integration.id,
                organization_user_id=plan.user,
                direction=DIRECTION,
                event=event if isinstance(event, str) else EVENT,
                outcome=_LOG_OUTCOME[kind],
                reason="; ".join([reason, *plan.notes]),
                columns=columns or {},
                request_id=plan.event["id"] if plan.event else None,
                at=time.time(),
                target=plan.claim.target,
                regulation=self._event_regulation(plan),
            ),
            error=error,
            next_attempt_at=next_attempt_at,
            target=plan.claim.target,
            regulation=plan.claim.regulation,
        )

    def _retry(self, plan: _Plan, error: str, retry_after_s: float | None = None) -> None:
        when = self.policy.next_attempt(
            attempt=plan.claim.attempts,
            first_failed_at=plan.claim.first_failed_at,
            now=self.now,
            retry_after_s=retry_after_s,
        )
        if when is None:
            self._finish(plan, "dead", f"gave up after retrying: {error}", error=error)
        else:
            self._finish(
                plan,
                "retry",
                f"will retry in {when - self.now:.0f} s: {error}",
                error=error,
                next_attempt_at=when,
            )

    def _dataverse_failed(self, plans: Sequence[_Plan], exc: DataverseError) -> None:
        for plan in plans:
            if isinstance(exc, TransientError | AuthError):
                retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
                self._retry(plan, str(exc), retry_after)
            else:
                self._finish(plan, "dead", str(exc), error=str(exc))

    def _didomi_failed(self, plan: _Plan, exc: DidomiError) -> None:
        # 401/403 mean credentials to fix, not a change Didomi refuses: keep retrying.
        status = exc.status
        if exc.transient or status is None or status >= 500 or status in (401, 403, 429):
            self._retry(plan, exc.message)
        else:
            self._finish(
                plan,
                "dead",
                exc.message,
                {c: v for c, (v, _) in plan.send.items()},
                error=exc.message,
            )

    # -- steps -------------------------------------------------------------------------------

    async def run(self) -> list[Outcome]:
        consent = [p for p in self.plans if is_consent_placeholder(p.user)]
        placeholders = [p for p in self.plans if is_placeholder(p.user)]
        users = [p for p in self.plans if p not in consent and p not in placeholders]
        if consent:
            await self._resolve_consent(consent)
        if placeholders:
            await self._resolve(placeholders)
        if users:
            await self._sync(users)
        outcomes = []
        for plan in self.plans:
            assert plan.outcome is not None, plan.user
            outcomes.append(plan.outcome)
        return outcomes

    async def _resolve_consent(self, plans: list[_Plan]) -> None:
        """Consent-row changes: one read of the rows, then each moves to its user's slots
        (store first), as ``sync/consent_reverse.py`` decides."""
        try:
            resolved = await resolve_placeholders(self.rt, [p.claim for p in plans], self.now)
        except DataverseError as exc:
            self._dataverse_failed(plans, exc)
            return
        if resolved.moves:
            # Durable under the real users before the placeholders' outcomes are recorded.
            await self.store.intake_many(resolved.moves)
        for plan in plans:
            kind, reason = resolved.outcomes[plan.user]
            self._finish(plan, kind, reason)

    async def _resolve(self, plans: list[_Plan]) -> None:
        """One lookup by contactid; each change moves to its user's row (store first)."""
        match = self.integration.config.match_attribute
        mapped = sorted({p.id for p in self.properties} - {match, "contactid"})
        reread = any(p.claim.columns.get(REREAD_KEY) for p in plans)
        ids = {
            p.user: str(p.claim.columns.get(CONTACT_KEY) or p.user[len(PLACEHOLDER_PREFIX) :])
            for p in plans
        }
        try:
            if reread:  # only columns the table has: one unknown column would fail the lookup
                known = await self.rt.forward.metadata.columns()
                mapped = [c for c in mapped if c in known]
            select = ["contactid", match, *(["modifiedon", *mapped] if reread else [])]
            rows = await self.rt.dataverse.find_by_column(
                "contacts", "contactid", sorted(set(ids.values())), select
            )
        except DataverseError as exc:
            self._dataverse_failed(plans, exc)
            return
        by_id = {str(r.get("contactid", "")).lower(): r for r in rows}
        moves: list[IntakeItem] = []
        for plan in plans:
            contact_id = ids[plan.user].lower()
            row = by_id.get(contact_id)
            user = row.get(match) if row else None
            if row is None:
                self._finish(
                    plan,
                    "skipped",
                    f"contact {contact_id} no longer exists in "
                    "Dataverse, so its change names no Didomi user",
                )
                continue
            if not isinstance(user, str) or not user.strip():
                self._finish(
                    plan,
                    "skipped",
                    f"contact {contact_id} has no {match}, so its change names no Didomi user",
                )
                continue
            moves.append(self._move(plan, row, user.strip(), mapped))
            self._finish(
                plan,
                "unchanged",
                f"contact {contact_id} is user {user.strip()}; the "
                "change continues under that user",
            )
        if moves:
            # Durable under the real user before the placeholder's outcome is recorded.
            await self.store.intake_many(moves)

    def _move(
        self, plan: _Plan, row: Mapping[str, Any], user: str, mapped: list[str]
    ) -> IntakeItem:
        reread: dict[str, Any] = {}
        reread_ts = float(plan.claim.columns.get(REREAD_KEY) or 0.0)
        if reread_ts:
            reread = {c: row[c] for c in mapped if c in row}
            modified = row.get("modifiedon")
            if isinstance(modified, str):
                with contextlib.suppress(ValueError):
                    reread_ts = dataverse_change_time(
                        dt.datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp(),
                        self.now,
                    )
        event = plan.claim.columns.get(EVENT_KEY)
        return IntakeItem(
            integration_id=self.integration.id,
            direction=DIRECTION,
            organization_user_id=user,
            delivery_key=None,
            merge=move_merge(
                _entries(plan.claim.columns),
                reread,
                reread_ts,
                event if isinstance(event, str) else EVENT,
                reread_from_create=plan.claim.columns.get(REREAD_CREATE_KEY) is True,
            ),
            log=None,
            now=self.now,
            target=plan.claim.target,
            regulation=plan.claim.regulation,
        )

    async def _sync(self, plans: list[_Plan]) -> None:
        didomi = self.rt.didomi
        if didomi is None:
            for plan in plans:
                reason = (
                    "the integration has no didomi block: add didomi.api_key and "
                    "didomi.api_secret, then replay the dead letters"
                )
                self._finish(plan, "dead", reason, error=reason)
            return
        forward: dict[tuple[str, str], StateRow] = {}
        for regulation in sorted({p.claim.regulation for p in plans}):
            # The forward slot of the same rows: the same target and regulations.
            users = [p.user for p in plans if p.claim.regulation == regulation]
            found = await self.store.get_states(
                self.integration.id, FORWARD, users, self.target, regulation
            )
            forward.update(((user, regulation), row) for user, row in found.items())
        defaults = await self._defaults(plans)
        for plan in plans:
            if plan.outcome is None:
                self._compare(plan, forward.get((plan.user, plan.claim.regulation)), defaults)
        for plan in plans:
            if plan.outcome is None:
                await self._project(plan, didomi)
        await self._send([p for p in plans if p.event is not None], didomi)
        sent = [p for p in plans if p.event is not None and p.outcome is None]
        if sent:
            await self.store.intake_many(
                [
                    IntakeItem(
                        integration_id=self.integration.id,
                        direction=FORWARD,
                        organization_user_id=plan.user,
                        delivery_key=None,
                        merge=sent_merge(plan.send),
                        log=None,
                        now=self.now,
                        target=plan.claim.target,
                        regulation=plan.claim.regulation,
                    )
                    for plan in sent
                ]
            )
        for plan in sent:
            values = {c: v for c, (v, _) in plan.send.items()}
            self._finish(
                plan,
                "written",
                f"written: sent consent event {plan.event['id']} to Didomi"
                if plan.event
                else "written: sent to Didomi",
                values,
            )

    async def _defaults(self, plans: list[_Plan]) -> dict[str, Any]:
        """Column → default, when a plan holds values a Create set (else nothing is read); a
        failed metadata read retries those plans, as any Dataverse failure does."""
        created = [
            p for p in plans if any(e.get(FROM_CREATE) for e in _entries(p.claim.columns).values())
        ]
        if not created:
            return {}
        try:
            columns = await self.rt.forward.metadata.columns()
        except DataverseError as exc:
            self._dataverse_failed(created, exc)
            return {}
        return {name: info.default for name, info in columns.items()}

    def _projection(self, plan: _Plan) -> tuple[list[Property], dict[str, str]]:
        """The properties a plan's columns are mapped back through, and slot column →
        property id (the same for contact columns)."""
        if self.target == CONTACT_POINT_CONSENT:
            return reverse_projection(self.integration, plan.claim.regulation)
        return self.properties, {p.id: p.id for p in self.properties}

    def _compare(self, plan: _Plan, forward: StateRow | None, defaults: Mapping[str, Any]) -> None:
        """Keep the columns Didomi does not hold yet, whose change is not older and that are
        not a Create's untouched defaults."""
        mapped = set(self._projection(plan)[1])
        theirs = forward.columns if forward is not None else {}
        for column, entry in sorted(_entries(plan.claim.columns).items()):
            if column not in mapped:
                continue  # unmapped since the change arrived
            value, ts = entry.get("v"), float(entry.get("ts") or 0.0)
            if entry.get(FROM_CREATE) and _same(value, defaults.get(column)):
                plan.defaulted.append(column)
                continue
            held = theirs.get(column)
            if isinstance(held, dict) and _same(held.get("v"), value):
                continue  # Didomi already holds it: nothing to send
            if isinstance(held, dict) and not Stamp(None, ts, SOURCE).beats(held):
                plan.notes.append(
                    f"conflict on {column}: Didomi's change ({_stamp_text(held)}) is newer than "
                    f"this Dataverse change (modifiedon {iso_utc(int(ts))}), so Didomi's value "
                    f"{held.get('v')!r} is kept and {value!r} is dropped"
                )
                continue
            plan.send[column] = (value, ts)
        conflicts = bool(plan.notes)
        if plan.defaulted:
            many = len(plan.defaulted) > 1
            plan.notes.append(
                f"{', '.join(plan.defaulted)} kept the default{'s' if many else ''} of a new "
                f"contact, which is nobody's consent choice, so {'they were' if many else 'it was'}"
                " not sent"
            )
        if not plan.send:
            if conflicts:
                self._finish(plan, "skipped", "nothing sent: Didomi holds newer values")
            elif plan.defaulted:
                self._finish(plan, "skipped", "nothing sent: the new contact's values are defaults")
            else:
                self._finish(
                    plan, "unchanged", "already up to date: Didomi holds every changed value"
                )

    async def _project(self, plan: _Plan, didomi: DidomiClient) -> None:
        properties, ids = self._projection(plan)
        if self.target == CONTACT_POINT_CONSENT:
            self._drop_not_set(plan)
        by_id = {p.id: p for p in properties}
        values = {ids[c]: v for c, (v, _) in plan.send.items() if c in ids}
        if self.target == CONTACT_POINT_CONSENT:
            values = {k: column_value(v, by_id[k].transform) for k, v in values.items()}
        column_of = {i: c for c, i in ids.items()}
        current: ConsentSnapshot | None = None
        try:
            if self._needs_current(properties, values):
                raw = await didomi.get_user(plan.user)
                current = ConsentSnapshot.from_user(raw) if raw is not None else None
            projected = reverse_project(
                properties, values, organization_user_id=plan.user, current=current
            )
            result = replace(
                projected,
                one_way={column_of.get(k, k): r for k, r in projected.one_way.items()},
                skipped={column_of.get(k, k): r for k, r in projected.skipped.items()},
            )
        except DidomiError as exc:
            self._didomi_failed(plan, exc)
            return
        except MappingValueError as exc:
            self._finish(plan, "dead", str(exc), values, error=str(exc))
            return
        for column, reason in sorted(result.one_way.items()):
            plan.notes.append(f"{column} is one-way ({reason}) and was not sent")
        for column, reason in sorted(result.skipped.items()):
            plan.notes.append(f"{column} was not sent: {reason}")
        for column in (*result.one_way, *result.skipped):
            plan.send.pop(column, None)
        if result.is_empty or not plan.send:
            self._finish(plan, "skipped", "nothing the mapping can send back to Didomi")
            return
        created = max(ts for _, ts in plan.send.values())
        event: dict[str, Any] = {
            "id": event_id(self.integration.id, plan.user, plan.send),
            **result.event_body(),
            "created_at": iso_utc(created),
        }
        regulation = self._event_regulation(plan)
        if regulation != "gdpr":
            event["regulation"] = regulation
        plan.event = event

    def _drop_not_set(self, plan: _Plan) -> None:
        """A consent row at Not Set is not sent: a value nobody chose never becomes consent."""
        for column, (choice, _) in list(plan.send.items()):
            if choice == NOT_SET or not isinstance(choice, int) or isinstance(choice, bool):
                plan.notes.append(f"{column} is Not Set, which is nobody's consent choice")
                del plan.send[column]

    def _event_regulation(self, plan: _Plan) -> str:
        """The regulation a change of this slot is sent to Didomi under: the slot's own, or
        for rows serving several, the first of them in ``config.regulations``."""
        served = slot_regulations(plan.claim.regulation)
        ordered = [r for r in self.integration.config.regulations if r in served]
        return (ordered or sorted(served))[0]

    def _needs_current(self, properties: Sequence[Property], values: Mapping[str, Any]) -> bool:
        """A value toggle (`…_values_<pref>_<value>`) or an ambiguous path needs Didomi's
        current state to be mapped back."""
        return any(
            prop.id in values
            and (len(prop.candidates) > 1 or prop.candidates[0].kind is PathKind.VALUE_SELECTED)
            for prop in properties
        )

    async def _send(self, plans: list[_Plan], didomi: DidomiClient) -> None:
        for start in range(0, len(plans), EVENTS_PER_CALL):
            chunk = plans[start : start + EVENTS_PER_CALL]
            try:
                await didomi.create_events([p.event for p in chunk if p.event is not None])
                continue
            except DidomiError as exc:
                if len(chunk) == 1 or exc.transient or exc.status is None or exc.status >= 500:
                    for plan in chunk:
                        self._didomi_failed(plan, exc)
                    continue
            # Didomi refused the call: find the event it refuses, one by one.
            for plan in chunk:
                try:
                    await didomi.create_events([plan.event] if plan.event else [])
                except DidomiError as exc:
                    self._didomi_failed(plan, exc)


class ReverseEngine:
    """The `to_didomi` engine of the worker: `await engine(runtime, claims, policy)`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(
        self, runtime: IntegrationRuntime, claims: Sequence[ClaimedState], policy: RetryPolicy
    ) -> list[Outcome]:
        return await ReverseBatch(self.store, runtime, claims, policy).run()
