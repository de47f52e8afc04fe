"""Parsing of the `RemoteExecutionContext` JSON that Dataverse webhooks POST: key/value arrays,
WCF `__type` hints (OptionSetValue, OptionSetValueCollection, EntityReference, Money) and
`/Date(ms±hhmm)/` dates, reduced to the changed columns of the contact, its pre/post images and
what a nested `ParentContext` adds.

Read liberally: members it has no use for (SharedVariables, FormattedValues, OwningExtension,
InitiatingUserAgent, members added later) are ignored; key/value pairs are read in either case;
a `ParentContext` only fills the user and correlation ids the context itself leaves out, and
one it cannot use is ignored; an all-zero `OperationId` counts as none.

Whatever the body holds, parsing either returns a `ContactChange` or raises `ContextError`
naming the field (the webhook route answers it as a 4xx); a value of the wrong type, a date
out of range or a malformed typed value never escapes as another exception. Values without a
type hint Dataverse would send (an unknown `__type`, a plain object) are kept as they are:
only mapped columns are used, and the mapping reports values it cannot carry.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

DATE_RE = re.compile(r"^/Date\((-?\d{1,20})([+-]\d{4})?\)/$")
TARGET_ATTRIBUTES = "InputParameters.Target.Attributes"
IMAGE_ATTRIBUTES = "PostEntityImages.Attributes"
PRE_IMAGE_ATTRIBUTES = "PreEntityImages.Attributes"
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
# ParentContext nesting read at most (Dataverse stops a chain at depth 8).
MAX_PARENTS = 8


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
    # Attributes of the pre-operation images (registered on the step): the row before the change.
    pre_image: dict[str, Any] = field(default_factory=dict)
    # The table of the row (`PrimaryEntityName`): `contact`, or a Journeys consent row
    # (`msdynmkt_contactpointconsent4`); `contact_id` is then that row's id.
    entity: str = "contact"


def parse_date(value: str, path: str = "value") -> dt.datetime | None:
    """`/Date(ms)/` (or its `\\/`-escaped form) → an aware UTC datetime; None for any other
    string; `ContextError` for a `/Date(…)/` out of the representable range."""
    match = DATE_RE.match(value.replace("\\/", "/"))
    if not match:
        return None
    try:
        return dt.datetime.fromtimestamp(int(match.group(1)) / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise ContextError(
            path, f"Field '{path}' holds a date out of range ({_shown(value)})."
        ) from None


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _option_value(item: object, path: str) -> int:
    """One choice of a multi-select: an OptionSetValue object or a bare integer."""
    value = item.get("Value") if isinstance(item, dict) else item
    if not _is_int(value):
        raise ContextError(
            path, f"Field '{path}' must hold OptionSetValue choices; got {_shown(item)}."
        )
    assert isinstance(value, int)
    return value


def _option_list(items: object, path: str) -> str | None:
    if not isinstance(items, list):
        raise ContextError(
            path, f"Field '{path}' must hold a list of OptionSetValue; got {_shown(items)}."
        )
    values = [_option_value(item, path) for item in items]
    return ",".join(str(v) for v in values) if values else None


def plain_value(value: Any, path: str = "value") -> Any:
    """A context value as the Web API would show it; `ContextError` (naming `path`) when a
    typed value is malformed."""
    if isinstance(value, str):
        date = parse_date(value, path)
        return date.isoformat().replace("+00:00", "Z") if date else value
    if isinstance(value, dict):
        kind = str(value.get("__type", "")).split(":")[0]
        if kind == "OptionSetValue":
            inner = value.get("Value")
            if inner is not None and not _is_int(inner):
                raise ContextError(
                    path, f"Field '{path}' is an OptionSetValue whose Value is not an integer."
                )
            return inner
        if kind == "Money":
            inner = value.get("Value")
            if inner is not None and (
                isinstance(inner, bool) or not isinstance(inner, int | float)
            ):
                raise ContextError(path, f"Field '{path}' is Money whose Value is not a number.")
            return inner
        if kind == "EntityReference":
            inner = value.get("Id")
            if inner is not None and not isinstance(inner, str):
                raise ContextError(
                    path, f"Field '{path}' is an EntityReference whose Id is not a string."
                )
            return inner
        if kind == "OptionSetValueCollection":
            items = value.get("Values", value.get("value"))
            return None if items is None else _option_list(items, path)
        if "Value" in value and len(value) <= 2:
            return plain_value(value["Value"], path)
    if isinstance(value, list):
        if value and all(_is_entity(item) for item in value):
            return value  # an entity collection (a party list): no column we map
        return _option_list(value, path)
    return value


def _is_entity(item: object) -> bool:
    return isinstance(item, dict) and (
        str(item.get("__type", "")).startswith("Entity:") or "Attributes" in item
    )


def key_values(items: Any, path: str) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ContextError(path, f"Field '{path}' must be a list of key/value pairs.")
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        # DataContractJsonSerializer writes "key"/"value"; other serializers "Key"/"Value".
        key = item["key"] if "key" in item else item.get("Key")
        if isinstance(key, str):
            out[key] = item["value"] if "value" in item else item.get("Value")
    return out


def _images(body: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    """The attributes of every image under `name`, merged in order."""
    merged: dict[str, Any] = {}
    for image in key_values(body.get(name), name).values():
        merged.update(_attributes(image, path))
    return merged


def _attributes(holder: object, path: str) -> dict[str, Any]:
    """The `Attributes` of an entity (Target or image) as Web API values."""
    if not isinstance(holder, dict):
        return {}
    return {
        key: plain_value(value, f"{path}.{key}")
        for key, value in key_values(holder.get("Attributes"), path).items()
    }


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ContextError(name, f"Field '{name}' must be a string; got {_shown(value)}.")
    return value


def _guid(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ContextError(name, f"Field '{name}' is required.")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ContextError(name, f"Field '{name}' must be a GUID; got {_shown(value)}.") from None


def _depth(value: object) -> int:
    if value is None:
        return 1
    if not _is_int(value):
        raise ContextError("Depth", f"Field 'Depth' must be an integer; got {_shown(value)}.")
    assert isinstance(value, int)
    if value < 0:
        raise ContextError("Depth", f"Field 'Depth' must not be negative; got {value}.")
    return value or 1


def _modified_on(value: object, path: str) -> dt.datetime | None:
    """`modifiedon` after `plain_value`: an ISO 8601 string (a `/Date(…)/` became one)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    raise ContextError(
        path,
        f"Field '{path}' must be a date such as /Date(1735689600000)/; got {_shown(value)}.",
    )


