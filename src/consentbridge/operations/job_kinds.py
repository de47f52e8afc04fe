"""What each kind of job does with one page: the readers behind `backfill` and `reconcile`.

A kind reads one page at a cursor and says where the next one starts; the runner
(`operations/job_runner.py`) saves that cursor and the counters after every page. Everything a
page queues enters the store through ``enqueue`` — the one place jobs hand changes to intake.

- ``DidomiBackfill``: a page of Didomi users (cursor paging) merged into the `to_dataverse`
  desired state exactly like a `user.updated` webhook — newest wins, so a backfill never
  overwrites a newer change, and a second run merges nothing.
- ``DataverseBackfill``: a page of contacts (their mapped columns, `@odata.nextLink` paging)
  merged into the `to_didomi` state, stamped with `modifiedon`; the reverse worker then drops
  what Didomi already holds or holds newer.
- ``Reconcile``: a page of Didomi users, the contacts they match, and every mapped column whose
  value differs (as coerced for Dataverse); with ``fix`` the differing users are queued again so
  the workers write the difference.

With ``dry_run`` a page reads the store but writes nothing: it counts what would be queued.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Protocol

from consentbridge.config.integration import CONTACT, Integration
from consentbridge.context import AppContext
from consentbridge.dataverse.errors import DataverseError
from consentbridge.didomi.client import DidomiClient, DidomiError
from consentbridge.didomi.webhooks import ConsentChange, delivery_key, parse_timestamp
from consentbridge.mapping import MappingError, coerce
from consentbridge.operations.connection import (
    dataverse_failure,
    didomi_failure,
    one_off_didomi,
    one_off_runtime,
)
from consentbridge.operations.errors import InvalidInput, Issue
from consentbridge.operations.intake import didomi_items
from consentbridge.operations.intake import enqueue as intake_enqueue
from consentbridge.store.values import Direction, IntakeItem, IntakeResult
from consentbridge.sync.forward import ENTITY_SET
from consentbridge.sync.merge import EVENT_KEY, Stamp, dataverse_change_time, merge_columns
from consentbridge.sync.runtime import IntegrationRuntime
from consentbridge.sync.targets.contact import column_spec, same_value

PAGE = 100  # Didomi pages users by 100 (reference/didomi.md)
MAX_REPORTED = 1000  # differences listed in a reconcile summary; beyond, only counted
RECONCILED_KEY: Final = "~reconciled"
"""Set by a reconcile fix so the merge differs from the stored state and the user is pending
again even though the desired values did not change (Dataverse changed behind our back)."""


@dataclass
class PageResult:
    """One page: how many records it read, the next cursor (None: this was the last page),
    counter increments, and (reconcile) the differences found."""

    read: int
    cursor: str | None
    counts: dict[str, int] = field(default_factory=dict)
    differences: list[dict[str, Any]] = field(default_factory=list)


class JobKind(Protocol):
    async def page(self, cursor: str | None) -> PageResult: ...

    async def aclose(self) -> None: ...


def user_change(user: dict[str, Any]) -> ConsentChange | None:
    """A Didomi user of the list endpoint as the change a `user.updated` webhook would carry;
    None without an organization_user_id (nothing to match a contact by)."""
    org_user_id = user.get("organization_user_id")
    if not isinstance(org_user_id, str) or not org_user_id:
        return None
    version = user.get("version")
    return ConsentChange(
        event_type="backfill",
        organization_user_id=org_user_id,
        regulation=str(user.get("regulation") or "gdpr").lower(),
        snapshot={
            "organization_user_id": org_user_id,
            "metadata": user.get("metadata") if isinstance(user.get("metadata"), dict) else {},
            "consents": user.get("consents") if isinstance(user.get("consents"), dict) else {},
        },
        version=version if isinstance(version, int) and not isinstance(version, bool) else None,
        timestamp=parse_timestamp(user.get("updated_at")),
        delivery_key=delivery_key({"backfill": user}),
    )


async def enqueue(ctx: AppContext, items: Sequence[IntakeItem]) -> list[IntakeResult]:
    """Hand a page's changes to intake (one transaction) and wake this process's workers:
    the same group-committed path as the webhooks (``operations/intake.py``)."""
    if not items:
        return []
    return await intake_enqueue(ctx, items)


async def _count_or_enqueue(
    ctx: AppContext, direction: Direction, items: list[IntakeItem], dry_run: bool
) -> dict[str, int]:
    if dry_run:
        changed = 0
        for target, regulation in sorted({(i.target, i.regulation) for i in items}):
            slot = [i for i in items if (i.target, i.regulation) == (target, regulation)]
            states = await ctx.store.get_states(
                slot[0].integration_id,
                direction,
                [i.organization_user_id for i in slot],
                target,
                regulation,
            )
            for item in slot:
                state = states.get(item.organization_user_id)
                changed += item.merge(state.columns if state else None) is not None
    else:
        changed = sum(1 for r in await enqueue(ctx, items) if r.changed)
    return {"queued": changed, "unchanged": len(items) - changed}


def _didomi_items(
    integration: Integration, users: list[dict[str, Any]], counts: dict[str, int], now: float
) -> list[tuple[str, IntakeItem]]:
    """The `to_dataverse` items of a page of Didomi users, by organization_user_id."""
    items: list[tuple[str, IntakeItem]] = []
    for user in users:
        change = user_change(user)
        if change is None:
            counts["without_id"] = counts.get("without_id", 0) + 1
            continue
        try:
            slots = didomi_items(integration, change, now)
        except InvalidInput:  # one user's consent state the mapping cannot read
            counts["unreadable"] = counts.get("unreadable", 0) + 1
            continue
        # A backfill is not a delivery: no delivery key, so running it twice merges twice
        # (harmlessly: equal stamps never win). One item per slot the user's state reaches.
        items.extend(
            (change.organization_user_id, replace(item, delivery_key=None)) for item in slots
        )
    return items


async def _users_page(
    client: DidomiClient, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return await client.users_page(cursor, page_size=PAGE)
    except DidomiError as exc:
        raise didomi_failure(exc) from exc


class DidomiBackfill:
    def __init__(
        self, ctx: AppContext, integration: Integration, client: DidomiClient, *, dry_run: bool
    ) -> None:
        self.ctx, self.integration, self.client, self.dry_run = ctx, integration, client, dry_run

    async def page(self, cursor: str | None) -> PageResult:
        users, following = await _users_page(self.client, cursor)
        counts: dict[str, int] = {"users_read": len(users)}
        items = [item for _, item in _didomi_items(self.integration, users, counts, time.time())]
        counts.update(await _count_or_enqueue(self.ctx, "to_dataverse", items, self.dry_run))
        return PageResult(len(users), following, counts)

    async def aclose(self) -> None:
        await self.client.aclose()


def _modified_on(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class DataverseBackfill:
    """Contacts' mapped columns → the `to_didomi` state (the CRM → Didomi direction)."""

    def __init__(
        self,
        ctx: AppContext,
        integration: Integration,
        runtime: IntegrationRuntime,
        *,
        dry_run: bool,
    ) -> None:
        self.ctx, self.integration, self.rt, self.dry_run = ctx, integration, runtime, dry_run

    async def _select(self) -> list[str]:
        known = await self.rt.forward.metadata.columns()
        match = self.integration.config.match_attribute
        return sorted(
            {p.id for p in self.integration.config.properties if p.id in known}
            - {match, "contactid"}
        )

    async def page(self, cursor: str | None) -> PageResult:
        match = self.integration.config.match_attribute
        mapped = await self._select()
        headers = {"Prefer": f"odata.maxpagesize={PAGE}"}
        what = "the contact list"
        try:
            if cursor is None:
                params = {
                    "$select": ",".join(["contactid", match, "modifiedon", *mapped]),
                    "$filter": f"{match} ne null",
                    "$orderby": "contactid",
                }
                body = await self.rt.dataverse.get_json(
                    ENTITY_SET, what=what, params=params, headers=headers
                )
            else:
                body = await self.rt.dataverse.get_json(cursor, what=what, headers=headers)
        except DataverseError as exc:
            raise dataverse_failure(exc) from exc
        rows = [r for r in body.get("value", []) if isinstance(r, dict)]
        following = body.get("@odata.nextLink")
        now = time.time()
        counts: dict[str, int] = {"contacts_read": len(rows)}
        items: list[IntakeItem] = []
        for row in rows:
            user = row.get(match)
            if not isinstance(user, str) or not user.strip():
                counts["without_id"] = counts.get("without_id", 0) + 1
                continue
            # A column nobody set (null) is nobody's consent choice: it is not sent.
            values = {c: row[c] for c in mapped if row.get(c) is not None}
            if values:
                items.append(
                    self._item(user.strip(), values, _modified_on(row.get("modifiedon")), now)
                )
        counts.update(await _count_or_enqueue(self.ctx, "to_didomi", items, self.dry_run))
        return PageResult(len(rows), following if isinstance(following, str) else None, counts)

    def _item(
        self, user: str, values: dict[str, Any], modified_on: float | None, now: float
    ) -> IntakeItem:
        # Stamped with the latest instant `modifiedon` allows, not with when we read it: read
        # again unchanged, the contact has the same stamp and merges nothing.
        at = dataverse_change_time(modified_on, modified_on + 1.0) if modified_on else now
        stamp = Stamp(None, at, "dataverse")

        def merge(old: dict[str, Any] | None) -> dict[str, Any] | None:
            result = merge_columns(old, values, stamp)
            if not result.touched:
                return None
            result.columns[EVENT_KEY] = "backfill"
            return result.columns

        return IntakeItem(
            integration_id=self.integration.id,
            direction="to_didomi",
            organization_user_id=user,
            delivery_key=None,
            merge=merge,
            log=None,
            now=now,
        )

    async def aclose(self) -> None:
        await self.rt.aclose()


