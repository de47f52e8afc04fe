"""No secret ever leaves the service: the real ``consentbridge serve`` and a ``consentbridge
worker`` run a full flow against the sandbox — apply integrations, receive webhooks from
sandbox Didomi, sync to sandbox Dataverse, fail in every way we can provoke (a wrong webhook
secret, a forged token, bad documents, wrong Dataverse and Didomi credentials, a bad body) —
while every byte they print, every HTTP answer (API, console, metrics, token endpoint) and
every CLI output is kept. Then each secret is searched for in all of it, raw and encoded, and
in every file the processes wrote (the store holds secrets encrypted only).

Secrets: each integration's ``config.client_secret``, ``didomi.api_secret`` and
``webhook_auth.client_secret``, the Fernet key, the admin token and the bearer tokens issued.
The one sanctioned exception, ``serve --sandbox`` printing the admin token it generated, does
not arise here: the token is set by the environment, so nothing may print it.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient, unique_email, wait_until
from tests.support.service import ADMIN_TOKEN, METRICS_TOKEN, ServiceProcess, WorkerProcess

pytestmark = pytest.mark.security

NEWSLETTER_NOT = {
    "id": "donotbulkemail",
    "value": "consents_purposes_newsletter_enabled",
    "transform": "not",
}
GOOD, BROKEN = "acme-d365", "broken-d365"
INPUTS = "inputs"  # the documents this test writes for the CLI: secrets in clear, by design


@dataclass
class Transcript:
    """Everything an outsider saw: HTTP answers (headers and bodies) and CLI outputs."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    # Texts allowed to hold one particular secret (a token endpoint answer holds its token).
    allowed: dict[str, set[str]] = field(default_factory=dict)

    def keep(self, label: str, response: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.texts.append((label, f"{response.status_code}\n{headers}\n\n{response.text}"))
        return response

    def keep_text(self, label: str, text: str) -> None:
        self.texts.append((label, text))


class Caller:
    """An HTTP client on the service whose every answer lands in the transcript."""

    def __init__(self, base_url: str, transcript: Transcript) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.transcript = transcript

    def call(
        self,
        method: str,
        url: str,
        *,
        expect: int | tuple[int, ...],
        admin: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if admin:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **headers}
        response = self.http.request(method, url, headers=headers, **kwargs)
        self.transcript.keep(f"{method} {url}", response)
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert response.status_code in expected, (method, url, response.text[:500])
        return response

    def token(self, client_id: str, secret: str, *, expect: int = 200) -> str:
        response = self.call(
            "POST",
            "/oauth/token",
            expect=expect,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        if expect != 200:
            return ""
        token = str(response.json()["access_token"])
        label, _ = self.transcript.texts[-1]
        self.transcript.allowed.setdefault(token, set()).add(label)
        return token


def cli(service: ServiceProcess, transcript: Transcript, *args: str, expect: int | None = 0) -> str:
    """Run a CLI command beside the service (same store and key); ``expect=None``: any code."""
    result = subprocess.run(
        [sys.executable, "-m", "consentbridge.cli", *args],
        cwd=service.workdir,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = f"$ consentbridge {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    transcript.keep_text(f"cli {' '.join(args)}", output)
    assert expect is None or result.returncode == expect, output
    return result.stdout


def variants(secret: str) -> set[str]:
    """The forms a secret could leak in: raw, URL-encoded, JSON-escaped, base64."""
    raw = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path).start()
    yield process
    process.stop()


def test_no_secret_appears_in_any_output_of_a_full_run(
    sandbox: SandboxClient, service: ServiceProcess, tmp_path: Path
) -> None:
    transcript = Transcript()
    api = Caller(service.base_url, transcript)
    worker = WorkerProcess(service)
    try:
        secrets_used = _run_flow(sandbox, service, worker, api, transcript, tmp_path)
    finally:
        worker.stop()
        service.stop()
        api.http.close()
    secrets_used |= {service.secret_key, ADMIN_TOKEN, METRICS_TOKEN}
    outputs = [
        ("serve output", "".join(service.output)),
        ("worker output", "".join(worker.output)),
        *transcript.texts,
    ]
    assert "".join(service.output).strip(), "the service printed nothing: capture is broken"
    leaks = [
        (label, secret[:6] + "…")
        for secret in secrets_used
        for label, text in outputs
        if label not in transcript.allowed.get(secret, set())
        and any(form in text for form in variants(secret))
    ]
    assert not leaks, f"secrets found in outputs: {leaks}"
    inputs = tmp_path / INPUTS
    files = [p for p in tmp_path.rglob("*") if p.is_file() and inputs not in p.parents]
    assert any(p.name.startswith("consentbridge.db") for p in files)
    stored = [
        (str(p.relative_to(tmp_path)), secret[:6] + "…")
        for p in files
        for secret in secrets_used - {service.secret_key}
        if secret.encode() in p.read_bytes()
    ]
    assert not stored, f"secrets stored in clear: {stored}"


def _run_flow(
    sandbox: SandboxClient,
    service: ServiceProcess,
    worker: WorkerProcess,
    api: Caller,
    transcript: Transcript,
    tmp_path: Path,
) -> set[str]:
    """Drive the service through success and failure; returns every secret it was given."""
    good = integration_document(sandbox, [NEWSLETTER_NOT], id=GOOD)
    broken = integration_document(sandbox, [NEWSLETTER_NOT], id=BROKEN)
    broken["config"]["client_secret"] = "wrong-dataverse-secret-" + secrets.token_urlsafe(12)
    broken["didomi"]["api_secret"] = "wrong-didomi-secret-" + secrets.token_urlsafe(12)
    broken["webhook_auth"] = {
        "client_id": "broken-hooks",
        "client_secret": "broken-webhook-secret-" + secrets.token_urlsafe(12),
    }
    given = {
        doc[block][key]
        for doc in (good, broken)
        for block, key in (
            ("config", "client_secret"),
            ("didomi", "api_secret"),
            ("webhook_auth", "client_secret"),
        )
    }

    # Configure: admin API, a file through the CLI, and refused documents full of secrets.
    api.call("PUT", f"/api/v1/integrations/{GOOD}", expect=201, admin=True, json=good)
    (tmp_path / INPUTS).mkdir()
    broken_file = tmp_path / INPUTS / "broken.json"
    broken_file.write_text(json.dumps(broken))
    cli(service, transcript, "integrations", "apply", str(broken_file))
    short = "tiny-" + secrets.token_hex(2)
    refused = good | {"webhook_auth": {"client_id": "other", "client_secret": short}}
    refused["config"] = good["config"] | {"instance": "http://insecure.example"}
    given.add(short)
    api.call("PUT", f"/api/v1/integrations/{GOOD}", expect=422, admin=True, json=refused)
    refused_file = tmp_path / INPUTS / "refused.json"
    refused_file.write_text(json.dumps(refused | {"id": "refused-d365"}))
    cli(service, transcript, "integrations", "apply", str(refused_file), expect=1)

    # Webhooks: sandbox Didomi delivers through our token endpoint; errors on the way.
    sandbox.register_webhook(
        url=f"{service.base_url}/webhooks/didomi/{GOOD}",
        token_url=f"{service.base_url}/oauth/token",
        client_id=good["webhook_auth"]["client_id"],
        secret=good["webhook_auth"]["client_secret"],
    )
    email = unique_email("leak")
    contact_id = sandbox.create_contact(emailaddress1=email, lastname="Leak")
    sandbox.consent_event(email, [{"id": "newsletter", "enabled": False}])
    wait_until(lambda: sandbox.contact(contact_id)["donotbulkemail"] is True, message="sync")
    _assert_sync_was_counted(api)
    worker.start()  # only now, so the sync above was surely the work of serve's own worker
    api.token(
        good["webhook_auth"]["client_id"], broken["webhook_auth"]["client_secret"], expect=401
    )
    api.token(good["webhook_auth"]["client_id"], "", expect=401)
    good_token = api.token(good["webhook_auth"]["client_id"], good["webhook_auth"]["client_secret"])
    broken_token = api.token("broken-hooks", broken["webhook_auth"]["client_secret"])
    given |= {good_token, broken_token}
    body = {
        "type": "user.updated",
        "parameters": {
            "new_entity": {
                "organization_user_id": email,
                "version": 99,
                "consents": {"purposes": [{"id": "newsletter", "enabled": True}]},
            }
        },
    }
    api.call(
        "POST",
        f"/webhooks/didomi/{BROKEN}",
        expect=401,
        json=body,
        headers={"Authorization": f"Bearer {good_token}"},
    )
    api.call(
        "POST",
        f"/webhooks/didomi/{GOOD}",
        expect=401,
        json=body,
        headers={"Authorization": f"Bearer {good_token}x"},
    )
    api.call(
        "POST",
        f"/webhooks/didomi/{GOOD}",
        expect=400,
        content=b'{"type": ',
        headers={"Authorization": f"Bearer {good_token}", "content-type": "application/json"},
    )
    api.call(
        "POST",
        f"/webhooks/didomi/{BROKEN}",
        expect=202,
        json=body,
        headers={"Authorization": f"Bearer {broken_token}"},
    )
    api.call(
        "POST",
        f"/webhooks/dataverse/{GOOD}",
        expect=401,
        json={},
        headers={"x-consentbridge-key": good["config"]["client_secret"]},
    )

    # The broken integration fails at Dataverse: its worker retries and logs why.
    def failed() -> bool:
        log = api.call(
            "GET",
            f"/api/v1/integrations/{BROKEN}/users/{quote(email, safe='')}/log",
            expect=200,
            admin=True,
        ).json()
        return any(e["outcome"] in ("retrying", "dead_letter") for e in log["entries"])

    wait_until(failed, timeout=30, message="the broken integration's failure")
    for integration_id in (GOOD, BROKEN):
        api.call("POST", f"/api/v1/integrations/{integration_id}/test", expect=200, admin=True)
        api.call(
            "POST",
            f"/api/v1/integrations/{integration_id}/preview",
            expect=(200, 422, 502),
            admin=True,
            json={"organization_user_id": email},
        )
        api.call(
            "POST",
            f"/api/v1/integrations/{integration_id}/backfill",
            expect=(202, 422, 502, 503),
            admin=True,
            json={"dry_run": True},
        )
        for path in ("", "/status", "/deadletters", f"/users/{quote(email, safe='')}/log"):
            api.call("GET", f"/api/v1/integrations/{integration_id}{path}", expect=200, admin=True)
        cli(service, transcript, "integrations", "show", integration_id)
    # Each CLI run costs a second of start-up: the failing test, and the list, suffice.
    cli(service, transcript, "integrations", "test", BROKEN, expect=1)
    cli(service, transcript, "integrations", "list")
    api.call("GET", "/api/v1/integrations", expect=200, admin=True)
    api.call("GET", "/metrics", expect=200)
    _console(api, email, refused)
    return given


def _assert_sync_was_counted(api: Caller) -> None:
    """serve's /metrics counts its worker's outcome and Dataverse requests (the wiring)."""
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    text = api.call("GET", "/metrics", expect=200, headers=scraper).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    written = (
        "consentbridge_sync_outcomes_total",
        (("direction", "to_dataverse"), ("integration", GOOD), ("outcome", "written")),
    )
    assert samples.get(written) == 1, text
    requests = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "consentbridge_dataverse_requests_total" and ("integration", GOOD) in labels
    }
    assert sum(requests.values()) >= 2, text  # at least the lookup and the write
    assert {dict(labels)["operation"] for labels in requests} <= {
        "batch",
        "who_am_i",
        "metadata",
        "update_multiple",
        "create_multiple",
        "upsert_multiple",
        "read",
        "create",
        "update",
        "delete",
    }


def _console(api: Caller, email: str, refused: dict[str, Any]) -> None:
    """Sign in and open every page, then save a refused document and a wrong sign-in."""
    api.call("POST", "/console/login", expect=401, data={"token": "not-the-token"})
    api.call("POST", "/console/login", expect=303, data={"token": ADMIN_TOKEN})
    pages = ["/console", "/console/new"]
    for integration_id in (GOOD, BROKEN):
        base = f"/console/integrations/{integration_id}"
        pages += [base, f"{base}?user={quote(email, safe='')}", f"{base}/edit"]
    for page in pages:
        api.call("GET", page, expect=200)
    html = api.call("GET", "/console/new", expect=200).text
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    for action in ("validate", "save"):
        api.call(
            "POST",
            "/console/save",
            expect=422,
            data={"csrf": csrf, "action": action, "document": json.dumps(refused)},
        )
    for integration_id in (GOOD, BROKEN):
        api.call(
            "POST", f"/console/integrations/{integration_id}/test", expect=200, data={"csrf": csrf}
        )
