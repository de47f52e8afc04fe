"""Parsing of the `RemoteExecutionContext` JSON that Dataverse webhooks POST: key/value arrays,
WCF `__type` hints (OptionSetValue, OptionSetValueCollection, EntityReference, Money) and
`/Date(ms)/` dates, reduced to the changed columns of the contact."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

DATE_RE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


class ContextError(ValueError):
    """The body is not a RemoteExecutionContext we can use; `path` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class ContactChange:
    message: str  # Create | Update | Delete
    contact_id: str
    initiating_user_id: str
    user_id: str
    operation_id: str
    request_id: str | None
    changed: dict[str, Any]  # column → Web API-style value (bool, int, "1,3", str, ISO date)
    modified_on: dt.datetime | None
    correlation_id: str | None
    depth: int
    # Attributes of the post-operation images (registered ones, or the primary-name image an
    # async step always gets), as Web API values; they name the contact when the Target doesn't.
    post_image: dict[str, Any] = field(default_factory=dict)


def parse_date(value: str) -> dt.datetime | None:
    match = DATE_RE.match(value.replace("\\/", "/"))
    if not match:
        return None
    return dt.datetime.fromtimestamp(int(match.group(1)) / 1000, tz=dt.UTC)


def plain_value(value: Any) -> Any:
    """A context value as the Web API would show it."""
    if isinstance(value, str):
        date = parse_date(value)
        return date.isoformat().replace("+00:00", "Z") if date else value
    if isinstance(value, dict):
        kind = str(value.get("__type", "")).split(":")[0]
        if kind == "OptionSetValue":
            return value.get("Value")
        if kind == "Money":
            return value.get("Value")
        if kind == "EntityReference":
            return value.get("Id")
        if kind == "OptionSetValueCollection":
            items = value.get("Values") or value.get("value") or []
            return ",".join(str(plain_value(i)) for i in items) if items else None
        if "Value" in value and len(value) <= 2:
            return value["Value"]
    if isinstance(value, list):
        ints = [plain_value(v) for v in value]
        return ",".join(str(i) for i in ints) if ints else None
    return value


def key_values(items: Any, path: str) -> dict[str, Any]:
    if not isinstance(items, list):
        raise ContextError(path, f"Field '{path}' must be a list of key/value pairs.")
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = item.get("value")
    return out


def parse_context(body: Any) -> ContactChange:
    if not isinstance(body, dict):
        raise ContextError("body", "The body must be a RemoteExecutionContext JSON object.")
    message = body.get("MessageName")
    if not isinstance(message, str):
        raise ContextError("MessageName", "Field 'MessageName' is required.")
    entity_id = body.get("PrimaryEntityId")
    if not isinstance(entity_id, str):
        raise ContextError("PrimaryEntityId", "Field 'PrimaryEntityId' is required.")
    inputs = key_values(body.get("InputParameters", []), "InputParameters")
    target = inputs.get("Target")
    changed: dict[str, Any] = {}
    if isinstance(target, dict):
        changed = {
            k: plain_value(v)
            for k, v in key_values(
                target.get("Attributes", []), "InputParameters.Target.Attributes"
            ).items()
        }
    post_image: dict[str, Any] = {}
    for image in key_values(body.get("PostEntityImages", []), "PostEntityImages").values():
        if isinstance(image, dict):
            attributes = key_values(image.get("Attributes", []), "PostEntityImages.Attributes")
            post_image.update({k: plain_value(v) for k, v in attributes.items()})
    modified = changed.get("modifiedon") or post_image.get("modifiedon")
    operation = body.get("OperationId")
    return ContactChange(
        message=message,
        contact_id=entity_id.lower(),
        initiating_user_id=str(body.get("InitiatingUserId") or "").lower(),
        user_id=str(body.get("UserId") or "").lower(),
        # Empty when the context names no operation: a contact id is no dedupe key (it would
        # make every later change of the contact a "duplicate").
        operation_id=str(operation or body.get("RequestId") or ""),
        request_id=body.get("RequestId") if isinstance(body.get("RequestId"), str) else None,
        changed=changed,
        modified_on=(
            dt.datetime.fromisoformat(modified.replace("Z", "+00:00"))
            if isinstance(modified, str) and modified.endswith("Z")
            else None
        ),
        correlation_id=body.get("CorrelationId")
        if isinstance(body.get("CorrelationId"), str)
        else None,
        depth=int(body.get("Depth") or 1),
        post_image=post_image,
    )
