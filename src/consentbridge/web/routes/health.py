"""Liveness and readiness probes: ``/healthz`` (the process answers) and ``/readyz`` (the store
answers too)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from consentbridge.web.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: 200 `{"status": "ok"}` while the process serves requests."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "The store does not answer."}},
)
async def readyz(ctx: ContextDep) -> JSONResponse:
    """Readiness: 200 when the store answers a query now, else 503."""
    if await ctx.store.ping():
        return JSONResponse({"status": "ready"})
    return JSONResponse(
        {"error": "The store does not answer; check the database named by --db."},
        status_code=503,
    )
