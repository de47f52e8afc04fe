"""Turning a raw document into an ``Integration``, or into every problem it has, by JSON path.

Three sources of issues are merged so that a bad document is refused whole with all of them:
pydantic's per-field errors (translated here into one-sentence messages), rules spanning several
fields (checked on the raw data, so they run even when other fields are broken), and a
``PropertyChecker`` hook for the mapping grammar of ``properties[].value`` / ``transform``, which
this package does not own.

Messages echo key names and JSON paths, never values, so a secret pasted into the wrong field
cannot leak through an error.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from consentbridge.config.errors import InvalidIntegration, ValidationIssue
from consentbridge.config.integration import (
    CHANNELS,
    CONTACT,
    CONTACT_POINT_CONSENT,
    CUSTOM_ERROR,
    DEFAULT_CHANNEL,
    DEFAULT_CONTACT_POINTS,
    DEFAULT_MATCH_ATTRIBUTE,
    DEFAULT_REGULATIONS,
    LOGICAL_NAME_REASON,
    MAX_JOURNEYS_NAME,
    Integration,
    Property,
    derive_id,
    is_logical_name,
)

PropertyChecker = Callable[[str, object], list[str]]
"""Judges one mapping: ``(value, transform) -> messages`` (empty when fine).

Called only for properties whose own shape is valid: ``value`` is a non-empty string and
``transform`` is ``None``, ``"not"`` or a dict of str to bool / int / str / None. Messages are
filed under ``config.properties[i].value`` when there is no transform, else under
``config.properties[i]`` (they may then be about either key). Each should be one sentence naming
the problem and the fix.
"""

Loc = tuple[int | str, ...]

_ITEM_DESCRIPTIONS: Final = {
    "config.properties[]": "an object with id, value and optionally transform, target, "
    "topic, channel and regulations",
    "config.credentials[]": "an object with client_id and client_secret",
    "config.regulations[]": "a lowercase regulation id such as gdpr",
}
_MISSING_MESSAGES: Final = {
    "id": "id is missing; add an id such as acme-d365, or an organization_id to derive it from.",
}


def accept_any_property(value: str, transform: object) -> list[str]:
    """The default ``PropertyChecker``: every well-shaped mapping is accepted."""
    return []


def parse_integration(
    raw: object,
    *,
    default_id: str | None = None,
    check_property: PropertyChecker = accept_any_property,
    check_consent: PropertyChecker = accept_any_property,
) -> Integration:
    """Validate a decoded JSON / YAML document, or raise ``InvalidIntegration`` listing all issues.

    The id is, in order: the document's ``id``; else derived from ``organization_id``
    (``acme`` → ``acme-d365``); else ``default_id`` (a URL segment or a file name). A caller that
    wants a URL id to win over ``organization_id`` should set ``raw["id"]`` itself.

    ``check_consent`` judges rows of target ``contactpointconsent`` as well (their transform
    must produce a consent value); ``check_property`` also judges ``config.contact_points``.
    """
    document = _with_resolved_id(raw, default_id)
    if not isinstance(document, dict):
        raise InvalidIntegration([ValidationIssue("", _not_an_object(document))])
    integration: Integration | None = None
    try:
        integration = Integration.model_validate(document)
        issues: list[ValidationIssue] = []
    except ValidationError as exc:
        issues = [issue_from_error(error) for error in exc.errors()]
    issues += cross_field_issues(document)
    issues += property_issues(document, check_property, check_consent)
    if issues or integration is None:
        # Raised outside the except block, so pydantic's error (which holds the input) is not
        # chained onto ours.
        raise InvalidIntegration(issues)
    return integration


def _with_resolved_id(raw: object, default_id: str | None) -> object:
    if not isinstance(raw, dict) or "id" in raw:
        return raw
    organization_id = raw.get("organization_id")
    resolved = derive_id(organization_id) if isinstance(organization_id, str) else None
    resolved = resolved or default_id
    return raw if resolved is None else {"id": resolved, **raw}


def _not_an_object(document: object) -> str:
    return (
        f"The document is {_kind(document)}, not an object; send a JSON object such as "
        '{"config": {"client_id": …, "client_secret": …, "tenant_id": …, "instance": …, '
        '"properties": […]}}.'
    )


def cross_field_issues(document: dict[str, Any]) -> list[ValidationIssue]:
    """Rules spanning several fields, checked on raw data so they run beside field errors."""
    issues: list[ValidationIssue] = []
    config = document.get("config")
    if isinstance(config, dict):
        issues += _target_issues(config)
        issues += _column_issues(config)
        issues += _regulation_issues(config)
        issues += _credential_issues(config)
    if document.get("bidirectional") is True and document.get("didomi") is None:
        issues.append(
            ValidationIssue(
                "didomi",
                "didomi is required when bidirectional is true; add "
                '{"api_key": …, "api_secret": …} so changes made in Dataverse can be sent to '
                "Didomi, or set bidirectional to false.",
            )
        )
    return issues


def _target_of(item: dict[str, Any]) -> str:
    target = item.get("target", CONTACT)
    return target if isinstance(target, str) else CONTACT


def _row_regulations(item: dict[str, Any], config: dict[str, Any]) -> set[str]:
    """The regulations a raw row serves (its own, else config.regulations, else the default)."""
    for regulations in (item.get("regulations"), config.get("regulations"), DEFAULT_REGULATIONS):
        # An empty or broken list is reported on its own; judge overlaps by the next one.
        if isinstance(regulations, list | tuple) and regulations:
            return {r for r in regulations if isinstance(r, str)}
    return set(DEFAULT_REGULATIONS)


def _target_issues(config: dict[str, Any]) -> list[ValidationIssue]:
    """Per row: ``id`` fits the target, consent-only keys sit on consent rows, the channel has
    a contact point, and a row's own regulations do not repeat."""
    properties = config.get("properties")
    if not isinstance(properties, list):
        return []
    points = config.get("contact_points", DEFAULT_CONTACT_POINTS)
    channels_with_point = set(points) if isinstance(points, dict) else set()
    issues: list[ValidationIssue] = []
    for index, item in enumerate(properties):
        if not isinstance(item, dict):
            continue
        path = f"config.properties[{index}]"
        target, row_id = _target_of(item), item.get("id")
        if target == CONTACT:
            if isinstance(row_id, str) and row_id and not is_logical_name(row_id):
                issues.append(ValidationIssue(f"{path}.id", f"id {LOGICAL_NAME_REASON}."))
            for key in ("topic", "channel"):
                if key in item:
                    issues.append(
                        ValidationIssue(
                            f"{path}.{key}",
                            f"{key} applies only to rows with target contactpointconsent; "
                            'remove it or set "target": "contactpointconsent".',
                        )
                    )
        elif target == CONTACT_POINT_CONSENT:
            if isinstance(row_id, str) and len(row_id) > MAX_JOURNEYS_NAME:
                issues.append(
                    ValidationIssue(
                        f"{path}.id",
                        f"id is longer than {MAX_JOURNEYS_NAME} characters, so it is neither a "
                        "msdynmkt_purpose GUID nor a purpose name; use the purpose's GUID or "
                        "name.",
                    )
                )
            channel = item.get("channel", DEFAULT_CHANNEL)
            if channel in CHANNELS and channel not in channels_with_point:
                issues.append(
                    ValidationIssue(
                        f"{path}.channel",
                        f"channel {channel} has no contact point; add config.contact_points."
                        f'{channel} with the Didomi path that holds it, e.g. "metadata_phone".',
                    )
                )
        regulations = item.get("regulations")
        if isinstance(regulations, list):
            seen: set[str] = set()
            for r_index, regulation in enumerate(regulations):
                if isinstance(regulation, str) and regulation in seen:
                    issues.append(
                        ValidationIssue(
                            f"{path}.regulations[{r_index}]",
                            f"regulations[{r_index}] repeats an earlier regulation; remove it.",
                        )
                    )
                elif isinstance(regulation, str):
                    seen.add(regulation)
    return issues


