"""Shared state of the sandbox: principals (Entra apps and their Dataverse roles), counters,
injected faults and service-protection limits, plus small HTTP helpers used by every surface."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

ROLE_SYSTEM_ADMINISTRATOR = "System Administrator"
ROLE_SYSTEM_CUSTOMIZER = "System Customizer"
ROLE_SALESPERSON = "Salesperson"
ROLE_CONTACT_SYNC = "Contact Sync (custom)"
"""A custom least-privilege role (MS's advice for integration users) made before Customer
Insights - Journeys was installed: contacts only, nothing of the Journeys tables."""
ROLE_INTEGRATION_NO_JOURNEYS = "Integration (no Journeys)"
"""A custom role copied from System Customizer before Customer Insights - Journeys was
installed (a copy does not gain the tables a later solution adds): contacts, webhooks and
steps, nothing of the Journeys tables."""
ROLES = (
    ROLE_SYSTEM_ADMINISTRATOR,
    ROLE_SYSTEM_CUSTOMIZER,
    ROLE_SALESPERSON,
    ROLE_CONTACT_SYNC,
    ROLE_INTEGRATION_NO_JOURNEYS,
)

# Privileges per role, named after Dataverse's prv* privileges (global depth only).
_CONTACTS = frozenset({"prvReadContact", "prvCreateContact", "prvWriteContact"})
_CUSTOMIZING = frozenset(
    {
        *_CONTACTS,
        "prvDeleteContact",
        "prvReadEntity",
        "prvReadUser",
        "prvCreateEntityKey",
        "prvDeleteEntityKey",
        "prvReadSdkMessage",
        "prvReadSdkMessageProcessingStep",
        "prvCreateSdkMessageProcessingStep",
        "prvWriteSdkMessageProcessingStep",
        "prvDeleteSdkMessageProcessingStep",
        "prvReadServiceEndpoint",
        "prvCreateServiceEndpoint",
        "prvWriteServiceEndpoint",
        "prvDeleteServiceEndpoint",
    }
)
"""System Customizer's privileges outside the Journeys tables."""
# Customer Insights - Journeys tables (dataverse/journeys.py), privileges named after their
# lowercase SchemaNames. Administrators and customizers have full access; a Salesperson reads
# purposes and topics and reads, creates and updates consent rows, but deletes none.
_JOURNEYS_TABLES = ("msdynmkt_purpose", "msdynmkt_topic", "msdynmkt_contactpointconsent4")
_JOURNEYS_FULL = frozenset(
    f"prv{action}{table}"
    for action in ("Read", "Create", "Write", "Delete")
    for table in _JOURNEYS_TABLES
)
_CUSTOMIZER = _CUSTOMIZING | _JOURNEYS_FULL
ROLE_PRIVILEGES: dict[str, frozenset[str]] = {
    # An administrator is a customizer who may also bypass custom logic.
    ROLE_SYSTEM_ADMINISTRATOR: _CUSTOMIZER
    | {"prvBypassCustomBusinessLogic", "prvBypassCustomPlugins"},
    ROLE_SYSTEM_CUSTOMIZER: _CUSTOMIZER,
    ROLE_SALESPERSON: _CONTACTS
    | {
        "prvReadEntity",
        "prvReadUser",
        "prvReadSdkMessage",
        "prvReadmsdynmkt_purpose",
        "prvReadmsdynmkt_topic",
        "prvReadmsdynmkt_contactpointconsent4",
        "prvCreatemsdynmkt_contactpointconsent4",
        "prvWritemsdynmkt_contactpointconsent4",
    },
    ROLE_CONTACT_SYNC: _CONTACTS | {"prvReadEntity", "prvReadUser"},
    ROLE_INTEGRATION_NO_JOURNEYS: _CUSTOMIZING,
}


@dataclass
class App:
    """An Entra app registration bound to a Dataverse application user."""

    name: str
    client_id: str
    client_secret: str
    systemuserid: str
    roles: list[str]
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def privileges(self) -> frozenset[str]:
        granted: set[str] = set()
        for role in self.roles:
            granted |= ROLE_PRIVILEGES.get(role, frozenset())
        return frozenset(granted)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "systemuserid": self.systemuserid,
            "roles": list(self.roles),
        }


@dataclass
class DidomiCredentials:
    organization_id: str
    api_key: str
    api_secret: str


def new_app(
    name: str, roles: list[str], client_id: str | None = None, client_secret: str | None = None
) -> App:
    return App(
        name=name,
        client_id=client_id or str(uuid.uuid4()),
        client_secret=client_secret or secrets.token_urlsafe(30),
        systemuserid=str(uuid.uuid4()),
        roles=list(roles),
    )


