"""The integration models: accepted shapes, defaults, id derivation and derived endpoints."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from consentbridge.config import InvalidIntegration, parse_integration

from .documents import CLIENT_SECRET, GUID, TENANT


def test_seed_shape_is_accepted_verbatim_with_defaults(seed: dict[str, Any]) -> None:
    integration = parse_integration(seed, default_id="from-file-name")

    assert integration.id == "from-file-name"
    assert integration.upsert_mode is True
    assert integration.bidirectional is False
    assert integration.config.client_secret.get_secret_value() == CLIENT_SECRET
    assert integration.config.match_attribute == "emailaddress1"
    assert integration.config.authority_host == "https://login.microsoftonline.com"
    assert integration.config.regulations == ["gdpr"]
    assert integration.config.ca_bundle is None
    assert integration.config.properties[0].transform is None
    assert integration.didomi is None
    assert integration.webhook_auth is None


def test_contract_example_is_accepted(contract: dict[str, Any]) -> None:
    integration = parse_integration(contract)

    assert integration.id == "acme-d365"
    assert [p.transform for p in integration.config.properties] == ["not", None, {"true": 1}]
    assert integration.didomi is not None
    assert integration.didomi.base_url == "https://api.didomi.io/v1"
    assert integration.webhook_auth is not None
    assert integration.webhook_auth.client_id == "didomi-webhooks"


@pytest.mark.parametrize(
    ("id_fields", "default_id", "expected"),
    [
        ({"id": "explicit"}, "url-id", "explicit"),
        ({"organization_id": "Acme Corp"}, "url-id", "acme-corp-d365"),
        ({"organization_id": "___"}, "url-id", "url-id"),
        ({}, "url-id", "url-id"),
        ({"organization_id": "x" * 100}, None, "x" * 58 + "-d365"),
    ],
)
def test_id_is_explicit_else_derived_from_organization_else_the_callers(
    seed: dict[str, Any], id_fields: dict[str, str], default_id: str | None, expected: str
) -> None:
    integration = parse_integration({**seed, **id_fields}, default_id=default_id)

    assert integration.id == expected
    assert len(integration.id) <= 63


def test_document_without_any_id_source_is_refused_at_path_id(seed: dict[str, Any]) -> None:
    with pytest.raises(InvalidIntegration) as caught:
        parse_integration(seed)

    assert [issue.path for issue in caught.value.errors] == ["id"]
    assert "organization_id" in caught.value.errors[0].message


def test_parse_does_not_modify_the_callers_document(seed: dict[str, Any]) -> None:
    parse_integration(seed, default_id="x")

    assert "id" not in seed


@pytest.mark.parametrize(
    ("instance", "scope", "web_api_base"),
    [
        (
            "https://acme.crm4.dynamics.com",
            "https://acme.crm4.dynamics.com/.default",
            "https://acme.api.crm4.dynamics.com/api/data/v9.2",
        ),
        (
            "https://acme.api.crm.dynamics.com",
            "https://acme.crm.dynamics.com/.default",
            "https://acme.api.crm.dynamics.com/api/data/v9.2",
        ),
        (
            "https://127.0.0.1:8443",
            "https://127.0.0.1:8443/.default",
            "https://127.0.0.1:8443/api/data/v9.2",
        ),
        (
            "https://Crm.Example.org:443/",
            "https://crm.example.org/.default",
            "https://crm.example.org/api/data/v9.2",
        ),
        (
            "https://gov.crm.microsoftdynamics.us",
            "https://gov.crm.microsoftdynamics.us/.default",
            "https://gov.api.crm.microsoftdynamics.us/api/data/v9.2",
        ),
    ],
)
def test_token_scope_and_web_api_base_follow_the_instance(
    seed: dict[str, Any], instance: str, scope: str, web_api_base: str
) -> None:
    seed["config"]["instance"] = instance

    integration = parse_integration(seed, default_id="x")

    assert integration.token_scope == scope
    assert integration.web_api_base == web_api_base


def test_authority_joins_authority_host_and_tenant(seed: dict[str, Any]) -> None:
    seed["config"]["authority_host"] = "https://127.0.0.1:8443/"
    seed["config"]["tenant_id"] = "Contoso.onmicrosoft.com"

    integration = parse_integration(seed, default_id="x")

    assert integration.authority == "https://127.0.0.1:8443/contoso.onmicrosoft.com"
    assert integration.config.authority == integration.authority


def test_guids_are_stored_lowercase(seed: dict[str, Any]) -> None:
    seed["config"]["client_id"] = GUID.upper()
    seed["config"]["tenant_id"] = TENANT.upper()

    integration = parse_integration(seed, default_id="x")

    assert (integration.config.client_id, integration.config.tenant_id) == (GUID, TENANT)


@pytest.mark.parametrize(
    "transform",
    ["not", {"true": 1, "false": 2}, {"a": True, "b": "x", "c": None}, None],
)
def test_transform_accepts_not_and_value_maps(seed: dict[str, Any], transform: object) -> None:
    seed["config"]["properties"][0]["transform"] = transform

    integration = parse_integration(seed, default_id="x")

    assert integration.config.properties[0].transform == transform


def test_json_schema_can_be_generated_for_the_api() -> None:
    from consentbridge.config import Integration

    schema = Integration.model_json_schema()

    assert "transform" in schema["$defs"]["Property"]["properties"]


def test_config_package_imports_no_http_or_storage_library() -> None:
    code = (
        "import sys, consentbridge.config\n"
        "bad = {'httpx', 'sqlalchemy', 'fastapi', 'msal'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
