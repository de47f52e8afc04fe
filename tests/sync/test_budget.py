"""The shared Dataverse budget: the policy that moves it, the limiter that obeys a share of it,
and two workers (two Store instances on one database, real Dataverse clients against the
sandbox) that share it — a 429 one of them receives holds the other until `Retry-After`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from consentbridge.config.integration import Integration
from consentbridge.config.validation import parse_integration
from consentbridge.dataverse.errors import TransientError
from consentbridge.dataverse.limiter import Observations, SharedLimiter
from consentbridge.store import Store
from consentbridge.store.budget import AppUser, BudgetState, Others
from consentbridge.sync.budget import (
    CUT_COOLDOWN_S,
    GROW_INTERVAL_S,
    PROBE_AFTER_S,
    SharedBudgets,
    adjust,
    app_user_of,
)
from consentbridge.sync.clients import runtime_for
from consentbridge.sync.runtime import build_runtime
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient, dataverse_client

T0 = 1_700_000_000.0
FULL = Others(held=52, busy=52)  # the other workers hold and use the whole budget


def seen(
    *,
    busy: float = 0.0,
    successes: int = 10,
    wanted_more: bool = True,
    dop_hint: int | None = None,
    throttled_at: float | None = None,
    throttled_in_flight: int = 1,
    retry_after_s: float = 0.0,
) -> Observations:
    return Observations(
        busy=busy,
        demand=8,
        successes=successes,
        wanted_more=wanted_more,
        dop_hint=dop_hint,
        throttled_at=throttled_at,
        throttled_in_flight=throttled_in_flight,
        retry_after_s=retry_after_s,
    )


# -- the policy --------------------------------------------------------------------------------


def test_the_budget_doubles_while_nothing_was_refused_up_to_the_dop_hint() -> None:
    state = BudgetState(concurrency=2)
    sizes = []
    for step in range(5):
        state = adjust(state, seen(dop_hint=12), FULL, T0 + step * GROW_INTERVAL_S)
        sizes.append(state.concurrency)

    assert sizes == [4, 8, 12, 12, 12]


def test_it_grows_only_when_requests_waited_and_succeeded_and_at_most_once_a_second() -> None:
    state = BudgetState(concurrency=4, grown_at=T0)

    assert adjust(state, seen(wanted_more=False), FULL, T0 + 5).concurrency == 4
    assert adjust(state, seen(successes=0), FULL, T0 + 5).concurrency == 4
    assert adjust(state, seen(), FULL, T0 + GROW_INTERVAL_S / 2).concurrency == 4
    assert adjust(state, seen(), FULL, T0 + GROW_INTERVAL_S).concurrency == 8


def test_a_429_halves_it_once_per_episode_and_blocks_everyone_for_retry_after() -> None:
    state = BudgetState(concurrency=8)

    cut = adjust(state, seen(throttled_at=T0, retry_after_s=3), FULL, T0 + 0.1)
    again = adjust(cut, seen(throttled_at=T0 + 0.5, retry_after_s=1), FULL, T0 + 0.6)

    assert (cut.concurrency, cut.ceiling, cut.blocked_until, cut.cut_at) == (4, 7, T0 + 3, T0 + 0.1)
    assert again.concurrency == 4, "429s of the same episode cut once"
    assert again.blocked_until == T0 + 3, "a shorter Retry-After never shortens the pause"
    later = adjust(again, seen(throttled_at=T0 + 0.1 + CUT_COOLDOWN_S), FULL, T0 + 5)
    assert (later.concurrency, later.ceiling) == (2, 3)


def test_the_ceiling_is_one_below_what_can_have_been_out_when_dataverse_refused() -> None:
    state = BudgetState(concurrency=16)

    alone = adjust(state, seen(throttled_at=T0, throttled_in_flight=7), Others(0, 0), T0)
    beside_others = adjust(
        state, seen(throttled_at=T0, throttled_in_flight=3), Others(held=4, busy=3.5), T0
    )
    unsure = adjust(state, seen(throttled_at=T0, throttled_in_flight=3), Others(14, 4.0), T0)

    assert (alone.concurrency, alone.ceiling) == (8, 6)
    assert (beside_others.concurrency, beside_others.ceiling) == (8, 6)
    assert unsure.ceiling == 15, "never below what may have been out: the next cut refines it"


def test_after_a_cut_it_regrows_to_the_ceiling_and_probes_past_it_only_later() -> None:
    state = BudgetState(concurrency=3, ceiling=6, blocked_until=T0, cut_at=T0)

    regrown = adjust(state, seen(), FULL, T0 + 2)
    held = adjust(regrown, seen(), FULL, T0 + 4)
    probed = adjust(held, seen(), FULL, T0 + PROBE_AFTER_S + 1)

    assert (regrown.concurrency, held.concurrency, probed.concurrency) == (6, 6, 7)


def test_it_grows_only_when_the_workers_together_used_all_of_it() -> None:
    """Otherwise what holds a worker back is the split (the others' next refresh), not the
    budget; and growing it would only find Dataverse's limit later, with more 429s."""
    state = BudgetState(concurrency=6)

    assert adjust(state, seen(busy=0.2), Others(held=5, busy=4.0), T0).concurrency == 6
    assert adjust(state, seen(busy=0.6), Others(held=5, busy=4.0), T0).concurrency == 12


def test_it_does_not_grow_while_blocked_and_a_lower_dop_hint_caps_it_at_once() -> None:
    blocked = BudgetState(concurrency=4, blocked_until=T0 + 10)

    assert adjust(blocked, seen(), FULL, T0 + 5).concurrency == 4
    assert adjust(BudgetState(concurrency=20), seen(dop_hint=6), FULL, T0).concurrency == 6


# -- the limiter ---------------------------------------------------------------------------------


async def test_a_managed_limiter_sends_nothing_before_its_share_and_then_no_more_than_it() -> None:
    limiter = SharedLimiter(managed=True)
    running = 0
    most = 0

    async def request() -> None:
        nonlocal running, most
        async with limiter.slot():
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1

    tasks = [asyncio.create_task(request()) for _ in range(6)]
    await asyncio.sleep(0.05)
    assert running == 0 and limiter.waiting == 6 and limiter.urgent.is_set()

    await limiter.apply_share(2, blocked_until=0.0)
    await asyncio.gather(*tasks)

    assert most == 2
    observed = limiter.take_observations()
    assert (observed.demand, observed.wanted_more) == (6, True)


async def test_a_shared_pause_holds_requests_until_blocked_until() -> None:
    limiter = SharedLimiter(managed=True)
    until = time.time() + 0.3

    await limiter.apply_share(4, blocked_until=until)
    async with limiter.slot():
        started = time.time()

    assert started >= until - 0.01


async def test_a_429_is_reported_at_once_and_slows_this_process_before_the_report() -> None:
    limiter = SharedLimiter(managed=True)
    await limiter.apply_share(4, blocked_until=0.0)
    limiter.urgent.clear()

    limiter.on_throttle(2.0)

    observed = limiter.take_observations()
    assert limiter.urgent.is_set() and limiter.limit == 2
    assert observed.throttled_at is not None and observed.retry_after_s == 2.0
    assert observed.throttled_in_flight == 1


# -- two workers on one store, against the sandbox -----------------------------------------------


def _integration(sandbox: SandboxClient, integration_id: str = "acme-d365") -> Integration:
    properties = [{"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"}]
    return parse_integration(integration_document(sandbox, properties, id=integration_id))


async def test_a_429_seen_by_one_worker_holds_the_other_until_retry_after(
    live_sandbox: SandboxClient, two_stores: tuple[Store, Store]
) -> None:
    first_store, second_store = two_stores
    app_user = app_user_of(_integration(live_sandbox))
    first = SharedBudgets(first_store, "worker-a")
    second = SharedBudgets(second_store, "worker-b")
    # `a` gives up after its first 429 (whose Retry-After is 1 or 2 s).
    a_client = dataverse_client(
        live_sandbox, limiter=first.limiter(app_user), max_throttle_wait_s=0.5
    )
    b_client = dataverse_client(live_sandbox, limiter=second.limiter(app_user))
    keeper = asyncio.create_task(second.run())  # b's shares are kept fresh, as in a worker
    try:
        async with a_client as a, b_client as b:
            await a.who_am_i()
            assert (await first.refresh(app_user)).slots == 1

            live_sandbox.faults(rate_429=1.0)
            with pytest.raises(TransientError):
                await a.who_am_i()
            live_sandbox.faults(rate_429=0.0)
            reported = await first.refresh(app_user)
            assert reported.state.blocked_until > time.time() + 0.5
            assert reported.state.concurrency == 1, "halved from the initial 2"
            await first.aclose()  # a stops: its slot is free, the pause stays

            await b.who_am_i()
            done = time.time()
            assert second.shares[app_user].slots == 1
    finally:
        keeper.cancel()
        await second.aclose()

    assert done >= reported.state.blocked_until, "b sent before the pause ended"


async def test_runtimes_of_one_application_user_share_the_workers_limiter(
    live_sandbox: SandboxClient, two_stores: tuple[Store, Store]
) -> None:
    store, _ = two_stores
    budgets = SharedBudgets(store, "worker-a")
    integration = _integration(live_sandbox)
    runtime = await build_runtime(integration, "fp", limiters=budgets.limiter)
    twin = await build_runtime(_integration(live_sandbox, "second"), "fp", limiters=budgets.limiter)
    one_off = await runtime_for(integration)  # e.g. `integrations test` inside `serve`
    try:
        assert runtime.dataverse.limiter is twin.dataverse.limiter, "one app user, one limiter"
        assert one_off.dataverse.limiter is runtime.dataverse.limiter
    finally:
        for opened in (runtime, twin, one_off):
            await opened.aclose()
        await budgets.aclose()


# -- execution-time pacing on one view ----------------------------------------------------------


def test_the_newest_time_remaining_any_worker_read_is_kept_with_the_most_ever_read() -> None:
    state = BudgetState(concurrency=2, time_remaining=500.0, time_observed_at=T0, time_limit=1200)
    newer = replace(seen(), time_remaining=300.0, time_observed_at=T0 + 1, time_limit=800.0)
    older = replace(seen(), time_remaining=900.0, time_observed_at=T0 - 1, time_limit=1250.0)

    after_newer = adjust(state, newer, FULL, T0 + 2)
    after_older = adjust(state, older, FULL, T0 + 2)

    assert (after_newer.time_remaining, after_newer.time_observed_at) == (300.0, T0 + 1)
    assert after_newer.time_limit == 1200.0
    assert (after_older.time_remaining, after_older.time_observed_at) == (500.0, T0)
    assert after_older.time_limit == 1250.0


async def test_a_worker_paces_on_what_another_read_and_has_in_flight(
    two_stores: tuple[Store, Store],
) -> None:
    first_store, second_store = two_stores
    app_user = AppUser("https://org.example", "tenant", "client")
    first = SharedBudgets(first_store, "worker-a")
    second = SharedBudgets(second_store, "worker-b")
    a, b = first.limiter(app_user), second.limiter(app_user)
    assert a.pacer is not None and b.pacer is not None
    try:
        a.on_time_remaining(100.0, time.time())  # worker a read the header
        a.on_timed("update_multiple", 30.0)
        async with a.slot("update_multiple"):  # and has 30 s of charges in flight
            await first.refresh(app_user)
            await second.refresh(app_user)
    finally:
        await first.aclose()
        await second.aclose()

    assert b.pacer.remaining == 100.0, "b never read a header itself"
    assert b.pacer.others_committed == 30.0
    assert b.pacer.allows(60.0) and not b.pacer.allows(75.0)
