"""Managing integration documents: apply (create or replace), read, list, delete and validate.

Every surface (CLI, admin API, console, ``serve --config``) goes through here, so a document is
judged the same way everywhere: whole, with the mapping grammar as the property hook, every
problem listed by JSON path. On replace, ``"***"`` keeps the stored secret (``merge_redacted``
decides when that is safe); secrets are encrypted before they reach the store and read back as
``"***"`` (``redacted``). ``config.ca_bundle`` is read (in a worker thread when called from async
code) and stored as an absolute path: an unusable file is refused here, not on the first sync.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass, field
from typing import Any, Final, cast

from consentbridge.config import (
    ConfigError,
    Integration,
    InvalidIntegration,
    SecretDecryptionError,
    ValidationIssue,
    merge_redacted,
    parse_integration,
    redacted,
)
from consentbridge.config.ca_bundle import CaBundleError, check_ca_bundle
from consentbridge.config.integration import REDACTED, SECRET_PATHS, derive_id
from consentbridge.context import AppContext
from consentbridge.mapping import MappingError, RawTransform, lint_property
from consentbridge.mapping import Property as MappingProperty
from consentbridge.mapping.consent import check_consent_property
from consentbridge.operations import revisions
from consentbridge.operations.errors import InvalidInput, Issue, NotFound, Unavailable
from consentbridge.store.values import DIRECTIONS

__all__ = [
    "Validation",
    "apply",
    "check",
    "check_property",
    "delete",
    "get",
    "list_all",
    "load_integration",
    "redacted",
    "user_log",
    "validate",
]

# The column of a property is checked by config itself; the mapping only needs a valid one to
# judge the path and transform.
_PROBE_COLUMN: Final = "consentbridge_probe"
# Stands in for a "***" during offline validation; long enough for every secret rule.
_PLACEHOLDER_SECRET: Final = "placeholder-secret-for-offline-validation"


@dataclass(frozen=True)
class Validation:
    """The verdict on a document: the integration if it is valid, its errors and its warnings."""

    integration: Integration | None
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_property(value: str, transform: object) -> list[str]:
    """The mapping grammar as config's ``PropertyChecker``: one sentence per problem."""
    try:
        MappingProperty(_PROBE_COLUMN, value, cast("RawTransform | None", transform))
    except MappingError as exc:
        return [str(exc)]
    return []


def validate(raw: object, *, default_id: str | None = None) -> Validation:
    """Judge a document offline (no store, no network).

    A ``"***"`` secret cannot be judged without the stored integration, so it is accepted
    with a warning saying when ``apply`` will keep the stored secret.
    """
    document, placeholders = _fill_placeholders(raw)
    validation = _with_ca_bundle(_judge(document, default_id))
    notes = [
        Issue(
            path,
            f'{path.rsplit(".", 1)[-1]} is "***": apply keeps the stored secret of an existing '
            "integration with this id when the endpoint it is sent to is unchanged, and "
            "refuses the document otherwise.",
        )
        for path in placeholders
    ]
    return Validation(validation.integration, validation.errors, notes + validation.warnings)


async def check(ctx: AppContext, raw: object, *, default_id: str | None = None) -> Validation:
    """Judge a document exactly as ``apply`` would, against what is stored."""
    stored = await _stored_for(ctx, raw, default_id)
    merged = merge_redacted(raw, stored) if stored is not None else raw
    validation = await asyncio.to_thread(_with_ca_bundle, _judge(merged, default_id))
    if validation.integration is None:
        return validation
    clash = await _webhook_client_clash(ctx, validation.integration)
    if clash is None:
        return validation
    return Validation(None, [clash], validation.warnings)


