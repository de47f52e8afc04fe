"""The jobs API (CONTRACT §4): `POST /api/v1/integrations/{id}/jobs` answers 202 `{"job_id"}`,
`GET /api/v1/jobs/{job_id}` the state, progress and summary; `/backfill` queues a backfill job
the same way; a second active job is 409 naming the first; pause/resume of a job and of an
integration; unknown ids are 404 — against the sandbox over HTTPS and a real store."""

from __future__ import annotations

import httpx

from consentbridge.context import AppContext
from consentbridge.operations.job_runner import JobRunner
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient, unique_email

ID = "acme-d365"
URL = f"/api/v1/integrations/{ID}"
PROPERTIES = [{"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"}]


async def _put(client: httpx.AsyncClient, admin: dict[str, str], sandbox: SandboxClient) -> None:
    document = integration_document(sandbox, PROPERTIES, id=ID)
    response = await client.put(URL, json=document, headers=admin)
    assert response.status_code == 201, response.text


async def test_a_job_is_created_with_202_and_read_until_done(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient, ctx: AppContext
) -> None:
    await _put(client, admin, live_sandbox)
    for _ in range(3):
        live_sandbox.consent_event(unique_email("api"), [{"id": "newsletter", "enabled": True}])
    created = await client.post(
        f"{URL}/jobs", json={"kind": "reconcile", "dry_run": True}, headers=admin
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    assert created.headers["location"] == f"/api/v1/jobs/{job_id}"
    queued = (await client.get(f"/api/v1/jobs/{job_id}", headers=admin)).json()
    assert queued["state"] == "queued" and queued["progress"]["done"] == 0

    second = await client.post(f"{URL}/backfill", json={"dry_run": True}, headers=admin)
    assert second.status_code == 409
    assert job_id in second.json()["error"]

    assert await JobRunner(ctx, "w").run_once()
    done = (await client.get(f"/api/v1/jobs/{job_id}", headers=admin)).json()
    assert done["state"] == "done"
    assert done["progress"]["done"] == 3 and done["progress"]["total"] is None
    assert done["summary"]["users_read"] == 3
    assert done["summary"]["missing_contacts"] == 3  # upsert_mode is false: nobody matched

    backfill = await client.post(f"{URL}/backfill", json={"dry_run": True}, headers=admin)
    assert backfill.status_code == 202
    assert backfill.json()["kind"] == "backfill" and backfill.json()["params"]["dry_run"]


async def test_a_job_is_paused_resumed_and_cancelled_through_the_api(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    await _put(client, admin, live_sandbox)
    job_id = (
        await client.post(f"{URL}/jobs", json={"kind": "backfill", "from": "didomi"}, headers=admin)
    ).json()["job_id"]
    paused = await client.post(f"/api/v1/jobs/{job_id}/pause", headers=admin)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    again = await client.post(f"/api/v1/jobs/{job_id}/pause", headers=admin)
    assert again.status_code == 409 and "paused" in again.json()["error"]
    resumed = await client.post(f"/api/v1/jobs/{job_id}/resume", headers=admin)
    assert resumed.json()["state"] == "queued"
    cancelled = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin)
    assert cancelled.json()["state"] == "failed"
    assert cancelled.json()["error"] == "cancelled by an operator"
    listed = (await client.get(f"{URL}/jobs", headers=admin)).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job_id]


async def test_unknown_jobs_and_bad_bodies_are_4xx_in_one_sentence(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    await _put(client, admin, live_sandbox)
    missing = await client.get("/api/v1/jobs/job-nope", headers=admin)
    assert missing.status_code == 404 and "jobs list" in missing.json()["error"]
    bad = await client.post(f"{URL}/jobs", json={"kind": "rebuild"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "kind"
    reconcile_from = await client.post(
        f"{URL}/jobs", json={"kind": "reconcile", "from": "dataverse"}, headers=admin
    )
    assert reconcile_from.status_code == 422
    assert reconcile_from.json()["errors"][0]["path"] == "from"
    nobody = await client.post(
        "/api/v1/integrations/nobody/jobs", json={"kind": "backfill"}, headers=admin
    )
    assert nobody.status_code == 404
    unauthenticated = await client.get("/api/v1/jobs/job-nope")
    assert unauthenticated.status_code == 401


async def test_an_integration_is_paused_and_resumed_and_status_says_so(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    await _put(client, admin, live_sandbox)
    paused = await client.post(f"{URL}/pause", headers=admin)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert (await client.get(f"{URL}/status", headers=admin)).json()["paused"] is True
    document = integration_document(live_sandbox, PROPERTIES, id=ID)
    assert (await client.put(URL, json=document, headers=admin)).status_code == 200
    assert (await client.get(f"{URL}/status", headers=admin)).json()["paused"] is True
    resumed = await client.post(f"{URL}/resume", headers=admin)
    assert resumed.json() == {"integration_id": ID, "paused": False, "paused_at": None}
    assert (await client.get(f"{URL}/status", headers=admin)).json()["paused"] is False
    assert (
        await client.post("/api/v1/integrations/nobody/pause", headers=admin)
    ).status_code == 404


async def test_a_job_needing_the_didomi_api_without_its_credentials_is_422_naming_didomi(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    document = integration_document(live_sandbox, PROPERTIES, id=ID)
    del document["didomi"]
    assert (await client.put(URL, json=document, headers=admin)).status_code == 201
    for body in (
        {"kind": "backfill", "from": "didomi"},
        {"kind": "backfill", "from": "dataverse"},
        {"kind": "reconcile"},
    ):
        refused = await client.post(f"{URL}/jobs", json=body, headers=admin)
        assert refused.status_code == 422, body
        (error,) = refused.json()["errors"]
        assert error["path"] == "didomi" and "didomi.api_secret" in error["message"]
    assert (await client.get(f"{URL}/jobs", headers=admin)).json()["jobs"] == []