def _identity(item: dict[str, Any]) -> tuple[str, ...] | None:
    """What a row writes: a contact column, or a consent (channel, purpose, topic)."""
    row_id = item.get("id")
    if not isinstance(row_id, str):
        return None
    if _target_of(item) == CONTACT_POINT_CONSENT:
        topic = item.get("topic")
        channel = item.get("channel", DEFAULT_CHANNEL)
        return (
            CONTACT_POINT_CONSENT,
            str(channel),
            row_id.casefold(),
            topic.casefold() if isinstance(topic, str) else "",
        )
    return (CONTACT, row_id)


def _column_issues(config: dict[str, Any]) -> list[ValidationIssue]:
    """Two rows writing one column or one consent under overlapping regulations are refused:
    one of them would silently overwrite the other (Didomi's warning about a CPRA choice
    overwriting a GDPR consent). Rows of disjoint regulations may share one."""
    properties = config.get("properties")
    if not isinstance(properties, list):
        return []
    match_attribute = config.get("match_attribute", DEFAULT_MATCH_ATTRIBUTE)
    earlier: dict[tuple[str, ...], list[tuple[int, set[str]]]] = {}
    issues: list[ValidationIssue] = []
    for index, item in enumerate(properties):
        identity = _identity(item) if isinstance(item, dict) else None
        if identity is None:
            continue
        assert isinstance(item, dict)
        column = identity[-1] if identity[0] == CONTACT else None
        path = f"config.properties[{index}].id"
        regulations = _row_regulations(item, config)
        clash = next(
            (first for first, regs in earlier.get(identity, []) if regs & regulations), None
        )
        if clash is not None and column is not None:
            issues.append(
                ValidationIssue(
                    path,
                    f"id repeats the column of config.properties[{clash}]; map "
                    "each column once and remove or rename this one.",
                )
            )
        elif clash is not None:
            issues.append(
                ValidationIssue(
                    path,
                    f"this row writes the same consent (channel, purpose, topic) as "
                    f"config.properties[{clash}] under an overlapping regulation; keep one "
                    "of them or give them disjoint regulations.",
                )
            )
        elif column is not None and column == match_attribute:
            # Writing consent into the column that identifies the contact would break matching.
            issues.append(
                ValidationIssue(
                    path,
                    "id is the match_attribute column, which identifies the contact; map "
                    "consent to another column.",
                )
            )
        else:
            earlier.setdefault(identity, []).append((index, regulations))
    return issues


