"""Prometheus metrics of one ConsentBridge process, in a registry of their own.

Each ``Metrics`` owns a ``CollectorRegistry`` (not prometheus_client's global one), so several
apps in one process — tests, ``serve`` beside the sandbox — never share or clash. Code that
holds an ``AppContext`` finds its metrics with ``metrics_for(ctx)``.

Labels carry integration ids, sources, directions, outcomes, fixed reasons and operation
names only — never a secret, a user id or anything else taken from a payload
(``UNKNOWN_INTEGRATION`` stands for an id that does not exist, so a caller cannot grow the
label set at will). Integration ids name customers, so ``render(per_integration=False)`` sums
every metric over them: that is what a scrape without the metrics token gets
(``web/routes/metrics.py``).

Who fills what: the webhook routes count deliveries and intake time; a ``Worker`` given these
metrics counts sync outcomes and, through the hook its Dataverse clients call, requests; the
pending gauge is read from the store at each scrape. Only ``serve`` has a ``/metrics`` route,
so a ``consentbridge worker`` process counts into metrics nobody scrapes.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from consentbridge.context import AppContext
from consentbridge.store.values import Direction, Outcome

UNKNOWN_INTEGRATION: Final = "_unknown"
INTEGRATION_LABEL: Final = "integration"
DIRECTIONS: Final[tuple[str, ...]] = get_args(Direction)
DROPPED: Final = "dropped"
NO_RESPONSE_STATUS: Final = "no_response"
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
        self.webhooks_ignored = Counter(
            "consentbridge_webhooks_ignored",
            "Webhook deliveries answered 202 and stored as nothing but a count, by "
            "integration, source and reason (e.g. 'no organization_user_id': an anonymous "
            "Didomi user). Also counted in webhooks_received with outcome 'ignored'.",
            ["integration", "source", "reason"],
            registry=self.registry,
        )
        self.sync_outcomes = Counter(
            "consentbridge_sync_outcomes",
            "Per-user sync outcomes reached by workers, by integration, direction and outcome "
            "(written, unchanged, skipped, retry, dead; 'dropped' counts outcomes discarded "
            "because the worker's lease had expired, which are also counted under their kind).",
            ["integration", "direction", "outcome"],
            registry=self.registry,
        )
        self.dataverse_requests = Counter(
            "consentbridge_dataverse_requests",
            "HTTP requests sent to the Dataverse Web API by workers, by integration, operation "
            "and status (each retry counts; 'no_response' for a timeout or connection error).",
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

    def count_outcomes(
        self, integration_id: str, direction: str, outcomes: Sequence[Outcome], dropped: int = 0
    ) -> None:
        """Count one batch's outcomes by kind, and those the store dropped."""
        for outcome in outcomes:
            self.sync_outcomes.labels(integration_id, direction, outcome.kind).inc()
        if dropped:
            self.sync_outcomes.labels(integration_id, direction, DROPPED).inc(dropped)

    def count_dataverse_request(self, integration_id: str, operation: str, status: int) -> None:
        """Count one Dataverse request (the hook of ``RuntimeRegistry``; status 0: none came)."""
        label = str(status) if status else NO_RESPONSE_STATUS
        self.dataverse_requests.labels(integration_id, operation, label).inc()

    async def refresh(self, ctx: AppContext) -> None:
        """Set the gauges that are read from the store (called on each scrape)."""
        pending: dict[str, dict[str, int]] = {}
        for integration_id, _document in await ctx.store.list_integrations():
            pending[integration_id] = await ctx.store.pending_by_direction(integration_id)
        # Cleared first so deleted integrations disappear from the scrape.
        self.pending_changes.clear()
        for integration_id, counts in pending.items():
            for direction in DIRECTIONS:
                self.pending_changes.labels(integration_id, direction).set(counts.get(direction, 0))

    def render(self, *, per_integration: bool = True) -> bytes:
        """The Prometheus text exposition of every metric; without ``per_integration``, each
        is summed over its integrations (no integration label at all)."""
        if per_integration:
            return generate_latest(self.registry)
        return generate_latest(_Aggregated(self.registry))


class _Aggregated:
    """A collector re-reading ``registry`` with the integration label summed away."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for sample in metric.samples:
                labels = tuple(
                    sorted((k, v) for k, v in sample.labels.items() if k != INTEGRATION_LABEL)
                )
                key = (sample.name, labels)
                if sample.name.endswith("_created"):  # a time: the earliest, not a sum
                    values[key] = min(values.get(key, sample.value), sample.value)
                else:
                    values[key] = values.get(key, 0.0) + sample.value
            merged = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            for (name, labels), value in values.items():
                merged.add_sample(name, dict(labels), value)
            yield merged


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


__all__ = ["DIRECTIONS", "UNKNOWN_INTEGRATION", "Metrics", "metrics_for"]
