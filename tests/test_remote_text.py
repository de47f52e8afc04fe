"""Text echoed from a remote server is one bounded line (pure)."""

from __future__ import annotations

from consentbridge.remote_text import (
    MAX_CODE_CHARS,
    MAX_MESSAGE_CHARS,
    bounded,
    bounded_code,
    error_detail,
)


def test_a_short_message_is_kept_on_one_line() -> None:
    assert bounded(" The value\r\nis\tinvalid.\x00\u2028") == "The value is invalid."


def test_a_megabyte_becomes_at_most_200_characters_ending_with_an_ellipsis() -> None:
    text = bounded("<html>" + "x" * 1_000_000)
    assert len(text) == MAX_MESSAGE_CHARS
    assert text.startswith("<html>xxx") and text.endswith("…")


def test_a_body_of_line_breaks_is_cut_too() -> None:
    # Only the head is cleaned, not the whole text: what was left off is still marked.
    assert bounded("a" + "\r\n" * 5_000 + "b" * 10) == "a…"
    assert bounded("two  spaces stay") == "two  spaces stay"


def test_exactly_the_limit_is_not_cut() -> None:
    assert bounded("y" * MAX_MESSAGE_CHARS) == "y" * MAX_MESSAGE_CHARS


def test_codes_are_shorter() -> None:
    assert bounded_code("0x80044331") == "0x80044331"
    assert len(bounded_code("0x" + "f" * 10_000)) == MAX_CODE_CHARS


def test_error_detail_says_message_and_code_or_what_there_is() -> None:
    assert error_detail("0x80044331", "A validation error occurred.") == (
        "A validation error occurred. (0x80044331)"
    )
    assert error_detail("", "contact With Id = 1 Does Not Exist") == (
        "contact With Id = 1 Does Not Exist"
    )
    assert error_detail("0x80060888", "") == "0x80060888"
    assert error_detail("", "", "Bad Request") == "Bad Request"
    assert error_detail("", "") == "no error message"
    long = error_detail("c" * 500, "m" * 5_000)
    assert len(long) <= MAX_MESSAGE_CHARS + MAX_CODE_CHARS + 3
