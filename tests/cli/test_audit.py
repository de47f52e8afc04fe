"""`consentbridge audit verify` and `audit export` on a real SQLite store: exit 0 on an unbroken
chain, 1 naming the first bad entry, 2 with one sentence for a bad option."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from consentbridge.cli import main
from consentbridge.store import Store
from tests.store.builders import ACME, entry


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("CONSENTBRIDGE_DB_URL", sqlite_url)
    monkeypatch.setenv("CONSENTBRIDGE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def logged(sqlite_url: str) -> Path:
    """Five log entries of ACME (two users), not sealed yet; the database file."""

    async def fill() -> None:
        store = await Store.open(sqlite_url)
        try:
            await store.put_integration(ACME, {"id": ACME})
            now = time.time()
            await store.append_log(
                [entry(f"u{i % 2}", event=f"e{i}", at=now - 10 + i) for i in range(5)]
            )
        finally:
            await store.close()

    asyncio.run(fill())
    return Path(sqlite_url.removeprefix("sqlite:///"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_passes_then_names_the_edited_entry(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "audit", "verify", ACME)
    assert (code, err) == (0, "")
    assert out.startswith("OK   audit chain of acme: 5 entries verified (seal_seq 1 to 5)")

    with sqlite3.connect(logged) as db:
        db.execute("UPDATE sync_log SET reason = 'edited' WHERE seal_seq = 2")
    code, out, _ = run(capsys, "audit", "verify", ACME)

    assert code == 1
    assert out.startswith("FAIL audit chain of acme: entry 2 (seal_seq 2) no longer matches")

    code, out, _ = run(capsys, "audit", "verify", ACME, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["first_bad"]["kind"] == "edited" and report["first_bad"]["entry_id"] == 2


def test_export_one_person_as_csv_and_json(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", "export", ACME, "--user", "u1")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["event"] for r in rows] == ["e1", "e3"]
    assert all(len(r["hash"]) == 64 for r in rows)

    code, out, _ = run(capsys, "audit", "export", ACME, "--user", "u1", "--format", "json")
    assert code == 0
    assert [(e["event"], e["hash"]) for e in json.loads(out)] == [
        (r["event"], r["hash"]) for r in rows
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "last tuesday"], "error: --from: 'last tuesday' is not a time; give ISO-8601"),
        (["--format", "xlsx"], "error: --format: 'xlsx' is not a format; use csv or json."),
    ],
)
def test_a_bad_option_exits_2_with_one_sentence(
    logged: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, out, err = run(capsys, "audit", "export", ACME, *args)

    assert (code, out) == (2, "")
    assert err.startswith(says) and err.count("\n") == 1


def test_an_unknown_integration_is_one_sentence(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "audit", "verify", "nope")
    assert (code, err) == (1, "error: No integration has the id 'nope'.\n")


def test_the_offline_checker_in_the_docs_accepts_an_export_and_catches_an_edit(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    section = docs.split("## Checking an export offline", 1)[1]
    checker = section.split("```python\n", 1)[1].split("```", 1)[0]
    code, out, _ = run(capsys, "audit", "export", ACME, "--format", "json")
    assert code == 0

    def check(export: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", checker], input=export, capture_output=True, text=True
        )

    assert check(out).stdout == "ok: 5 entries\n"
    edited = json.loads(out)
    edited[2]["columns"] = {"donotbulkemail": False}
    assert "entry 3 does not match its hash" in check(json.dumps(edited)).stderr
