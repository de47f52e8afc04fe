"""Connection guards of the HTTP service: how long a client may hold a connection without
sending a request, its headers or its body, and how many connections may be open at once.

uvicorn (0.55, httptools) closes an idle keep-alive connection only after a response, and any
byte the client sends disarms that timer; a new connection that sends nothing, headers sent a
byte at a time, or a body that never ends would each hold a connection forever. So
``guarded_protocol`` returns a subclass of uvicorn's httptools protocol that adds three timers:

- waiting for a request (a new connection, or after a response): closed after
  ``http_keep_alive_s`` unless a request begins — stray bytes do not reset it;
- the request line and headers must be complete within ``http_header_timeout_s`` of the
  request's first byte;
- the body must be complete within ``http_body_timeout_s`` of the headers; if the answer has
  not started, the client gets ``408`` and the connection is closed.

A connection beyond ``http_max_connections`` is answered ``503`` and closed as soon as it is
accepted, before it can send anything. (uvicorn's ``limit_concurrency`` only answers ``503`` to
a request whose headers are complete, and counts the connection asking, so it is not used.)
Values and their defaults: docs/operations.md, "Security".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from consentbridge.config.settings import Settings


def _plain_response(status: bytes, sentence: str) -> bytes:
    body = f'{{"error": "{sentence}"}}\n'.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


REQUEST_TIMEOUT_RESPONSE: Final = _plain_response(
    b"408 Request Timeout", "The request body did not arrive in time; send it whole and promptly."
)
TOO_MANY_CONNECTIONS_RESPONSE: Final = _plain_response(
    b"503 Service Unavailable",
    "The service has as many connections open as it allows; retry in a moment.",
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with idle, header and body deadlines (module docstring)."""

    idle_timeout_s: float = 30.0
    header_timeout_s: float = 30.0
    body_timeout_s: float = 60.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(TOO_MANY_CONNECTIONS_RESPONSE)
            transport.close()
            return
        self._arm(self.idle_timeout_s, self._close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s, self._close)

    def on_headers_complete(self) -> None:
        # Disarmed first: a request without a body completes within this same call.
        self._disarm()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm(self.body_timeout_s, self._body_too_slow)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm(self.idle_timeout_s, self._close)

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _body_too_slow(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is not None:
            # The app sees the client as gone (its receive() answers http.disconnect) and
            # nothing it sends from now on reaches the socket.
            started = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
            if not started:
                self.transport.write(REQUEST_TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=`` option, with the deadlines of ``settings``."""
    return type(
        "ConsentBridgeHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "idle_timeout_s": settings.http_keep_alive_s,
            "header_timeout_s": settings.http_header_timeout_s,
            "body_timeout_s": settings.http_body_timeout_s,
            "max_connections": settings.http_max_connections,
        },
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.Config`` that bound connections."""
    return {
        "http": guarded_protocol(settings),
        # uvicorn's own keep-alive timer (whole seconds); ours closes first when shorter.
        "timeout_keep_alive": max(1, round(settings.http_keep_alive_s)),
    }
