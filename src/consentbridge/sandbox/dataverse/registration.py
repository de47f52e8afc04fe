"""The registration tables webhooks are made of — `serviceendpoint`, `sdkmessage`,
`sdkmessagefilter`, `sdkmessageprocessingstep` — their seeded system rows, the rules Dataverse
applies when they are written, and the lookup of the steps a write triggers.

Rules (MS Learn: register-web-hook, the entity references, use-webhooks):
- a webhook endpoint (contract 8) needs an absolute http(s) `url` and authtype 4 (WebhookKey,
  sent as `?code=`), 5 (HttpHeader) or 6 (HttpQueryString); for 5 and 6 `authvalue` is
  `<settings><setting name="K" value="V" /></settings>`. `authvalue` is never returned;
  `isauthvalueset` says whether it is set;
- an asynchronous step (mode 1) must be in stage 40 (post-operation); custom steps use stages
  10, 20 or 40; the filter must belong to the step's message;
- an endpoint that steps still use cannot be deleted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.errors import (
    CANNOT_DELETE_DUE_TO_ASSOCIATION,
    DataverseError,
    invalid_argument,
)
from consentbridge.sandbox.dataverse.rows import Row
from consentbridge.sandbox.dataverse.schema import Column, Navigation, Option
from consentbridge.sandbox.dataverse.tables import Database, Table
from consentbridge.sandbox.dataverse.values import now_utc

SERVICEENDPOINT = "serviceendpoint"
SDKMESSAGE = "sdkmessage"
SDKMESSAGEFILTER = "sdkmessagefilter"
STEP = "sdkmessageprocessingstep"

CONTRACT_WEBHOOK = 8
AUTH_WEBHOOK_KEY = 4
AUTH_HTTP_HEADER = 5
AUTH_HTTP_QUERY_STRING = 6
MODE_SYNC = 0
MODE_ASYNC = 1
STAGE_POST_OPERATION = 40
CUSTOM_STAGES = frozenset({10, 20, 40})

# Messages with stable ids; steps on Create, Update and Delete of contact are delivered.
MESSAGES = (
    "Create",
    "Update",
    "Delete",
    "Retrieve",
    "RetrieveMultiple",
    "Upsert",
    "CreateMultiple",
    "UpdateMultiple",
    "UpsertMultiple",
)
FILTERED_MESSAGES = (
    "Create",
    "Update",
    "Delete",
    "Upsert",
    "CreateMultiple",
    "UpdateMultiple",
    "UpsertMultiple",
)
DELIVERED_MESSAGES = frozenset({"Create", "Update", "Delete"})


def _picklist(name: str, display: str, options: list[tuple[int, str]], **kw: Any) -> Column:
    return Column(name, s.PICKLIST, display, options=tuple(Option(v, t) for v, t in options), **kw)


def serviceendpoint_schema() -> s.TableSchema:
    columns = [
        s.primary_key("serviceendpointid", "ServiceEndpoint"),
        Column("name", s.STRING, "Name", max_length=256, required=s.SYSTEM_REQUIRED),
        Column("description", s.STRING, "Description", max_length=256),
        _picklist(
            "contract",
            "Contract",
            [
                (1, "OneWay"),
                (2, "Queue"),
                (3, "Rest"),
                (4, "TwoWay"),
                (5, "Topic"),
                (6, "Queue (Persistent)"),
                (7, "Event Hub"),
                (8, "Webhook"),
                (9, "Event Grid"),
                (10, "Managed Data Lake"),
            ],
            required=s.SYSTEM_REQUIRED,
        ),
        Column("url", s.STRING, "Url", max_length=2000),
        _picklist(
            "authtype",
            "Auth Type",
            [
                (1, "ACS"),
                (2, "SAS Key"),
                (3, "SAS Token"),
                (4, "Webhook Key"),
                (5, "Http Header"),
                (6, "Http Query String"),
                (7, "Connection String"),
                (8, "Access Key"),
            ],
        ),
        Column("authvalue", s.STRING, "Auth Value", max_length=2048, valid_for_read=False),
        Column(
            "isauthvalueset",
            s.BOOLEAN,
            "Is Auth Value Set",
            default=False,
            options=(Option(1, "Yes"), Option(0, "No")),
            valid_for_create=False,
            valid_for_update=False,
        ),
        _picklist(
            "messageformat", "Message Format", [(1, "Binary XML"), (2, "Json"), (3, "Text XML")]
        ),
        _picklist(
            "connectionmode", "Connection Mode", [(1, "Normal"), (2, "Federated")], default=1
        ),
        _picklist(
            "userclaim",
            "User Information Sent",
            [(1, "None"), (2, "UserId"), (3, "UserInfo")],
            default=1,
        ),
        Column("namespaceaddress", s.STRING, "Namespace Address", max_length=255),
        Column("path", s.STRING, "Path", max_length=160),
        Column("solutionnamespace", s.STRING, "Namespace", max_length=160),
        *s.system_columns(owned=False),
    ]
    return s.table(
        SERVICEENDPOINT,
        "serviceendpoints",
        ("Service Endpoint", "Service Endpoints"),
        ("serviceendpointid", "name"),
        4618,
        "ServiceEndpoint",
        columns,
    )


def sdkmessage_schema() -> s.TableSchema:
    columns = [
        s.primary_key("sdkmessageid", "Sdk Message"),
        Column("name", s.STRING, "Name", max_length=256),
        Column("categoryname", s.STRING, "Category Name", max_length=25),
        Column(
            "isprivate",
            s.BOOLEAN,
            "Is Private",
            default=False,
            options=(Option(1, "Yes"), Option(0, "No")),
        ),
        *s.system_columns(owned=False),
    ]
    return s.table(
        SDKMESSAGE,
        "sdkmessages",
        ("Sdk Message", "Sdk Messages"),
        ("sdkmessageid", "name"),
        4606,
        "SdkMessage",
        columns,
    )


def sdkmessagefilter_schema() -> s.TableSchema:
    columns = [
        s.primary_key("sdkmessagefilterid", "Sdk Message Filter"),
        Column("name", s.STRING, "Name", max_length=256),
        Column("sdkmessageid", s.LOOKUP, "Sdk Message", targets=(SDKMESSAGE,)),
        Column("primaryobjecttypecode", s.ENTITY_NAME, "Primary Object Type Code"),
        Column("secondaryobjecttypecode", s.ENTITY_NAME, "Secondary Object Type Code"),
        Column(
            "iscustomprocessingstepallowed",
            s.BOOLEAN,
            "Custom Processing Step Allowed",
            default=True,
            options=(Option(1, "Yes"), Option(0, "No")),
        ),
        Column("availability", s.INTEGER, "Availability", default=0),
        *s.system_columns(owned=False),
    ]
    return s.table(
        SDKMESSAGEFILTER,
        "sdkmessagefilters",
        ("Sdk Message Filter", "Sdk Message Filters"),
        ("sdkmessagefilterid", "name"),
        4607,
        "SdkMessage",  # readable with prvReadSdkMessage, as in the default roles
        columns,
        [Navigation("sdkmessageid", "sdkmessageid", SDKMESSAGE, "sdkmessages")],
    )


def step_schema() -> s.TableSchema:
    columns = [
        s.primary_key("sdkmessageprocessingstepid", "Sdk Message Processing Step"),
        Column("name", s.STRING, "Name", max_length=256, required=s.SYSTEM_REQUIRED),
        Column("description", s.STRING, "Description", max_length=256),
        _picklist(
            "mode",
            "Execution Mode",
            [(0, "Synchronous"), (1, "Asynchronous")],
            default=0,
            required=s.SYSTEM_REQUIRED,
        ),
        _picklist(
            "stage",
            "Stage",
            [
                (5, "Initial Pre-operation (For internal use only)"),
                (10, "Pre-validation"),
                (15, "Internal Pre-operation Before External Plugins (For internal use only)"),
                (20, "Pre-operation"),
                (25, "Internal Pre-operation After External Plugins (For internal use only)"),
                (30, "Main Operation (For internal use only)"),
                (40, "Post-operation"),
                (45, "Internal Post-operation Before External Plugins (For internal use only)"),
                (50, "Post-operation (Deprecated)"),
                (55, "Internal Post-operation After External Plugins (For internal use only)"),
            ],
            required=s.SYSTEM_REQUIRED,
        ),
        Column("rank", s.INTEGER, "Execution Order", required=s.SYSTEM_REQUIRED),
        _picklist(
            "supporteddeployment",
            "Deployment",
            [
                (0, "Server Only"),
                (1, "Microsoft Dynamics 365 Client for Outlook Only"),
                (2, "Both"),
            ],
            default=0,
        ),
        Column(
            "asyncautodelete",
            s.BOOLEAN,
            "Asynchronous Automatic Delete",
            default=False,
            options=(Option(1, "Yes"), Option(0, "No")),
        ),
        Column("filteringattributes", s.STRING, "Filtering Attributes", max_length=100000),
        Column("configuration", s.MEMO, "Configuration", max_length=1073741823),
        Column("sdkmessageid", s.LOOKUP, "SDK Message", targets=(SDKMESSAGE,)),
        Column("sdkmessagefilterid", s.LOOKUP, "Sdk Message Filter", targets=(SDKMESSAGEFILTER,)),
        Column("eventhandler", s.LOOKUP, "Event Handler", targets=("plugintype", SERVICEENDPOINT)),
        *s.state_and_status(
            STEP,
            [Option(0, "Enabled"), Option(1, "Disabled")],
            [Option(1, "Enabled", state=0), Option(2, "Disabled", state=1)],
        ),
        *s.system_columns(owned=False),
    ]
    return s.table(
        STEP,
        "sdkmessageprocessingsteps",
        ("Sdk Message Processing Step", "Sdk Message Processing Steps"),
        ("sdkmessageprocessingstepid", "name"),
        4608,
        "SdkMessageProcessingStep",
        columns,
        [
            Navigation("sdkmessageid", "sdkmessageid", SDKMESSAGE, "sdkmessages"),
            Navigation(
                "sdkmessagefilterid", "sdkmessagefilterid", SDKMESSAGEFILTER, "sdkmessagefilters"
            ),
            Navigation(
                "eventhandler_serviceendpoint", "eventhandler", SERVICEENDPOINT, "serviceendpoints"
            ),
            Navigation("eventhandler_plugintype", "eventhandler", "plugintype", "plugintypes"),
        ],
    )


def schemas() -> list[s.TableSchema]:
    return [serviceendpoint_schema(), sdkmessage_schema(), sdkmessagefilter_schema(), step_schema()]


# --- seeded system rows ------------------------------------------------------------------------


def message_id(name: str) -> str:
    return s.metadata_id("sdkmessage", name)


def filter_id(message: str, entity: str) -> str:
    return s.metadata_id("sdkmessagefilter", message, entity)


def seed(db: Database, entities: list[str]) -> None:
    """The system rows Dataverse ships: messages, and their filters for `entities`."""
    stamp = now_utc()
    system = {"createdon": stamp, "modifiedon": stamp, "versionnumber": db.next_version()}
    messages = db.table(SDKMESSAGE).store
    for name in MESSAGES:
        messages.put(
            {
                "sdkmessageid": message_id(name),
                "name": name,
                "categoryname": "",
                "isprivate": False,
                **system,
            }
        )
    filters = db.table(SDKMESSAGEFILTER).store
    for entity in entities:
        for name in FILTERED_MESSAGES:
            filters.put(
                {
                    "sdkmessagefilterid": filter_id(name, entity),
                    "name": f"{name} of {entity}",
                    "_sdkmessageid_value": message_id(name),
                    "primaryobjecttypecode": entity,
                    "secondaryobjecttypecode": "none",
                    "iscustomprocessingstepallowed": True,
                    "availability": 0,
                    **system,
                }
            )


# --- write rules -------------------------------------------------------------------------------


def parse_settings(xml: str) -> list[tuple[str, str]]:
    """`<settings><setting name="K" value="V" />…</settings>` → [(K, V), …]."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        raise invalid_argument(
            'The authvalue must be XML like <settings><setting name="x-api-key" value="…" '
            "/></settings>."
        ) from None
    pairs = [(e.get("name") or "", e.get("value") or "") for e in root.iter("setting")]
    if root.tag != "settings" or not pairs or any(not name for name, _ in pairs):
        raise invalid_argument("The authvalue settings must name at least one setting.")
    return pairs


