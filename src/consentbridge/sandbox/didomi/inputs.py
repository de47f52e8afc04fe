"""Reading Didomi-style request inputs: JSON bodies, feathers query conventions (`$limit`,
`$cursor`, `$by_organization_user_id`, `field[$in]=…` for several values) and boolean flags."""

from __future__ import annotations

import json

from starlette.requests import Request

from consentbridge.sandbox.didomi.errors import bad_request

_FALSE = frozenset({"false", "0", "no", "off"})


async def json_body(request: Request) -> object:
    raw = await request.body()
    if not raw:
        raise bad_request("The request needs a JSON body.", "body")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("The body is not valid JSON.", "body") from None


def flag(request: Request, name: str) -> bool:
    """A boolean query parameter: present means true unless it says false (`?$x=false`)."""
    value = request.query_params.get(name)
    return value is not None and value.strip().lower() not in _FALSE


def values(request: Request, name: str, default: str) -> set[str]:
    """`name=a` or `name[$in]=a&name[$in]=b`; the default when neither is given."""
    many = request.query_params.getlist(f"{name}[$in]")
    one = request.query_params.get(name)
    chosen = {*many, *([one] if one else [])}
    return chosen or {default}


def limit(request: Request, maximum: int) -> int:
    """`$limit` between 1 and `maximum` (larger values are capped, as feathers does)."""
    raw = request.query_params.get("$limit")
    if raw is None:
        return maximum
    try:
        number = int(raw)
    except ValueError:
        raise bad_request("'$limit' must be a positive integer.", "$limit") from None
    if number < 1:
        raise bad_request("'$limit' must be a positive integer.", "$limit")
    return min(number, maximum)
