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
    [b"1" * 5000, b"[Infinity]", b"\xef\xbb\xbf{}", b"   ", b'{"a": 1,}'],
    ids=["huge-integer", "infinity", "bom", "blank", "trailing-comma"],
)
def test_unacceptable_json_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_json(body)
    assert raised.value.status == 400
    assert raised.value.issues[0].message