def check_endpoint(db: Database, table: Table, new: Row, old: Row | None) -> None:
    new["isauthvalueset"] = new.get("authvalue") is not None
    if new.get("contract") != CONTRACT_WEBHOOK:
        raise invalid_argument(
            "The sandbox delivers webhooks only: service endpoints need contract 8 (Webhook)."
        )
    url = new.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_argument("A webhook service endpoint needs an absolute http(s) url.")
    authtype = new.get("authtype")
    if authtype not in (AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY_STRING):
        raise invalid_argument(
            "A webhook needs authtype 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString)."
        )
    value = new.get("authvalue")
    if not isinstance(value, str) or not value:
        raise invalid_argument("A webhook needs an authvalue for its authtype.")
    if authtype in (AUTH_HTTP_HEADER, AUTH_HTTP_QUERY_STRING):
        parse_settings(value)
    if new.get("messageformat") is None:
        new["messageformat"] = 2


def check_step(db: Database, table: Table, new: Row, old: Row | None) -> None:
    mode, stage = new.get("mode"), new.get("stage")
    if stage not in CUSTOM_STAGES:
        raise invalid_argument(
            f"Stage {stage} is for internal use; register steps in stage 10, 20 or 40."
        )
    if mode == MODE_ASYNC and stage != STAGE_POST_OPERATION:
        raise invalid_argument(
            "An asynchronous step must be registered in the post-operation stage (40)."
        )
    message = new.get("_sdkmessageid_value")
    if message is None:
        raise invalid_argument("A step needs its message: set sdkmessageid@odata.bind.")
    if new.get("_eventhandler_value") is None:
        raise invalid_argument(
            "A step needs an event handler: set eventhandler_serviceendpoint@odata.bind."
        )
    filter_row = _get(db, SDKMESSAGEFILTER, new.get("_sdkmessagefilterid_value"))
    if filter_row is not None and filter_row.get("_sdkmessageid_value") != message:
        raise invalid_argument("The step's sdkmessagefilter belongs to another message.")
    if filter_row is not None and filter_row.get("iscustomprocessingstepallowed") is False:
        # Messages the entity reference lists as "Event: False" (Upsert of Journeys tables).
        raise invalid_argument(
            "Custom SdkMessageProcessingStep is not allowed on the specified message and "
            f"entity ({filter_row.get('name')}); register the step on Create or Update."
        )
    attributes = new.get("filteringattributes")
    if isinstance(attributes, str) and attributes.strip() and filter_row is not None:
        entity = db.tables.get(str(filter_row.get("primaryobjecttypecode")))
        for name in (a.strip() for a in attributes.split(",")):
            if name and entity is not None and name not in entity.schema.columns:
                raise invalid_argument(
                    f"The filtering attribute '{name}' does not exist on {entity.name}."
                )


