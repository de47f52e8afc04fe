"""Parsing Didomi webhook envelopes (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from consentbridge.didomi.webhooks import AnonymousUser, ConsentChange, PayloadError, parse_webhook


def user_updated(version: int = 3, **extra: object) -> dict[str, Any]:
    return {
        "type": "user.updated",
        "parameters": {
            "source": {"id": "ev1", "created_at": "2026-01-01T10:00:00Z"},
            "old_entity": {"id": "u1", "organization_user_id": "a@b.c", "version": version - 1},
            "new_entity": {
                "id": "u1",
                "organization_user_id": "a@b.c",
                "version": version,
                "updated_at": "2026-01-01T10:00:01Z",
                "consents": {"purposes": [{"id": "newsletter", "enabled": False}]},
                **extra,
            },
        },
    }


def test_user_updated_is_reduced_to_state_version_and_time() -> None:
    change = parsed(user_updated())
    assert change.organization_user_id == "a@b.c"
    assert change.version == 3
    assert change.timestamp == dt.datetime(2026, 1, 1, 10, 0, 1, tzinfo=dt.UTC)
    assert change.regulation == "gdpr"
    assert change.snapshot is not None
    assert change.snapshot["consents"]["purposes"][0]["id"] == "newsletter"


def test_regulation_from_top_level_then_entity() -> None:
    assert parsed({**user_updated(), "regulation": "CPRA"}).regulation == "cpra"
    assert parsed(user_updated(regulation="lgpd")).regulation == "lgpd"


def test_event_created_takes_the_user_from_the_event() -> None:
    change = parsed(
        {
            "type": "event.created",
            "parameters": {
                "entity": {
                    "id": "e1",
                    "created_at": "2026-01-01T00:00:00Z",
                    "user": {"organization_user_id": "o'brien+x@ex.com"},
                    "consents": {"purposes": []},
                }
            },
        }
    )
    assert change.organization_user_id == "o'brien+x@ex.com"
    assert change.version is None and change.snapshot is not None


def test_deletions_carry_no_state() -> None:
    change = parsed(
        {"type": "user.deleted", "parameters": {"entity": {"organization_user_id": "x"}}}
    )
    assert change.snapshot is None


def parsed(body: object) -> ConsentChange:
    change = parse_webhook(body)
    assert isinstance(change, ConsentChange), change
    return change


@pytest.mark.parametrize(
    "body",
    [
        {"type": "user.updated", "parameters": {"new_entity": {"id": "d1", "version": 1}}},
        {"type": "user.created", "parameters": {"entity": {"organization_user_id": None}}},
        {"type": "user.deleted", "parameters": {"entity": {"organization_user_id": " "}}},
        {"type": "event.created", "parameters": {"entity": {"user": {"id": "d1"}}}},
        {"type": "event.created", "parameters": {"entity": {"consents": {"purposes": []}}}},
        {"type": "event.updated", "parameters": {"new_entity": {"user": {"id": "d1"}}}},
    ],
)
def test_a_user_without_organization_user_id_is_anonymous_not_an_error(body: object) -> None:
    change = parse_webhook(body)
    assert isinstance(change, AnonymousUser)
    assert change.event_type == body["type"]


def test_unknown_keys_anywhere_are_accepted() -> None:
    body = user_updated(flavour="vanilla")
    body["delivery"] = {"attempt": 2}
    body["parameters"]["extra"] = [1, 2]
    change = parsed(body)
    assert (change.organization_user_id, change.version) == ("a@b.c", 3)


@pytest.mark.parametrize("version", [0, 1, 2**53 - 1])
def test_version_is_an_integer_from_0_below_2_to_the_53(version: int) -> None:
    assert parsed(user_updated(version)).version == version


@pytest.mark.parametrize("version", [-1, 2**53, 2**64, True, False, 3.0, 3.5, "3", [3]])
def test_any_other_version_is_refused_naming_the_field(version: object) -> None:
    body = user_updated()
    body["parameters"]["new_entity"]["version"] = version
    with pytest.raises(PayloadError) as info:
        parse_webhook(body)
    assert info.value.path == "parameters.new_entity.version"
    assert "parameters.new_entity.version" in info.value.message
    assert "2^53" in info.value.message


def test_same_payload_same_delivery_key_regardless_of_key_order() -> None:
    a = user_updated()
    b = {"parameters": a["parameters"], "type": "user.updated"}
    assert parsed(a).delivery_key == parsed(b).delivery_key
    assert parsed(user_updated(4)).delivery_key != parsed(a).delivery_key


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([], "body"),
        ({"parameters": {}}, "type"),
        ({"type": "user.exploded", "parameters": {}}, "type"),
        ({"type": "user.updated", "parameters": []}, "parameters"),
        ({"type": "user.updated", "parameters": {}}, "parameters.new_entity"),
        (
            {"type": "user.updated", "parameters": {"new_entity": {"organization_user_id": 42}}},
            "parameters.new_entity.organization_user_id",
        ),
        (
            {"type": "event.created", "parameters": {"entity": {"user": "u1"}}},
            "parameters.entity.user",
        ),
        (
            {
                "type": "user.updated",
                "parameters": {"new_entity": {"organization_user_id": "x", "version": "7"}},
            },
            "parameters.new_entity.version",
        ),
    ],
)
def test_bad_payloads_name_the_field(body: object, path: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_webhook(body)
    assert info.value.path == path
