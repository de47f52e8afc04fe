"""The Dataverse side of the bidirectional flow: the webhook `serviceendpoint` and the async
post-operation `sdkmessageprocessingsteps` (Create and Update of `contact`, and of the Journeys
consent rows `msdynmkt_contactpointconsent4` when the mapping has any) that make Dataverse POST
changes to ConsentBridge.

Rows are found by name (`consentbridge:{integration}`, `consentbridge:{integration}:{message}`
for contact steps, `consentbridge:{integration}:{table}:{message}` for another table's) so that
enabling twice converges on one endpoint and one step per (table, message) instead of creating
copies; `ensure_registration` creates what is missing, corrects what drifted (URL, secret,
filter, a disabled step), removes duplicates under our names, and says what it did. What it
created in a run that then fails is deleted again, so a refusal never leaves half a
registration behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

import httpx

from consentbridge.dataverse.client import DataverseClient, odata_string
from consentbridge.dataverse.errors import DataverseError, NotFoundError

CONTRACT_WEBHOOK = 8
AUTHTYPE_HTTP_HEADER = 5
MESSAGEFORMAT_JSON = 2
MODE_ASYNC = 1
STAGE_POST_OPERATION = 40
STATE_ENABLED = 0
STATE_DISABLED = 1
STATUS_ENABLED = 1
AUTH_HEADER = "x-consentbridge-key"
ENTITY = "contact"
CONSENT_ENTITY = "msdynmkt_contactpointconsent4"
MESSAGES = ("Create", "Update")
NAME_PREFIX = "consentbridge"
# Only Update honours filteringattributes; a Create carries every column it sets.
FILTERED_MESSAGE = "Update"
# Tables other than contact a registration may watch (their step names carry the table).
WATCHABLE = (CONSENT_ENTITY,)


def step_key(entity: str, message: str) -> str:
    """The key of a step in a registration record: the message for contact (the shape of
    records made before other tables could be watched), `{table}:{message}` otherwise."""
    return message if entity == ENTITY else f"{entity}:{message}"


ALL_STEP_KEYS = tuple(step_key(e, m) for e in (ENTITY, *WATCHABLE) for m in MESSAGES)


def endpoint_name(integration_id: str) -> str:
    return f"{NAME_PREFIX}:{integration_id}"


def step_name(integration_id: str, key: str) -> str:
    """`consentbridge:{integration}:{key}` (``key``: a message, or `{table}:{message}`)."""
    return f"{endpoint_name(integration_id)}:{key}"


def normalize_attributes(attributes: str | Iterable[str] | None) -> str:
    """A canonical `filteringattributes` value: lower case, unique, sorted, comma-separated."""
    if attributes is None:
        return ""
    items = attributes.split(",") if isinstance(attributes, str) else attributes
    return ",".join(sorted({a.strip().lower() for a in items if a.strip()}))


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step a registration needs: a message on a table, and (Update) its filter."""

    entity: str
    message: str
    filtering_attributes: str = ""

    @property
    def key(self) -> str:
        return step_key(self.entity, self.message)


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    """What one integration's registration must look like: contact steps filtered on
    ``filtering_attributes``, and steps on each table of ``watched`` (table → Update filter)."""

    integration_id: str
    url: str
    secret: str
    filtering_attributes: str
    watched: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return endpoint_name(self.integration_id)

    @property
    def steps(self) -> list[StepSpec]:
        tables = [(ENTITY, self.filtering_attributes), *self.watched]
        return [
            StepSpec(entity, message, columns if message == FILTERED_MESSAGE else "")
            for entity, columns in tables
            for message in MESSAGES
        ]

    @property
    def auth_value(self) -> str:
        """The HttpHeader settings XML: Dataverse sends the header with every delivery."""
        return (
            f"<settings><setting name={quoteattr(AUTH_HEADER)} "
            f"value={quoteattr(self.secret)} /></settings>"
        )


