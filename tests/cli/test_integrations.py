"""`consentbridge integrations …`: output, exit codes and secrecy, on a real SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from consentbridge.cli import main
from tests.web.support import SECRETS, document

Run = tuple[int, str, str]
Cli = Callable[..., Run]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> dict[str, str]:
    variables = {
        "CONSENTBRIDGE_DB_URL": sqlite_url,
        "CONSENTBRIDGE_SECRET_KEY": Fernet.generate_key().decode(),
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return variables


@pytest.fixture
def cli(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: str) -> Run:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_apply_prints_created_then_updated(cli: Cli, tmp_path: Path) -> None:
    file = write(tmp_path / "acme.json", document())
    assert cli("integrations", "apply", str(file)) == (0, "created acme-d365\n", "")
    code, out, _ = cli("integrations", "apply", str(file))
    assert (code, out) == (0, "updated acme-d365\n")


def test_apply_with_the_flow_on_stores_then_says_why_the_webhook_was_not_registered(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONSENTBRIDGE_PUBLIC_URL", raising=False)
    file = write(tmp_path / "acme.json", document(bidirectional=True))
    code, out, err = cli("integrations", "apply", str(file))
    assert (code, out) == (1, "created acme-d365\n")
    assert err.startswith("error: Stored, but `bidirectional enable` failed: ")
    assert "CONSENTBRIDGE_PUBLIC_URL" in err and err.count("\n") == 1
    assert cli("integrations", "show", "acme-d365")[0] == 0


def test_apply_reads_yaml(cli: Cli, tmp_path: Path) -> None:
    file = tmp_path / "acme.yaml"
    file.write_text(yaml.safe_dump(document()))
    assert cli("integrations", "apply", str(file))[:2] == (0, "created acme-d365\n")


def test_a_bad_document_prints_every_issue_and_exits_1(cli: Cli, tmp_path: Path) -> None:
    bad = document()
    bad["config"]["instance"] = "http://acme.crm4.dynamics.com"
    bad["upsert_mode"] = "no"
    code, out, err = cli("integrations", "apply", str(write(tmp_path / "bad.json", bad)))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert any(line.startswith("config.instance: ") for line in lines)
    assert any(line.startswith("upsert_mode: ") for line in lines)
    assert_no_secret(err)
    assert cli("integrations", "list")[1] == ""


def test_a_missing_file_is_one_sentence_and_exit_1(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("integrations", "apply", str(tmp_path / "nope.json"))
    assert code == 1
    assert err.startswith("error: Cannot read") and err.count("\n") == 1
    assert "Traceback" not in err


def test_list_and_show_never_print_a_secret(cli: Cli, tmp_path: Path) -> None:
    cli("integrations", "apply", str(write(tmp_path / "a.json", document())))
    code, listed, _ = cli("integrations", "list")
    assert code == 0 and listed.split("\t")[0] == "acme-d365"
    code, shown, _ = cli("integrations", "show", "acme-d365")
    assert code == 0
    assert json.loads(shown)["config"]["client_secret"] == "***"
    assert_no_secret(listed, shown)


def test_show_of_an_unknown_id_exits_1_with_a_sentence(cli: Cli, tmp_path: Path) -> None:
    cli("integrations", "apply", str(write(tmp_path / "a.json", document())))  # the store
    code, _, err = cli("integrations", "show", "nobody")
    assert code == 1
    assert "No integration has the id 'nobody'" in err


def test_delete_with_yes(cli: Cli, tmp_path: Path) -> None:
    cli("integrations", "apply", str(write(tmp_path / "a.json", document())))
    assert cli("integrations", "delete", "acme-d365", "--yes")[:2] == (0, "deleted acme-d365\n")
    assert cli("integrations", "delete", "acme-d365", "--yes")[0] == 1


def test_delete_without_yes_off_a_terminal_exits_2_without_prompting(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli("integrations", "apply", str(write(tmp_path / "a.json", document())))[0] == 0
    # A real process, so that stdin really is not a terminal (and a prompt would hang).
    refused = subprocess.run(
        [sys.executable, "-m", "consentbridge.cli", "integrations", "delete", "acme-d365"],
        env=os.environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert cli("integrations", "list")[1].startswith("acme-d365")


def test_validate_is_offline_and_exits_0_or_1(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSENTBRIDGE_DB_URL", "postgresql://nobody@127.0.0.1:1/none")
    good = write(tmp_path / "good.json", document())
    code, out, err = cli("integrations", "validate", str(good))
    assert (code, out) == (0, "valid acme-d365\n")
    assert "warning: config.properties[1].value" in err  # an ambiguous path
    bad = document()
    del bad["config"]["tenant_id"]
    code, out, err = cli("integrations", "validate", str(write(tmp_path / "bad.json", bad)))
    assert (code, out) == (1, "")
    assert "config.tenant_id: " in err