async def apply(
    ctx: AppContext, raw: object, *, default_id: str | None = None, actor: str = revisions.CLI
) -> tuple[Integration, bool]:
    """Create or replace an integration from a decoded document; ``(integration, created)``.

    A bad document raises ``InvalidInput`` listing every issue, and nothing is stored. The
    change is recorded in the configuration history against ``actor``.
    """
    validation = await check(ctx, raw, default_id=default_id)
    if validation.integration is None:
        raise InvalidInput(validation.errors)
    integration = validation.integration
    previous = await _stored_for(ctx, {"id": integration.id}, None)
    created = await ctx.store.put_integration(
        integration.id,
        ctx.secrets.encrypt_document(integration),
        revision=revisions.draft(integration, previous, actor)
        if revisions.changes(integration, previous)
        else None,
    )
    ctx.forget(integration.id)
    return integration, created


async def get(ctx: AppContext, integration_id: str) -> Integration:
    """The stored integration, read fresh from the store (for showing and editing)."""
    document = await ctx.store.get_integration(integration_id)
    if document is None:
        raise _not_found(integration_id)
    return _decrypt(ctx, integration_id, document)


async def load_integration(ctx: AppContext, integration_id: str) -> Integration:
    """The integration for an operation on it, through the context's short cache."""
    try:
        integration = await ctx.integration(integration_id)
    except ConfigError as exc:
        raise _unreadable(integration_id, exc) from None
    if integration is None:
        raise _not_found(integration_id)
    return integration


async def list_all(ctx: AppContext) -> list[Integration]:
    """Every stored integration, ordered by id."""
    return [
        _decrypt(ctx, integration_id, document)
        for integration_id, document in await ctx.store.list_integrations()
    ]


async def delete(ctx: AppContext, integration_id: str, *, actor: str = revisions.CLI) -> None:
    """Delete an integration with everything stored for it (states, log, dead letters); its
    configuration history keeps the deletion."""
    deleted = await ctx.store.delete_integration(integration_id, actor=actor)
    ctx.forget(integration_id)
    if not deleted:
        raise _not_found(integration_id)


async def user_log(
    ctx: AppContext, integration_id: str, organization_user_id: str, *, wait_s: float = 0.0
) -> dict[str, Any]:
    """The sync log of one user, in the contract's shape.

    With ``wait_s`` (at most ``MAX_LOG_WAIT_S``) it first waits until the log holds a final
    outcome and none of the user's changes is pending in either direction, so a caller that
    has just made a change sees what became of it; when the time is up it answers the log as
    it is.
    """
    await load_integration(ctx, integration_id)
    deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_LOG_WAIT_S)
    while True:
        entries = await ctx.store.user_log(integration_id, organization_user_id)
        if time.monotonic() >= deadline or await _settled(
            ctx, integration_id, organization_user_id, entries
        ):
            return {"organization_user_id": organization_user_id, "entries": entries}
        await asyncio.sleep(_LOG_POLL_S)


MAX_LOG_WAIT_S: Final = 30.0
_LOG_POLL_S: Final = 0.2
# Outcomes after which nothing more happens to the change without a new one ("retrying" is not).
FINAL_OUTCOMES: Final = frozenset(
    {"written", "unchanged", "skipped", "dead_letter", "ignored_echo"}
)


async def _settled(
    ctx: AppContext, integration_id: str, organization_user_id: str, entries: list[dict[str, Any]]
) -> bool:
    if not any(entry["outcome"] in FINAL_OUTCOMES for entry in entries):
        return False
    for direction in DIRECTIONS:
        # Every slot of the user (targets, regulations) must be settled.
        slots = await ctx.store.get_user_states(integration_id, direction, organization_user_id)
        if any(state.pending for state in slots):
            return False
    return True


def _judge(raw: object, default_id: str | None) -> Validation:
    try:
        integration = parse_integration(
            raw,
            default_id=default_id,
            check_property=check_property,
            check_consent=check_consent_property,
        )
    except InvalidIntegration as exc:
        return Validation(None, _issues(exc.errors))
    return Validation(integration, [], _lint(integration))