def _regulation_issues(config: dict[str, Any]) -> list[ValidationIssue]:
    regulations = config.get("regulations")
    if not isinstance(regulations, list):
        return []
    seen: set[str] = set()
    issues: list[ValidationIssue] = []
    for index, regulation in enumerate(regulations):
        if isinstance(regulation, str) and regulation in seen:
            issues.append(
                ValidationIssue(
                    f"config.regulations[{index}]",
                    f"regulations[{index}] repeats an earlier regulation; remove it.",
                )
            )
        elif isinstance(regulation, str):
            seen.add(regulation)
    return issues


def _credential_issues(config: dict[str, Any]) -> list[ValidationIssue]:
    credentials = config.get("credentials")
    if not isinstance(credentials, list):
        return []
    seed = config.get("client_id")
    seen: dict[str, str] = {seed.lower(): "config.client_id"} if isinstance(seed, str) else {}
    issues: list[ValidationIssue] = []
    for index, item in enumerate(credentials):
        client_id = item.get("client_id") if isinstance(item, dict) else None
        if not isinstance(client_id, str):
            continue
        path = f"config.credentials[{index}].client_id"
        if client_id.lower() in seen:
            issues.append(
                ValidationIssue(
                    path,
                    f"client_id repeats the application of {seen[client_id.lower()]}; list "
                    "each Entra application once (config.client_id is already the first).",
                )
            )
        else:
            seen[client_id.lower()] = path.removesuffix(".client_id")
    return issues


