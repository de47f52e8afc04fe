"""Resource paths of the Web API, split into segments: `contacts(emailaddress1='a/b')/$count`
→ [Segment("contacts", "emailaddress1='a/b'"), Segment("$count", None)].

Slashes and parentheses inside quoted key values do not split (quotes double inside, as OData
writes them).
"""

from __future__ import annotations

from dataclasses import dataclass

from consentbridge.sandbox.dataverse.errors import bad_query


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    args: str | None  # the text inside `(...)`, None without parentheses


def split_path(path: str) -> list[Segment]:
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    depth = 0
    for char in path.strip("/"):
        if char == "'":
            quoted = not quoted  # a doubled quote toggles twice: still inside
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "/" and not quoted and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted or depth != 0:
        raise bad_query(f"Bad Request - Error in query syntax: '{path}'.")
    if current or pieces:
        pieces.append("".join(current))
    return [_segment(piece, path) for piece in pieces]


def _segment(piece: str, path: str) -> Segment:
    if not piece:
        raise bad_query(f"Bad Request - Error in query syntax: empty segment in '{path}'.")
    open_at = piece.find("(")
    if open_at < 0:
        return Segment(piece, None)
    if not piece.endswith(")") or open_at == 0:
        raise bad_query(f"Bad Request - Error in query syntax: '{piece}'.")
    return Segment(piece[:open_at], piece[open_at + 1 : -1])
