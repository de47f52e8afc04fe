"""Helpers of the security suite: two integrations that must never see each other, their
credentials, and a dump of every stored row to prove that a refused request changed nothing."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from consentbridge.context import AppContext
from consentbridge.dataverse.registration import AUTH_HEADER
from consentbridge.operations import integrations, tokens
from consentbridge.operations.bidirectional import RegistrationRecord
from consentbridge.store.tables import metadata
from tests.web.support import (
    ADMIN_TOKEN,
    SECRETS,
    WEBHOOK_CLIENT,
    WEBHOOK_SECRET,
    document,
    user_updated,
)

__all__ = [
    "ACME",
    "ADMIN",
    "ADMIN_TOKEN",
    "API",
    "DATAVERSE_KEYS",
    "GLOBEX",
    "SECRETS",
    "Tenant",
    "dump_store",
    "setup_tenants",
    "user_updated",
]

API = "/api/v1/integrations"
ACME = "acme-d365"
GLOBEX = "globex-d365"
GLOBEX_CLIENT = "globex-hooks"
GLOBEX_SECRET = "globex-webhook-secret-Qw8Er5Ty"
DATAVERSE_KEYS = {ACME: "acme-dataverse-key-Lk2Jh7Gf", GLOBEX: "globex-dataverse-key-Mn4Bv6Cx"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OUR_APP_USER = "00000000-0000-4000-8000-0000000000aa"


class Tenant:
    """One integration as a caller sees it: its id, a webhook token and its Dataverse key."""

    def __init__(self, integration_id: str, token: str) -> None:
        self.id = integration_id
        self.token = token
        self.dataverse_key = DATAVERSE_KEYS[integration_id]

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def key_header(self) -> dict[str, str]:
        return {AUTH_HEADER: self.dataverse_key}


async def setup_tenants(ctx: AppContext) -> tuple[Tenant, Tenant]:
    """``acme-d365`` and ``globex-d365``, each with webhook_auth and a Dataverse registration."""
    await integrations.apply(ctx, document(ACME))
    await integrations.apply(
        ctx, document(GLOBEX, webhook_client=GLOBEX_CLIENT, webhook_secret=GLOBEX_SECRET)
    )
    for integration_id in DATAVERSE_KEYS:
        await register_dataverse(ctx, integration_id)
    acme_token, _ = await tokens.issue_token(ctx, WEBHOOK_CLIENT, WEBHOOK_SECRET)
    globex_token, _ = await tokens.issue_token(ctx, GLOBEX_CLIENT, GLOBEX_SECRET)
    return Tenant(ACME, acme_token), Tenant(GLOBEX, globex_token)


async def register_dataverse(ctx: AppContext, integration_id: str) -> None:
    """Store a Dataverse webhook registration whose key is ``DATAVERSE_KEYS[integration_id]``,
    as ``bidirectional enable`` would (without calling Dataverse)."""
    record = RegistrationRecord(
        url=f"https://cb.example/webhooks/dataverse/{integration_id}",
        public_url="https://cb.example",
        secret=ctx.secrets.encrypt(DATAVERSE_KEYS[integration_id]),
        application_user_id=OUR_APP_USER,
        filtering_attributes="donotbulkemail,emailaddress1",
        enabled_at="2025-01-01T00:00:00.000Z",
    )
    await ctx.store.set_registration(integration_id, record.stored())


def all_secrets(*tenants: Tenant) -> tuple[str, ...]:
    """Every secret the tenants hold: document secrets, admin token, Dataverse keys, tokens."""
    return (*SECRETS, GLOBEX_SECRET, *DATAVERSE_KEYS.values(), *(t.token for t in tenants))


Row = dict[str, Any]


def dump_store(db_url: str) -> dict[str, list[Row]]:
    """Every row of every table, in a stable order, read through a connection of its own.

    Equal dumps before and after a request prove it stored nothing: no delivery key, no sync
    state, no log line, no counter, no integration or registration change.
    """
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {
                table.name: sorted(
                    (dict(row._asdict()) for row in conn.execute(sa.select(table))), key=repr
                )
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def rows_of(dump: dict[str, list[Row]], integration_id: str) -> dict[str, list[Row]]:
    """The rows of one integration in a dump."""
    return {
        name: [row for row in rows if row.get("integration_id", row.get("id")) == integration_id]
        for name, rows in dump.items()
    }
