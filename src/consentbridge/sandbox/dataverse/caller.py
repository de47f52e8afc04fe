"""Who a request runs as and what custom logic it asked to skip: the application user behind
the bearer token (its privileges come from its security roles), the bypass headers, and the
`Origin` of a write, which webhook contexts report (`UserId`, `CorrelationId`, …)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consentbridge.sandbox.common import App
from consentbridge.sandbox.dataverse.errors import (
    PRIVILEGE_DENIED,
    DataverseError,
    invalid_argument,
)
from consentbridge.sandbox.dataverse.values import parse_guid

SYSTEM_USER_TYPE = 8  # the principal type Dataverse reports for application users


@dataclass(frozen=True)
class Caller:
    """The application user a request runs as."""

    app: App
    privileges: frozenset[str]

    @property
    def systemuserid(self) -> str:
        return self.app.systemuserid

    def require(
        self, privilege: str, entity: str | None = None, object_type_code: int | None = None
    ) -> None:
        if privilege in self.privileges:
            return
        where = f" on OTC={object_type_code} for entity '{entity}'" if entity else ""
        raise DataverseError(
            403,
            PRIVILEGE_DENIED,
            f"Principal user (Id={self.systemuserid}, type={SYSTEM_USER_TYPE}, "
            f"roleCount={len(self.app.roles)}, privilegeCount={len(self.privileges)}, "
            f"accessMode=4), is missing {privilege} privilege{where}. Consider assigning a role "
            "with the required privilege to the user or team.",
        )


@dataclass(frozen=True)
class Bypass:
    """Custom business logic the caller asked to skip (`MSCRM.BypassBusinessLogicExecution`,
    `MSCRM.BypassBusinessLogicExecutionStepIds`, `MSCRM.BypassCustomPluginExecution`)."""

    sync: bool = False
    asynchronous: bool = False
    step_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Origin:
    """One request (or `$batch` part) that writes: shared by every row it writes."""

    caller: Caller
    request_id: str
    correlation_id: str
    host: str  # the organization's host name, for `x-ms-dynamics-organization`
    bypass: Bypass = Bypass()
    user_agent: str = ""  # the request's User-Agent, for `InitiatingUserAgent`


BYPASS_LOGIC = "mscrm.bypassbusinesslogicexecution"
BYPASS_STEP_IDS = "mscrm.bypassbusinesslogicexecutionstepids"
BYPASS_PLUGINS = "mscrm.bypasscustompluginexecution"
BYPASS_HEADERS = (BYPASS_LOGIC, BYPASS_STEP_IDS, BYPASS_PLUGINS)
MAX_BYPASS_STEP_IDS = 3  # the default of the BypassBusinessLogicExecutionStepIdsLimit setting


def read_bypass(headers: Mapping[str, str], caller: Caller) -> Bypass:
    """The bypass a request asks for (lowercase header names), checking the caller may."""
    logic = headers.get(BYPASS_LOGIC, "").strip()
    step_text = headers.get(BYPASS_STEP_IDS, "").strip()
    plugins = headers.get(BYPASS_PLUGINS, "").strip().lower() == "true"
    if not (logic or step_text or plugins):
        return Bypass()
    if logic or step_text:
        caller.require("prvBypassCustomBusinessLogic")
    if plugins:
        caller.require("prvBypassCustomPlugins")
    modes = {part.strip() for part in logic.split(",") if part.strip()}
    unknown = modes - {"CustomSync", "CustomAsync"}
    if unknown:
        raise invalid_argument(
            f"'{sorted(unknown)[0]}' is not a valid value of MSCRM.BypassBusinessLogicExecution; "
            "use CustomSync, CustomAsync or both."
        )
    step_ids: set[str] = set()
    for part in (p for p in step_text.split(",") if p.strip()):
        guid = parse_guid(part)
        if guid is None:
            raise invalid_argument(
                f"'{part.strip()}' in MSCRM.BypassBusinessLogicExecutionStepIds is not a GUID."
            )
        step_ids.add(guid)
    if len(step_ids) > MAX_BYPASS_STEP_IDS:
        raise invalid_argument(
            f"MSCRM.BypassBusinessLogicExecutionStepIds lists {len(step_ids)} steps; the limit "
            f"is {MAX_BYPASS_STEP_IDS}."
        )
    return Bypass(
        sync="CustomSync" in modes or plugins,
        asynchronous="CustomAsync" in modes,
        step_ids=frozenset(step_ids),
    )
