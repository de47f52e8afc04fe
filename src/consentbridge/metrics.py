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
gauges of backlog, oldest pending age, dead letters and last success are read from the store
at each scrape (``store/health.py``); the worker observes the end-to-end latency of each written
change. ``serve`` has a ``/metrics`` route; ``consentbridge worker`` serves one with
``--metrics-port`` (``CONSENTBRIDGE_METRICS_PORT``), under the same label policy.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from consentbridge.context import AppContext
from consentbridge.store.health import IntegrationHealth
from consentbridge.store.values import ClaimedState, Direction, Outcome

UNKNOWN_INTEGRATION: Final = "_unknown"
INTEGRATION_LABEL: Final = "integration"
DIRECTIONS: Final[tuple[str, ...]] = get_args(Direction)
DROPPED: Final = "dropped"
NO_RESPONSE_STATUS: Final = "no_response"
INTAKE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
MAXED: Final = frozenset(
    {"consentbridge_oldest_pending_age_seconds", "consentbridge_last_success_timestamp_seconds"}
)
"""Gauges whose total over integrations is their maximum, not their sum."""


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
        self.oldest_pending_age = Gauge(
            "consentbridge_oldest_pending_age_seconds",
            "Age of the oldest change waiting to be written, by integration (0: none waits).",
            ["integration"],
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "consentbridge_dead_letters",
            "Users whose change failed permanently and waits for a replay, by integration.",
            ["integration"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "consentbridge_last_success_timestamp_seconds",
            "Unix time of the integration's last written or unchanged outcome (absent: none yet).",
            ["integration"],
            registry=self.registry,
        )
        self.sync_latency_seconds = Histogram(
            "consentbridge_sync_latency_seconds",
            "Seconds from a change being accepted (webhook stored) to its row being written, "
            "by integration and direction; for coalesced changes, from the oldest of them.",
            ["integration", "direction"],
            buckets=LATENCY_BUCKETS,
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

    def observe_written(
        self,
        integration_id: str,
        direction: str,
        claims: Sequence[ClaimedState],
        outcomes: Sequence[Outcome],
        now: float,
    ) -> None:
        """The end-to-end latency of each change of the batch that was written."""
        accepted = {c.key: c.pending_since for c in claims}
        histogram = self.sync_latency_seconds.labels(integration_id, direction)
        for outcome in outcomes:
            since = accepted.get(outcome.key) if outcome.kind == "written" else None
            if since is not None:
                histogram.observe(max(0.0, now - since))

    def count_dataverse_request(self, integration_id: str, operation: str, status: int) -> None:
        """Count one Dataverse request (the hook of ``RuntimeRegistry``; status 0: none came)."""
        label = str(status) if status else NO_RESPONSE_STATUS
        self.dataverse_requests.labels(integration_id, operation, label).inc()

    async def refresh(self, ctx: AppContext) -> None:
        """Set the gauges that are read from the store (called on each scrape)."""
        self.set_health(await ctx.store.health(), time.time())

    def set_health(self, health: Sequence[IntegrationHealth], now: float) -> None:
        """Set the per-integration gauges from the store's health read model."""
        gauges = (self.pending_changes, self.oldest_pending_age, self.dead_letters)
        # Cleared first so deleted integrations disappear from the scrape.
        for gauge in (*gauges, self.last_success):
            gauge.clear()
        for one in health:
            integration_id = one.integration_id
            for direction in DIRECTIONS:
                self.pending_changes.labels(integration_id, direction).set(
                    one.pending.get(direction, 0)
                )
            self.oldest_pending_age.labels(integration_id).set(one.oldest_pending_age_s(now) or 0)
            self.dead_letters.labels(integration_id).set(one.dead_letters)
            if one.last_success_at is not None:
                self.last_success.labels(integration_id).set(one.last_success_at)

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
                elif sample.name in MAXED:
                    values[key] = max(values.get(key, sample.value), sample.value)
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
