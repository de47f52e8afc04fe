"""Reading documents from JSON and YAML files, and the one-sentence errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from consentbridge.config import DocumentFileError, load_document_file, parse_integration

SECRET = "file-secret-Qw8Lp4"

YAML_DOCUMENT = f"""\
upsert_mode: true
config:
  client_id: 1b2c3d4e-0000-4000-8000-00000000abcd
  client_secret: {SECRET}
  tenant_id: contoso.onmicrosoft.com
  instance: https://acme.crm4.dynamics.com
  properties:
    - id: donotbulkemail
      value: consents_purposes_newsletter_enabled
      transform: {{"true": 1, "false": 2}}
"""


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_yaml_files_are_read_by_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"acme{suffix}"
    path.write_text(YAML_DOCUMENT)

    integration = parse_integration(load_document_file(path), default_id=path.stem.lower())

    assert integration.config.properties[0].transform == {"true": 1, "false": 2}
    assert integration.config.client_secret.get_secret_value() == SECRET


@pytest.mark.parametrize("name", ["acme.json", "acme.conf"])
def test_other_files_are_read_as_json_even_with_a_bom(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b'\xef\xbb\xbf{"id": "acme", "config": {"properties": []}}')

    assert load_document_file(str(path)) == {"id": "acme", "config": {"properties": []}}


def test_a_missing_file_is_reported_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"

    with pytest.raises(
        DocumentFileError, match=r"^Cannot read .*missing\.json: .*; check the path\.$"
    ):
        load_document_file(path)


def test_invalid_json_gives_the_position_without_quoting_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "client_secret": "' + SECRET + '"\n  "x": 1\n}')

    with pytest.raises(DocumentFileError) as caught:
        load_document_file(path)

    message = str(caught.value)
    assert message.startswith(f"{path} is not valid JSON (line 3, column 3")
    assert SECRET not in message


def test_invalid_yaml_gives_the_position_without_quoting_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"config:\n  client_secret: {SECRET}\n   bad: [\n")

    with pytest.raises(DocumentFileError) as caught:
        load_document_file(path)

    message = str(caught.value)
    assert message.startswith(f"{path} is not valid YAML (line ")
    assert SECRET not in message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("dup.json", '{"config": {"client_secret": "a", "client_secret": "b"}}'),
        ("dup.yaml", "config:\n  client_secret: a\n  client_secret: b\n"),
    ],
)
def test_a_repeated_key_is_refused(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)

    with pytest.raises(DocumentFileError, match="client_secret appears twice"):
        load_document_file(path)


def test_yaml_cannot_construct_python_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['true']\n")

    with pytest.raises(DocumentFileError, match="not valid YAML"):
        load_document_file(path)


def test_oversized_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (1024 * 1024 + 1))
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"x": "\xe9"}')

    with pytest.raises(DocumentFileError, match="larger than 1 MiB"):
        load_document_file(big)
    with pytest.raises(DocumentFileError, match="not UTF-8"):
        load_document_file(latin)
