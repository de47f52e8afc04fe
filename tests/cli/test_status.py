"""`consentbridge status`: the numbers of the store, including the ignored deliveries."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from consentbridge.cli import main
from consentbridge.config.validation import parse_integration
from consentbridge.store import IgnoredDelivery, Store
from consentbridge.store.budget import AppUser, AppUserHealth, BudgetState
from consentbridge.sync.budget import app_user_of
from tests.web.support import document


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


async def ignore_twice(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        await store.intake_many([IgnoredDelivery("acme-d365", "to_dataverse")] * 2)
    finally:
        await store.close()


def test_status_shows_the_ignored_count(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sqlite_url: str,
) -> None:
    monkeypatch.setenv("CONSENTBRIDGE_DB_URL", sqlite_url)
    monkeypatch.setenv("CONSENTBRIDGE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "acme.json").write_text(json.dumps(document("acme-d365")))
    assert run("integrations", "apply", "acme.json") == 0
    asyncio.run(ignore_twice(sqlite_url))
    capsys.readouterr()

    assert run("status", "acme-d365", "--json") == 0

    status = json.loads(capsys.readouterr().out)
    assert (status["ignored"], status["pending"]) == (2, 0)


SECOND_APP = "22222222-2222-3333-4444-555555555555"


async def set_aside(db_url: str, app_user: AppUser) -> None:
    store = await Store.open(db_url)
    try:
        health = AppUserHealth(time.time() + 600, "Entra ID refused the client secret.", 2)
        await store.record_app_user_health(
            app_user, health, initial=BudgetState(concurrency=2), now=time.time()
        )
    finally:
        await store.close()


def test_status_names_an_application_user_set_aside(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sqlite_url: str,
) -> None:
    monkeypatch.setenv("CONSENTBRIDGE_DB_URL", sqlite_url)
    monkeypatch.setenv("CONSENTBRIDGE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.chdir(tmp_path)
    doc = document("acme-d365")
    doc["config"]["credentials"] = [{"client_id": SECOND_APP, "client_secret": "second-secret"}]
    (tmp_path / "acme.json").write_text(json.dumps(doc))
    assert run("integrations", "apply", "acme.json") == 0
    integration = parse_integration(doc)
    asyncio.run(set_aside(sqlite_url, app_user_of(integration, SECOND_APP)))
    capsys.readouterr()

    assert run("status", "acme-d365", "--json") == 0

    out = capsys.readouterr().out
    first, second = json.loads(out)["app_users"]
    assert first["state"] == "active" and first["client_id"] == doc["config"]["client_id"]
    assert (second["client_id"], second["state"], second["failures"]) == (
        SECOND_APP,
        "set_aside",
        2,
    )
    assert second["reason"] == "Entra ID refused the client secret."
    assert "second-secret" not in out
