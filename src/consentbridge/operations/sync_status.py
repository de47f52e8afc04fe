"""Status and dead letters of an integration (CLI `status`, `deadletters`; admin API)."""

from __future__ import annotations

import time
from typing import Any

from consentbridge.context import AppContext
from consentbridge.operations.errors import NotFound
from consentbridge.store.budget import AppUser, AppUserHealth
from consentbridge.store.values import iso_utc
from consentbridge.sync.budget import app_users_of


async def _require(ctx: AppContext, integration_id: str) -> None:
    if await ctx.integration(integration_id) is None:
        raise NotFound(f"No integration has the id '{integration_id}'.")


async def status(ctx: AppContext, integration_id: str) -> dict[str, Any]:
    """The contract's counts; with several application users (`config.credentials`), also
    ``app_users``: each one's client id and whether it is set aside (until when, and why)."""
    integration = await ctx.integration(integration_id)
    if integration is None:
        raise NotFound(f"No integration has the id '{integration_id}'.")
    now = time.time()
    result = await ctx.store.status(integration_id, now)
    # Issue 13: a paused integration's changes are held (`integrations pause`).
    result["paused"] = await ctx.store.paused_at(integration_id) is not None
    users = app_users_of(integration)
    if len(users) > 1:
        health = await ctx.store.app_user_health(users)
        result["app_users"] = [_app_user(user, health.get(user), now) for user in users]
    return result


def _app_user(user: AppUser, health: AppUserHealth | None, now: float) -> dict[str, Any]:
    aside = health is not None and health.set_aside_until > now
    return {
        "client_id": user.client_id,
        "state": "set_aside" if aside else "active",
        "set_aside_until": iso_utc(health.set_aside_until) if health and aside else None,
        "failures": health.failures if health is not None else 0,
        "reason": health.reason if health is not None and health.failures else None,
    }


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
