"""Integration documents typed or given as files: YAML anchors and aliases are refused (a
"billion laughs" document never expands), and a typed secret is never echoed back — not from
a block scalar, an anchor, nor under a key spelled with escapes — in the console editor, the
API's errors or the CLI's output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet

from consentbridge.cli import main
from consentbridge.config import DocumentFileError, load_document_file
from tests.security.support import ADMIN, API, SECRETS
from tests.web.support import ADMIN_TOKEN, CLIENT_SECRET, document

pytestmark = pytest.mark.security

# 430 bytes; a loader that expanded aliases would build 10^9 strings.
BILLION_LAUGHS = (
    'lol: &lol "lol"\n'
    "lol1: &lol1 [*lol, *lol, *lol, *lol, *lol, *lol, *lol, *lol, *lol, *lol]\n"
    "lol2: &lol2 [*lol1, *lol1, *lol1, *lol1, *lol1, *lol1, *lol1, *lol1, *lol1]\n"
    "lol3: &lol3 [*lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2]\n"
    "lol4: &lol4 [*lol3, *lol3, *lol3, *lol3, *lol3, *lol3, *lol3, *lol3, *lol3]\n"
    "lol5: &lol5 [*lol4, *lol4, *lol4, *lol4, *lol4, *lol4, *lol4, *lol4, *lol4]\n"
    "config: [*lol5, *lol5, *lol5, *lol5, *lol5, *lol5, *lol5, *lol5, *lol5]\n"
)

# The secret under an anchor, echoed through an alias at a path that is not a secret.
ANCHORED_SECRET = (
    yaml.safe_dump(document())
    .replace(f"client_secret: {CLIENT_SECRET}", f"client_secret: &s {CLIENT_SECRET}", 1)
    .replace("tenant_id: contoso.onmicrosoft.com", "tenant_id: *s", 1)
)

# Does not parse (an unclosed flow sequence at the end): shown back as text.
BLOCK_SCALAR_BROKEN = (
    f"config:\n  client_secret: |\n    {CLIENT_SECRET}\n  tenant_id: x\nproperties: [\n"
)
ESCAPED_KEY_JSON_BROKEN = '{"config": {"client\\u005fsecret": "' + CLIENT_SECRET + '", "x": '
ESCAPED_KEY_YAML_BROKEN = 'config:\n  "client\\x5fsecret": "' + CLIENT_SECRET + '"\nx: [\n'
EXPLICIT_KEY_BROKEN = f"config:\n  ? client_secret\n  : {CLIENT_SECRET}\nx: [\n"


def test_the_billion_laughs_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS.encode()) < 500
    with pytest.raises(DocumentFileError) as refused:
        load_document_file(path)
    message = str(refused.value)
    assert "anchor" in message and "line 1, column 6" in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_an_alias_without_the_anchor_in_view_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text(ANCHORED_SECRET)
    with pytest.raises(DocumentFileError, match="anchor or alias"):
        load_document_file(path)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("CONSENTBRIDGE_DB_URL", sqlite_url)
    monkeypatch.setenv("CONSENTBRIDGE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("command", ["validate", "apply"])
def test_the_cli_refuses_anchors_without_echoing_a_secret(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, text in (("bomb.yaml", BILLION_LAUGHS), ("alias.yaml", ANCHORED_SECRET)):
        (tmp_path / name).write_text(text)
        with pytest.raises(SystemExit) as exited:
            main(["integrations", command, str(tmp_path / name)])
        out, err = capsys.readouterr()
        assert exited.value.code == 1
        assert "anchor or alias" in err and "Traceback" not in err
        assert CLIENT_SECRET not in out + err


async def _console(client: httpx.AsyncClient) -> str:
    signed = await client.post("/console/login", data={"token": ADMIN_TOKEN})
    assert signed.status_code == 303
    page = await client.get("/console/new")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


@pytest.mark.parametrize(
    "text",
    [
        BILLION_LAUGHS,
        ANCHORED_SECRET,
        BLOCK_SCALAR_BROKEN,
        ESCAPED_KEY_JSON_BROKEN,
        ESCAPED_KEY_YAML_BROKEN,
        EXPLICIT_KEY_BROKEN,
    ],
    ids=["billion-laughs", "anchor", "block-scalar", "json-escape", "yaml-escape", "explicit-key"],
)
@pytest.mark.parametrize("action", ["validate", "save"])
async def test_the_console_never_echoes_a_typed_secret(
    client: httpx.AsyncClient, text: str, action: str
) -> None:
    csrf = await _console(client)
    page = await client.post(
        "/console/save", data={"csrf": csrf, "action": action, "document": text}
    )
    assert page.status_code in (400, 422)
    assert CLIENT_SECRET not in page.text
    if "&" in text:
        assert "anchor or alias" in page.text


@pytest.mark.parametrize(
    "yaml_text",
    [
        "config:\n  client_secret: |\n    {secret}\n",
        "config:\n  'client_secret': >-\n    {secret}\n",
        'config:\n  "client\\u005fsecret": "{secret}"\n',
    ],
    ids=["literal", "folded-quoted-key", "escaped-key"],
)
async def test_a_parsed_document_is_shown_with_its_secret_masked_whatever_its_spelling(
    client: httpx.AsyncClient, yaml_text: str
) -> None:
    csrf = await _console(client)
    text = yaml_text.format(secret=CLIENT_SECRET) + "tenant_id: [1, 2]\n"
    page = await client.post(
        "/console/save", data={"csrf": csrf, "action": "validate", "document": text}
    )
    assert page.status_code == 422
    assert CLIENT_SECRET not in page.text
    assert "client_secret" in page.text and "***" in page.text


async def test_a_json_key_spelled_with_escapes_is_masked_in_the_console(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _console(client)
    doc = document()
    doc["config"]["tenant_id"] = ["not", "text"]  # refused, so the document is shown back
    text = json.dumps(doc).replace('"client_secret"', '"client\\u005fsecret"')
    page = await client.post(
        "/console/save", data={"csrf": csrf, "action": "validate", "document": text}
    )
    assert page.status_code == 422
    for secret in SECRETS:
        assert secret not in page.text


async def test_the_api_never_echoes_a_secret_under_an_escaped_key(
    client: httpx.AsyncClient,
) -> None:
    doc = document()
    doc["config"]["tenant_id"] = ["not", "text"]
    body = json.dumps(doc).replace('"client_secret"', '"client\\u005fsecret"')
    response = await client.put(
        f"{API}/acme-d365", content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    for secret in SECRETS:
        assert secret not in response.text
