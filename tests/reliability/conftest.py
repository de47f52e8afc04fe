"""Reliability fixtures: the e2e sandbox (one HTTPS server per session, reset per test)."""

from tests.e2e.conftest import sandbox, sandbox_server

__all__ = ["sandbox", "sandbox_server"]
