"""Text a remote server chose — an error message, an error code, a reason phrase — bounded
before we repeat it, shared by the Dataverse, Entra ID and Didomi clients.

Those servers sit at URLs an administrator configures (`config.instance`,
`config.authority_host`, `didomi.base_url`), and whatever they answer travels on into API
errors, the CLI, the console, dead letters and logs. So what we echo of an error is its status
(the caller's sentence names it), its code and at most `MAX_MESSAGE_CHARS` of its message, on
one line — never a whole HTML page or a megabyte body.
"""

from __future__ import annotations

import re
from typing import Final

MAX_MESSAGE_CHARS: Final = 200
MAX_CODE_CHARS: Final = 40
ELLIPSIS: Final = "…"

# Line breaks and other control characters (C0, DEL, C1, Unicode separators) become one space,
# so an echo stays one line; ordinary spaces are the server's own words and stay.
_BREAKS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def bounded(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` on one line of at most `limit` characters; a cut text ends with an ellipsis."""
    value = text if isinstance(text, str) else str(text)
    # Only the head can be shown: cleaning just that keeps a megabyte cheap.
    head = value[: limit * 4 + 1]
    line = _BREAKS.sub(" ", head).strip()
    if len(line) <= limit and len(head) == len(value):
        return line
    return line[: max(limit - len(ELLIPSIS), 0)].rstrip() + ELLIPSIS


def bounded_code(code: object) -> str:
    """An error code as a remote server wrote it, bounded like a message but shorter."""
    return bounded(code, MAX_CODE_CHARS)


def error_detail(code: object, message: object, fallback: object = "") -> str:
    """`message (code)`, bounded; the message or the code alone when the other is empty, else
    `fallback` (e.g. the reason phrase), else "no error message"."""
    text = bounded(message) if message else ""
    tag = bounded_code(code) if code else ""
    if text and tag:
        return f"{text} ({tag})"
    return text or tag or bounded(fallback) or "no error message"
