"""The CLI never opens a new, empty store by accident: a command that finds none names the one it
looked for and how to point at the right one, exits 1 and creates nothing. Only `integrations
apply` (and `serve`, `worker`) may create the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from consentbridge.cli import main
from tests.web.support import document

Run = tuple[int, str, str]
Cli = Callable[..., Run]

COMMANDS = [
    ("integrations", "list"),
    ("integrations", "show", "acme-d365"),
    ("integrations", "delete", "acme-d365", "--yes"),
    ("integrations", "test", "acme-d365"),
    ("integrations", "preview", "acme-d365", "--user", "pat@example.com"),
    ("status",),
    ("deadletters", "list", "acme-d365"),
    ("deadletters", "replay", "acme-d365"),
    ("backfill", "acme-d365"),
    ("bidirectional", "status", "acme-d365"),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder with no store settings at all (the defaults under ./var)."""
    for name in ("CONSENTBRIDGE_DB_URL", "CONSENTBRIDGE_SECRET_KEY", "CONSENTBRIDGE_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def cli(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: str) -> Run:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_command_without_a_store_says_where_it_looked_and_creates_nothing(
    cli: Cli, workdir: Path, command: tuple[str, ...]
) -> None:
    code, out, err = cli(*command)

    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("error: No ConsentBridge store at ")
    assert str(workdir / "var" / "consentbridge.db") in err
    assert "--db" in err and "CONSENTBRIDGE_DB_URL" in err
    assert "Traceback" not in err
    assert list(workdir.iterdir()) == []  # no database file, no var/, no key file


def test_a_store_named_with_db_is_looked_for_there(cli: Cli, workdir: Path) -> None:
    elsewhere = workdir.parent / "elsewhere" / "cb.db"
    code, _, err = cli("--db", f"sqlite:///{elsewhere}", "status")
    assert code == 1 and str(elsewhere) in err
    assert not elsewhere.parent.exists()


def test_apply_creates_the_store_and_then_the_other_commands_use_it(
    cli: Cli, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = workdir / "acme.json"
    file.write_text(json.dumps(document()))
    assert cli("integrations", "apply", str(file))[:2] == (0, "created acme-d365\n")
    assert (workdir / "var" / "consentbridge.db").is_file()
    code, out, _ = cli("integrations", "list")
    assert code == 0 and out.startswith("acme-d365\t")


def test_an_empty_postgresql_database_is_no_store_and_stays_empty(
    cli: Cli, workdir: Path, pg_url: str
) -> None:
    password_url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:hunter22@", 1)
    code, out, err = cli("--db", password_url, "integrations", "list")

    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("error: No ConsentBridge store in ")
    assert pg_url.rsplit("/", 1)[-1] in err  # the database's name
    assert "--db" in err and "CONSENTBRIDGE_DB_URL" in err
    assert "hunter22" not in err
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
    assert list(workdir.iterdir()) == []