def property_issues(
    document: dict[str, Any],
    check: PropertyChecker,
    check_consent: PropertyChecker = accept_any_property,
) -> list[ValidationIssue]:
    """Run the mapping hook on every property whose own shape is valid (and the consent hook
    on consent rows), and the mapping hook on every contact point path."""
    config = document.get("config")
    properties = config.get("properties") if isinstance(config, dict) else None
    issues: list[ValidationIssue] = []
    points = config.get("contact_points") if isinstance(config, dict) else None
    if isinstance(points, dict):
        for channel, path in points.items():
            if isinstance(path, str) and path:
                issues += [
                    ValidationIssue(f"config.contact_points.{channel}", message)
                    for message in check(path, None)
                ]
    if not isinstance(properties, list):
        return issues
    for index, item in enumerate(properties):
        try:
            mapping = Property.model_validate(item)
        except ValidationError:
            continue  # already reported by the document's own validation
        path = f"config.properties[{index}]"
        if mapping.transform is None:
            path += ".value"
        messages = check(mapping.value, mapping.transform)
        if not messages and mapping.target == CONTACT_POINT_CONSENT:
            messages = check_consent(mapping.value, mapping.transform)
        issues += [ValidationIssue(path, message) for message in messages]
    return issues


def issue_from_error(error: ErrorDetails) -> ValidationIssue:
    """One pydantic error as an issue with a one-sentence message naming the problem and fix."""
    loc = tuple(error["loc"])
    return ValidationIssue(format_path(loc), _message(error, loc))


def format_path(loc: Sequence[int | str]) -> str:
    """``("config", "properties", 1, "id")`` → ``config.properties[1].id``."""
    path = ""
    for segment in loc:
        if isinstance(segment, int):
            path += f"[{segment}]"
        else:
            path += f".{segment}" if path else segment
    return path


def _message(error: ErrorDetails, loc: Loc) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    name = _name(loc)
    expected = _describe(loc)
    if kind == CUSTOM_ERROR:
        return f"{name} {ctx['reason']}."
    if kind == "missing":
        return _MISSING_MESSAGES.get(format_path(loc), f"{name} is missing; add {expected}.")
    if kind == "extra_forbidden":
        return _unknown_key_message(loc)
    if kind in ("string_too_short", "too_short") and ctx.get("field_type") != "List":
        return f"{name} is empty; set it to {expected}."
    if kind == "too_short":
        return f"{name} is empty; add at least one entry, each {_describe((*loc, 0))}."
    if kind == "string_too_long" or (kind == "too_long" and ctx.get("field_type") != "List"):
        return f"{name} is longer than {ctx.get('max_length')} characters; shorten it."
    if kind == "too_long":
        limit = ctx.get("max_length")
        return f"{name} has more than {limit} entries; keep at most {limit}."
    if kind.endswith("_type"):
        return f"{name} must be {expected}; it is {_kind(error.get('input'))}."
    return f"{name} is invalid ({error['msg']}); set it to {expected}."


def _unknown_key_message(loc: Loc) -> str:
    name = str(loc[-1])
    known = _known_keys(loc[:-1])
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"{name} is not a known key; did you mean {close[0]}?"
    return f"{name} is not a known key here; remove it (known keys: {', '.join(known)})."


def _name(loc: Loc) -> str:
    """The last key of a path, with a trailing list index: ``transform``, ``properties[1]``."""
    name = ""
    for segment in reversed(loc):
        if isinstance(segment, int):
            name = f"[{segment}]{name}"
        else:
            return f"{segment}{name}"
    return name or "the document"


def _describe(loc: Loc) -> str:
    if loc and isinstance(loc[-1], int):
        pattern = format_path(tuple("[]" if isinstance(s, int) else s for s in loc))
        return _ITEM_DESCRIPTIONS.get(pattern.replace(".[]", "[]"), "a valid entry")
    field = _field(loc)
    return field.description if field is not None and field.description else "a valid value"


def _field(loc: Loc) -> FieldInfo | None:
    model: type[BaseModel] | None = Integration
    field: FieldInfo | None = None
    for segment in loc:
        if isinstance(segment, int):
            continue  # a list item: the model stays the list's item model
        if model is None or segment not in model.model_fields:
            return None
        field = model.model_fields[segment]
        model = _inner_model(field.annotation)
    return field


def _known_keys(loc: Loc) -> list[str]:
    if not loc:
        return list(Integration.model_fields)
    field = _field(loc)
    model = _inner_model(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _inner_model(annotation: object) -> type[BaseModel] | None:
    """The model inside ``Model``, ``list[Model]`` or ``Model | None``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for argument in typing.get_args(annotation):
            model = _inner_model(argument)
            if model is not None:
                return model
    return None


def _kind(value: object) -> str:
    """The JSON kind of a value, for messages that must not echo the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
