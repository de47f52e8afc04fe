"""`consentbridge status`: the numbers of the store, including the ignored deliveries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from consentbridge.cli import main
from consentbridge.store import IgnoredDelivery, Store
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
