"""Forward sync: a claimed batch of users' desired column values lands on Dataverse contacts.

For one batch: one lookup finds every user's contacts with the current values of the mapped
columns; unchanged columns are dropped; what remains goes out as `UpdateMultiple` (and
`CreateMultiple` for new contacts under `upsert_mode`) in chunks. A chunk Dataverse refuses is
replayed through `$batch` with `continue-on-error`, so one bad row becomes that user's dead
letter with Dataverse's error while the others are written. Throttling and server errors are
retried inside the client; what still fails is rescheduled by the retry policy.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from consentbridge.config.integration import Integration
from consentbridge.dataverse.batch import BatchRequest
from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.errors import (
    AuthError,
    DataverseError,
    RequestError,
    TransientError,
    from_batch_part,
)
from consentbridge.dataverse.metadata import ColumnInfo, MetadataCache
from consentbridge.mapping import AttributeType, ColumnSpec, MappingError, coerce
from consentbridge.store.values import ClaimedState, Direction, LogEntry, Outcome
from consentbridge.sync.merge import desired_values, last_event
from consentbridge.sync.retry import RetryPolicy

ENTITY_SET = "contacts"
WRITE_CHUNK = 1000  # rows per UpdateMultiple/CreateMultiple; see docs/performance.md
DIRECTION: Final[Direction] = "to_dataverse"
EVENT = "sync"


@dataclass
class ForwardRuntime:
    """What forward sync needs for one integration."""

    integration: Integration
    client: DataverseClient
    metadata: MetadataCache
    write_chunk: int = WRITE_CHUNK


@dataclass
class _UserPlan:
    claim: ClaimedState
    values: dict[str, Any] = field(default_factory=dict)  # coerced, known columns
    unknown: dict[str, Any] = field(default_factory=dict)  # columns Dataverse does not have
    contacts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # targets with contactid
    create: dict[str, Any] | None = None
    written: dict[str, Any] = field(default_factory=dict)
    failure: DataverseError | None = None
    request_id: str | None = None
    outcome: Outcome | None = None


def _spec(info: ColumnInfo) -> ColumnSpec:
    return ColumnSpec(
        logical_name=info.logical_name,
        attribute_type=AttributeType.from_metadata(info.attribute_type, info.attribute_type_name),
        options=info.options,
        max_length=info.max_length,
    )


def _same(current: Any, wanted: Any) -> bool:
    """Equal as Dataverse stores them (True is not 1 here: a Boolean column is not a choice)."""
    if isinstance(current, bool) or isinstance(wanted, bool):
        return type(current) is type(wanted) and current == wanted
    return bool(current == wanted)


def _lastname(user: str) -> str:
    """Dataverse requires lastname on create; unless the mapping writes one, the contact's
    lastname is the user's organization_user_id (documented in docs/sync.md)."""
    return user[:100]