@dataclass(frozen=True, slots=True)
class EndpointRow:
    id: str
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class StepRow:
    id: str
    name: str
    filtering_attributes: str
    statecode: int
    handler_id: str | None

    @property
    def message(self) -> str:
        return self.name.rsplit(":", 1)[-1]

    def key(self, integration_id: str) -> str:
        """The step key its name carries (``step_key``)."""
        return self.name.removeprefix(f"{endpoint_name(integration_id)}:")


@dataclass(frozen=True, slots=True)
class Found:
    """The rows carrying this integration's names in Dataverse."""

    integration_id: str
    endpoints: list[EndpointRow]
    steps: list[StepRow]

    def steps_for(self, key: str) -> list[StepRow]:
        """The steps named for ``key`` (a message of contact, or `{table}:{message}`)."""
        return [s for s in self.steps if s.key(self.integration_id) == key]


@dataclass
class Ensured:
    endpoint_id: str
    step_ids: dict[str, str]
    actions: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _guid(value: Any) -> str:
    return str(value or "").strip("{}").lower()


def entity_id(response: httpx.Response) -> str:
    """The id of a row just created: from `OData-EntityId`, else from a representation."""
    header = response.headers.get("OData-EntityId") or response.headers.get("Location") or ""
    if "(" in header and header.endswith(")"):
        return _guid(header[header.rindex("(") + 1 : -1])
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key, value in body.items():
            if key.endswith("id") and not key.startswith("_") and isinstance(value, str):
                return _guid(value)
    raise DataverseError("Dataverse created a row but did not say its id (no OData-EntityId).")


async def find_registration(client: DataverseClient, integration_id: str) -> Found:
    """Every endpoint and step named for this integration."""
    name = endpoint_name(integration_id)
    endpoints = await client.query_all(
        "serviceendpoints",
        params={
            "$select": "serviceendpointid,name,url",
            "$filter": f"name eq {odata_string(name)}",
        },
        what="the webhook service endpoint lookup",
    )
    steps = await client.query_all(
        "sdkmessageprocessingsteps",
        params={
            "$select": "sdkmessageprocessingstepid,name,filteringattributes,statecode,"
            "_eventhandler_value",
            "$filter": " or ".join(
                f"name eq {odata_string(step_name(integration_id, k))}" for k in ALL_STEP_KEYS
            ),
        },
        what="the webhook step lookup",
    )
    return Found(
        integration_id=integration_id,
        endpoints=[
            EndpointRow(_guid(r.get("serviceendpointid")), str(r.get("name")), str(r.get("url")))
            for r in endpoints
        ],
        steps=[
            StepRow(
                id=_guid(r.get("sdkmessageprocessingstepid")),
                name=str(r.get("name")),
                filtering_attributes=normalize_attributes(r.get("filteringattributes")),
                statecode=int(r.get("statecode") or 0),
                handler_id=_guid(r["_eventhandler_value"])
                if r.get("_eventhandler_value")
                else None,
            )
            for r in steps
        ],
    )


async def message_filters(
    client: DataverseClient, entity: str = ENTITY
) -> dict[str, tuple[str, str]]:
    """Message name → (sdkmessageid, sdkmessagefilterid of ``entity``, a table's logical name)
    for Create and Update."""
    messages = await client.query_all(
        "sdkmessages",
        params={
            "$select": "sdkmessageid,name",
            "$filter": " or ".join(f"name eq {odata_string(m)}" for m in MESSAGES),
        },
        what="the sdkmessages lookup",
    )
    ids = {str(r.get("name")): _guid(r.get("sdkmessageid")) for r in messages}
    out: dict[str, tuple[str, str]] = {}
    for message in MESSAGES:
        if message not in ids:
            raise DataverseError(f"Dataverse has no sdkmessage named {message!r}.")
        filters = await client.query_all(
            "sdkmessagefilters",
            params={
                "$select": "sdkmessagefilterid",
                "$filter": f"primaryobjecttypecode eq {odata_string(entity)} and "
                f"sdkmessageid/name eq {odata_string(message)}",
            },
            what=f"the {message} message filter of {entity}",
        )
        if not filters:
            raise DataverseError(f"Dataverse has no {message} message filter for {entity}.")
        out[message] = (ids[message], _guid(filters[0].get("sdkmessagefilterid")))
    return out