def _parents(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chain of ParentContext objects, nearest first (anything else ends the chain)."""
    chain: list[dict[str, Any]] = []
    parent = body.get("ParentContext")
    while isinstance(parent, dict) and len(chain) < MAX_PARENTS:
        chain.append(parent)
        parent = parent.get("ParentContext")
    return chain


def _inherited(body: dict[str, Any], parents: list[dict[str, Any]], name: str) -> str | None:
    """A string member of the context, else of the nearest parent that has a usable one."""
    own = _optional_string(body, name)
    if own:
        return own
    for parent in parents:
        value = parent.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return own


def _operation_id(value: str | None) -> str | None:
    return None if value is None or value.strip() in ("", ZERO_GUID) else value


def parse_context(body: Any) -> ContactChange:
    if not isinstance(body, dict):
        raise ContextError("body", "The body must be a RemoteExecutionContext JSON object.")
    message = body.get("MessageName")
    if not isinstance(message, str) or not message:
        raise ContextError("MessageName", "Field 'MessageName' is required.")
    entity_id = _guid(body.get("PrimaryEntityId"), "PrimaryEntityId")
    target = key_values(body.get("InputParameters"), "InputParameters").get("Target")
    changed = _attributes(target, TARGET_ATTRIBUTES)
    post_image = _images(body, "PostEntityImages", IMAGE_ATTRIBUTES)
    pre_image = _images(body, "PreEntityImages", PRE_IMAGE_ATTRIBUTES)
    parents = _parents(body)
    if changed.get("modifiedon") is not None:
        modified_on = _modified_on(changed["modifiedon"], f"{TARGET_ATTRIBUTES}.modifiedon")
    else:
        modified_on = _modified_on(post_image.get("modifiedon"), f"{IMAGE_ATTRIBUTES}.modifiedon")
    operation = _operation_id(_optional_string(body, "OperationId"))
    request_id = _operation_id(_optional_string(body, "RequestId"))
    return ContactChange(
        message=message,
        contact_id=entity_id,
        initiating_user_id=(_inherited(body, parents, "InitiatingUserId") or "").lower(),
        user_id=(_inherited(body, parents, "UserId") or "").lower(),
        # Empty when the context names no operation: a contact id is no dedupe key (it would
        # make every later change of the contact a "duplicate").
        operation_id=operation or request_id or "",
        request_id=request_id,
        changed=changed,
        modified_on=modified_on,
        correlation_id=_inherited(body, parents, "CorrelationId"),
        depth=_depth(body.get("Depth")),
        post_image=post_image,
        pre_image=pre_image,
        entity=_entity_name(body, target),
    )


def _entity_name(body: dict[str, Any], target: object) -> str:
    """`PrimaryEntityName`, else the Target's `LogicalName`, else `contact` (the table the
    first steps were registered on)."""
    named = target.get("LogicalName") if isinstance(target, dict) else None
    for value in (body.get("PrimaryEntityName"), named):
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return "contact"
