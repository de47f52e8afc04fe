"""Documents shared by the config tests; every secret is a distinctive string to search for."""

from __future__ import annotations

from typing import Any

CLIENT_SECRET = "dv-client-secret-Zq7Vx1"
API_SECRET = "didomi-api-secret-Kp3Wm9"
WEBHOOK_SECRET = "webhook-client-secret-Hn5Rt2Ab"
SECRETS = (CLIENT_SECRET, API_SECRET, WEBHOOK_SECRET)
GUID = "1b2c3d4e-0000-4000-8000-00000000abcd"
TENANT = "9f8e7d6c-1111-4222-8333-444455556666"

# Didomi's documented Dynamics 365 shape, nothing added.
SEED: dict[str, Any] = {
    "upsert_mode": True,
    "config": {
        "client_id": GUID,
        "client_secret": CLIENT_SECRET,
        "tenant_id": TENANT,
        "instance": "https://acme.crm4.dynamics.com",
        "properties": [
            {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled"},
        ],
    },
}

# CONTRACT §2 with every optional key this project adds.
CONTRACT: dict[str, Any] = {
    "id": "acme-d365",
    "organization_id": "acme",
    "upsert_mode": False,
    "bidirectional": True,
    "config": {
        "client_id": GUID,
        "client_secret": CLIENT_SECRET,
        "tenant_id": TENANT,
        "instance": "https://acme.crm4.dynamics.com",
        "properties": [
            {
                "id": "donotbulkemail",
                "value": "consents_purposes_newsletter_enabled",
                "transform": "not",
            },
            {"id": "new_smsoptin", "value": "consents_purposes_marketing_preferences_sms_enabled"},
            {"id": "new_channel", "value": "consents_channels_email", "transform": {"true": 1}},
        ],
        "match_attribute": "emailaddress1",
        "authority_host": "https://login.microsoftonline.com",
        "ca_bundle": None,
        "regulations": ["gdpr"],
    },
    "didomi": {
        "api_key": "didomi-api-key",
        "api_secret": API_SECRET,
        "base_url": "https://api.didomi.io/v1",
    },
    "webhook_auth": {"client_id": "didomi-webhooks", "client_secret": WEBHOOK_SECRET},
}
