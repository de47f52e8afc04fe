"""The `RemoteExecutionContext` a webhook receives, serialized as Dataverse's WCF JSON does
(MS Learn use-webhooks and its example): key/value arrays instead of objects, `__type` hints on
values typed `object` (`Entity:`, `EntityReference:`, `OptionSetValue:`), multi-select choices as
a list of OptionSetValue, and dates as `"\\/Date(<ms>)\\/"`.

The Target holds the columns the write set plus the primary key, `modifiedon`, `modifiedby`
and `modifiedonbehalfby` (null); a Create's Target also holds every default the request left
out (Dataverse adds them before the steps run, and a model-driven form posts them all anyway),
`createdon`, `createdby`, `createdonbehalfby`, `ownerid` and `owningbusinessunit`. Every step
gets a `ParentContext`: the main operation (stage 30, synchronous) whose Target is what the
request posted. `InitiatingUserAgent` is the request's User-Agent. An async step also gets the
`AsynchronousStepPrimaryName` post image.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.registration import MODE_ASYNC, Step
from consentbridge.sandbox.dataverse.transaction import WriteEvent
from consentbridge.sandbox.dataverse.values import parse_datetime

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ENTITY_TYPE = f"Entity:{CONTRACTS}"
REFERENCE_TYPE = f"EntityReference:{CONTRACTS}"
OPTION_TYPE = f"OptionSetValue:{CONTRACTS}"
MAX_BODY_BYTES = 256 * 1024
ZERO_GUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    business_unit_id: str


def wcf_date(moment: datetime, offset: bool = False) -> str:
    ms = int(moment.timestamp() * 1000)
    return f"/Date({ms}{'+0000' if offset else ''})/"


def reference(logical_name: str, row_id: str, name: str | None = None) -> dict[str, Any]:
    return {
        "__type": REFERENCE_TYPE,
        "Id": row_id,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": name,
        "RowVersion": None,
    }


def _option(value: int) -> dict[str, Any]:
    return {"__type": OPTION_TYPE, "Value": value}


def attribute_value(column: s.Column, value: object) -> object:
    """A stored value as the context carries it."""
    if value is None:
        return None
    kind = column.type
    if kind in (s.PICKLIST, s.STATE, s.STATUS) and isinstance(value, int):
        return _option(value)
    if kind == s.MULTI_SELECT and isinstance(value, str):
        return [_option(int(v)) for v in value.split(",") if v]
    if kind == s.DATETIME and isinstance(value, str):
        moment = parse_datetime(value)
        return wcf_date(moment) if moment else value
    if kind in s.LOOKUP_TYPES:
        return reference(column.targets[0] if column.targets else "", str(value))
    return value


def _entity(
    schema: s.TableSchema, row_id: str, attributes: list[dict[str, Any]], typed: bool
) -> dict[str, Any]:
    entity: dict[str, Any] = {"__type": ENTITY_TYPE} if typed else {}
    entity.update(
        {
            "Attributes": attributes,
            "EntityState": None,
            "FormattedValues": [],
            "Id": row_id,
            "KeyAttributes": [],
            "LogicalName": schema.logical_name,
            "RelatedEntities": [],
            "RowVersion": None,
        }
    )
    return entity


def _posted(schema: s.TableSchema, event: WriteEvent) -> dict[str, object]:
    """The columns the request set, as the context carries them."""
    out: dict[str, object] = {}
    for name, value in event.columns.items():
        column = schema.by_property.get(name)
        if column is not None:
            out[column.logical_name] = attribute_value(column, value)
    return out


def _target_attributes(
    schema: s.TableSchema, event: WriteEvent, organization: Organization
) -> list[dict[str, Any]]:
    row = event.row or {}
    created = event.message == "Create"
    out: dict[str, object] = {}
    if created:  # the defaults Dataverse filled in (SharedVariables "DefaultsAddedFlag")
        for default in schema.columns.values():
            if default.default is not None and default.logical_name != schema.primary_id:
                out[default.logical_name] = attribute_value(default, row.get(default.property_name))
    out.update(_posted(schema, event))
    system = ("createdon", "createdby", "ownerid") if created else ()
    for logical in (schema.primary_id, *system, "modifiedon", "modifiedby"):
        column = schema.columns.get(logical)
        if column is not None:
            out[logical] = attribute_value(column, row.get(column.property_name))
    if created and "ownerid" in schema.columns:
        out["owningbusinessunit"] = reference("businessunit", organization.business_unit_id)
        out["createdonbehalfby"] = None
    out["modifiedonbehalfby"] = None
    return [{"key": key, "value": value} for key, value in out.items()]


def _parent(base: dict[str, Any], schema: s.TableSchema, event: WriteEvent) -> dict[str, Any]:
    """The main operation (stage 30) a step runs in or was queued from: its Target is what the
    request posted."""
    posted = {**_posted(schema, event), schema.primary_id: event.row_id}
    if event.message == "Delete":
        target: dict[str, Any] = reference(schema.logical_name, event.row_id)
    else:
        attributes = [{"key": key, "value": value} for key, value in posted.items()]
        target = _entity(schema, event.row_id, attributes, typed=True)
    parent = dict(base)
    parent.update(
        {
            "InputParameters": [
                {"key": "Target", "value": target},
                {"key": "SuppressDuplicateDetection", "value": False},
            ],
            "IsInTransaction": True,
            "IsolationMode": 1,
            "Mode": 0,
            "OperationId": ZERO_GUID,
            "OwningExtension": {**reference("sdkmessageprocessingstep", ZERO_GUID)},
            "ParentContext": None,
            "PostEntityImages": [],
            "Stage": 30,
        }
    )
    del parent["OwningExtension"]["__type"]
    return parent


def build(
    event: WriteEvent,
    step: Step,
    schema: s.TableSchema,
    organization: Organization,
    operation_id: str,
) -> dict[str, Any]:
    caller = event.origin.caller
    now = datetime.now(UTC)
    if event.message == "Delete":
        target: dict[str, Any] = reference(schema.logical_name, event.row_id)
    else:
        target = _entity(
            schema, event.row_id, _target_attributes(schema, event, organization), typed=True
        )
    outputs = [{"key": "id", "value": event.row_id}] if event.message == "Create" else []
    post_images: list[dict[str, Any]] = []
    if step.mode == MODE_ASYNC and event.row is not None:
        primary_name = schema.primary_name
        attributes: list[dict[str, Any]] = [
            {"key": primary_name, "value": event.row.get(primary_name)},
            {"key": schema.primary_id, "value": event.row_id},
        ]
        post_images.append(
            {
                "key": "AsynchronousStepPrimaryName",
                "value": _entity(schema, event.row_id, attributes, typed=False),
            }
        )
    base: dict[str, Any] = {
        "BusinessUnitId": organization.business_unit_id,
        "CorrelationId": event.origin.correlation_id,
        "Depth": 1,
        "InitiatingUserAgent": event.origin.user_agent,
        "InitiatingUserAzureActiveDirectoryObjectId": caller.app.object_id,
        "InitiatingUserId": caller.systemuserid,
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False,
        "IsInTransaction": step.mode != MODE_ASYNC,
        "IsOfflinePlayback": False,
        "IsolationMode": 1 if step.mode == MODE_ASYNC else 2,
        "MessageName": event.message,
        "Mode": step.mode,
        "OperationCreatedOn": wcf_date(now, offset=True),
        "OperationId": operation_id,
        "OrganizationId": organization.id,
        "OrganizationName": organization.name,
        "OutputParameters": outputs,
        "OwningExtension": {**reference("sdkmessageprocessingstep", step.id, step.name)},
        "ParentContext": None,
        "PostEntityImages": post_images,
        "PreEntityImages": [],
        "PrimaryEntityId": event.row_id,
        "PrimaryEntityName": schema.logical_name,
        "RequestId": event.origin.request_id,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": step.stage,
        "UserAzureActiveDirectoryObjectId": caller.app.object_id,
        "UserId": caller.systemuserid,
    }
    del base["OwningExtension"]["__type"]
    base["ParentContext"] = _parent(base, schema, event)
    return base


def encode(context: dict[str, Any]) -> tuple[bytes, bool]:
    """The JSON body, and whether it was cut down for exceeding 256 KB (Dataverse then drops
    ParentContext, InputParameters and the images, keeping PrimaryEntityId)."""
    body = _dumps(context)
    if len(body) <= MAX_BODY_BYTES:
        return body, False
    trimmed = dict(context)
    trimmed.update(
        {
            "ParentContext": None,
            "InputParameters": [],
            "PreEntityImages": [],
            "PostEntityImages": [],
        }
    )
    return _dumps(trimmed), True


def _dumps(context: dict[str, Any]) -> bytes:
    text = json.dumps(context, ensure_ascii=False, separators=(",", ":"))
    # WCF writes "/" inside dates as "\/" ("\/" is a plain "/" to any JSON reader).
    return text.replace('"/Date(', '"\\/Date(').replace(')/"', ')\\/"').encode()


def new_operation_id() -> str:
    return str(uuid.uuid4())