class Reconcile:
    """Didomi users against the contacts they match, column by column."""

    def __init__(
        self,
        ctx: AppContext,
        integration: Integration,
        client: DidomiClient,
        runtime: IntegrationRuntime,
        *,
        fix: bool,
        dry_run: bool,
    ) -> None:
        self.ctx, self.integration, self.client, self.rt = ctx, integration, client, runtime
        self.fix, self.dry_run = fix, dry_run

    async def page(self, cursor: str | None) -> PageResult:
        users, following = await _users_page(self.client, cursor)
        now = time.time()
        counts: dict[str, int] = {"users_read": len(users)}
        # Reconcile compares contact columns: the users' contact slots (first of each user).
        items: dict[str, IntakeItem] = {}
        for user, item in _didomi_items(self.integration, users, counts, now):
            if item.target == CONTACT:
                items.setdefault(user, item)
        try:
            differences = await self._compare(items, counts)
        except DataverseError as exc:
            raise dataverse_failure(exc) from exc
        queue = [
            _forced(items[d["organization_user_id"]], now)
            for d in differences
            if d["contactid"] is not None or self.integration.upsert_mode
        ]
        counts["fixes"] = len(queue) if self.fix else 0
        if self.fix and not self.dry_run:
            await enqueue(self.ctx, queue)
        return PageResult(len(users), following, counts, differences)

    async def _compare(
        self, items: dict[str, IntakeItem], counts: dict[str, int]
    ) -> list[dict[str, Any]]:
        columns = await self.rt.forward.metadata.columns()
        wanted: dict[str, dict[str, Any]] = {}
        for user, item in items.items():
            values = _desired(item)
            if not values:
                continue
            coerced: dict[str, Any] = {}
            for column, value in values.items():
                info = columns.get(column)
                if info is None:
                    continue
                try:
                    coerced[column] = coerce(value, column_spec(info))
                except MappingError:
                    continue
            if coerced:
                wanted[user] = coerced
        match = self.integration.config.match_attribute
        mapped = sorted({c for v in wanted.values() for c in v} - {match, "contactid"})
        rows = await self.rt.forward.client.find_by_column(
            ENTITY_SET, match, list(wanted), ["contactid", match, *mapped]
        )
        by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if isinstance(row.get(match), str):
                by_user[row[match].casefold()].append(row)
        differences: list[dict[str, Any]] = []
        for user, want in wanted.items():
            contacts = by_user.get(user.casefold(), [])
            counts["compared"] = counts.get("compared", 0) + 1
            if not contacts:
                counts["missing_contacts"] = counts.get("missing_contacts", 0) + 1
                differences.append(
                    {
                        "organization_user_id": user,
                        "contactid": None,
                        "columns": {c: {"didomi": v, "dataverse": None} for c, v in want.items()},
                    }
                )
                continue
            differs = False
            for contact in contacts:
                diff = {
                    c: {"didomi": v, "dataverse": contact.get(c)}
                    for c, v in want.items()
                    if not same_value(contact.get(c), v)
                }
                if diff:
                    differs = True
                    counts["columns_differing"] = counts.get("columns_differing", 0) + len(diff)
                    differences.append(
                        {
                            "organization_user_id": user,
                            "contactid": contact.get("contactid"),
                            "columns": diff,
                        }
                    )
            counts["differing" if differs else "equal"] = (
                counts.get("differing" if differs else "equal", 0) + 1
            )
        return differences

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.rt.aclose()


