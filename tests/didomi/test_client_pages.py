"""Pages of Didomi's user list (pure): ``{"data", "cursor"}`` as its guides show, a bare array
as its OpenAPI describes, and anything else refused rather than read as "no users"."""

from __future__ import annotations

import pytest

from consentbridge.didomi.client import DidomiError, user_page

ADA = {"id": "d1", "organization_user_id": "ada@example.com"}
BOB = {"id": "d2", "organization_user_id": "bob@example.com"}


def test_an_object_page_gives_its_users_and_the_next_cursor() -> None:
    assert user_page({"data": [ADA, BOB], "cursor": "c2", "total": 9}) == ([ADA, BOB], "c2")


@pytest.mark.parametrize("cursor", [None, "", 7])
def test_an_object_page_without_a_usable_cursor_is_the_last(cursor: object) -> None:
    assert user_page({"data": [ADA], "cursor": cursor}) == ([ADA], None)
    assert user_page({"data": []}) == ([], None)


def test_a_bare_array_is_the_only_page() -> None:
    assert user_page([ADA, BOB]) == ([ADA, BOB], None)
    assert user_page([]) == ([], None)


@pytest.mark.parametrize(
    "body",
    [None, "users", 3, {}, {"users": [ADA]}, {"data": {"0": ADA}}, [ADA, "bob"], {"data": [1]}],
)
def test_any_other_shape_is_an_error_naming_the_fix(body: object) -> None:
    with pytest.raises(DidomiError) as raised:
        user_page(body)
    assert "didomi.base_url" in raised.value.message
    assert raised.value.transient is False
