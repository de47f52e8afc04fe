"""Console sessions: a signed cookie, and CSRF tokens tied to it.

The cookie holds ``<session id>.<expiry>.<HMAC>``, never the admin token. The HMAC key is
derived from the admin token, so changing the token signs every console user out, and any
process with the same token accepts the cookie (no server-side session table). A CSRF token
is an HMAC of the session id under a second derived key: a form posted from another site
cannot know it, and it changes with every sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final

COOKIE_NAME: Final = "consentbridge_session"
COOKIE_PATH: Final = "/console"
SESSION_TTL_S: Final = 12 * 3600
_SESSION_LABEL: Final = b"consentbridge/console-session/v1"
_CSRF_LABEL: Final = b"consentbridge/console-csrf/v1"


@dataclass(frozen=True)
class Session:
    """A signed-in console user (there is one role: whoever knows the admin token)."""

    session_id: str
    expires_at: int
    csrf_token: str


def new_session(admin_token: str, now: float | None = None) -> tuple[Session, str]:
    """A fresh session and the cookie value that carries it."""
    session_id = secrets.token_urlsafe(18)
    expires_at = int(now if now is not None else time.time()) + SESSION_TTL_S
    payload = f"{session_id}.{expires_at}"
    cookie = f"{payload}.{_mac(admin_token, _SESSION_LABEL, payload)}"
    return Session(session_id, expires_at, _csrf(admin_token, session_id)), cookie


def read_session(admin_token: str, cookie: str | None, now: float | None = None) -> Session | None:
    """The session in ``cookie`` if its signature holds and it has not expired."""
    if not cookie:
        return None
    payload, _, mac = cookie.rpartition(".")
    session_id, _, expiry = payload.partition(".")
    if not session_id or not expiry.isdigit():
        return None
    if not hmac.compare_digest(mac.encode(), _mac(admin_token, _SESSION_LABEL, payload).encode()):
        return None
    if int(expiry) <= (now if now is not None else time.time()):
        return None
    return Session(session_id, int(expiry), _csrf(admin_token, session_id))


def csrf_matches(session: Session, presented: str | None) -> bool:
    """True if a posted form carries this session's CSRF token."""
    return presented is not None and hmac.compare_digest(
        presented.encode(), session.csrf_token.encode()
    )


def _csrf(admin_token: str, session_id: str) -> str:
    return _mac(admin_token, _CSRF_LABEL, session_id)


def _mac(admin_token: str, label: bytes, message: str) -> str:
    key = hmac.new(admin_token.encode(), label, hashlib.sha256).digest()
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