@dataclass
class Principals:
    """The tenant, its apps (first = default, System Administrator) and the Didomi organization."""

    tenant_id: str
    apps: list[App]
    didomi: DidomiCredentials

    @classmethod
    def generate(cls) -> Principals:
        return cls(
            tenant_id=str(uuid.uuid4()),
            apps=[new_app("consentbridge", [ROLE_SYSTEM_ADMINISTRATOR])],
            didomi=DidomiCredentials(
                organization_id="sandbox-org",
                api_key=str(uuid.uuid4()),
                api_secret=secrets.token_urlsafe(30),
            ),
        )

    def by_client_id(self, client_id: str) -> App | None:
        for app in self.apps:
            if app.client_id == client_id:
                return app
        return None

    def by_systemuserid(self, systemuserid: str) -> App | None:
        for app in self.apps:
            if app.systemuserid == systemuserid:
                return app
        return None

    def public(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "roles": list(ROLES),
            "apps": [app.public() for app in self.apps],
            "didomi": {
                "organization_id": self.didomi.organization_id,
                "api_key": self.didomi.api_key,
                "api_secret": self.didomi.api_secret,
            },
        }

    def to_json(self) -> dict[str, Any]:
        data = self.public()
        for app, raw in zip(self.apps, data["apps"], strict=True):
            raw["object_id"] = app.object_id
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Principals:
        apps = [
            App(
                name=a["name"],
                client_id=a["client_id"],
                client_secret=a["client_secret"],
                systemuserid=a["systemuserid"],
                roles=list(a["roles"]),
                object_id=a.get("object_id") or str(uuid.uuid4()),
            )
            for a in data["apps"]
        ]
        d = data["didomi"]
        return cls(
            tenant_id=data["tenant_id"],
            apps=apps,
            didomi=DidomiCredentials(d["organization_id"], d["api_key"], d["api_secret"]),
        )


DEFAULT_REQUESTS_PER_WINDOW = 6000
DEFAULT_WINDOW_S = 300.0
DEFAULT_CONCURRENT = 52
DEFAULT_TOKEN_LIFETIME_S = 3599
DEFAULT_DOP_HINT = 5  # x-ms-dop-hint: the server's recommended parallelism (ppds-sdk, Dec 2025)
DEFAULT_EXECUTION_S_PER_WINDOW = 1200.0  # 20 minutes per 5-minute window (MS Learn api-limits)
# The cost model (docs/sandbox.md "Cost model"): an UpsertMultiple of 100 rows is charged
# 50 + 100 * 24.25 = 2,475 ms, so 5 in parallel write 500 rows per 2.475 s = 202 rows/s, as
# ppds-sdk measured against real Dataverse with one application user.
DEFAULT_COST_BASE_MS = 50.0
DEFAULT_COST_BULK_ROW_MS = 24.25
DEFAULT_COST_WRITE_ROW_MS = 50.0
DEFAULT_COST_READ_ROW_MS = 0.5


@dataclass
class Limits:
    """Service-protection limits (per application user), the cost model that charges each
    request execution time, and token lifetime; real (published) defaults."""

    requests_per_window: int = DEFAULT_REQUESTS_PER_WINDOW
    window_s: float = DEFAULT_WINDOW_S
    concurrent: int = DEFAULT_CONCURRENT
    token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S
    dop_hint: int = DEFAULT_DOP_HINT
    execution_s_per_window: float = DEFAULT_EXECUTION_S_PER_WINDOW
    cost_base_ms: float = DEFAULT_COST_BASE_MS
    cost_bulk_row_ms: float = DEFAULT_COST_BULK_ROW_MS
    cost_write_row_ms: float = DEFAULT_COST_WRITE_ROW_MS
    cost_read_row_ms: float = DEFAULT_COST_READ_ROW_MS

    @classmethod
    def cost_free(cls) -> Limits:
        """The published limits with requests charged nothing (and so served at once): what
        test sandboxes start with, so that the suite does not wait out the cost model."""
        return cls(
            cost_base_ms=0.0, cost_bulk_row_ms=0.0, cost_write_row_ms=0.0, cost_read_row_ms=0.0
        )

    def public(self) -> dict[str, Any]:
        return {
            "requests_per_window": self.requests_per_window,
            "window_s": self.window_s,
            "concurrent": self.concurrent,
            "token_lifetime_s": self.token_lifetime_s,
            "dop_hint": self.dop_hint,
            "execution_s_per_window": self.execution_s_per_window,
            "cost_base_ms": self.cost_base_ms,
            "cost_bulk_row_ms": self.cost_bulk_row_ms,
            "cost_write_row_ms": self.cost_write_row_ms,
            "cost_read_row_ms": self.cost_read_row_ms,
        }


