"""The /_sandbox/ control API: principals, limits and faults validation, reset."""

from __future__ import annotations

import httpx

from consentbridge.sandbox.server import BackgroundSandbox


def _client(sandbox: BackgroundSandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.base_url, verify=str(sandbox.ca_bundle))


def test_principals_shape_and_default_app(sandbox: BackgroundSandbox) -> None:
    with _client(sandbox) as client:
        data = client.get("/_sandbox/principals").json()
    assert data["roles"] == [
        "System Administrator",
        "System Customizer",
        "Salesperson",
        "Contact Sync (custom)",
        "Integration (no Journeys)",
    ]
    assert data["apps"][0]["roles"] == ["System Administrator"]
    assert set(data["apps"][0]) == {"name", "client_id", "client_secret", "systemuserid", "roles"}
    assert set(data["didomi"]) == {"organization_id", "api_key", "api_secret"}


def test_create_and_change_an_app_user(sandbox: BackgroundSandbox) -> None:
    with _client(sandbox) as client:
        created = client.post(
            "/_sandbox/principals", json={"name": "crm-user", "roles": ["Salesperson"]}
        )
        assert created.status_code == 201
        app = created.json()
        assert app["roles"] == ["Salesperson"]
        changed = client.patch(
            f"/_sandbox/principals/{app['client_id']}", json={"roles": ["System Customizer"]}
        )
        assert changed.json()["roles"] == ["System Customizer"]
        names = [a["name"] for a in client.get("/_sandbox/principals").json()["apps"]]
        assert names == ["consentbridge", "crm-user"]
        client.post("/_sandbox/reset").raise_for_status()
        names = [a["name"] for a in client.get("/_sandbox/principals").json()["apps"]]
        assert names == ["consentbridge"]


def test_unknown_role_and_bad_settings_are_400(sandbox: BackgroundSandbox) -> None:
    with _client(sandbox) as client:
        bad_role = client.post("/_sandbox/principals", json={"name": "x", "roles": ["Root"]})
        assert bad_role.status_code == 400
        assert "Root" in bad_role.json()["error"]
        assert client.post("/_sandbox/faults", json={"rate_429": 2}).status_code == 400
        assert client.post("/_sandbox/limits", json={"nope": 1}).status_code == 400
        assert client.post("/_sandbox/limits", content=b"{").status_code == 400


def test_limits_and_faults_are_applied(sandbox: BackgroundSandbox) -> None:
    with _client(sandbox) as client:
        limits = client.post(
            "/_sandbox/limits", json={"requests_per_window": 100, "window_s": 10, "concurrent": 6}
        ).json()
        assert (limits["requests_per_window"], limits["window_s"], limits["concurrent"]) == (
            100,
            10,
            6,
        )
        faults = client.post("/_sandbox/faults", json={"rate_429": 0.1, "latency_ms": 40}).json()
        assert faults["rate_429"] == 0.1 and faults["latency_ms"] == 40
    assert sandbox.sandbox.state.limits.concurrent == 6
    assert sandbox.sandbox.state.faults.rate_429 == 0.1


def test_a_lost_answer_fault_over_https_stores_the_event_and_answers_504(
    sandbox: BackgroundSandbox,
) -> None:
    didomi = sandbox.sandbox.state.principals.didomi
    org = {"organization_id": didomi.organization_id}
    event = {"id": "lost-1", "user": {"organization_user_id": "ada"}, "consents": {}}
    with _client(sandbox) as client:
        assert (
            client.post("/_sandbox/faults", json={"didomi_lose_answer_rate": 2}).status_code == 400
        )
        faults = client.post("/_sandbox/faults", json={"didomi_lose_answer_rate": 1}).json()
        assert faults["didomi_lose_answer_rate"] == 1
        session = client.post(
            "/v1/sessions",
            json={"type": "api-key", "key": didomi.api_key, "secret": didomi.api_secret},
        )
        headers = {"Authorization": f"Bearer {session.json()['access_token']}"}
        lost = client.post("/v1/consents/events", params=org, json=event, headers=headers)
        assert lost.status_code == 504
        again = client.post("/v1/consents/events", params=org, json=event, headers=headers)
        assert again.status_code == 409
        stats = client.get("/_sandbox/stats").json()["didomi"]
        assert (stats["events_created"], stats["answers_lost"]) == (1, 1)
        client.post("/_sandbox/reset").raise_for_status()
        assert client.get("/_sandbox/faults").json()["didomi_lose_answer_rate"] == 0


def test_stats_shape(sandbox: BackgroundSandbox) -> None:
    with _client(sandbox) as client:
        stats = client.get("/_sandbox/stats").json()
    assert set(stats) == {"entra", "dataverse", "didomi", "webhooks"}
    assert {"requests", "throttled", "by_operation", "rows_written"} <= stats["dataverse"].keys()
    assert stats["webhooks"] == {
        "dataverse": {"sent": 0, "failed": 0},
        "didomi": {"sent": 0, "failed": 0},
    }


def test_options_make_lastname_optional_like_the_real_service(sandbox: BackgroundSandbox) -> None:
    with _client(sandbox) as client:
        principals = client.get("/_sandbox/principals").json()
        app = principals["apps"][0]
        token = client.post(
            f"/{principals['tenant_id']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app["client_id"],
                "client_secret": app["client_secret"],
                "scope": f"{sandbox.base_url}/.default",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/_sandbox/options").json()["enforce_application_required"] is True
        refused = client.post("/api/data/v9.2/contacts", json={"firstname": "Ann"}, headers=headers)
        assert refused.status_code == 400 and "lastname" in refused.text
        try:
            shown = client.post("/_sandbox/options", json={"enforce_application_required": False})
            assert shown.json()["enforce_application_required"] is False
            created = client.post(
                "/api/data/v9.2/contacts", json={"firstname": "Ann"}, headers=headers
            )
            assert created.status_code == 204
            bad = client.post("/_sandbox/options", json={"enforce_application_required": "no"})
            assert bad.status_code == 400 and "true or false" in bad.json()["error"]
            assert client.post("/_sandbox/options", json={"nope": 1}).status_code == 400
        finally:
            client.post("/_sandbox/options", json={"enforce_application_required": True})