def _endpoint_body(spec: WebhookSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "contract": CONTRACT_WEBHOOK,
        "url": spec.url,
        "authtype": AUTHTYPE_HTTP_HEADER,
        "authvalue": spec.auth_value,
        "messageformat": MESSAGEFORMAT_JSON,
    }


def _step_body(
    spec: WebhookSpec, step: StepSpec, ids: tuple[str, str], endpoint_id: str
) -> dict[str, Any]:
    message_id, filter_id = ids
    body: dict[str, Any] = {
        "name": step_name(spec.integration_id, step.key),
        "mode": MODE_ASYNC,
        "stage": STAGE_POST_OPERATION,
        "rank": 1,
        "supporteddeployment": 0,
        "asyncautodelete": True,
        "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
    }
    if step.message == FILTERED_MESSAGE:
        body["filteringattributes"] = step.filtering_attributes
    return body


async def _create(client: DataverseClient, entity_set: str, body: dict[str, Any]) -> str:
    response = await client.send(
        "POST", entity_set, what=f"the creation of {body['name']}", json=body
    )
    return entity_id(response)


async def _patch(client: DataverseClient, path: str, body: dict[str, Any], what: str) -> None:
    await client.send("PATCH", path, what=what, json=body, headers={"If-Match": "*"})


async def delete_row(client: DataverseClient, entity_set: str, row_id: str, what: str) -> bool:
    """Delete one row; False when it was already gone."""
    try:
        await client.send("DELETE", f"{entity_set}({row_id})", what=f"the deletion of {what}")
    except NotFoundError:
        return False
    return True


class _Run:
    """One `ensure_registration` call: what it did, and what to undo if it fails."""

    def __init__(self, client: DataverseClient, spec: WebhookSpec) -> None:
        self.client = client
        self.spec = spec
        self.created: list[tuple[str, str, str]] = []  # (entity set, id, what), in order
        self.actions: list[str] = []

    async def endpoint(
        self, found: Found, recorded_id: str | None, secret_current: bool
    ) -> tuple[str, list[str]]:
        """The endpoint to use, and ids of endpoints under our name to remove afterwards."""
        name = self.spec.name
        endpoints = sorted(found.endpoints, key=lambda e: (e.id != recorded_id, e.id))
        if not endpoints:
            endpoint_id = await _create(self.client, "serviceendpoints", _endpoint_body(self.spec))
            self.created.append(("serviceendpoints", endpoint_id, f"service endpoint {name}"))
            self.actions.append(f"created the webhook service endpoint {name}")
            return endpoint_id, []
        keep = endpoints[0]
        patch: dict[str, Any] = {}
        if keep.url != self.spec.url:
            patch["url"] = self.spec.url
            self.actions.append(f"changed the URL of {name} to {self.spec.url}")
        if not secret_current or keep.id != recorded_id:
            # authvalue is write-only: unless this is the endpoint we set it on, set it again.
            patch.update(authtype=AUTHTYPE_HTTP_HEADER, authvalue=self.spec.auth_value)
            self.actions.append(f"set the webhook key of {name}")
        if patch:
            await _patch(
                self.client, f"serviceendpoints({keep.id})", patch, f"the update of {name}"
            )
        return keep.id, [e.id for e in endpoints[1:]]

    async def step(
        self,
        spec: StepSpec,
        steps: Sequence[StepRow],
        endpoint_id: str,
        filters: dict[str, tuple[str, str]] | None,
    ) -> tuple[str, list[str]]:
        name = step_name(self.spec.integration_id, spec.key)
        message = spec.message
        pointed = sorted(steps, key=lambda s: (s.handler_id not in (None, endpoint_id), s.id))
        if not pointed:
            assert filters is not None
            body = _step_body(self.spec, spec, filters[message], endpoint_id)
            step_id = await _create(self.client, "sdkmessageprocessingsteps", body)
            self.created.append(("sdkmessageprocessingsteps", step_id, f"step {name}"))
            self.actions.append(f"created the async step {name}")
            return step_id, []
        keep = pointed[0]
        patch: dict[str, Any] = {}
        wanted = spec.filtering_attributes
        if message == FILTERED_MESSAGE and keep.filtering_attributes != wanted:
            patch["filteringattributes"] = wanted
            self.actions.append(f"set the filtering attributes of {name} to {wanted}")
        if keep.statecode != STATE_ENABLED:
            patch.update(statecode=STATE_ENABLED, statuscode=STATUS_ENABLED)
            self.actions.append(f"re-enabled the disabled step {name}")
        if keep.handler_id not in (None, endpoint_id):
            patch["eventhandler_serviceendpoint@odata.bind"] = f"/serviceendpoints({endpoint_id})"
            self.actions.append(f"pointed {name} at the webhook endpoint")
        if patch:
            await _patch(
                self.client, f"sdkmessageprocessingsteps({keep.id})", patch, f"the update of {name}"
            )
        return keep.id, [s.id for s in pointed[1:]]

    async def undo(self) -> None:
        for entity_set, row_id, what in reversed(self.created):
            # The original failure is the one to report.
            with contextlib.suppress(DataverseError):
                await delete_row(self.client, entity_set, row_id, what)