class ForwardBatch:
    """One claimed batch of one integration, from plan to outcomes."""

    def __init__(
        self,
        runtime: ForwardRuntime,
        claims: Sequence[ClaimedState],
        policy: RetryPolicy,
        now: float | None = None,
    ) -> None:
        self.rt = runtime
        self.integration = runtime.integration
        self.policy = policy
        self.now = now if now is not None else time.time()
        self.plans = {c.organization_user_id: _UserPlan(c) for c in claims}

    # -- outcomes ----------------------------------------------------------------------------

    def _log(self, plan: _UserPlan, outcome: str, reason: str, columns: dict[str, Any]) -> LogEntry:
        return LogEntry(
            integration_id=self.integration.id,
            organization_user_id=plan.claim.organization_user_id,
            direction=DIRECTION,
            event=last_event(plan.claim.columns) or EVENT,
            outcome=outcome,
            reason=reason,
            columns=columns,
            request_id=plan.request_id,
            at=time.time(),
        )

    def _finish(
        self,
        plan: _UserPlan,
        kind: str,
        reason: str,
        columns: dict[str, Any] | None = None,
        *,
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        log_outcome = {
            "written": "written",
            "unchanged": "unchanged",
            "skipped": "skipped",
            "retry": "retrying",
            "dead": "dead_letter",
        }[kind]
        plan.outcome = Outcome(
            integration_id=self.integration.id,
            direction=DIRECTION,
            organization_user_id=plan.claim.organization_user_id,
            claimed_seq=plan.claim.seq,
            kind=kind,  # type: ignore[arg-type]
            log=self._log(plan, log_outcome, reason, columns or {}),
            error=error,
            next_attempt_at=next_attempt_at,
        )

    def _retry_or_dead(self, plan: _UserPlan, error: DataverseError) -> None:
        retry_after = error.retry_after_s if isinstance(error, TransientError) else None
        when = self.policy.next_attempt(
            attempt=plan.claim.attempts,
            first_failed_at=plan.claim.first_failed_at,
            now=self.now,
            retry_after_s=retry_after,
        )
        plan.request_id = plan.request_id or error.request_id
        if when is None:
            self._finish(
                plan,
                "dead",
                f"gave up after retrying for the maximum age: {error}",
                error=str(error),
            )
        else:
            self._finish(
                plan,
                "retry",
                f"will retry in {when - self.now:.0f} s: {error}",
                error=str(error),
                next_attempt_at=when,
            )

    def _fail_all(self, plans: Sequence[_UserPlan], error: DataverseError) -> None:
        for plan in plans:
            if plan.outcome is not None:
                continue
            if isinstance(error, TransientError | AuthError):  # fixable: keep retrying
                self._retry_or_dead(plan, error)
            else:
                plan.request_id = plan.request_id or error.request_id
                self._finish(plan, "dead", str(error), error=str(error))

    # -- steps -------------------------------------------------------------------------------

    async def run(self) -> list[Outcome]:
        try:
            columns = await self.rt.metadata.columns()
            self._coerce(columns)
            await self._lookup(columns)
            self._plan_writes()
            await self._write()
        except DataverseError as exc:
            self._fail_all(list(self.plans.values()), exc)
        outcomes = []
        for plan in self.plans.values():
            if plan.outcome is None:
                self._settle(plan)
            assert plan.outcome is not None
            outcomes.append(plan.outcome)
        return outcomes

    def _coerce(self, columns: dict[str, ColumnInfo]) -> None:
        for plan in self.plans.values():
            for column, value in desired_values(plan.claim.columns).items():
                info = columns.get(column)
                if info is None:
                    plan.unknown[column] = value
                    continue
                try:
                    plan.values[column] = coerce(value, _spec(info))
                except MappingError as exc:
                    self._finish(plan, "dead", str(exc), {column: value}, error=str(exc))
                    break

    async def _lookup(self, columns: dict[str, ColumnInfo]) -> None:
        match = self.integration.config.match_attribute
        mapped = {p.id for p in self.integration.config.properties if p.id in columns}
        select = ["contactid", match, *sorted(mapped - {match, "contactid"})]
        open_plans = [p for p in self.plans.values() if p.outcome is None]
        rows = await self.rt.client.find_by_column(
            ENTITY_SET, match, [p.claim.organization_user_id for p in open_plans], select
        )
        by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            value = row.get(match)
            if isinstance(value, str):
                by_key[value.casefold()].append(row)
        for plan in open_plans:
            plan.contacts = by_key.get(plan.claim.organization_user_id.casefold(), [])

    def _plan_writes(self) -> None:
        match = self.integration.config.match_attribute
        for plan in self.plans.values():
            if plan.outcome is not None:
                continue
            if not plan.contacts:
                if not self.integration.upsert_mode:
                    self._finish(
                        plan,
                        "skipped",
                        f"no matching contact: no contact has {match} equal to this user's "
                        "organization_user_id (upsert_mode is false)",
                    )
                    continue
                user = plan.claim.organization_user_id
                plan.create = {
                    match: user,
                    "lastname": _lastname(user),
                    **plan.values,
                    **plan.unknown,
                }
                continue
            for contact in plan.contacts:
                diff = {c: v for c, v in plan.values.items() if not _same(contact.get(c), v)}
                diff.update(plan.unknown)
                if diff:
                    plan.updates.append({"contactid": contact["contactid"], **diff})
            if not plan.updates:
                self._finish(
                    plan,
                    "unchanged",
                    "already up to date: every mapped column holds the desired value",
                    {},
                )

    async def _write(self) -> None:
        client = self.rt.client
        clean_updates: list[tuple[_UserPlan, dict[str, Any]]] = []
        clean_creates: list[tuple[_UserPlan, dict[str, Any]]] = []
        suspects: list[tuple[_UserPlan, BatchRequest]] = []
        for plan in self.plans.values():
            if plan.outcome is not None:
                continue
            for target in plan.updates:
                if plan.unknown:
                    suspects.append((plan, self._patch_request(target)))
                else:
                    clean_updates.append((plan, target))
            if plan.create is not None:
                if plan.unknown:
                    suspects.append(
                        (plan, BatchRequest("POST", client.url(ENTITY_SET), plan.create))
                    )
                else:
                    clean_creates.append((plan, plan.create))
        chunk = self.rt.write_chunk
        for start in range(0, len(clean_updates), chunk):
            part = clean_updates[start : start + chunk]
            try:
                request_id = await client.update_multiple(ENTITY_SET, [t for _, t in part])
            except RequestError:
                suspects.extend((plan, self._patch_request(t)) for plan, t in part)
                continue
            except DataverseError as exc:
                self._fail_all([p for p, _ in part], exc)
                continue
            self._mark_written(part, request_id)
        for start in range(0, len(clean_creates), chunk):
            part = clean_creates[start : start + chunk]
            try:
                _, request_id = await client.create_multiple(ENTITY_SET, [t for _, t in part])
            except RequestError:
                suspects.extend(
                    (plan, BatchRequest("POST", client.url(ENTITY_SET), t)) for plan, t in part
                )
                continue
            except DataverseError as exc:
                self._fail_all([p for p, _ in part], exc)
                continue
            self._mark_written(part, request_id)
        if suspects:
            await self._isolate(suspects)

    def _patch_request(self, target: dict[str, Any]) -> BatchRequest:
        body = {k: v for k, v in target.items() if k != "contactid"}
        return BatchRequest(
            "PATCH",
            self.rt.client.url(f"{ENTITY_SET}({target['contactid']})"),
            body,
            {"If-Match": "*"},
        )

    def _mark_written(
        self, part: Sequence[tuple[_UserPlan, dict[str, Any]]], request_id: str | None
    ) -> None:
        for plan, target in part:
            plan.request_id = request_id or plan.request_id
            plan.written.update({k: v for k, v in target.items() if k != "contactid"})

    async def _isolate(self, suspects: list[tuple[_UserPlan, BatchRequest]]) -> None:
        """Replay refused rows one by one inside `$batch` to learn which row is bad. A user
        whose row is refused because of columns Dataverse does not know still gets its known
        columns written in a second round: one misconfigured column must not hold back an
        opt-out."""
        open_suspects = [(p, r) for p, r in suspects if p.outcome is None]
        await self._run_isolated(open_suspects)
        second: list[tuple[_UserPlan, BatchRequest]] = []
        for plan, request in open_suspects:
            if isinstance(plan.failure, RequestError) and plan.unknown and request.body:
                known = {k: v for k, v in request.body.items() if k not in plan.unknown}
                if known:
                    second.append(
                        (plan, BatchRequest(request.method, request.url, known, request.headers))
                    )
        if second:
            await self._run_isolated(second, keep_failure=True)

    async def _run_isolated(
        self, items: list[tuple[_UserPlan, BatchRequest]], *, keep_failure: bool = False
    ) -> None:
        if not items:
            return
        try:
            responses = await self.rt.client.batch(
                [r for _, r in items], what=f"$batch of {len(items)} contact writes"
            )
        except DataverseError as exc:
            self._fail_all([p for p, _ in items], exc)
            return
        for (plan, request), response in zip(items, responses, strict=False):
            if response.status < 300:
                plan.written.update(request.body or {})
                plan.request_id = response.headers.get("x-ms-service-request-id") or plan.request_id
                continue
            if keep_failure and plan.failure is not None:
                continue
            error = from_batch_part(response, what="the write of this contact")
            # A retryable failure wins (the row may yet be written); else the first one stays.
            if (
                plan.failure is None
                or isinstance(error, TransientError)
                or isinstance(plan.failure, TransientError)
            ):
                plan.failure = error

    def _settle(self, plan: _UserPlan) -> None:
        if plan.failure is not None:
            if isinstance(plan.failure, TransientError):
                self._retry_or_dead(plan, plan.failure)
            else:
                wrote = f"wrote {', '.join(sorted(plan.written))}; " if plan.written else ""
                self._finish(
                    plan, "dead", f"{wrote}{plan.failure}", plan.written, error=str(plan.failure)
                )
            return
        count = len(plan.contacts)
        if plan.create is not None:
            reason = "written: created a new contact (upsert_mode is true)"
        elif count > 1:
            reason = f"written: updated all {count} contacts matching this organization_user_id"
        else:
            reason = "written: updated the matching contact"
        self._finish(plan, "written", reason, plan.written)


async def sync_to_dataverse(
    runtime: ForwardRuntime, claims: Sequence[ClaimedState], policy: RetryPolicy
) -> list[Outcome]:
    return await ForwardBatch(runtime, claims, policy).run()
