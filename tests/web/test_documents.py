"""Documents typed into the console: shown back with secrets as ``***`` and sealed, unsealed
on the next submit, and masked when the text does not parse."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

from consentbridge.config import SecretBox
from consentbridge.operations.errors import InvalidInput
from consentbridge.web.documents import mask_text, shown, unseal

from .support import API_SECRET, CLIENT_SECRET, WEBHOOK_SECRET, document

BOX = SecretBox(Fernet.generate_key())
SECRETS = (CLIENT_SECRET, API_SECRET, WEBHOOK_SECRET)


def test_a_parsed_document_is_shown_with_every_secret_sealed() -> None:
    doc = document()
    text, sealed = shown("whatever was typed", doc, BOX)
    for secret in SECRETS:
        assert secret not in text and secret not in sealed
    assert json.loads(text)["webhook_auth"]["client_secret"] == "***"
    assert unseal(json.loads(text), sealed, BOX) == doc


def test_a_stored_secret_placeholder_is_not_sealed_and_stays() -> None:
    doc = document()
    doc["didomi"]["api_secret"] = "***"
    text, sealed = shown("", doc, BOX)
    assert unseal(json.loads(text), sealed, BOX)["didomi"]["api_secret"] == "***"


def test_a_secret_typed_anew_wins_over_the_sealed_one() -> None:
    _, sealed = shown("", document(), BOX)
    retyped = document()
    retyped["config"]["client_secret"] = "a-new-secret-value-123"
    assert unseal(retyped, sealed, BOX)["config"]["client_secret"] == "a-new-secret-value-123"


@pytest.mark.parametrize("sealed", ["garbage", SecretBox(Fernet.generate_key()).encrypt("{}")])
def test_a_sealed_field_from_elsewhere_is_refused(sealed: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        unseal(document(), sealed, BOX)
    assert refused.value.issues[0].path == "sealed"


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(document())[:-3],
        "config:\n  client_secret: " + CLIENT_SECRET + "  # typed\n"
        "didomi: {api_key: k, api_secret: '" + API_SECRET + "'}\n"
        'webhook_auth:\n  "client_secret": "' + WEBHOOK_SECRET + '"\n  x: [',
    ],
)
def test_text_that_does_not_parse_is_shown_with_secret_values_masked(text: str) -> None:
    masked, sealed = shown(text, None, BOX)
    assert sealed == ""
    for secret in SECRETS:
        assert secret not in masked
    assert masked == mask_text(text)
    assert masked.startswith(text[:8])  # only the secret values go
