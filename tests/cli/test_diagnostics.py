"""`consentbridge integrations test`: one OK/FAIL line per check, mapped columns included, exit 1
when any fails; against the sandbox over real HTTPS and a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from consentbridge.cli import main
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("CONSENTBRIDGE_DB_URL", sqlite_url)
    monkeypatch.setenv("CONSENTBRIDGE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_integrations_test_fails_naming_each_missing_column(
    live_sandbox: SandboxClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    properties = [
        {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"},
        {"id": "new_smsoptin", "value": "consents_purposes_sms_enabled"},
    ]
    file = tmp_path / "acme.json"
    file.write_text(json.dumps(integration_document(live_sandbox, properties)))
    assert run(capsys, "integrations", "apply", str(file))[0] == 0

    code, out, _ = run(capsys, "integrations", "test", "acme-d365")
    assert code == 1
    lines = out.splitlines()
    assert "OK   token: " in lines[0]
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed == [
        "FAIL columns: config.properties[1].id: the contact table has no column "
        "'new_smsoptin'; check the logical name (not the display name) in the maker portal."
    ]

    live_sandbox.add_column("new_smsoptin", "Boolean")
    code, out, _ = run(capsys, "integrations", "test", "acme-d365")
    assert (code, [line for line in out.splitlines() if line.startswith("FAIL")]) == (0, [])
