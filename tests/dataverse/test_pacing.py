"""Pacing on execution time: the pacer's arithmetic (pure), and a short burst of bulk writes
against a tight cost model in the sandbox — paced, it is (almost) never refused; with pacing
off, the same burst collects execution-time 429s."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consentbridge.dataverse.limiter import AdaptiveLimiter
from consentbridge.dataverse.pacing import ExecutionPacer, parse_time_remaining
from tests.support.sandbox import SandboxClient, dataverse_client, unique_email


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1,199.46", 1199.46),
        ("1199.46", 1199.46),
        (" 0.00 ", 0.0),
        ("1.199,46", 1199.46),
        ("20", 20.0),
        ("", None),
        ("soon", None),
        ("-3", None),
        (None, None),
    ],
)
def test_the_time_remaining_header_is_read_liberally(header: str | None, seconds: float) -> None:
    assert parse_time_remaining(header) == seconds


def test_a_request_starts_only_when_what_is_left_covers_it_and_the_requests_in_flight() -> None:
    pacer = ExecutionPacer(reserve_share=0.05)
    assert pacer.allows(1000.0), "no header seen yet: nothing to pace on"

    pacer.observe(100.0, at=10.0)  # limit 100: reserve 5
    pacer.timed("update_multiple", 30.0)
    first = pacer.start(pacer.charge_of("update_multiple"))
    second = pacer.start(pacer.charge_of("update_multiple"))

    assert pacer.headroom() == 100 - 60 - 5
    assert pacer.allows(30.0) and not pacer.allows(36.0)
    pacer.start(30.0)
    assert not pacer.allows(30.0), "5 left, the reserve"

    pacer.finish(first)
    pacer.observe(75.0, at=11.0)  # the first one's charge is in the headers now
    assert pacer.headroom() == 75 - 60 - 5
    pacer.observe(99.0, at=9.0)  # older than what we know: ignored
    assert pacer.remaining == 75.0
    pacer.finish(second)


def test_other_workers_requests_in_flight_count_against_the_headroom() -> None:
    pacer = ExecutionPacer(reserve_share=0.0)
    pacer.adopt(50.0, at=5.0, limit=1200.0, others_committed=40.0)

    assert pacer.remaining == 50.0 and pacer.limit == 1200.0
    assert pacer.allows(10.0) and not pacer.allows(11.0)


def test_a_request_larger_than_the_whole_budget_may_start_alone() -> None:
    pacer = ExecutionPacer(reserve_share=0.1)
    pacer.observe(100.0, at=1.0)  # limit 100, reserve 10
    pacer.observe(30.0, at=2.0)

    assert not pacer.allows(50.0), "it fits the limit: wait for the window to free it"
    assert pacer.allows(95.0), "it never will fit: admitted by Dataverse, so let it start"
    ticket = pacer.start(95.0)
    assert not pacer.allows(95.0) and not pacer.allows(1.0)
    pacer.finish(ticket)


def test_our_charges_leaving_the_window_before_the_answer_are_counted_on() -> None:
    pacer = ExecutionPacer(reserve_share=0.0, window_s=100.0)
    pacer.timed("update_multiple", 30.0, at=1000.0)  # leaves the window at 1100
    pacer.timed("update_multiple", 30.0, at=1050.0)  # leaves at 1150
    pacer.observe(0.0, at=1090.0)  # the window is full now

    assert not pacer.allows(30.0, now=1095.0), "nothing has left yet: Dataverse would refuse"
    assert pacer.leaving(1090.0, 1101.0) == 30.0
    assert pacer.allows(30.0, now=1100.5), "the first charge has left; the new one fits"
    ticket = pacer.start(30.0)
    assert not pacer.allows(30.0, now=1100.5)
    pacer.finish(ticket)
    assert ExecutionPacer(window_s=None).leaving(0.0, 1e9) == 0.0


def test_a_probe_is_due_only_when_the_gate_is_shut_and_no_answer_is_coming() -> None:
    pacer = ExecutionPacer(probe_every_s=1.0)
    assert not pacer.probe_due(100.0), "nothing seen: nothing to refresh"
    pacer.observe(10.0, at=100.0)
    assert not pacer.probe_due(100.5)
    assert pacer.probe_due(101.0)
    ticket = pacer.start(5.0)
    assert not pacer.probe_due(105.0), "its answer will bring fresh headers"
    pacer.finish(ticket)
    pacer.observe(0.0, at=105.0)
    assert not pacer.probe_due(107.0), "an exhausted window is probed less often"
    assert pacer.probe_due(115.0)


# -- a short burst against a tight cost model ------------------------------------------------

# 1 s of execution per 2 s window per application user (0.5 s/s), a CreateMultiple of 10 rows
# charged 0.15 s: 40 of them need 6 s of execution, six windows' worth.
TIGHT = {
    "window_s": 2,
    "execution_s_per_window": 1.0,
    "cost_base_ms": 50,
    "cost_bulk_row_ms": 10,
    "cost_read_row_ms": 0,
    "cost_write_row_ms": 0,
}
CHUNKS = 40
ROWS = 10
PACED_MAX_429 = 1


async def _burst(sandbox: SandboxClient, limiter: AdaptiveLimiter) -> tuple[int, int]:
    """Write CHUNKS CreateMultiple requests at once; (execution-time 429s, rows created)."""
    before = sandbox.stats()["dataverse"]["throttled_by_limit"]["execution_time"]
    sandbox.limits(**TIGHT)
    tag = unique_email("paced").split("@")[0]

    def targets(chunk: int) -> list[dict[str, Any]]:
        return [
            {"emailaddress1": f"{tag}-{chunk}-{row}@example.com", "lastname": "Paced"}
            for row in range(ROWS)
        ]

    async with dataverse_client(sandbox, limiter=limiter) as client:
        created = await asyncio.gather(
            *(client.create_multiple("contacts", targets(chunk)) for chunk in range(CHUNKS))
        )
    after = sandbox.stats()["dataverse"]["throttled_by_limit"]["execution_time"]
    return after - before, sum(len(ids) for ids, _ in created)


@pytest.mark.parametrize("window_s", [300.0, TIGHT["window_s"]])
async def test_a_paced_burst_is_not_refused_for_execution_time(
    live_sandbox: SandboxClient, window_s: float
) -> None:
    # 300 s: the pacer counts on no refill within the burst; 2 s: it knows the window.
    throttled, rows = await _burst(live_sandbox, AdaptiveLimiter(window_s=window_s))

    assert rows == CHUNKS * ROWS
    assert throttled <= PACED_MAX_429


async def test_the_same_burst_without_pacing_is_refused_again_and_again(
    live_sandbox: SandboxClient,
) -> None:
    throttled, rows = await _burst(live_sandbox, AdaptiveLimiter(pacing=False))

    assert rows == CHUNKS * ROWS, "every row still lands, after the Retry-Afters"
    assert throttled > PACED_MAX_429 + 2
