"""Admin API routes that help build a mapping and follow its changes: the live `contact`
columns and Journeys purposes of an integration's Dataverse, the Didomi paths seen for its
organization, one path judged with the mapping grammar, and the configuration history. Every
route needs ``Authorization: Bearer <admin token>``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query

from consentbridge.operations import mapping_help, revisions
from consentbridge.operations.integrations import load_integration
from consentbridge.store.values import iso_utc
from consentbridge.web import responses
from consentbridge.web.deps import AdminDep, ContextDep

PREFIX: Final = "/api/v1/integrations"
router = APIRouter(prefix=PREFIX, tags=["admin"], dependencies=[AdminDep])
_ERRORS: Final = responses.errors(
    400, 401, 404, 422, 429, 503, e401="Missing or wrong admin token."
)


@router.get("/{integration_id}/metadata/columns", responses=_ERRORS)
async def contact_columns(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """The `contact` columns of the integration's Dataverse (live `EntityDefinitions`), each
    with its type, options, and whether a mapping can write it."""
    columns = await mapping_help.contact_columns(ctx, integration_id)
    return {"columns": [asdict(c) for c in columns]}


@router.get("/{integration_id}/metadata/purposes", responses=_ERRORS)
async def journeys_purposes(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """The Customer Insights - Journeys purposes with their topics (`msdynmkt_purposes`,
    `msdynmkt_topics`); empty where Journeys is not installed."""
    purposes = await mapping_help.journeys_purposes(ctx, integration_id)
    return {"purposes": [asdict(p) for p in purposes]}


@router.get("/{integration_id}/paths", responses=_ERRORS)
async def path_suggestions(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """Didomi paths to map: those of the mapping and those seen in the organization's users."""
    found = await mapping_help.path_suggestions(ctx, integration_id)
    return {"paths": [asdict(s) for s in found]}


@router.get("/{integration_id}/paths/check", responses=_ERRORS)
async def check_path(
    integration_id: str,
    ctx: ContextDep,
    value: Annotated[str, Query(description="the path to judge, e.g. consents_purposes_x_enabled")],
) -> dict[str, Any]:
    """Judge one Didomi path with the mapping grammar: `error` is one sentence, or null."""
    await load_integration(ctx, integration_id)
    return path_verdict(value)


@router.get("/{integration_id}/history", responses=_ERRORS)
async def history(integration_id: str, ctx: ContextDep) -> dict[str, Any]:
    """Every change to the integration's document, newest first: when, by whom (console
    session, admin token or CLI), the action, and a diff with secrets masked."""
    views = await revisions.history(ctx, integration_id)
    return {
        "revisions": [
            {
                "at": iso_utc(v.revision.at),
                "actor": v.revision.actor,
                "action": v.revision.action,
                "secrets_changed": list(v.revision.secrets_changed),
                "diff": v.diff,
            }
            for v in views
        ]
    }


def path_verdict(value: str) -> dict[str, Any]:
    verdict = mapping_help.judge_path(value)
    return {
        "value": value,
        "ok": verdict.ok,
        "error": verdict.error,
        "readings": list(verdict.readings),
        "value_kinds": list(verdict.value_kinds),
    }
