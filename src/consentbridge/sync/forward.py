"""Forward sync (Didomi → Dataverse): a claimed batch of slots goes to the module of its target
(``sync/targets/``), which writes it and reports each slot's outcome. A batch holds slots of
one target only (the store claims per integration, direction and target)."""

from __future__ import annotations

from collections.abc import Sequence

from consentbridge.store.values import ClaimedState, Outcome
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.targets import target_named
from consentbridge.sync.targets.base import DIRECTION, EVENT, WRITE_CHUNK, ForwardRuntime
from consentbridge.sync.targets.contact import ENTITY_SET

__all__ = [
    "DIRECTION",
    "ENTITY_SET",
    "EVENT",
    "WRITE_CHUNK",
    "ForwardRuntime",
    "sync_to_dataverse",
]


async def sync_to_dataverse(
    runtime: ForwardRuntime, claims: Sequence[ClaimedState], policy: RetryPolicy
) -> list[Outcome]:
    if not claims:
        return []
    targets = {claim.target for claim in claims}
    outcomes: list[Outcome] = []
    for name in sorted(targets):
        # One target per batch as claimed; split anyway, so a caller's mix is never misrouted.
        part = [claim for claim in claims if claim.target == name]
        outcomes += await target_named(name).write(runtime, part, policy)
    return outcomes
