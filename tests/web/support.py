"""Helpers shared by the web, operations and CLI tests: settings on a real store, integration
documents whose secrets are distinctive strings (so outputs can be searched for them), and a
Didomi webhook body."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from consentbridge.config import Settings
from tests.config.documents import API_SECRET, CLIENT_SECRET, CONTRACT, WEBHOOK_SECRET

__all__ = [
    "ADMIN_TOKEN",
    "API_SECRET",
    "CLIENT_SECRET",
    "SECRETS",
    "WEBHOOK_CLIENT",
    "WEBHOOK_SECRET",
    "document",
    "make_settings",
    "user_updated",
]

ADMIN_TOKEN = "admin-token-Vb6Yq0Lm3Ks8Pd1-Hx2Wc9Zr"
SECRETS = (CLIENT_SECRET, API_SECRET, WEBHOOK_SECRET, ADMIN_TOKEN)
WEBHOOK_CLIENT = "didomi-webhooks"


def make_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings on ``db_url`` with a fresh secret key; an override of None leaves it unset."""
    options: dict[str, Any] = {
        "db_url": db_url,
        "secret_key": Fernet.generate_key().decode(),
        "secret_key_file": tmp_path / "unused.key",
        "admin_token": ADMIN_TOKEN,
        **overrides,
    }
    return Settings.from_env({}, **options)


def document(
    integration_id: str = "acme-d365",
    *,
    webhook_client: str = WEBHOOK_CLIENT,
    webhook_secret: str = WEBHOOK_SECRET,
    bidirectional: bool = False,
) -> dict[str, Any]:
    """CONTRACT §2 with every optional key; ids and webhook credentials as given."""
    doc = copy.deepcopy(CONTRACT)
    doc["id"] = integration_id
    # The config tests' sample predates the mapping grammar's channel form.
    doc["config"]["properties"][2]["value"] = "consents_channels_email_enabled"
    doc["webhook_auth"] = {"client_id": webhook_client, "client_secret": webhook_secret}
    # The instance is not reachable from tests: applying with the flow on would try to
    # register the Dataverse webhook (covered against the sandbox in tests/e2e).
    doc["bidirectional"] = bidirectional
    return doc


def user_updated(user: str = "alice@example.com", version: int = 3) -> dict[str, Any]:
    """A Didomi ``user.updated`` webhook body."""
    return {
        "type": "user.updated",
        "parameters": {
            "old_entity": {"id": "u1", "organization_user_id": user, "version": version - 1},
            "new_entity": {
                "id": "u1",
                "organization_user_id": user,
                "version": version,
                "updated_at": "2026-01-01T10:00:01Z",
                "consents": {"purposes": [{"id": "newsletter", "enabled": False}]},
            },
        },
    }
