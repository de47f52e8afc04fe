"""Rendering console pages: the Jinja2 environment, the headers every page carries, and the
stylesheet. Autoescaping is on for every template, so nothing from a document or a payload is
ever interpreted as HTML."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Final

from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from consentbridge.web.session import Session

CSS_PATH: Final = "/console/console.css"
# No scripts at all; styles and forms only from this origin; never framed.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
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


def render(
    template: str, session: Session | None, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A console page; ``session`` gives the sign-out form its CSRF token."""
    html = _environment.get_template(template).render(session=session, css_path=CSS_PATH, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def stylesheet() -> Response:
    return Response(_css(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@cache
def _css() -> str:
    return resources.files("consentbridge.web").joinpath("templates/console.css").read_text()
