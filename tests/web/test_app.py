"""The app as a whole: /openapi.json lists every route, and every route is documented."""

from __future__ import annotations

import pkgutil
from importlib import import_module

import httpx
from fastapi import APIRouter
from fastapi.routing import APIRoute

from consentbridge.web import routes

CONTRACT_ROUTES = {
    ("POST", "/oauth/token"),
    ("POST", "/webhooks/didomi/{integration_id}"),
    ("POST", "/webhooks/dataverse/{integration_id}"),
    ("GET", "/api/v1/integrations"),
    ("GET", "/api/v1/integrations/{integration_id}"),
    ("PUT", "/api/v1/integrations/{integration_id}"),
    ("DELETE", "/api/v1/integrations/{integration_id}"),
    ("POST", "/api/v1/integrations/{integration_id}/test"),
    ("POST", "/api/v1/integrations/{integration_id}/preview"),
    ("POST", "/api/v1/integrations/{integration_id}/backfill"),
    ("POST", "/api/v1/integrations/{integration_id}/deadletters/replay"),
    ("GET", "/api/v1/integrations/{integration_id}/deadletters"),
    ("GET", "/api/v1/integrations/{integration_id}/status"),
    ("POST", "/api/v1/integrations/{integration_id}/jobs"),
    ("GET", "/api/v1/jobs/{job_id}"),
    ("GET", "/api/v1/integrations/{integration_id}/users/{organization_user_id}/log"),
    ("GET", "/console"),
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
}


def declared_routes() -> set[tuple[str, str]]:
    """Every (method, path) of every route module's ``router``."""
    declared: set[tuple[str, str]] = set()
    for module in pkgutil.iter_modules(routes.__path__):
        router = import_module(f"{routes.__name__}.{module.name}").router
        assert isinstance(router, APIRouter)
        for route in router.routes:
            assert isinstance(route, APIRoute)
            declared |= {(method, route.path) for method in route.methods or ()}
    return declared


async def test_openapi_lists_every_route_with_its_docstring(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    listed = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert listed == declared_routes()
    assert listed >= CONTRACT_ROUTES
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("description"), f"{method.upper()} {path} has no docstring"
