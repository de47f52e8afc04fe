"""Listening sockets for the service and the sandbox."""

from __future__ import annotations

import socket


def listen_tcp(host: str, port: int, backlog: int) -> socket.socket:
    """A bound, listening TCP socket for uvicorn to serve on.

    The protocol is named explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    `proto` is IPPROTO_TCP, and without it small responses wait ~40 ms on Nagle's algorithm.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock
