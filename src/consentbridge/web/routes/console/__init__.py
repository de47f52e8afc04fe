"""The web console under ``/console``: server-rendered pages (Jinja2, a little plain
JavaScript, no build step), one module per page, all behind the admin-token sign-in.

``auth`` signs in and out; ``integrations`` lists them with their health and shows one;
``setup`` says what to paste into Didomi; ``mapping`` is the builder and the JSON/YAML editor;
``actions`` runs test, preview and the bidirectional flow; ``activity``, ``audit``,
``deadletters``, ``jobs`` and ``history`` are the pages their names say.

Pages call the same operations as the admin API. Every POST form carries the session's CSRF
token; the session cookie is HttpOnly, SameSite=Strict, and Secure when served over https.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from consentbridge.web import responses
from consentbridge.web.routes.console import (
    actions,
    activity,
    audit,
    auth,
    deadletters,
    history,
    integrations,
    jobs,
    mapping,
    setup,
)
from consentbridge.web.routes.console.base import LOGIN_PATH

__all__ = ["LOGIN_PATH", "router"]

router = APIRouter(
    tags=["console"],
    default_response_class=HTMLResponse,
    responses={
        303: {"description": "Not signed in: to /console/login; or done: to the next page."},
        403: {"description": "The form's CSRF token is missing or from another session."},
        **responses.pages(400, 401, 404, 413, 422, 429, 503),
    },
)
for page in (
    auth,
    integrations,
    setup,
    mapping,
    actions,
    activity,
    audit,
    deadletters,
    jobs,
    history,
):
    router.include_router(page.router)
