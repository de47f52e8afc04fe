"""Writing Journeys consent rows (stage 2 of issue 12 fills this in)."""

from __future__ import annotations

from collections.abc import Sequence

from consentbridge.store.values import ClaimedState, Outcome
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.targets.base import ForwardRuntime


class ConsentBatch:
    def __init__(
        self, runtime: ForwardRuntime, claims: Sequence[ClaimedState], policy: RetryPolicy
    ) -> None:
        self.claims = claims

    async def run(self) -> list[Outcome]:
        raise NotImplementedError("consent rows are written from stage 2 on")
