"""A noisy server for tests: what an administrator's URL (`config.authority_host`,
`config.instance`, `didomi.base_url`) might point at by mistake or by malice — it answers
errors with huge bodies (a megabyte of JSON message, a megabyte HTML page). Served by uvicorn
over HTTPS on loopback with the sandbox's certificate, so the product's clients trust it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from consentbridge.sandbox.tls import TlsFiles

HUGE = 1_000_000
# A run of one character no sane error message holds: finding 300 of them in what the product
# shows means the body was echoed, not bounded.
FILLER = "Z"
HUGE_TEXT = FILLER * HUGE

Mode = Literal["json", "html", "entra_refuses", "entra_html"]


@dataclass
class Noisy:
    """The server; `mode` picks the next answers:

    - ``json``: a token for anyone; every other request → 400 with a megabyte message in
      both Dataverse's (`error.message`) and Didomi's (`message`) shape;
    - ``html``: a token for anyone; every other request → 404 with a megabyte HTML page;
    - ``entra_refuses``: the token request → 401 with a megabyte `error_description`;
    - ``entra_html``: the token request → 400 with a megabyte HTML page.
    """

    base_url: str = ""
    mode: Mode = "json"

    def app(self) -> Starlette:
        async def openid_configuration(request: Request) -> Response:
            tenant = request.path_params["tenant"]
            root = f"{self.base_url}/{tenant}"
            return JSONResponse(
                {
                    "token_endpoint": f"{root}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                    "issuer": f"{root}/v2.0",
                }
            )

        async def token(request: Request) -> Response:
            if self.mode == "entra_refuses":
                return JSONResponse(
                    {
                        "error": "invalid_client",
                        "error_description": f"AADSTS7000999: {HUGE_TEXT}",
                        "error_codes": [7000999],
                    },
                    status_code=401,
                )
            if self.mode == "entra_html":
                return _page(400)
            return JSONResponse({"access_token": "t", "token_type": "Bearer", "expires_in": 3600})

        async def anything(request: Request) -> Response:
            if self.mode == "html":
                return _page(404)
            return JSONResponse(
                {
                    "error": {"code": "0x8" + "0" * 10_000, "message": HUGE_TEXT},
                    "message": HUGE_TEXT,
                    "name": "BadRequest",
                },
                status_code=400,
            )

        return Starlette(
            routes=[
                Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
                Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
                Route("/{path:path}", anything, methods=["GET", "POST", "PATCH", "DELETE"]),
            ]
        )


def _page(status: int) -> Response:
    return HTMLResponse(
        f"<!DOCTYPE html><html><body><h1>Oops</h1><p>{HUGE_TEXT}</p></body></html>",
        status_code=status,
    )


@asynccontextmanager
async def serve_noisy(tls: TlsFiles) -> AsyncIterator[Noisy]:
    """A Noisy server on https://127.0.0.1:<free port>."""
    noisy = Noisy()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    noisy.base_url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        noisy.app(),
        log_level="critical",
        lifespan="off",
        ssl_certfile=str(tls.server_cert),
        ssl_keyfile=str(tls.server_key),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield noisy
    finally:
        server.should_exit = True
        await task
        sock.close()
