"""Service protection per application user and injected faults."""

from __future__ import annotations

import asyncio
import time

import pytest

from consentbridge.sandbox.common import Limits
from consentbridge.sandbox.dataverse.errors import DataverseError
from consentbridge.sandbox.dataverse.limits import ServiceProtection
from consentbridge.sandbox.state import SandboxState
from tests.sandbox.dataverse.conftest import Api, error_code


async def test_requests_over_the_window_are_429_with_retry_after(
    api: Api, state: SandboxState
) -> None:
    state.limits.requests_per_window = 3
    state.limits.window_s = 60
    statuses = [(await api.get("contacts")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    throttled = await api.get("contacts")
    assert throttled.status_code == 429
    assert error_code(throttled) == "0x80072322"
    assert throttled.json()["error"]["message"] == (
        "Number of requests exceeded the limit of 3 over time window of 60 seconds."
    )
    assert 59 <= int(throttled.headers["Retry-After"]) <= 60
    assert state.stats.dataverse_throttled == 1
    other = api.add_app("other", ["System Administrator"])
    assert (await other.get("contacts")).status_code == 200  # limits are per user


async def test_the_window_slides(api: Api, state: SandboxState) -> None:
    state.limits.requests_per_window = 1
    state.limits.window_s = 0.2
    assert (await api.get("contacts")).status_code == 200
    assert (await api.get("contacts")).status_code == 429
    await asyncio.sleep(0.25)
    assert (await api.get("contacts")).status_code == 200


async def test_too_many_concurrent_requests_are_429_at_once(api: Api, state: SandboxState) -> None:
    state.limits.concurrent = 1
    state.faults.latency_ms = 200
    responses = await asyncio.gather(*(api.get("contacts") for _ in range(3)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 429, 429]
    throttled = next(r for r in responses if r.status_code == 429)
    assert error_code(throttled) == "0x80072326"
    assert throttled.headers["Retry-After"] == "1"


def test_retry_after_counts_down_to_when_a_slot_frees() -> None:
    protection = ServiceProtection()
    limits = Limits(requests_per_window=2, window_s=10, concurrent=5)
    protection.admit("u", limits)
    protection.release("u")
    protection.admit("u", limits)
    protection.release("u")
    with pytest.raises(DataverseError) as raised:
        protection.admit("u", limits)
    assert raised.value.status == 429
    assert raised.value.headers["Retry-After"] == "10"
    assert protection.remaining("u", limits) == 0
    protection.reset()
    assert protection.remaining("u", limits) == 2


async def test_injected_429_and_503(api: Api, state: SandboxState) -> None:
    state.faults.rate_429 = 1.0
    throttled = await api.get("contacts")
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 2
    assert error_code(throttled) == "0x80072322"
    state.faults.rate_429 = 0.0
    state.faults.rate_503 = 1.0
    unavailable = await api.post("contacts", json={"lastname": "Never"})
    assert unavailable.status_code == 503
    assert error_code(unavailable)
    state.faults.rate_503 = 0.0
    assert (await api.get("contacts")).json()["value"] == []  # faults strike before the write
    assert state.stats.dataverse_throttled == 1


async def test_injected_timeouts_hang_then_fail(api: Api, state: SandboxState) -> None:
    state.faults.timeout_rate = 1.0
    state.faults.timeout_s = 0.1
    started = time.perf_counter()
    response = await api.get("contacts")
    assert time.perf_counter() - started >= 0.1
    assert response.status_code == 504


async def test_latency_grows_with_the_rows_touched(api: Api, state: SandboxState) -> None:
    state.faults.latency_per_row_ms = 20
    started = time.perf_counter()
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
        json={
            "Targets": [
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": f"L{i}"}
                for i in range(5)
            ]
        },
    )
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.1
