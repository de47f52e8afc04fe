"""Parsing Didomi webhook envelopes (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from consentbridge.didomi.webhooks import PayloadError, parse_webhook


def user_updated(version: int = 3, **extra: object) -> dict[str, object]:
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
    change = parse_webhook(user_updated())
    assert change.organization_user_id == "a@b.c"
    assert change.version == 3
    assert change.timestamp == dt.datetime(2026, 1, 1, 10, 0, 1, tzinfo=dt.UTC)
    assert change.regulation == "gdpr"
    assert change.snapshot is not None
    assert change.snapshot["consents"]["purposes"][0]["id"] == "newsletter"


def test_regulation_from_top_level_then_entity() -> None:
    assert parse_webhook({**user_updated(), "regulation": "CPRA"}).regulation == "cpra"
    assert parse_webhook(user_updated(regulation="lgpd")).regulation == "lgpd"


def test_event_created_takes_the_user_from_the_event() -> None:
    change = parse_webhook(
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
    change = parse_webhook(
        {"type": "user.deleted", "parameters": {"entity": {"organization_user_id": "x"}}}
    )
    assert change.snapshot is None


def test_same_payload_same_delivery_key_regardless_of_key_order() -> None:
    a = user_updated()
    b = {"parameters": a["parameters"], "type": "user.updated"}
    assert parse_webhook(a).delivery_key == parse_webhook(b).delivery_key
    assert parse_webhook(user_updated(4)).delivery_key != parse_webhook(a).delivery_key


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([], "body"),
        ({"parameters": {}}, "type"),
        ({"type": "user.exploded", "parameters": {}}, "type"),
        ({"type": "user.updated", "parameters": []}, "parameters"),
        ({"type": "user.updated", "parameters": {}}, "parameters.new_entity"),
        (
            {"type": "user.updated", "parameters": {"new_entity": {"version": 1}}},
            "parameters.new_entity.organization_user_id",
        ),
        (
            {"type": "event.created", "parameters": {"entity": {"user": {}}}},
            "parameters.entity.user.organization_user_id",
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
