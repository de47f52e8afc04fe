"""Prometheus metrics of one ConsentBridge process, in a registry of their own.

Each ``Metrics`` owns a ``CollectorRegistry`` (not prometheus_client's global one), so several
apps in one process — tests, ``serve`` beside the sandbox — never share or clash. Code that
holds an ``AppContext`` finds its metrics with ``metrics_for(ctx)``.

Labels carry integration ids, sources, directions, outcomes and operation names only — never a
secret, a user id or anything else taken from a payload (``UNKNOWN_INTEGRATION`` stands for an
id that does not exist, so a caller cannot grow the label set at will).
"""

from __future__ import annotations

import time
import weakref
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from consentbridge.context import AppContext

UNKNOWN_INTEGRATION: Final = "_unknown"
ALL_DIRECTIONS: Final = "all"
INTAKE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The named metrics of one app, and the registry ``/metrics`` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks_received = Counter(
            "consentbridge_webhooks_received",
            "Webhook deliveries received, by integration, source (didomi, dataverse) and outcome.",
            ["integration", "source", "outcome"],
            registry=self.registry,
        )
        self.sync_outcomes = Counter(
            "consentbridge_sync_outcomes",
            "Per-user sync outcomes recorded by workers, by integration, direction and outcome.",
            ["integration", "direction", "outcome"],
            registry=self.registry,
        )
        self.dataverse_requests = Counter(
            "consentbridge_dataverse_requests",
            "HTTP requests sent to the Dataverse Web API, by integration, operation and status.",
            ["integration", "operation", "status"],
            registry=self.registry,
        )
        self.pending_changes = Gauge(
            "consentbridge_pending_changes",
            "Users with a change waiting to be written, by integration and direction.",
            ["integration", "direction"],
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "consentbridge_intake_seconds",
            "Seconds from receiving a webhook to its change being durably stored.",
            buckets=INTAKE_BUCKETS,
            registry=self.registry,
        )

    async def refresh(self, ctx: AppContext) -> None:
        """Set the gauges that are read from the store (called on each scrape)."""
        now = time.time()
        pending: dict[str, int] = {}
        for integration_id, _document in await ctx.store.list_integrations():
            status = await ctx.store.status(integration_id, now)
            pending[integration_id] = int(status["pending"])
        # Cleared first so deleted integrations disappear from the scrape.
        self.pending_changes.clear()
        for integration_id, count in pending.items():
            # The store counts the backlog of both directions together for now.
            self.pending_changes.labels(integration_id, ALL_DIRECTIONS).set(count)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


_by_context: dict[int, Metrics] = {}


def metrics_for(ctx: AppContext) -> Metrics:
    """The metrics of the app built around ``ctx``, created on first use."""
    key = id(ctx)
    metrics = _by_context.get(key)
    if metrics is None:
        metrics = _by_context[key] = Metrics()
        # Keyed by id (AppContext is unhashable); dropped with the context so ids are not reused.
        weakref.finalize(ctx, _by_context.pop, key, None)
    return metrics


__all__ = ["ALL_DIRECTIONS", "UNKNOWN_INTEGRATION", "Metrics", "metrics_for"]
