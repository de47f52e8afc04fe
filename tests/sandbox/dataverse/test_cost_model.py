"""The cost model: each Web API request charges execution time (a base cost plus a cost per row
by operation class), is served no sooner than that charge, and the three service-protection
limits (requests, combined execution time, concurrency) hold per application user, with the
budget headers on every answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consentbridge.sandbox.common import Limits
from consentbridge.sandbox.dataverse.errors import DataverseError
from consentbridge.sandbox.dataverse.limits import (
    EXECUTION_TIME_EXCEEDED,
    ServiceProtection,
    charge_ms,
    format_time_remaining,
    operation_class,
)
from consentbridge.sandbox.state import SandboxState
from tests.sandbox.dataverse.conftest import Api, error_code

BULK = "contacts/Microsoft.Dynamics.CRM.UpsertMultiple"
CREATE_MULTIPLE = "contacts/Microsoft.Dynamics.CRM.CreateMultiple"


def _targets(n: int, prefix: str = "row") -> dict[str, Any]:
    return {
        "Targets": [
            {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": f"{prefix}-{i}"}
            for i in range(n)
        ]
    }


def _time_remaining(response: Any) -> float:
    return float(response.headers["x-ms-ratelimit-time-remaining-xrm-requests"].replace(",", ""))


def test_the_published_defaults_match_the_reference_client() -> None:
    limits = Limits()
    assert (limits.requests_per_window, limits.window_s, limits.concurrent) == (6000, 300, 52)
    assert limits.execution_s_per_window == 1200
    assert limits.dop_hint == 5
    # ppds-sdk: UpsertMultiple batches of 100 at parallelism 5 measure ~202 rows/s.
    batch_s = charge_ms(limits, "POST", BULK, 100) / 1000
    assert 195 <= 5 * 100 / batch_s <= 210
    free = Limits.cost_free()
    assert charge_ms(free, "POST", BULK, 1000) == 0
    assert free.execution_s_per_window == limits.execution_s_per_window


def test_operations_are_classed_and_charged_by_rows() -> None:
    limits = Limits(cost_base_ms=10, cost_bulk_row_ms=1, cost_write_row_ms=5, cost_read_row_ms=0.5)
    assert operation_class("POST", BULK) == "bulk"
    assert operation_class("POST", "contacts/Microsoft.Dynamics.CRM.CreateMultiple") == "bulk"
    assert operation_class("PATCH", "contacts(emailaddress1='a@b.c')") == "write"
    assert operation_class("POST", "contacts") == "write"
    assert operation_class("DELETE", "contacts(00000000-0000-0000-0000-000000000001)") == "write"
    assert operation_class("GET", "contacts") == "read"
    assert charge_ms(limits, "POST", BULK, 100) == 110
    assert charge_ms(limits, "PATCH", "contacts(x)", 1) == 15
    assert charge_ms(limits, "GET", "contacts", 40) == 30
    assert charge_ms(limits, "GET", "EntityDefinitions", 0) == 10


def test_time_remaining_is_seconds_with_a_grouping_separator() -> None:
    # As real Dataverse writes it: `x-ms-ratelimit-time-remaining-xrm-requests: 1,199.46`.
    assert format_time_remaining(1200) == "1,200.00"
    assert format_time_remaining(1199.456) == "1,199.46"
    assert format_time_remaining(-3) == "0.00"


def test_execution_time_over_the_window_is_429_0x80072321_with_retry_after() -> None:
    protection = ServiceProtection()
    limits = Limits(execution_s_per_window=1.0, window_s=60)
    for _ in range(2):
        protection.admit("u", limits)
        protection.charge("u", 0.6)
        protection.release("u")
    with pytest.raises(DataverseError) as raised:
        protection.admit("u", limits)
    error = raised.value
    assert error.status == 429
    assert error.code == EXECUTION_TIME_EXCEEDED == "0x80072321"
    assert error.message == (
        "Combined execution time of incoming requests exceeded limit of 1,000 milliseconds over "
        "time window of 60 seconds. Decrease number of concurrent requests or reduce the "
        "duration of requests and try again later."
    )
    assert 59 <= int(error.headers["Retry-After"]) <= 60
    assert protection.time_remaining("u", limits) == 0
    protection.admit("other", limits)  # the budget is per application user
    assert protection.time_remaining("other", limits) == 1.0


async def test_the_nth_request_past_the_execution_budget_is_refused(
    api: Api, state: SandboxState
) -> None:
    state.limits.cost_base_ms = 20
    state.limits.execution_s_per_window = 0.05
    statuses = [(await api.get("contacts")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # 60 ms charged is over 50 ms: the next is refused
    throttled = await api.get("contacts")
    assert throttled.status_code == 429
    assert error_code(throttled) == "0x80072321"
    assert int(throttled.headers["Retry-After"]) >= 1
    assert throttled.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "0.00"
    assert state.stats.dataverse_throttled == 2
    assert state.stats.public()["dataverse"]["throttled_by_limit"]["execution_time"] == 2
    other = api.add_app("other", ["System Administrator"])
    assert (await other.get("contacts")).status_code == 200


async def test_a_request_holds_its_concurrency_slot_for_its_charged_time(
    api: Api, state: SandboxState
) -> None:
    state.limits.concurrent = 1
    state.limits.cost_bulk_row_ms = 100  # 3 rows: served after 300 ms
    slow = asyncio.create_task(api.post(CREATE_MULTIPLE, json=_targets(3)))
    await asyncio.sleep(0.1)
    refused = await api.get("contacts")
    assert not slow.done()
    assert refused.status_code == 429
    assert error_code(refused) == "0x80072326"
    assert refused.headers["Retry-After"] == "1"
    assert (await slow).status_code == 200
    assert state.stats.public()["dataverse"]["throttled_by_limit"]["concurrency"] == 1


async def test_a_cheaper_request_sent_later_is_answered_first(
    api: Api, state: SandboxState
) -> None:
    state.limits.cost_bulk_row_ms = 50
    finished: list[str] = []

    async def send(name: str, rows: int) -> None:
        response = await api.post(CREATE_MULTIPLE, json=_targets(rows, name))
        assert response.status_code == 200
        finished.append(name)

    costly = asyncio.create_task(send("costly", 8))
    await asyncio.sleep(0.05)
    await send("cheap", 1)
    await costly
    assert finished == ["cheap", "costly"]


async def test_budget_headers_on_every_answer_decrease(api: Api, state: SandboxState) -> None:
    state.limits.cost_base_ms = 100
    first = await api.get("contacts")
    second = await api.post("contacts", json={"lastname": "Doe"})
    assert first.headers["x-ms-dop-hint"] == "5"
    assert first.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "1,199.90"
    assert second.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "1,199.80"
    assert int(first.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) == 5999
    assert int(second.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) == 5998
    state.limits.requests_per_window = 2
    throttled = await api.get("contacts")
    assert throttled.status_code == 429
    assert error_code(throttled) == "0x80072322"
    assert throttled.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "0"
    assert throttled.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "1,199.80"
    assert state.stats.public()["dataverse"]["throttled_by_limit"]["requests"] == 1


async def test_a_batch_is_one_request_charged_the_sum_of_its_parts(
    api: Api, state: SandboxState
) -> None:
    state.limits.cost_base_ms = 10
    state.limits.cost_write_row_ms = 40
    boundary = "batch_cost"
    parts = []
    for i in range(3):
        parts.append(
            f"--{boundary}\r\nContent-Type: application/http\r\n"
            "Content-Transfer-Encoding: binary\r\n\r\n"
            f"POST /api/data/v9.2/contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
            f'{{"lastname": "Part{i}"}}\r\n'
        )
    body = "".join(parts) + f"--{boundary}--\r\n"
    response = await api.post(
        "$batch",
        content=body.encode(),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "5999"
    # Three single creates of 10 + 40 ms each: 0.15 s of the 1,200 s.
    assert response.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "1,199.85"
    assert state.stats.public()["dataverse"]["execution_s"] == pytest.approx(0.15)
