"""Forward sync (Didomi → Dataverse): a claimed batch of slots goes to the module of its target
(``sync/targets/``), which writes it and reports each slot's outcome. A batch holds slots of
one target only (the store claims per integration, direction and target)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from consentbridge.store import Store
from consentbridge.store.values import ClaimedState, Outcome
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.targets import target_named
from consentbridge.sync.targets.base import (
    DIRECTION,
    EVENT,
    WRITE_CHUNK,
    ForwardRuntime,
    WriteLocks,
)
from consentbridge.sync.targets.contact import ENTITY_SET

if TYPE_CHECKING:
    from consentbridge.sync.runtime import IntegrationRuntime

LOCK_TTL_S: Final = 120.0
"""How long a crashed worker's creation locks outlive it (a live one releases at once)."""

__all__ = [
    "DIRECTION",
    "ENTITY_SET",
    "EVENT",
    "WRITE_CHUNK",
    "ForwardEngine",
    "ForwardRuntime",
    "StoreLocks",
    "sync_to_dataverse",
]


class StoreLocks:
    """``WriteLocks`` kept in the store, shared by every worker (``store/locks.py``)."""

    def __init__(self, store: Store, ttl_s: float = LOCK_TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def acquire(self, scope: str, keys: Sequence[str], owner: str) -> set[str]:
        now = time.time()
        return await self.store.acquire_locks(scope, keys, owner, now + self.ttl_s, now)

    async def release(self, owner: str) -> None:
        await self.store.release_locks(owner)


class ForwardEngine:
    """The `to_dataverse` engine of the worker: its batches write with the store's locks."""

    def __init__(self, store: Store) -> None:
        self.locks = StoreLocks(store)

    async def __call__(
        self, runtime: IntegrationRuntime, claims: Sequence[ClaimedState], policy: RetryPolicy
    ) -> list[Outcome]:
        if runtime.app_users is None:
            return await sync_to_dataverse(runtime.forward, claims, policy, self.locks)
        # The application user with the most budget left writes it (sync/app_users.py).
        return await runtime.app_users.forward(
            claims, policy, runtime.record_health, runtime.integration.id, self.locks
        )


async def sync_to_dataverse(
    runtime: ForwardRuntime,
    claims: Sequence[ClaimedState],
    policy: RetryPolicy,
    locks: WriteLocks | None = None,
) -> list[Outcome]:
    if not claims:
        return []
    targets = {claim.target for claim in claims}
    outcomes: list[Outcome] = []
    for name in sorted(targets):
        # One target per batch as claimed; split anyway, so a caller's mix is never misrouted.
        part = [claim for claim in claims if claim.target == name]
        outcomes += await target_named(name).write(runtime, part, policy, locks)
    return outcomes
