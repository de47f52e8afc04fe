"""Validation of event and user bodies: wrong types are 400s naming every bad field."""

from __future__ import annotations

import pytest

from consentbridge.sandbox.didomi.errors import DidomiError
from consentbridge.sandbox.didomi.models import parse_events, parse_user

ORG = "org"


def _errors(body: object) -> dict[str, str]:
    with pytest.raises(DidomiError) as caught:
        parse_events(body, ORG)
    assert caught.value.status == 400
    return caught.value.errors


def test_a_single_event_gets_defaults() -> None:
    events, batch = parse_events({"user": {"organization_user_id": "a@x"}, "consents": {}}, ORG)
    assert batch is False
    assert events[0].status == "confirmed"
    assert events[0].regulation == "gdpr"
    assert events[0].created_at is None


def test_created_at_is_normalized_to_utc_milliseconds() -> None:
    events, _ = parse_events({"consents": {}, "created_at": "2020-01-02T03:04:05+02:00"}, ORG)
    assert events[0].created_at == "2020-01-02T01:04:05.000Z"


def test_consents_must_be_an_object() -> None:
    assert "consents" in _errors({"consents": []})


def test_every_bad_field_is_named_with_its_path() -> None:
    errors = _errors(
        [
            {"consents": {}},
            {"consents": {"purposes": [{"id": 3, "enabled": "yes"}, "nope"], "channels": {}}},
        ]
    )
    assert set(errors) == {
        "[1].consents.purposes[0].id",
        "[1].consents.purposes[0].enabled",
        "[1].consents.purposes[1]",
        "[1].consents.channels",
    }


def test_values_must_map_preference_ids_to_value_strings() -> None:
    errors = _errors({"consents": {"purposes": [{"id": "p", "values": {"topics": {"value": 1}}}]}})
    assert list(errors) == ["consents.purposes[0].values.topics.value"]


def test_unknown_status_and_foreign_organization_are_refused() -> None:
    errors = _errors({"consents": {}, "status": "approved", "organization_id": "other"})
    assert set(errors) == {"status", "organization_id"}


def test_more_than_100_events_are_refused() -> None:
    assert "body" in _errors([{"consents": {}}] * 101)


def test_unknown_purpose_keys_are_kept() -> None:
    events, _ = parse_events(
        {"consents": {"purposes": [{"id": "p", "from_propagation": True}]}}, ORG
    )
    assert events[0].consents["purposes"][0]["from_propagation"] is True


def test_user_version_must_be_an_integer() -> None:
    with pytest.raises(DidomiError) as caught:
        parse_user({"version": "2"}, ORG, creating=False)
    assert caught.value.errors == {"version": "'version' must be an integer."}
