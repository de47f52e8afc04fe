"""Rendering console pages: the Jinja2 environment, the headers every page carries, and the
stylesheet. Autoescaping is on for every template, so nothing from a document or a payload is
ever interpreted as HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Final

from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from consentbridge.web.session import Session

CSS_PATH: Final = "/console/console.css"
JS_PATH: Final = "/console/console.js"
# Scripts, styles, fetches and forms only from this origin (no inline script); never framed.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_environment: Final = Environment(
    loader=PackageLoader("consentbridge.web", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def time_tag(value: datetime | float | str | None, empty: str = "never") -> Markup:
    """A ``<time>`` in UTC; the console's script shows it in the browser's local time, with
    the UTC time on hover."""
    if value is None or value == "":
        return Markup(escape(empty))
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return Markup(escape(value))
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    iso = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    shown = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time datetime="{iso}" title="{shown}">{shown}</time>')


def age(seconds: float | None) -> str:
    """A duration in words a person reads at a glance: ``45 s``, ``12 min``, ``3 h``, ``2 d``."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


_environment.filters["time"] = time_tag
_environment.filters["age"] = age


def render(
    template: str, session: Session | None, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A console page; ``session`` gives the sign-out form its CSRF token."""
    html = _environment.get_template(template).render(
        session=session, css_path=CSS_PATH, js_path=JS_PATH, **context
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def stylesheet() -> Response:
    return Response(_css(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


def script() -> Response:
    return Response(
        _asset("console.js"),
        media_type="text/javascript",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def _css() -> str:
    return _asset("console.css")


@cache
def _asset(name: str) -> str:
    return resources.files("consentbridge.web").joinpath(f"templates/{name}").read_text()
