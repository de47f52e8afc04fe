"""body.py: the JSON nesting bound (exact, strings ignored), JSON and form parsing."""

from __future__ import annotations

import json

import pytest

from consentbridge.operations.errors import InvalidInput
from consentbridge.web.body import MAX_JSON_DEPTH, nesting_exceeds, parse_json


def arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def mixed(depth: int) -> bytes:
    """Objects and arrays alternating, ``depth`` levels, a string at the bottom."""
    text = '"leaf"'
    for level in range(depth):
        sibling = ", []" if level else ""  # as deep as `text`, never deeper
        text = f'{{"k{level}": {text}}}' if level % 2 else f"[1, {text}{sibling}]"
    return text.encode()


@pytest.mark.parametrize("make", [arrays, mixed])
def test_the_bound_is_exact(make: object) -> None:
    assert callable(make)
    assert not nesting_exceeds(make(MAX_JSON_DEPTH), MAX_JSON_DEPTH)
    assert nesting_exceeds(make(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)


def test_brackets_inside_strings_do_not_count() -> None:
    body = json.dumps({"text": "[" * 500 + '\\"{' * 100, "list": [[["x"]]]}).encode()
    assert not nesting_exceeds(body, 4)  # the object and three arrays
    assert nesting_exceeds(body, 3)


@pytest.mark.parametrize(("bound", "exceeded"), [(2, True), (3, True), (4, False)])
def test_the_bound_holds_for_documents_with_many_siblings(bound: int, exceeded: bool) -> None:
    # Over 50,000 siblings take the level-stripping path; the document is 4 levels deep.
    body = b"[" + b"[[[]]]," * 60_000 + b"[]]"
    assert nesting_exceeds(body, bound) is exceeded


def test_many_shallow_containers_are_fine() -> None:
    body = json.dumps([[i] for i in range(50_000)]).encode()
    assert not nesting_exceeds(body, 2)
    assert parse_json(body)


def test_ten_thousand_levels_are_refused_before_decoding() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_json(arrays(10_000))
    assert raised.value.status == 400


@pytest.mark.parametrize(
    "body",
    [
        b"1" * 5000,
        b"[Infinity]",
        b"\xef\xbb\xbf\xef\xbb\xbf{}",
        b"\xef\xbb\xbf",
        b"   ",
        b'{"a": 1,}',
        b'{"a": 1, "a": 1}',
    ],
    ids=["huge-integer", "infinity", "two-boms", "only-a-bom", "blank", "trailing-comma", "repeat"],
)
def test_unacceptable_json_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_json(body)
    assert raised.value.status == 400
    assert raised.value.issues[0].message


def test_a_leading_utf8_byte_order_mark_is_skipped() -> None:
    assert parse_json(b'\xef\xbb\xbf{"a": [1, "\xc3\xa9"]}') == {"a": [1, "\u00e9"]}


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"a": 1, "b": 2, "a": 3}', "a"),
        (b'{"outer": [{"x": {"deep": 1, "deep": 1}}]}', "deep"),
        (b'{"\\u0061": 1, "a": 2}', "a"),  # the same key, once escaped
        (b'{"": 1, "": 2}', ""),
    ],
)
def test_a_key_given_twice_in_one_object_is_a_400_naming_it(body: bytes, key: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_json(body)
    assert raised.value.status == 400
    (issue,) = raised.value.issues
    assert issue.message == (
        f"The JSON body gives the key '{key}' more than once in one object; send each key once."
    )


def test_the_same_key_in_different_objects_is_fine() -> None:
    assert parse_json(b'[{"a": 1}, {"a": 2, "b": {"a": 3}}]') == [{"a": 1}, {"a": 2, "b": {"a": 3}}]


def test_a_repeated_key_that_cannot_be_stored_is_named_by_a_stand_in() -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_json(b'{"\\u0000": 1, "\\u0000": 2}')
    assert "'<key>'" in raised.value.issues[0].message
