"""The worker counts the outcomes it reaches into the process's metrics, by integration,
direction and kind, and binds each integration's id to its Dataverse request hook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from consentbridge.context import AppContext
from consentbridge.metrics import DROPPED, Metrics
from consentbridge.operations import intake, integrations
from consentbridge.store.values import ClaimedState, Outcome
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.runtime import IntegrationRuntime
from consentbridge.sync.worker import Worker, WorkerConfig
from tests.web.support import document, make_settings, user_updated

OUTCOMES = "consentbridge_sync_outcomes_total"


class OfflineTokens:
    """Stands in for the MSAL token provider, which asks Entra for discovery when built."""

    def __init__(self, **_options: object) -> None:
        pass

    async def token(self) -> str:
        return "token"

    async def invalidate(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture(autouse=True)
def offline_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("consentbridge.sync.runtime.TokenProvider", OfflineTokens)


@pytest.fixture
async def ctx(sqlite_url: str, tmp_path: Path) -> AsyncIterator[AppContext]:
    context = await AppContext.open(make_settings(sqlite_url, tmp_path))
    await integrations.apply(context, document("acme-d365"))
    yield context
    await context.aclose()


def _outcomes(kind: str) -> object:
    async def engine(
        runtime: IntegrationRuntime, claims: Sequence[ClaimedState], policy: RetryPolicy
    ) -> list[Outcome]:
        return [
            Outcome(c.integration_id, c.direction, c.organization_user_id, c.seq, kind)  # type: ignore[arg-type]
            for c in claims
        ]

    return engine


def _count(metrics: Metrics, outcome: str) -> float | None:
    labels = {"integration": "acme-d365", "direction": "to_dataverse", "outcome": outcome}
    return metrics.registry.get_sample_value(OUTCOMES, labels)


async def test_outcomes_are_counted_by_integration_direction_and_kind(ctx: AppContext) -> None:
    for user in ("a@example.com", "b@example.com"):
        await intake.receive_didomi(ctx, "acme-d365", user_updated(user))
    metrics = Metrics()
    worker = Worker(
        ctx.store,
        ctx.secrets,
        engines={"to_dataverse": _outcomes("written")},  # type: ignore[dict-item]
        metrics=metrics,
    )
    try:
        assert await worker.run_once()
    finally:
        await worker.registry.aclose()
    assert _count(metrics, "written") == 2
    assert _count(metrics, DROPPED) is None


async def test_a_worker_without_metrics_counts_nothing_and_still_works(ctx: AppContext) -> None:
    await intake.receive_didomi(ctx, "acme-d365", user_updated())
    worker = Worker(
        ctx.store,
        ctx.secrets,
        engines={"to_dataverse": _outcomes("skipped")},  # type: ignore[dict-item]
    )
    try:
        assert await worker.run_once()
    finally:
        await worker.registry.aclose()
    assert (await ctx.store.status("acme-d365", 0))["skipped"] == 1


def test_dropped_outcomes_are_counted_beside_their_kinds() -> None:
    metrics = Metrics()
    outcome = Outcome("acme-d365", "to_dataverse", "a@example.com", 1, "retry", next_attempt_at=1)
    metrics.count_outcomes("acme-d365", "to_dataverse", [outcome, outcome], dropped=1)
    assert _count(metrics, "retry") == 2
    assert _count(metrics, DROPPED) == 1


async def test_the_registry_reports_requests_under_the_integration_id(ctx: AppContext) -> None:
    metrics = Metrics()
    worker = Worker(ctx.store, ctx.secrets, metrics=metrics)
    try:
        runtime = await worker._load("acme-d365")
        assert runtime is not None
        # The hook the client was built with, called as the client calls it.
        hook = runtime.dataverse._on_request
        assert hook is not None
        hook("batch", 429)
        hook("batch", 0)
    finally:
        await worker.registry.aclose()
    sample = metrics.registry.get_sample_value
    name = "consentbridge_dataverse_requests_total"
    assert sample(name, {"integration": "acme-d365", "operation": "batch", "status": "429"}) == 1
    labels = {"integration": "acme-d365", "operation": "batch", "status": "no_response"}
    assert sample(name, labels) == 1


class SlowClaims:
    """The real store, where a claim takes a moment (as on a busy database); records how many
    claims were in progress at once."""

    def __init__(self, ctx: AppContext) -> None:
        self._store = ctx.store
        self.in_progress = 0
        self.most_at_once = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def claim_batch(self, *args: object) -> list[ClaimedState]:
        self.in_progress += 1
        self.most_at_once = max(self.most_at_once, self.in_progress)
        try:
            await asyncio.sleep(0.05)
            claimed: list[ClaimedState] = await self._store.claim_batch(*args)  # type: ignore[arg-type]
            return claimed
        finally:
            self.in_progress -= 1


async def test_one_lane_at_a_time_claims_for_an_integration(ctx: AppContext) -> None:
    # In a burst, two lanes claiming together split what is due into a batch that fills up
    # and a small one sent at once: two Dataverse requests for a handful of users.
    for user in ("a@example.com", "b@example.com", "c@example.com"):
        await intake.receive_didomi(ctx, "acme-d365", user_updated(user))
    batches: list[int] = []

    async def engine(
        runtime: IntegrationRuntime, claims: Sequence[ClaimedState], policy: RetryPolicy
    ) -> list[Outcome]:
        batches.append(len(claims))
        return [
            Outcome(c.integration_id, c.direction, c.organization_user_id, c.seq, "written")
            for c in claims
        ]

    store = SlowClaims(ctx)
    worker = Worker(
        store,  # type: ignore[arg-type]
        ctx.secrets,
        WorkerConfig(batch_size=500, max_linger_s=0.2),
        engines={"to_dataverse": engine},
    )
    try:
        first, second = await asyncio.gather(worker.run_once(), worker.run_once())
    finally:
        await worker.registry.aclose()
    assert store.most_at_once == 1
    assert sorted([first, second]) == [False, True]
    assert batches == [3]
