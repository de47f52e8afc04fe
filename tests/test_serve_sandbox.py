"""`consentbridge serve --sandbox` as the README runs it (a subprocess in an empty folder): the
admin token it generates is kept under ./var and is the same after a restart, and the README's
three commands, pasted at once, show Alice's written change."""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

SERVE_SANDBOX = (sys.executable, "-m", "consentbridge.cli", "serve", "--sandbox")
posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@contextmanager
def serve_sandbox(workdir: Path, **env: str) -> Iterator[list[str]]:
    """The service with its sandbox on free ports; yields the banner once it is printed."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTBRIDGE_")}
    environ.update(env, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [*SERVE_SANDBOX, "--port", "0", "--sandbox-port", "0"],
        cwd=workdir,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    banner: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("serve --sandbox exited early:\n" + "".join(banner))
            banner.append(line.rstrip("\n"))
            if line.startswith("demo env: "):
                break
        else:
            raise AssertionError("serve --sandbox did not start:\n" + "\n".join(banner))
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe open
        yield banner
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def printed_token(banner: list[str]) -> str | None:
    tokens = [line.split(": ", 1)[1] for line in banner if line.startswith("admin_token: ")]
    return tokens[0] if tokens else None


def demo_env(workdir: Path) -> dict[str, str]:
    values = {}
    for line in (workdir / "var" / "demo.env").read_text().splitlines():
        key, _, value = line.partition("=")
        (values[key],) = shlex.split(value) or [""]
    return values


@posix_only
def test_the_generated_admin_token_is_kept_under_var_and_reused_on_restart(
    tmp_path: Path,
) -> None:
    with serve_sandbox(tmp_path) as banner:
        first = printed_token(banner)
    with serve_sandbox(tmp_path) as banner:
        second = printed_token(banner)
        with httpx.Client(base_url=demo_env(tmp_path)["SERVICE_URL"]) as client:
            answered = client.get(
                "/api/v1/integrations", headers={"Authorization": f"Bearer {first}"}
            )

    assert first is not None and len(first) >= 32
    assert second == first
    assert answered.status_code == 200
    token_file = tmp_path / "var" / "admin.token"
    assert token_file.read_text().strip() == first
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700


def test_an_admin_token_from_the_environment_wins_and_is_not_printed(tmp_path: Path) -> None:
    chosen = "operator-chosen-admin-token-0123456789"
    with serve_sandbox(tmp_path, CONSENTBRIDGE_ADMIN_TOKEN=chosen) as banner:
        env = demo_env(tmp_path)

    assert printed_token(banner) is None
    assert env["ADMIN_TOKEN"] == chosen
    assert not (tmp_path / "var" / "admin.token").exists()


def test_the_readme_commands_pasted_at_once_show_alices_written_change(tmp_path: Path) -> None:
    with serve_sandbox(tmp_path):
        env = demo_env(tmp_path)
        sandbox = httpx.Client(
            base_url=env["SANDBOX_URL"], verify=str(tmp_path / env["SANDBOX_CA"])
        )
        service = httpx.Client(
            base_url=env["SERVICE_URL"],
            headers={"Authorization": f"Bearer {env['ADMIN_TOKEN']}"},
            timeout=40,
        )
        with sandbox, service:
            session = sandbox.post(
                "/v1/sessions",
                json={
                    "type": "api-key",
                    "key": env["DIDOMI_API_KEY"],
                    "secret": env["DIDOMI_API_SECRET"],
                },
            )
            token = session.json()["access_token"]
            sandbox.post(
                "/v1/consents/events",
                params={"organization_id": env["DIDOMI_ORG"]},
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "user": {"organization_user_id": "alice@example.com"},
                    "consents": {"purposes": [{"id": "newsletter", "enabled": False}]},
                },
            ).raise_for_status()
            log = service.get(
                "/api/v1/integrations/demo/users/alice@example.com/log", params={"wait_s": 30}
            )

    assert log.status_code == 200, log.text
    written = [e for e in log.json()["entries"] if e["outcome"] == "written"]
    assert len(written) == 1, log.text
    assert written[0]["columns"] == {"donotbulkemail": True}
    assert written[0]["reason"].startswith("written")
    for entry in log.json()["entries"]:  # outcomes, not failures
        assert "not newer" not in entry["reason"]
