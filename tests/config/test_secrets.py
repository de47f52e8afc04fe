"""Secrets at rest and on display: encryption, key files, redaction, and "***" merging."""

from __future__ import annotations

import copy
import json
import os
import stat
import typing
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import BaseModel, SecretStr

from consentbridge.config import (
    Integration,
    InvalidIntegration,
    SecretBox,
    SecretDecryptionError,
    SecretKeyError,
    Settings,
    load_or_create_key_file,
    merge_redacted,
    parse_integration,
    redacted,
)
from consentbridge.config.integration import SECRET_PATHS
from consentbridge.config.secrets import _KEEP_RULES

from .documents import API_SECRET, CLIENT_SECRET, SECRETS, WEBHOOK_SECRET

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def test_encrypted_document_round_trips_and_holds_no_plaintext(
    box: SecretBox, contract: dict[str, Any]
) -> None:
    integration = parse_integration(contract)

    stored = box.encrypt_document(integration)
    text = json.dumps(stored)

    assert not any(secret in text for secret in SECRETS)
    assert set(stored["config"]["client_secret"]) == {"$enc"}
    assert box.decrypt_document(json.loads(text)) == integration


def test_absent_optional_blocks_round_trip(box: SecretBox, seed: dict[str, Any]) -> None:
    integration = parse_integration(seed, default_id="x")

    stored = box.encrypt_document(integration)

    assert "didomi" not in stored and "webhook_auth" not in stored
    assert box.decrypt_document(stored) == integration


def test_null_values_inside_a_value_map_survive_storage(
    box: SecretBox, seed: dict[str, Any]
) -> None:
    seed["config"]["properties"][0]["transform"] = {"true": None, "false": 1}

    stored = box.encrypt_document(parse_integration(seed, default_id="x"))

    assert stored["config"]["properties"][0]["transform"] == {"true": None, "false": 1}
    assert redacted(box.decrypt_document(stored))["config"]["properties"][0]["transform"] == {
        "true": None,
        "false": 1,
    }


def test_another_key_cannot_decrypt_and_says_which_variable(
    box: SecretBox, contract: dict[str, Any]
) -> None:
    stored = box.encrypt_document(parse_integration(contract))

    with pytest.raises(SecretDecryptionError, match="CONSENTBRIDGE_SECRET_KEY"):
        SecretBox(Fernet.generate_key()).decrypt_document(stored)


def test_a_plaintext_secret_in_a_stored_document_is_refused(
    box: SecretBox, contract: dict[str, Any]
) -> None:
    stored = box.encrypt_document(parse_integration(contract))
    stored["didomi"]["api_secret"] = API_SECRET

    with pytest.raises(SecretDecryptionError, match=r"didomi\.api_secret is not encrypted"):
        box.decrypt_document(stored)


def test_single_secret_round_trip_for_run_time_state(box: SecretBox) -> None:
    token = box.encrypt(SecretStr("registration-key"))

    assert "registration-key" not in token
    assert box.decrypt(token).get_secret_value() == "registration-key"


def test_an_invalid_key_is_refused_with_how_to_generate_one() -> None:
    with pytest.raises(SecretKeyError, match=r"Fernet\.generate_key"):
        SecretBox("not-a-key")


