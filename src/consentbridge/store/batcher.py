"""Group commit for intake: webhooks arriving together share one store transaction.

Each caller still waits for the commit that contains its own change before it answers 202, so
the durability guarantee is unchanged; what changes is that N concurrent deliveries cost one
transaction (one fsync on SQLite) instead of N. No artificial delay is added: while one group
commits, the next group accumulates.

One delivery may be several items (one per slot it reaches: targets, regulations):
``submit_all`` keeps them together in one group, so they commit (or fail) together.

``flushers`` groups may be in flight at once. SQLite has one writer, so one is all it can use;
on PostgreSQL a transaction spends most of its time waiting for round trips, and with
``POSTGRESQL_FLUSHERS`` the next group is sent while the previous one waits (the store locks
rows in key order, so concurrent groups wait for each other rather than deadlock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from consentbridge.store.values import Intake, IntakeResult

MAX_GROUP = 500
POSTGRESQL_FLUSHERS = 4


class IntakeStore(Protocol):
    async def intake_many(self, items: Sequence[Intake]) -> list[IntakeResult]: ...


class IntakeBatcher:
    def __init__(self, store: IntakeStore, max_group: int = MAX_GROUP, flushers: int = 1) -> None:
        self._store = store
        self._max_group = max_group
        self._max_flushers = max(1, flushers)
        # (item, its future, the submission it belongs to): a submission is never split.
        self._pending: list[tuple[Intake, asyncio.Future[IntakeResult], int]] = []
        self._submissions = 0
        self._flushers: set[asyncio.Task[None]] = set()
        self.groups = 0

    async def submit(self, item: Intake) -> IntakeResult:
        (result,) = await self.submit_all([item])
        return result

    async def submit_all(self, items: Sequence[Intake]) -> list[IntakeResult]:
        """Store ``items`` in one group (one transaction); results in their order."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[IntakeResult]] = [loop.create_future() for _ in items]
        self._submissions += 1
        self._pending.extend(
            (item, future, self._submissions) for item, future in zip(items, futures, strict=True)
        )
        # A flusher that is not done is suspended inside its loop and will see this item; a
        # done one (even if its done-callback has not run yet) will not.
        self._flushers = {task for task in self._flushers if not task.done()}
        if len(self._flushers) < self._max_flushers:
            self._flushers.add(asyncio.create_task(self._flush()))
        return list(await asyncio.gather(*futures))

    def _cut(self) -> int:
        """How many pending items the next group takes: up to ``max_group``, then to the end
        of the submission the cut falls in."""
        cut = min(self._max_group, len(self._pending))
        while cut < len(self._pending) and self._pending[cut][2] == self._pending[cut - 1][2]:
            cut += 1
        return cut

    async def _flush(self) -> None:
        while self._pending:
            cut = self._cut()
            group = self._pending[:cut]
            del self._pending[:cut]
            try:
                results = await self._store.intake_many([item for item, _, _ in group])
            except asyncio.CancelledError:
                for _, future, _ in group:
                    future.cancel()
                raise
            except Exception:
                # One bad item (e.g. an integration deleted a moment ago) must not fail the
                # others of its group: commit them one by one so only it fails.
                await self._one_by_one(group)
                continue
            self.groups += 1
            for (_, future, _), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _one_by_one(
        self, group: list[tuple[Intake, asyncio.Future[IntakeResult], int]]
    ) -> None:
        """Commit each submission of a failed group on its own, so only the bad one fails."""
        submissions: dict[int, list[tuple[Intake, asyncio.Future[IntakeResult]]]] = {}
        for item, future, submission in group:
            submissions.setdefault(submission, []).append((item, future))
        for members in submissions.values():
            try:
                results = await self._store.intake_many([item for item, _ in members])
            except Exception as exc:
                for _, future in members:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.groups += 1
            for (_, future), result in zip(members, results, strict=True):
                if not future.done():
                    future.set_result(result)