def _with_ca_bundle(validation: Validation) -> Validation:
    """A valid document's ``config.ca_bundle`` read and made absolute, or its problem.
    Blocking (it reads the file)."""
    integration = validation.integration
    if integration is None or integration.config.ca_bundle is None:
        return validation
    try:
        absolute = check_ca_bundle(integration.config.ca_bundle)
    except CaBundleError as exc:
        return Validation(None, [Issue("config.ca_bundle", f"{exc}.")], validation.warnings)
    config = integration.config.model_copy(update={"ca_bundle": absolute})
    return Validation(integration.model_copy(update={"config": config}), [], validation.warnings)


def _lint(integration: Integration) -> list[Issue]:
    warnings: list[Issue] = []
    for index, prop in enumerate(integration.config.properties):
        try:
            found = lint_property(MappingProperty(_PROBE_COLUMN, prop.value, prop.transform))
        except MappingError:  # refused by check_property already; a valid document never is
            continue
        for warning in found:
            key = "transform" if warning.startswith("the transform") else "value"
            warnings.append(Issue(f"config.properties[{index}].{key}", warning))
    return warnings


def _issues(errors: list[ValidationIssue]) -> list[Issue]:
    return [Issue(error.path, error.message) for error in errors]


def _fill_placeholders(raw: object) -> tuple[object, list[str]]:
    """``raw`` with each ``"***"`` secret replaced by a stand-in, and the paths replaced."""
    if not isinstance(raw, dict):
        return raw, []
    document = copy.deepcopy(raw)
    filled: list[str] = []
    for path in SECRET_PATHS:
        node: object = document
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(path[-1]) == REDACTED:
            node[path[-1]] = _PLACEHOLDER_SECRET
            filled.append(".".join(path))
    return document, filled


def _document_id(raw: object, default_id: str | None) -> str | None:
    """The id ``parse_integration`` will give ``raw`` (``id``, else from ``organization_id``)."""
    if not isinstance(raw, dict):
        return None
    if "id" in raw:
        return raw["id"] if isinstance(raw["id"], str) else None
    organization_id = raw.get("organization_id")
    derived = derive_id(organization_id) if isinstance(organization_id, str) else None
    return derived or default_id


async def _stored_for(ctx: AppContext, raw: object, default_id: str | None) -> Integration | None:
    """The stored integration ``raw`` would replace, if any and readable.

    One whose secrets no longer decrypt (the key was changed) is treated as absent, so its
    ``"***"`` placeholders are refused and a document with the secrets re-entered repairs it.
    """
    integration_id = _document_id(raw, default_id)
    if integration_id is None:
        return None
    document = await ctx.store.get_integration(integration_id)
    if document is None:
        return None
    try:
        return ctx.secrets.decrypt_document(document)
    except ConfigError:
        return None


async def _webhook_client_clash(ctx: AppContext, integration: Integration) -> Issue | None:
    """An issue if another integration already answers to this webhook client id.

    ``POST /oauth/token`` finds the integration by client id, so two sharing one would make a
    token request ambiguous.
    """
    if integration.webhook_auth is None:
        return None
    client_id = integration.webhook_auth.client_id
    for other_id, document in await ctx.store.list_integrations():
        auth = document.get("webhook_auth")
        if (
            other_id != integration.id
            and isinstance(auth, dict)
            and auth.get("client_id") == client_id
        ):
            return Issue(
                "webhook_auth.client_id",
                f"client_id is already used by integration '{other_id}'; choose another, as "
                "each integration needs its own webhook credentials.",
            )
    return None


def _decrypt(ctx: AppContext, integration_id: str, document: dict[str, Any]) -> Integration:
    try:
        return ctx.secrets.decrypt_document(document)
    except ConfigError as exc:
        raise _unreadable(integration_id, exc) from None


def _unreadable(integration_id: str, exc: ConfigError) -> Unavailable:
    if isinstance(exc, SecretDecryptionError):
        return Unavailable(f"Integration '{integration_id}' cannot be read: {exc}")
    return Unavailable(
        f"The stored document of integration '{integration_id}' is no longer valid; apply it "
        "again with the problems fixed."
    )


def _not_found(integration_id: str) -> NotFound:
    return NotFound(
        f"No integration has the id '{integration_id}'; list them with "
        "`consentbridge integrations list`."
    )
