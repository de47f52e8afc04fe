"""Status and dead letters of an integration (CLI `status`, `deadletters`; admin API)."""

from __future__ import annotations

import time
from typing import Any

from consentbridge.context import AppContext
from consentbridge.operations.errors import NotFound
from consentbridge.store.values import iso_utc


async def _require(ctx: AppContext, integration_id: str) -> None:
    if await ctx.integration(integration_id) is None:
        raise NotFound(f"No integration has the id '{integration_id}'.")


async def status(ctx: AppContext, integration_id: str) -> dict[str, Any]:
    await _require(ctx, integration_id)
    result = await ctx.store.status(integration_id, time.time())
    # Issue 13: a paused integration's changes are held (`integrations pause`).
    result["paused"] = await ctx.store.paused_at(integration_id) is not None
    return result


async def dead_letters(
    ctx: AppContext, integration_id: str, limit: int = 100
) -> list[dict[str, Any]]:
    await _require(ctx, integration_id)
    letters = await ctx.store.list_dead_letters(integration_id, limit=limit)
    return [
        {
            "organization_user_id": letter.organization_user_id,
            "direction": letter.direction,
            "last_error": letter.last_error,
            "attempts": letter.attempts,
            "first_failed_at": iso_utc(letter.first_failed_at) if letter.first_failed_at else None,
            "updated_at": iso_utc(letter.updated_at),
        }
        for letter in letters
    ]


async def replay(
    ctx: AppContext, integration_id: str, organization_user_id: str | None = None
) -> int:
    await _require(ctx, integration_id)
    count = await ctx.store.replay_dead_letters(
        integration_id, organization_user_id, now=time.time()
    )
    if count:
        ctx.wake()
    return count
