"""`consentbridge backfill|reconcile` create a stored job and follow it to its summary (running
it themselves when no worker does); `--detach` only queues it; `jobs list|show|pause|resume|
cancel` and `integrations pause|resume` — against the sandbox over real HTTPS and a real
SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from consentbridge.cli import jobs as cli_jobs
from consentbridge.cli import main
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient, unique_email

PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"}
]


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("CONSENTBRIDGE_DB_URL", sqlite_url)
    monkeypatch.setenv("CONSENTBRIDGE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_jobs, "HELP_AFTER_S", 0.0)  # no worker runs in these tests


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def applied(live_sandbox: SandboxClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    file = tmp_path / "acme.json"
    file.write_text(json.dumps(integration_document(live_sandbox, PROPERTIES)))
    assert run(capsys, "integrations", "apply", str(file))[0] == 0
    return "acme-d365"


def test_backfill_runs_the_job_and_prints_its_summary(
    live_sandbox: SandboxClient, applied: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        live_sandbox.consent_event(unique_email("cli"), [{"id": "newsletter", "enabled": True}])
    code, out, err = run(capsys, "backfill", applied, "--dry-run")
    assert (code, err) == (0, "")
    assert out.startswith("3 users read, 3 would queue, 0 already up to date, 0 without ")

    (job,) = json.loads(run(capsys, "jobs", "list", applied)[1])
    assert (job["kind"], job["state"], job["progress"]["done"]) == ("backfill", "done", 3)
    assert json.loads(run(capsys, "jobs", "show", job["job_id"])[1])["summary"]["queued"] == 3


def test_reconcile_prints_each_difference(
    live_sandbox: SandboxClient, applied: str, capsys: pytest.CaptureFixture[str]
) -> None:
    user = unique_email("cli")
    live_sandbox.consent_event(user, [{"id": "newsletter", "enabled": True}])
    contact = live_sandbox.create_contact(emailaddress1=user, donotbulkemail=True)
    code, out, _ = run(capsys, "reconcile", applied)
    assert code == 0
    first, summary = out.splitlines()
    assert first == f"{user}\t{contact}\tdonotbulkemail: didomi=False dataverse=True"
    assert summary.startswith("1 users read, 1 compared, 1 differ in 1 column(s), 0 without")


def test_a_detached_job_is_paused_resumed_and_cancelled(
    applied: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "backfill", applied, "--detach")
    assert code == 0 and out.startswith("queued backfill job job-")
    job_id = out.split()[3].rstrip(";")
    assert run(capsys, "jobs", "pause", job_id)[1] == f"job {job_id} is paused\n"
    code, _, err = run(capsys, "reconcile", applied)
    assert code == 1 and err.startswith(f"error: Integration '{applied}' already has backfill ")
    assert run(capsys, "jobs", "resume", job_id)[1] == f"job {job_id} is queued\n"
    assert run(capsys, "jobs", "cancel", job_id)[1] == f"job {job_id} is failed\n"
    code, _, err = run(capsys, "jobs", "resume", job_id)
    assert code == 1 and "only a paused job can be resumed" in err


def test_integrations_pause_and_resume(applied: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "integrations", "pause", applied)[1] == f"integration {applied} paused\n"
    assert json.loads(run(capsys, "status", applied)[1])["paused"] is True
    assert run(capsys, "integrations", "resume", applied)[1] == f"integration {applied} resumed\n"
    assert json.loads(run(capsys, "status", applied)[1])["paused"] is False
