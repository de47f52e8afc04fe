"""Several application users: `config.credentials` beside the seed's `client_id` /
`client_secret` — validated, ordered, encrypted at rest, masked on display, kept on "***"."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from consentbridge.config import (
    InvalidIntegration,
    SecretBox,
    merge_redacted,
    parse_integration,
    redacted,
)
from consentbridge.web.documents import shown, unseal

SECOND_ID = "22222222-2222-3333-4444-555555555555"
THIRD_ID = "33333333-2222-3333-4444-555555555555"
SECOND_SECRET = "second-app-secret-value"
THIRD_SECRET = "third-app-secret-value"


@pytest.fixture
def several(contract: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(contract)
    document["config"]["credentials"] = [
        {"client_id": SECOND_ID, "client_secret": SECOND_SECRET},
        {"client_id": THIRD_ID.upper(), "client_secret": THIRD_SECRET},
    ]
    return document


def test_the_seed_is_the_first_application_user_then_the_credentials_in_order(
    several: dict[str, Any], contract: dict[str, Any]
) -> None:
    integration = parse_integration(several)
    users = integration.config.app_credentials

    assert [c.client_id for c in users] == [contract["config"]["client_id"], SECOND_ID, THIRD_ID]
    assert users[1].client_secret.get_secret_value() == SECOND_SECRET
    assert [c.client_id for c in parse_integration(contract).config.app_credentials] == [
        contract["config"]["client_id"]
    ]


def test_an_application_listed_twice_is_refused_naming_the_entry(
    several: dict[str, Any], contract: dict[str, Any]
) -> None:
    several["config"]["credentials"].append(
        {"client_id": contract["config"]["client_id"], "client_secret": "x"}
    )
    several["config"]["credentials"].append({"client_id": SECOND_ID, "client_secret": "y"})

    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(several)

    messages = {issue.path: issue.message for issue in caught.value.errors}
    assert set(messages) == {
        "config.credentials[2].client_id",
        "config.credentials[3].client_id",
    }
    assert "config.client_id" in messages["config.credentials[2].client_id"]
    assert "config.credentials[0]" in messages["config.credentials[3].client_id"]


def test_an_entry_without_a_secret_is_refused(several: dict[str, Any]) -> None:
    del several["config"]["credentials"][1]["client_secret"]

    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(several)

    assert [i.path for i in caught.value.errors] == ["config.credentials[1].client_secret"]


def test_every_credential_secret_is_encrypted_at_rest_and_masked_on_display(
    box: SecretBox, several: dict[str, Any]
) -> None:
    integration = parse_integration(several)

    stored = box.encrypt_document(integration)
    shown_doc = redacted(integration)

    assert SECOND_SECRET not in json.dumps(stored) and THIRD_SECRET not in json.dumps(stored)
    assert set(stored["config"]["credentials"][1]["client_secret"]) == {"$enc"}
    assert box.decrypt_document(stored) == integration
    assert [c["client_secret"] for c in shown_doc["config"]["credentials"]] == ["***", "***"]
    assert SECOND_SECRET not in repr(integration)


def test_stars_keep_the_stored_secret_of_the_same_client_id_even_reordered(
    several: dict[str, Any],
) -> None:
    old = parse_integration(several)
    edited = redacted(old)
    edited["config"]["credentials"].reverse()

    kept = parse_integration(merge_redacted(edited, old))

    secrets = {c.client_id: c.client_secret.get_secret_value() for c in kept.config.app_credentials}
    assert secrets[SECOND_ID] == SECOND_SECRET and secrets[THIRD_ID] == THIRD_SECRET


def test_stars_for_a_new_client_id_are_refused(several: dict[str, Any]) -> None:
    old = parse_integration(several)
    edited = redacted(old)
    edited["config"]["credentials"][0]["client_id"] = "44444444-2222-3333-4444-555555555555"

    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(merge_redacted(edited, old))

    assert [i.path for i in caught.value.errors] == ["config.credentials[0].client_secret"]


def test_the_console_masks_and_seals_credential_secrets(
    box: SecretBox, several: dict[str, Any]
) -> None:
    text, sealed = shown(json.dumps(several), several, box)

    assert SECOND_SECRET not in text and THIRD_SECRET not in text
    restored = unseal(json.loads(text), sealed, box)
    assert isinstance(restored, dict)
    assert restored["config"]["credentials"][1]["client_secret"] == THIRD_SECRET
