"""A PostgreSQL store that cannot be opened is one sentence naming the cause — the driver's
words, host and port — from `serve`, `worker` and every other command, never with the URL's
password and never with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL_ENV

PASSWORD = "s3cret-Pa55word"


def run(tmp_path: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTBRIDGE_")}
    env["CONSENTBRIDGE_DB_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "consentbridge.cli", *args],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def the_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one `error:` line (retry log lines may come before it), after checking the rest."""
    assert result.returncode == 1
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture
def wrong_database() -> str:
    """A URL to the test server, with a password, naming a database that does not exist."""
    server = os.environ.get(PG_URL_ENV)
    if not server:
        pytest.skip(f"{PG_URL_ENV} is not set: no PostgreSQL server to test against")
    url = sa.make_url(server).set(password=PASSWORD, database="cb_no_such_database")
    return url.render_as_string(hide_password=False)


def test_a_closed_port_names_host_port_and_the_drivers_reason(tmp_path: Path) -> None:
    error = the_error(run(tmp_path, f"postgresql://cb:{PASSWORD}@127.0.0.1:1/consent", "status"))

    assert error.startswith("error: Cannot open the store in the PostgreSQL database 'consent'")
    assert "127.0.0.1:1" in error and "Connection refused" in error
    assert error.endswith(".") and "; check " in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [("worker",), ("serve", "--port", "0", "--no-worker"), ("integrations", "list")],
    ids=lambda c: c[0],
)
def test_a_wrong_database_name_is_named_at_once_by_every_command(
    tmp_path: Path, wrong_database: str, command: tuple[str, ...]
) -> None:
    result = run(tmp_path, wrong_database, *command)
    error = the_error(result)

    assert "database 'cb_no_such_database' on 127.0.0.1:5432" in error
    assert 'database "cb_no_such_database" does not exist' in error
    assert "still failing" not in error  # refused for good: no 30 s of retries first
    assert "retry" not in result.stderr
