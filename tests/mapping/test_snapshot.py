"""Reading Didomi users and events into one ConsentSnapshot."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentbridge.mapping import ConsentSnapshot, ConsentStateError, PreferenceState, PurposeState

CONSENTS = {
    "purposes": [
        {
            "id": "newsletter",
            "enabled": True,
            "enabled_li": None,
            "values": {"topics": {"value": "sport, news,sport"}, "freq": {"value": None}},
            "channels": [{"id": "email", "enabled": False}],
            "preferences": [
                {"id": "weekly", "enabled": True, "channels": [{"id": "sms", "enabled": None}]}
            ],
            "metadata": {"ignored": True},
        }
    ],
    "channels": [{"id": "email", "enabled": True}],
    "vendors": {"enabled": []},
}
EXPECTED_PURPOSES = {
    "newsletter": PurposeState(
        enabled=True,
        enabled_li=None,
        values={"topics": "news,sport", "freq": None},
        channels={"email": False},
        preferences={"weekly": PreferenceState(enabled=True, channels={"sms": None})},
    )
}


def test_a_user_becomes_a_snapshot_keyed_by_id() -> None:
    user = {
        "id": "didomi-id",
        "organization_user_id": "ada@example.com",
        "metadata": {"lang": "fr"},
        "version": 3,
        "consents": CONSENTS,
    }
    snapshot = ConsentSnapshot.from_user(user)
    assert snapshot == ConsentSnapshot(
        organization_user_id="ada@example.com",
        metadata={"lang": "fr"},
        purposes=EXPECTED_PURPOSES,
        channels={"email": True},
    )


def test_an_event_takes_its_user_part_from_event_user() -> None:
    event = {
        "id": "evt-1",
        "user": {"organization_user_id": "ada@example.com", "metadata": {"lang": "fr"}},
        "consents": CONSENTS,
    }
    snapshot = ConsentSnapshot.from_event(event)
    assert snapshot.organization_user_id == "ada@example.com"
    assert snapshot.metadata == {"lang": "fr"}
    assert snapshot.purposes == EXPECTED_PURPOSES


def test_from_entity_tells_events_from_users() -> None:
    event = {"user": {"organization_user_id": "e"}, "consents": {}}
    user = {"organization_user_id": "u", "consents": {}}
    assert ConsentSnapshot.from_entity(event).organization_user_id == "e"
    assert ConsentSnapshot.from_entity(user).organization_user_id == "u"


def test_missing_blocks_are_empty_not_errors() -> None:
    assert ConsentSnapshot.from_user({}) == ConsentSnapshot()
    assert ConsentSnapshot.from_event({"consents": None}) == ConsentSnapshot()


def test_a_repeated_purpose_id_keeps_the_last_entry() -> None:
    user = {"consents": {"purposes": [{"id": "p", "enabled": True}, {"id": "p", "enabled": False}]}}
    assert ConsentSnapshot.from_user(user).purposes["p"].enabled is False


@pytest.mark.parametrize(
    ("user", "names"),
    [
        ({"consents": {"purposes": {"id": "p"}}}, "consents.purposes"),
        ({"consents": {"purposes": [{"enabled": True}]}}, "consents.purposes[0].id"),
        (
            {"consents": {"purposes": [{"id": "p", "enabled": "yes"}]}},
            "consents.purposes[0].enabled",
        ),
        (
            {"consents": {"purposes": [{"id": "p", "values": {"t": {"value": 3}}}]}},
            "consents.purposes[0].values.t.value",
        ),
        (
            {"consents": {"purposes": [{"id": "p", "preferences": [{"id": "q", "enabled": 1}]}]}},
            "consents.purposes[0].preferences[0].enabled",
        ),
        ({"consents": {"channels": [{"id": "email", "enabled": 0}]}}, "consents.channels[0]"),
        ({"organization_user_id": 42}, "organization_user_id"),
        ({"metadata": ["x"]}, "metadata"),
        ("not an object", "user"),
    ],
)
def test_a_wrongly_typed_field_is_refused_naming_the_field(user: object, names: str) -> None:
    with pytest.raises(ConsentStateError, match=names.replace("[", r"\[").replace("]", r"\]")):
        ConsentSnapshot.from_user(user)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "organization_user_id": _JSON,
        "metadata": _JSON,
        "user": _JSON,
        "consents": st.fixed_dictionaries(
            {},
            optional={
                "purposes": st.lists(
                    st.fixed_dictionaries(
                        {"id": _JSON},
                        optional={"enabled": _JSON, "values": _JSON, "preferences": _JSON},
                    ),
                    max_size=3,
                ),
                "channels": _JSON,
            },
        ),
    },
)


@given(st.one_of(_JSON, _SHAPED))
def test_reading_any_json_raises_nothing_but_consent_state_error(entity: object) -> None:
    try:
        ConsentSnapshot.from_entity(entity)
    except ConsentStateError as error:
        assert str(error).endswith(".")
