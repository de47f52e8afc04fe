"""Jobs in the store, on each backend: one active job per integration, leases that let a job
move to another worker only once they expired, progress saved only by the holder, pause seen
at the next save, paused integrations skipped by claims of jobs and of changes."""

from __future__ import annotations

import time

from consentbridge.store import Store

from .builders import ACME, FORWARD, OTHER, item

LEASE = 30.0


async def _create(store: Store, job_id: str, integration: str = ACME) -> None:
    created = await store.create_job(
        job_id=job_id, integration_id=integration, kind="backfill", params={"dry_run": False}
    )
    assert created.job is not None and created.job.state == "queued"


async def test_an_integration_has_one_active_job_and_the_refusal_names_it(store: Store) -> None:
    await _create(store, "j1")
    refused = await store.create_job(job_id="j2", integration_id=ACME, kind="reconcile", params={})
    assert refused.job is None and refused.blocking is not None
    assert refused.blocking.id == "j1"
    await _create(store, "j3", OTHER)  # another integration is not held back
    await store.set_job_state("j1", "cancelled")
    await _create(store, "j4")


async def test_a_leased_job_moves_to_another_worker_only_once_its_lease_expired(
    store: Store,
) -> None:
    await _create(store, "j1")
    now = time.time()
    first = await store.claim_job("w1", LEASE, now)
    assert first is not None and (first.state, first.lease_owner) == ("running", "w1")
    assert await store.claim_job("w2", LEASE, now + 1) is None
    saved = await store.save_job_progress(
        "j1",
        "w1",
        cursor={"next": "c2", "pages": 1},
        done=100,
        total=None,
        counters={"queued": 100},
        lease_s=LEASE,
        now=now + 1,
    )
    assert saved == "running"
    # w1 dies: nothing renews the lease, which expires at now + 1 + LEASE.
    taken = await store.claim_job("w2", LEASE, now + 2 + LEASE)
    assert taken is not None and taken.lease_owner == "w2"
    assert (taken.cursor, taken.done, taken.counters) == (
        {"next": "c2", "pages": 1},
        100,
        {"queued": 100},
    )
    assert taken.started_at == first.started_at
    stale = await store.save_job_progress(
        "j1", "w1", cursor=None, done=999, total=None, counters={}, lease_s=LEASE, now=now + 3
    )
    assert stale is None  # the old holder can no longer write
    assert not await store.finish_job("j1", "w1", state="done", summary={})
    assert await store.finish_job("j1", "w2", state="done", summary={"read": 300})
    done = await store.get_job("j1")
    assert done is not None and (done.state, done.lease_owner, done.summary) == (
        "done",
        None,
        {"read": 300},
    )


async def test_a_pause_is_seen_at_the_next_save_and_resume_queues_it_again(store: Store) -> None:
    await _create(store, "j1")
    now = time.time()
    assert await store.claim_job("w1", LEASE, now) is not None
    paused = await store.set_job_state("j1", "paused")
    assert paused is not None and paused.state == "paused"
    state = await store.save_job_progress(
        "j1", "w1", cursor={"next": "c"}, done=10, total=None, counters={}, lease_s=LEASE, now=now
    )
    assert state == "paused"
    assert await store.release_job("j1", "w1")
    assert await store.claim_job("w2", LEASE, now) is None  # a paused job is not claimed
    resumed = await store.set_job_state("j1", "resumed")
    assert resumed is not None and (resumed.state, resumed.done) == ("queued", 10)
    again = await store.claim_job("w2", LEASE, now)
    assert again is not None and again.cursor == {"next": "c"}


async def test_a_paused_integration_is_skipped_by_job_and_change_claims(store: Store) -> None:
    await _create(store, "j1")
    await store.intake(item("u1", {"c": {"v": 1}}))
    assert await store.set_paused(ACME, True)
    now = time.time() + 1
    assert await store.paused_at(ACME) is not None
    assert await store.claim_job("w1", LEASE, now) is None
    assert ACME not in await store.due_integrations(FORWARD, now)
    assert (await store.status(ACME, now))["pending"] == 1  # held, not dropped
    assert await store.set_paused(ACME, False)
    assert await store.paused_at(ACME) is None
    assert ACME in await store.due_integrations(FORWARD, now)
    assert await store.claim_job("w1", LEASE, now) is not None
    assert not await store.set_paused("nobody", True)


async def test_deleting_an_integration_deletes_its_jobs(store: Store) -> None:
    await _create(store, "j1")
    assert await store.delete_integration(ACME)
    assert await store.get_job("j1") is None


async def test_a_scheduled_job_is_created_once(store: Store) -> None:
    key = "nightly-reconcile:acme:2026-12-06"
    first = await store.create_job(
        job_id="j1", integration_id=ACME, kind="reconcile", params={}, schedule_key=key
    )
    assert first.job is not None
    await store.set_job_state("j1", "cancelled")
    second = await store.create_job(
        job_id="j2", integration_id=ACME, kind="reconcile", params={}, schedule_key=key
    )
    assert (second.job, second.blocking) == (None, None)