def _desired(item: IntakeItem) -> dict[str, Any]:
    """The column values a Didomi item would merge into an empty state (its projection)."""
    merged = item.merge(None) or {}
    return {c: e.get("v") for c, e in merged.items() if not c.startswith("~")}


def _forced(item: IntakeItem, now: float) -> IntakeItem:
    """The item, made to leave the user pending even when the desired values are unchanged."""
    base = item.merge

    def merge(old: dict[str, Any] | None) -> dict[str, Any] | None:
        merged = base(old)
        columns = dict(merged if merged is not None else old or {})
        columns[RECONCILED_KEY] = now
        columns[EVENT_KEY] = "reconcile"
        return columns

    return replace(item, merge=merge)


async def open_kind(
    ctx: AppContext, integration: Integration, kind: str, params: dict[str, Any]
) -> JobKind:
    """The reader of a job, with its clients open; ``InvalidInput`` (422) names a setting that
    does not work — the same answers as the one-off operations."""
    dry_run = bool(params.get("dry_run"))
    source = params.get("from", "didomi")
    if integration.didomi is None:
        what = (
            "sends contacts' values to the Didomi API"
            if kind == "backfill" and source == "dataverse"
            else "reads users from the Didomi API"
        )
        raise InvalidInput(
            [
                Issue(
                    "didomi",
                    f"A {kind} {what}; add didomi.api_key and didomi.api_secret to the "
                    "integration.",
                )
            ]
        )
    if kind == "backfill" and source == "dataverse":
        return DataverseBackfill(
            ctx, integration, await one_off_runtime(integration), dry_run=dry_run
        )
    client = await one_off_didomi(integration)
    if kind == "backfill":
        return DidomiBackfill(ctx, integration, client, dry_run=dry_run)
    try:
        runtime = await one_off_runtime(integration)
    except BaseException:
        await client.aclose()
        raise
    return Reconcile(
        ctx, integration, client, runtime, fix=bool(params.get("fix")), dry_run=dry_run
    )