@dataclass
class Faults:
    """Injected failures and latency. Rates are probabilities in [0, 1].

    Dataverse faults: `rate_429`, `rate_503`, `timeout_rate` (the request hangs for
    `timeout_s` and then the connection gets a 504-like failure), `latency_ms` plus
    `latency_per_row_ms` per row read or written. Didomi faults: `didomi_error_rate` (503
    before anything is done), `didomi_latency_ms`, and `didomi_lose_answer_rate`: a write that
    succeeded (its events or changes are stored) is answered 504 Gateway Time-out instead, as
    when a gateway gives up waiting while the service carries on.
    """

    rate_429: float = 0.0
    rate_503: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 130.0
    latency_ms: float = 0.0
    latency_per_row_ms: float = 0.0
    didomi_error_rate: float = 0.0
    didomi_latency_ms: float = 0.0
    didomi_lose_answer_rate: float = 0.0

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__)


# What a Dataverse 429 was for: the three service-protection limits, or an injected fault.
THROTTLE_KINDS = ("requests", "execution_time", "concurrency", "injected")


class Stats:
    """Request counters per surface and operation (thread-safe; read by /_sandbox/stats)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.entra_tokens = 0
            self.dataverse_requests = 0
            self.dataverse_throttled = 0
            self.dataverse_throttled_by_limit: dict[str, int] = dict.fromkeys(THROTTLE_KINDS, 0)
            self.dataverse_execution_s = 0.0
            self.dataverse_rows_written = 0
            self.dataverse_by_operation: dict[str, int] = defaultdict(int)
            self.dataverse_by_app: dict[str, int] = defaultdict(int)
            self.didomi_requests = 0
            self.didomi_events_created = 0
            self.didomi_answers_lost = 0
            self.didomi_by_operation: dict[str, int] = defaultdict(int)
            self.webhooks: dict[str, dict[str, int]] = {
                "dataverse": {"sent": 0, "failed": 0},
                "didomi": {"sent": 0, "failed": 0},
            }

    def count(self, attr: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, attr, getattr(self, attr) + n)

    def count_throttled(self, kind: str) -> None:
        """A Dataverse 429 sent, for the limit `kind` (one of `THROTTLE_KINDS`)."""
        with self._lock:
            self.dataverse_throttled += 1
            self.dataverse_throttled_by_limit[kind] += 1

    def count_execution(self, seconds: float) -> None:
        """Execution time charged to a Dataverse request by the cost model."""
        with self._lock:
            self.dataverse_execution_s += seconds

    def count_operation(self, surface: str, operation: str, n: int = 1) -> None:
        with self._lock:
            table = (
                self.dataverse_by_operation if surface == "dataverse" else self.didomi_by_operation
            )
            table[operation] += n

    def count_app(self, app: str, n: int = 1) -> None:
        """A Dataverse request by the application user named `app`."""
        with self._lock:
            self.dataverse_by_app[app] += n

    def count_webhook(self, source: str, ok: bool) -> None:
        with self._lock:
            self.webhooks[source]["sent" if ok else "failed"] += 1

    def public(self) -> dict[str, Any]:
        with self._lock:
            return {
                "entra": {"tokens": self.entra_tokens},
                "dataverse": {
                    "requests": self.dataverse_requests,
                    "throttled": self.dataverse_throttled,
                    "throttled_by_limit": dict(self.dataverse_throttled_by_limit),
                    "execution_s": round(self.dataverse_execution_s, 6),
                    "by_operation": dict(self.dataverse_by_operation),
                    "by_app": dict(self.dataverse_by_app),
                    "rows_written": self.dataverse_rows_written,
                },
                "didomi": {
                    "requests": self.didomi_requests,
                    "events_created": self.didomi_events_created,
                    "answers_lost": self.didomi_answers_lost,
                    "by_operation": dict(self.didomi_by_operation),
                },
                "webhooks": {k: dict(v) for k, v in self.webhooks.items()},
            }


def now() -> float:
    return time.time()


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def is_loopback(request: Request) -> bool:
    client = request.client
    return client is not None and (client.host in LOOPBACK_HOSTS or client.host.startswith("127."))


def json_error(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)