def check_endpoint_delete(db: Database, table: Table, row: Row) -> None:
    row_id = row.get("serviceendpointid")
    if any(step.get("_eventhandler_value") == row_id for step in db.table(STEP).store):
        raise DataverseError(
            400,
            CANNOT_DELETE_DUE_TO_ASSOCIATION,
            "The object you tried to delete is associated with another object and cannot be "
            "deleted: sdkmessageprocessingstep rows still use this service endpoint.",
        )


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) else default


def _get(db: Database, table: str, row_id: object) -> Row | None:
    return None if row_id is None else db.table(table).store.get(str(row_id))


# --- steps a write triggers --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    name: str
    url: str
    authtype: int
    authvalue: str


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    name: str
    mode: int
    stage: int
    rank: int
    filtering: frozenset[str]  # empty: every column
    endpoint: Endpoint


def steps_for(db: Database, message: str, entity: str) -> list[Step]:
    """Enabled steps on (message, entity) whose handler is a webhook endpoint, by rank."""
    wanted_message = message_id(message)
    filters = db.table(SDKMESSAGEFILTER).store
    endpoints = db.table(SERVICEENDPOINT).store
    found: list[Step] = []
    for row in db.table(STEP).store:
        if row.get("statecode") != 0 or row.get("_sdkmessageid_value") != wanted_message:
            continue
        filter_row = filters.get(str(row.get("_sdkmessagefilterid_value")))
        if filter_row is None or filter_row.get("primaryobjecttypecode") != entity:
            continue
        endpoint = endpoints.get(str(row.get("_eventhandler_value")))
        if endpoint is None:
            continue
        attributes = str(row.get("filteringattributes") or "")
        numbers = {k: _int(row.get(k), d) for k, d in (("mode", 0), ("stage", 40), ("rank", 1))}
        found.append(
            Step(
                id=str(row["sdkmessageprocessingstepid"]),
                name=str(row.get("name") or ""),
                mode=numbers["mode"],
                stage=numbers["stage"],
                rank=numbers["rank"],
                filtering=frozenset(a.strip() for a in attributes.split(",") if a.strip()),
                endpoint=Endpoint(
                    id=str(endpoint["serviceendpointid"]),
                    name=str(endpoint.get("name") or ""),
                    url=str(endpoint.get("url") or ""),
                    authtype=_int(endpoint.get("authtype"), AUTH_WEBHOOK_KEY),
                    authvalue=str(endpoint.get("authvalue") or ""),
                ),
            )
        )
    found.sort(key=lambda step: (step.rank, step.id))
    return found
