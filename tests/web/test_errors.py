"""errors.py: every failure becomes JSON of one of two shapes; a crash is a bare 500."""

from __future__ import annotations

import logging

import httpx
import pytest

from consentbridge.context import AppContext
from consentbridge.web.app import create_app


@pytest.fixture
async def probe(ctx: AppContext) -> httpx.AsyncClient:
    """The app with two extra routes: one typed query parameter, one crash."""
    app = create_app(ctx)

    @app.get("/probe/typed")
    async def typed(count: int) -> dict[str, int]:
        """A route with an integer query parameter."""
        return {"count": count}

    @app.get("/probe/crash")
    async def crash() -> None:
        """A route that fails unexpectedly."""
        raise RuntimeError("secret internals /etc/passwd")

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_fastapi_validation_errors_use_the_errors_shape(probe: httpx.AsyncClient) -> None:
    async with probe:
        response = await probe.get("/probe/typed", params={"count": "many"})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["path"] == "count"
    assert error["message"].endswith(".")


async def test_an_unexpected_error_is_a_bare_500_with_the_trace_logged(
    probe: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="consentbridge.web"):
        async with probe:
            response = await probe.get("/probe/crash")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "secret internals" not in response.text
    assert any(
        record.exc_info and "secret internals" in str(record.exc_info[1])
        for record in caplog.records
    )


async def test_unknown_routes_and_methods_answer_with_a_sentence(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    wrong_method = await client.get("/oauth/token")
    assert (missing.status_code, wrong_method.status_code) == (404, 405)
    assert "openapi.json" in missing.json()["error"]
    assert "openapi.json" in wrong_method.json()["error"]
