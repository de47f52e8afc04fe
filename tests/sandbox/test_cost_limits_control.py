"""The cost model through `/_sandbox/limits` over real HTTPS: settable, reset to the sandbox's
first-start values, validated; test sandboxes start cost-free, `consentbridge sandbox` with the
published defaults."""

from __future__ import annotations

from pathlib import Path

import httpx

from consentbridge.sandbox.common import Limits
from consentbridge.sandbox.server import BackgroundSandbox, prepare_sandbox
from tests.support.sandbox import SandboxClient

COST_KEYS = {
    "execution_s_per_window",
    "cost_base_ms",
    "cost_bulk_row_ms",
    "cost_write_row_ms",
    "cost_read_row_ms",
    "dop_hint",
}


def _client(sandbox: BackgroundSandbox) -> SandboxClient:
    return SandboxClient(sandbox.base_url, sandbox.ca_bundle)


def test_test_sandboxes_start_cost_free_with_the_published_limits(
    sandbox: BackgroundSandbox,
) -> None:
    client = _client(sandbox)
    try:
        limits = client.x.get("/_sandbox/limits").json()
        assert set(limits) >= COST_KEYS
        assert limits["cost_base_ms"] == 0
        assert limits["cost_bulk_row_ms"] == 0
        assert limits["cost_write_row_ms"] == 0
        assert limits["cost_read_row_ms"] == 0
        assert limits["execution_s_per_window"] == 1200
        assert limits["requests_per_window"] == 6000
        assert limits["dop_hint"] == 5
    finally:
        client.close()


def test_the_sandbox_command_uses_the_published_cost_model(tmp_path: Path) -> None:
    prepared = prepare_sandbox("127.0.0.1", 0, tmp_path, persist=False)
    try:
        assert prepared.state.limits == Limits()
        assert prepared.state.limits.cost_base_ms > 0
    finally:
        prepared.sock.close()


def test_cost_limits_are_settable_and_reset(sandbox: BackgroundSandbox) -> None:
    client = _client(sandbox)
    try:
        client.limits(execution_s_per_window=0.02, cost_base_ms=10, dop_hint=3)
        assert client.x.get("/_sandbox/limits").json()["cost_base_ms"] == 10
        statuses = [client.dv("GET", "WhoAmI", expect=200) for _ in range(2)]
        assert statuses[-1].headers["x-ms-dop-hint"] == "3"
        assert statuses[-1].headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "0.00"
        throttled = client.dv("GET", "WhoAmI", expect=429)
        assert throttled.json()["error"]["code"] == "0x80072321"
        assert int(throttled.headers["Retry-After"]) >= 1
        dataverse = client.stats()["dataverse"]
        assert dataverse["throttled"] == 1
        assert dataverse["throttled_by_limit"] == {
            "requests": 0,
            "execution_time": 1,
            "concurrency": 0,
            "injected": 0,
        }
        client.reset()
        after = client.x.get("/_sandbox/limits").json()
        assert after["cost_base_ms"] == 0
        assert after["execution_s_per_window"] == 1200
        assert after["dop_hint"] == 5
        again = client.dv("GET", "WhoAmI", expect=200)
        assert again.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "1,200.00"
    finally:
        client.close()


def test_a_bad_cost_setting_is_refused_in_one_sentence(sandbox: BackgroundSandbox) -> None:
    response = httpx.post(
        f"{sandbox.base_url}/_sandbox/limits",
        json={"cost_base_ms": -1},
        verify=str(sandbox.ca_bundle),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Setting 'cost_base_ms' must be a non-negative number."
    unknown = httpx.post(
        f"{sandbox.base_url}/_sandbox/limits",
        json={"cost_per_row_ms": 1},
        verify=str(sandbox.ca_bundle),
    )
    assert unknown.status_code == 400
    assert "cost_bulk_row_ms" in unknown.json()["error"]
