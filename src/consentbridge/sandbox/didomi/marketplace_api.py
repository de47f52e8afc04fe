"""Handlers of `/v1/marketplace/integrations`: create (201), list (feathers page
`{total, limit, skip, data}`), get and delete one. Deleting an integration stops future
deliveries to it; deliveries already queued still go out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consentbridge.sandbox.didomi import inputs
from consentbridge.sandbox.didomi.integrations import IntegrationRegistry, parse_integration


class MarketplaceApi:
    def __init__(self, registry: IntegrationRegistry, organization_id: str) -> None:
        self._registry = registry
        self._organization_id = organization_id

    async def create(self, request: Request) -> Response:
        integration = parse_integration(await inputs.json_body(request), self._organization_id)
        self._registry.add(integration)
        return JSONResponse(integration.public(), status_code=201)

    async def list(self, request: Request) -> Response:
        items = [i.public() for i in self._registry.all()]
        return JSONResponse({"total": len(items), "limit": len(items), "skip": 0, "data": items})

    async def get(self, request: Request) -> Response:
        return JSONResponse(self._registry.get(request.path_params["id"]).public())

    async def delete(self, request: Request) -> Response:
        return JSONResponse(self._registry.remove(request.path_params["id"]).public())
