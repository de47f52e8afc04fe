"""Full resync: every Didomi user of the organization is read (cursor paging) and merged into
the desired state exactly like a `user.updated` webhook — newest wins, so a backfill never
overwrites a newer change — then the workers write what differs. With `dry_run` nothing is
stored; the summary says what would be queued."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from consentbridge.context import AppContext
from consentbridge.didomi.client import DidomiError
from consentbridge.didomi.webhooks import ConsentChange, delivery_key, parse_timestamp
from consentbridge.logs import get_logger
from consentbridge.operations.connection import didomi_failure, one_off_didomi
from consentbridge.operations.errors import InvalidInput, Issue, NotFound
from consentbridge.operations.intake import didomi_items, enqueue
from consentbridge.store.values import IntakeItem

log = get_logger("consentbridge.backfill")

PAGE = 100
PROGRESS_EVERY_S = 10.0  # a `job.progress` line at most this often


@dataclass
class BackfillSummary:
    source: str
    dry_run: bool
    users_read: int = 0
    without_id: int = 0
    queued: int = 0
    unchanged: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _change(user: dict[str, Any]) -> ConsentChange | None:
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


async def backfill(
    ctx: AppContext,
    integration_id: str,
    *,
    source: str = "didomi",
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BackfillSummary:
    integration = await ctx.integration(integration_id)
    if integration is None:
        raise NotFound(f"No integration has the id '{integration_id}'.")
    if source != "didomi":
        raise InvalidInput(
            [
                Issue(
                    "source",
                    "Only --from didomi is available in this version; "
                    "a Dataverse-side backfill comes with the bidirectional flow.",
                )
            ]
        )
    if integration.didomi is None:
        raise InvalidInput(
            [
                Issue(
                    "didomi",
                    "A backfill reads users from the Didomi API; add "
                    "didomi.api_key and didomi.api_secret to the integration.",
                )
            ]
        )
    summary = BackfillSummary(source=source, dry_run=dry_run)
    started = time.monotonic()
    job: dict[str, Any] = {"job": "backfill", "integration": integration_id, "dry_run": dry_run}
    log.info("job.started", source=source, **job)
    reported = started
    client = await one_off_didomi(integration)
    page: list[IntakeItem] = []

    async def flush() -> None:
        if not page:
            return
        if dry_run:
            for item in page:
                state = await ctx.store.get_state(
                    integration.id,
                    "to_dataverse",
                    item.organization_user_id,
                    item.target,
                    item.regulation,
                )
                changed = item.merge(state.columns if state else None) is not None
                summary.queued += changed
                summary.unchanged += not changed
        else:
            # The same group-committed path as the webhooks (operations/intake.py).
            results = await enqueue(ctx, page)
            summary.queued += sum(1 for r in results if r.changed)
            summary.unchanged += sum(1 for r in results if not r.changed)
        page.clear()
        nonlocal reported
        if time.monotonic() - reported >= PROGRESS_EVERY_S:
            reported = time.monotonic()
            log.info("job.progress", **job, **_counts(summary, started))

    try:
        async for user in client.iter_users(page_size=PAGE):
            summary.users_read += 1
            change = _change(user)
            if change is None:
                summary.without_id += 1
                continue
            # A backfill is not a delivery: no delivery key, so running it twice merges twice
            # (harmlessly: equal stamps never win).
            items = didomi_items(integration, change, time.time())
            page.extend(replace(item, delivery_key=None) for item in items)
            if len(page) >= PAGE:
                await flush()
            if progress:
                progress(summary.users_read)
        await flush()
    except DidomiError as exc:
        log.warning("job.failed", reason=exc.message, **job, **_counts(summary, started))
        raise didomi_failure(exc) from exc
    except Exception:
        log.warning("job.failed", exc_info=True, **job, **_counts(summary, started))
        raise
    finally:
        await client.aclose()
    summary.seconds = round(time.monotonic() - started, 3)
    log.info("job.finished", **job, **_counts(summary, started))
    return summary


def _counts(summary: BackfillSummary, started: float) -> dict[str, Any]:
    return {
        "users_read": summary.users_read,
        "without_id": summary.without_id,
        "queued": summary.queued,
        "unchanged": summary.unchanged,
        "seconds": round(time.monotonic() - started, 3),
    }


async def start_backfill(
    ctx: AppContext, integration_id: str, source: str, dry_run: bool
) -> dict[str, Any]:
    return (await backfill(ctx, integration_id, source=source, dry_run=dry_run)).as_json()