async def ensure_registration(
    client: DataverseClient,
    spec: WebhookSpec,
    *,
    recorded_endpoint_id: str | None = None,
    secret_current: bool = False,
) -> Ensured:
    """Make Dataverse hold exactly one endpoint and one step per (table, message), as `spec`
    says; steps of a table the spec no longer watches are removed.

    `secret_current` says that the recorded endpoint already carries `spec.secret` (Dataverse
    never returns `authvalue`, so this cannot be read back).
    """
    run = _Run(client, spec)
    wanted = spec.steps
    try:
        found = await find_registration(client, spec.integration_id)
        endpoint_id, extra_endpoints = await run.endpoint(
            found, recorded_endpoint_id, secret_current
        )
        filters: dict[str, dict[str, tuple[str, str]]] = {}
        for entity in dict.fromkeys(s.entity for s in wanted if not found.steps_for(s.key)):
            filters[entity] = await message_filters(client, entity)
        step_ids: dict[str, str] = {}
        extra_steps: list[str] = []
        for step in wanted:
            step_ids[step.key], extra = await run.step(
                step, found.steps_for(step.key), endpoint_id, filters.get(step.entity)
            )
            extra_steps += extra
    except Exception:
        await run.undo()
        raise
    # Copies under our names (an earlier enable whose record was lost): steps first, since
    # Dataverse refuses to delete an endpoint that steps still use.
    for step_id in extra_steps:
        await delete_row(client, "sdkmessageprocessingsteps", step_id, "a duplicate step")
        run.actions.append(f"removed a duplicate step {step_id}")
    # Steps of a table the mapping no longer needs (its consent rows were removed).
    keys = {s.key for s in wanted}
    for row in found.steps:
        if row.key(spec.integration_id) not in keys:
            await delete_row(client, "sdkmessageprocessingsteps", row.id, "an unneeded step")
            run.actions.append(f"removed the step {row.name}, which the mapping no longer needs")
    for extra_id in extra_endpoints:
        await delete_row(client, "serviceendpoints", extra_id, "a duplicate endpoint")
        run.actions.append(f"removed a duplicate service endpoint {extra_id}")
    return Ensured(endpoint_id, step_ids, run.actions)


async def remove_registration(
    client: DataverseClient, step_ids: Iterable[str], endpoint_id: str | None
) -> list[str]:
    """Delete the given steps, then the endpoint; rows already gone are reported, not errors."""
    actions: list[str] = []
    for step_id in step_ids:
        gone = not await delete_row(client, "sdkmessageprocessingsteps", step_id, "a step")
        actions.append(f"step {step_id} " + ("was already gone" if gone else "deleted"))
    if endpoint_id:
        gone = not await delete_row(client, "serviceendpoints", endpoint_id, "the endpoint")
        actions.append(
            f"service endpoint {endpoint_id} " + ("was already gone" if gone else "deleted")
        )
    return actions