@posix_only
def test_key_file_is_created_with_mode_0600_and_its_parents(tmp_path: Path) -> None:
    path = tmp_path / "var" / "nested" / "secret.key"

    key = load_or_create_key_file(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key_file(path) == key
    Fernet(key)  # a usable key
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary left


@posix_only
def test_the_key_files_new_folder_is_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        load_or_create_key_file(tmp_path / "var" / "secret.key")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700


def test_settings_key_wins_over_the_key_file(tmp_path: Path, contract: dict[str, Any]) -> None:
    key = Fernet.generate_key().decode()
    file = tmp_path / "secret.key"
    settings = Settings.from_env({"CONSENTBRIDGE_SECRET_KEY": key}, secret_key_file=file)

    stored = SecretBox.from_settings(settings).encrypt_document(parse_integration(contract))

    assert not file.exists()
    assert SecretBox(key).decrypt_document(stored) == parse_integration(contract)


def test_settings_without_key_use_the_same_key_file_each_time(
    tmp_path: Path, contract: dict[str, Any]
) -> None:
    settings = Settings.from_env({}, secret_key_file=tmp_path / "k")
    stored = SecretBox.from_settings(settings).encrypt_document(parse_integration(contract))

    assert SecretBox.from_settings(settings).decrypt_document(stored) == parse_integration(contract)


@posix_only
def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(Fernet.generate_key())
    path.chmod(0o644)

    with pytest.raises(SecretKeyError, match="chmod 600"):
        load_or_create_key_file(path)


def test_key_file_without_a_key_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("garbage-content")
    path.chmod(0o600)

    with pytest.raises(SecretKeyError, match="does not hold a Fernet key") as caught:
        load_or_create_key_file(path)
    assert "garbage-content" not in str(caught.value)


def test_key_file_that_cannot_be_created_names_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(SecretKeyError, match="CONSENTBRIDGE_SECRET_KEY"):
        load_or_create_key_file(blocker / "secret.key")


def test_redacted_shows_stars_for_every_secret_and_nothing_else_changes(
    contract: dict[str, Any],
) -> None:
    shown = redacted(parse_integration(contract))

    assert shown["config"]["client_secret"] == "***"
    assert shown["didomi"]["api_secret"] == "***"
    assert shown["webhook_auth"]["client_secret"] == "***"
    assert shown["didomi"]["api_key"] == contract["didomi"]["api_key"]
    assert shown["config"]["properties"] == contract["config"]["properties"]


def test_a_redacted_document_put_back_keeps_the_stored_secrets(contract: dict[str, Any]) -> None:
    old = parse_integration(contract)
    shown = json.loads(json.dumps(redacted(old)))
    shown["upsert_mode"] = True

    new = parse_integration(merge_redacted(shown, old))

    assert new.config.client_secret.get_secret_value() == CLIENT_SECRET
    assert new.didomi is not None and new.didomi.api_secret.get_secret_value() == API_SECRET
    assert new.webhook_auth is not None
    assert new.webhook_auth.client_secret.get_secret_value() == WEBHOOK_SECRET
    assert new.upsert_mode is True
    assert shown["config"]["client_secret"] == "***"  # the caller's document is untouched


def test_a_new_secret_replaces_the_stored_one(contract: dict[str, Any]) -> None:
    old = parse_integration(contract)
    shown = redacted(old)
    shown["config"]["client_secret"] = "rotated-secret"

    new = parse_integration(merge_redacted(shown, old))

    assert new.config.client_secret.get_secret_value() == "rotated-secret"


@pytest.mark.parametrize(
    ("block", "key", "value", "secret_path"),
    [
        ("config", "authority_host", "https://login.attacker.example", "config.client_secret"),
        ("didomi", "base_url", "https://api.attacker.example/v1", "didomi.api_secret"),
    ],
)
def test_stars_do_not_keep_a_secret_whose_endpoint_changed(
    contract: dict[str, Any], block: str, key: str, value: str, secret_path: str
) -> None:
    old = parse_integration(contract)
    shown = redacted(old)
    shown[block][key] = value

    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(merge_redacted(shown, old))

    assert [issue.path for issue in caught.value.errors] == [secret_path]


def test_stars_keep_the_secret_when_the_endpoint_is_only_respelt(contract: dict[str, Any]) -> None:
    old = parse_integration(contract)
    shown = redacted(old)
    shown["config"]["authority_host"] = "HTTPS://login.microsoftonline.com/"
    del shown["didomi"]["base_url"]  # the default, as stored

    new = parse_integration(merge_redacted(shown, old))

    assert new.config.client_secret.get_secret_value() == CLIENT_SECRET


def test_stars_for_a_block_the_old_integration_lacks_are_refused(
    seed: dict[str, Any], contract: dict[str, Any]
) -> None:
    old = parse_integration(seed, default_id="acme-d365")
    shown = redacted(parse_integration(contract))

    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(merge_redacted(shown, old))

    assert [issue.path for issue in caught.value.errors] == [
        "didomi.api_secret",
        "webhook_auth.client_secret",
    ]


def test_no_secret_appears_in_reprs_dumps_or_errors(
    box: SecretBox, contract: dict[str, Any]
) -> None:
    integration = parse_integration(contract)
    broken = copy.deepcopy(contract)
    broken["config"]["client_id"] = CLIENT_SECRET  # a secret pasted into the wrong field
    broken["config"]["client_secret"] = 12
    broken["didomi"]["api_secret"] = API_SECRET * 200  # too long
    broken["webhook_auth"] = WEBHOOK_SECRET  # not an object
    broken["config"]["properties"][0]["transform"] = {"true": [CLIENT_SECRET]}
    broken["config"]["properties"].append({"id": "x", "value": CLIENT_SECRET, "secret": API_SECRET})
    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(broken)
    error = caught.value
    assert len(error.errors) == 6
    assert error.__cause__ is None and error.__context__ is None

    outputs = [
        repr(integration),
        str(integration),
        integration.model_dump_json(),
        json.dumps(redacted(integration)),
        json.dumps(box.encrypt_document(integration)),
        repr(box),
        str(error),
        repr(error),
        json.dumps(error.as_json()),
    ]
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output, output


def test_every_secret_field_is_listed_and_has_a_keep_rule() -> None:
    def secret_fields(model: type[BaseModel], prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        for name, field in model.model_fields.items():
            for inner in (field.annotation, *typing.get_args(field.annotation)):
                if inner is SecretStr:
                    found.add((*prefix, name))
                elif isinstance(inner, type) and issubclass(inner, BaseModel):
                    found |= secret_fields(inner, (*prefix, name))
        return found

    assert secret_fields(Integration, ()) == set(SECRET_PATHS)
    assert {path for path, _ in _KEEP_RULES} == set(SECRET_PATHS)
