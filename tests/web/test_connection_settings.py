"""Connection settings through the admin API: ``config.ca_bundle`` is judged at apply (an
existing regular PEM file of bounded size, stored as an absolute path), and ``test``, ``preview``
and ``backfill`` answer a connection setting that does not work — an unreadable CA, an authority
that answers with HTML or without a token, an unreachable instance, a TLS failure — with a 4xx or
a failed check naming the problem, never a 500. ``test`` also checks every mapped column."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from consentbridge.config.ca_bundle import MAX_CA_BUNDLE_BYTES
from tests.e2e.conftest import integration_document
from tests.support.sandbox import SandboxClient
from tests.support.wrong_server import WrongServer, self_signed

ID = "acme-d365"
URL = f"/api/v1/integrations/{ID}"
USER = "alice@example.com"
PROPERTIES = [{"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"}]


def _document(sandbox: SandboxClient, **config: Any) -> dict[str, Any]:
    document = integration_document(sandbox, PROPERTIES, id=ID)
    document["config"].update(config)
    return document


async def _put(client: httpx.AsyncClient, admin: dict[str, str], doc: dict[str, Any]) -> None:
    response = await client.put(URL, json=doc, headers=admin)
    assert response.status_code == 201, response.text


def _only_error(response: httpx.Response, status: int, path: str) -> str:
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert [e["path"] for e in errors] == [path], errors
    return str(errors[0]["message"])


def _bundle(tmp_path: Path, *pems: bytes) -> str:
    path = tmp_path / "bundle.pem"
    path.write_bytes(b"".join(pems))
    return str(path)


# -- at apply ------------------------------------------------------------------------------


def _missing(tmp_path: Path) -> str:
    return str(tmp_path / "gone.pem")


def _directory(tmp_path: Path) -> str:
    return str(tmp_path)


def _not_pem(tmp_path: Path) -> str:
    return _bundle(tmp_path, b"just some text\n")


def _too_large(tmp_path: Path) -> str:
    return _bundle(tmp_path, b"#" * (MAX_CA_BUNDLE_BYTES + 1))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_missing, "does not exist"),
        (_directory, "directory"),
        (_not_pem, "no valid PEM certificate"),
        (_too_large, "larger than 1024 KiB"),
    ],
)
async def test_apply_refuses_a_ca_bundle_it_cannot_use(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    live_sandbox: SandboxClient,
    tmp_path: Path,
    make: Any,
    words: str,
) -> None:
    path = make(tmp_path)
    response = await client.put(URL, json=_document(live_sandbox, ca_bundle=path), headers=admin)
    message = _only_error(response, 422, "config.ca_bundle")
    assert message.startswith("ca_bundle ") and words in message and path in message
    assert (await client.get(URL, headers=admin)).status_code == 404, "nothing stored"


async def test_a_relative_ca_bundle_is_stored_as_an_absolute_path(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    live_sandbox: SandboxClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "certs").mkdir()
    shutil.copy(live_sandbox.ca_bundle, tmp_path / "certs" / "ca.pem")
    monkeypatch.chdir(tmp_path)
    await _put(client, admin, _document(live_sandbox, ca_bundle="certs/ca.pem"))
    stored = (await client.get(URL, headers=admin)).json()
    assert stored["config"]["ca_bundle"] == str(tmp_path / "certs" / "ca.pem")

    monkeypatch.chdir("/")  # the service started elsewhere still finds it
    response = await client.post(f"{URL}/test", headers=admin)
    assert response.json()["ok"] is True, response.text


# -- test, preview, backfill with a setting that does not work -------------------------------


async def test_a_ca_bundle_gone_after_apply_is_named_by_test_preview_and_backfill(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    ca = Path(shutil.copy(live_sandbox.ca_bundle, tmp_path / "ca.pem"))
    await _put(client, admin, _document(live_sandbox, ca_bundle=str(ca)))
    ca.unlink()

    tested = await client.post(f"{URL}/test", headers=admin)
    assert tested.status_code == 200
    assert tested.json()["ok"] is False
    [check] = tested.json()["checks"]
    assert check["name"] == "ca_bundle" and "does not exist" in check["detail"]

    previewed = await client.post(
        f"{URL}/preview", json={"organization_user_id": USER}, headers=admin
    )
    assert "does not exist" in _only_error(previewed, 422, "config.ca_bundle")
    backfilled = await client.post(f"{URL}/backfill", json={"dry_run": True}, headers=admin)
    assert "does not exist" in _only_error(backfilled, 422, "config.ca_bundle")


@pytest.mark.parametrize("token_less", [False, True], ids=["html", "no-token"])
async def test_an_authority_that_gives_no_token_is_a_failed_check_and_a_4xx(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    live_sandbox: SandboxClient,
    tmp_path: Path,
    token_less: bool,
) -> None:
    live_sandbox.consent_event(USER, [{"id": "newsletter", "enabled": True}])
    with WrongServer(token_less=token_less) as authority:
        bundle = _bundle(tmp_path, Path(live_sandbox.ca_bundle).read_bytes(), authority.cert_pem)
        doc = _document(live_sandbox, ca_bundle=bundle, authority_host=authority.base_url)
        await _put(client, admin, doc)

        tested = (await client.post(f"{URL}/test", headers=admin)).json()
        assert tested["ok"] is False
        assert tested["checks"][0]["name"] == "token" and not tested["checks"][0]["ok"]
        assert "config." in tested["checks"][0]["detail"]

        previewed = await client.post(
            f"{URL}/preview", json={"organization_user_id": USER}, headers=admin
        )
        assert "config." in _only_error(previewed, 422, "dataverse")


async def test_a_didomi_base_url_answering_html_is_a_4xx_for_backfill(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    with WrongServer() as didomi:
        doc = _document(
            live_sandbox,
            ca_bundle=_bundle(tmp_path, Path(live_sandbox.ca_bundle).read_bytes(), didomi.cert_pem),
        )
        doc["didomi"]["base_url"] = didomi.base_url
        await _put(client, admin, doc)
        backfilled = await client.post(f"{URL}/backfill", json={"dry_run": True}, headers=admin)
        assert "didomi.base_url" in _only_error(backfilled, 422, "didomi")
        previewed = await client.post(
            f"{URL}/preview", json={"organization_user_id": USER}, headers=admin
        )
        assert "didomi.base_url" in _only_error(previewed, 422, "didomi")


async def test_a_ca_that_does_not_sign_the_servers_is_a_tls_failure_not_a_500(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient, tmp_path: Path
) -> None:
    other_ca, _ = self_signed()
    await _put(client, admin, _document(live_sandbox, ca_bundle=_bundle(tmp_path, other_ca)))

    tested = (await client.post(f"{URL}/test", headers=admin)).json()
    assert tested["checks"][0] == {
        "name": "token",
        "ok": False,
        "detail": tested["checks"][0]["detail"],
    }
    assert "config.ca_bundle" in tested["checks"][0]["detail"]
    previewed = await client.post(
        f"{URL}/preview", json={"organization_user_id": USER}, headers=admin
    )
    assert previewed.status_code == 422, previewed.text
    backfilled = await client.post(f"{URL}/backfill", json={"dry_run": True}, headers=admin)
    assert backfilled.status_code == 422, backfilled.text


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_instance_is_a_failed_check_and_a_4xx(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    doc = _document(live_sandbox, instance=f"https://127.0.0.1:{_closed_port()}")
    doc.pop("didomi")  # preview then reads the last received change, and goes to Dataverse
    await _put(client, admin, doc)
    tested = (await client.post(f"{URL}/test", headers=admin)).json()
    assert tested["ok"] is False
    assert any("config.instance" in c["detail"] for c in tested["checks"] if not c["ok"])


# -- test checks the mapped columns --------------------------------------------------------


async def test_test_names_each_mapped_column_dataverse_does_not_have(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    doc = _document(live_sandbox)
    doc["config"]["properties"] = [
        *PROPERTIES,
        {"id": "new_smsoptin", "value": "consents_purposes_sms_enabled"},
        {"id": "new_postoptin", "value": "consents_purposes_post_enabled"},
    ]
    await _put(client, admin, doc)
    tested = (await client.post(f"{URL}/test", headers=admin)).json()
    assert tested["ok"] is False
    failed = [c["detail"] for c in tested["checks"] if c["name"] == "columns" and not c["ok"]]
    assert len(failed) == 2
    assert failed[0].startswith("config.properties[1].id: ") and "'new_smsoptin'" in failed[0]
    assert failed[1].startswith("config.properties[2].id: ") and "'new_postoptin'" in failed[1]
    passed = {c["name"] for c in tested["checks"] if c["ok"]}
    assert {"token", "web_api", "whoami", "contact_privileges"} <= passed


async def test_test_passes_when_every_mapped_column_exists(
    client: httpx.AsyncClient, admin: dict[str, str], live_sandbox: SandboxClient
) -> None:
    await _put(client, admin, _document(live_sandbox))
    tested = (await client.post(f"{URL}/test", headers=admin)).json()
    assert tested["ok"] is True, tested
    assert [c for c in tested["checks"] if c["name"] == "columns"] == [
        {"name": "columns", "ok": True, "detail": "the contact table has all 1 mapped column(s)"}
    ]
