"""`bidirectional enable | disable | status`: the webhook ConsentBridge registers in Dataverse on
the user's behalf, so that changes CRM users make to mapped contact columns — and, when the
mapping has Journeys consent rows, changes made to those rows (unsubscribes, preference
centres) — flow back to Didomi.

Only these operations need the System Administrator role (to create and delete service
endpoints and steps); the flow itself needs only read/write on contacts. `enable` checks the
privileges first and creates nothing without them; it keeps one secret per integration
(encrypted in the store) and reuses it, so a second run changes nothing. The record kept by
`store.set_registration` is what `disable` removes and what the webhook receiver authenticates
against and uses to recognise our own writes (the application user id).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from consentbridge.config.errors import SecretDecryptionError
from consentbridge.config.integration import CONTACT, Integration
from consentbridge.context import AppContext
from consentbridge.dataverse.errors import (
    AuthError,
    DataverseError,
    PrivilegeError,
    TransientError,
)
from consentbridge.dataverse.registration import (
    AUTH_HEADER,
    CONSENT_ENTITY,
    FILTERED_MESSAGE,
    MESSAGES,
    STATE_ENABLED,
    Found,
    WebhookSpec,
    endpoint_name,
    ensure_registration,
    find_registration,
    normalize_attributes,
    remove_registration,
)
from consentbridge.logs import get_logger
from consentbridge.mapping import Property, one_way_columns, one_way_reason
from consentbridge.operations import revisions
from consentbridge.operations.connection import one_off_runtime
from consentbridge.operations.diagnostics import granted_privileges, has_consent_rows
from consentbridge.operations.errors import Conflict, NotFound, OperationError, Unavailable
from consentbridge.store.values import iso_utc
from consentbridge.sync.runtime import IntegrationRuntime

log = get_logger("consentbridge.bidirectional")

RECORD_VERSION = 1
ENABLE_PRIVILEGES = ("prvCreateServiceEndpoint", "prvCreateSdkMessageProcessingStep")
# The flow reads a consent row its webhook names (an Update carries only the changed columns)
# and the purposes and topics the mapping names: needed for as long as the flow runs.
CONSENT_FLOW_PRIVILEGES = (
    "prvReadmsdynmkt_contactpointconsent4",
    "prvReadmsdynmkt_purpose",
    "prvReadmsdynmkt_topic",
)
CONSENT_FILTER = "msdynmkt_value"
"""The Update step on consent rows fires only when the consent value is set."""
DISABLE_PRIVILEGES = ("prvDeleteServiceEndpoint", "prvDeleteSdkMessageProcessingStep")
ADMIN_ROLE = "System Administrator"
ROLE_CAN_GO = (
    f"The {ADMIN_ROLE} role can now be removed from the application user: the flow itself "
    "only reads and writes contacts."
)


@dataclass
class Report:
    """What an operation found or did, as sentences for people and fields for scripts."""

    integration_id: str
    action: str
    ok: bool
    changed: bool
    lines: list[str]
    registration: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegistrationRecord:
    """The stored registration of one integration (`secret` is the encrypted token)."""

    url: str
    public_url: str
    secret: str
    application_user_id: str
    filtering_attributes: str
    enabled_at: str
    endpoint_id: str | None = None
    step_ids: dict[str, str] = field(default_factory=dict)
    auth_header: str = AUTH_HEADER
    version: int = RECORD_VERSION
    # The other application users of `config.credentials` (WhoAmI ids): their writes are
    # ConsentBridge's too, so their echoes are ignored like the first one's.
    other_user_ids: tuple[str, ...] = ()

    @property
    def our_user_ids(self) -> frozenset[str]:
        """Every application user whose changes are ConsentBridge's own (lowercase ids)."""
        return frozenset(i for i in (self.application_user_id, *self.other_user_ids) if i)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any] | None) -> RegistrationRecord | None:
        if not stored or not stored.get("secret"):
            return None
        return cls(
            url=str(stored.get("url", "")),
            public_url=str(stored.get("public_url", "")),
            secret=str(stored["secret"]),
            application_user_id=str(stored.get("application_user_id", "")).lower(),
            filtering_attributes=str(stored.get("filtering_attributes", "")),
            enabled_at=str(stored.get("enabled_at", "")),
            endpoint_id=stored.get("endpoint_id") or None,
            step_ids=dict(stored.get("step_ids") or {}),
            auth_header=str(stored.get("auth_header") or AUTH_HEADER),
            version=int(stored.get("version") or RECORD_VERSION),
            other_user_ids=tuple(
                str(i).lower() for i in stored.get("other_user_ids") or () if isinstance(i, str)
            ),
        )

    def stored(self) -> dict[str, Any]:
        stored = asdict(self)
        stored["other_user_ids"] = list(self.other_user_ids)
        if not self.other_user_ids:
            del stored["other_user_ids"]  # records of one application user keep their shape
        return stored

    def public(self) -> dict[str, Any]:
        """Everything but the secret."""
        return {k: v for k, v in asdict(self).items() if k != "secret"}


def webhook_url(public_url: str, integration_id: str) -> str:
    return f"{public_url.rstrip('/')}/webhooks/dataverse/{integration_id}"


def filtering_attributes(integration: Integration) -> str:
    """The columns whose change fires the Update step: every mapped column that can flow back
    to Didomi, plus the match column. One-way columns are left out: a change to them alone
    could never be sent, so Dataverse need not call for it."""
    columns = [integration.config.match_attribute]
    for prop in integration.config.properties:
        if prop.target != CONTACT:
            continue  # consent rows get their own steps (issue 12's bidirectional part)
        if one_way_reason(Property(prop.id, prop.value, prop.transform)) is None:
            columns.append(prop.id)
    return normalize_attributes(columns)


def watched_tables(integration: Integration) -> tuple[tuple[str, str], ...]:
    """The tables besides contact whose Create and Update steps the mapping needs, each with
    its Update filter: the consent rows when any property row targets them."""
    return ((CONSENT_ENTITY, CONSENT_FILTER),) if has_consent_rows(integration) else ()


def webhook_spec(integration: Integration, url: str, secret: str) -> WebhookSpec:
    return WebhookSpec(
        integration.id,
        url,
        secret,
        filtering_attributes(integration),
        watched_tables(integration),
    )


async def _integration(ctx: AppContext, integration_id: str) -> Integration:
    integration = await ctx.integration(integration_id)
    if integration is None:
        raise NotFound(
            f"No integration has the id '{integration_id}'; list them with "
            "`consentbridge integrations list`."
        )
    return integration


def _failure(exc: DataverseError) -> OperationError:
    if isinstance(exc, TransientError) or (isinstance(exc, AuthError) and exc.transient):
        return Unavailable(str(exc))
    if isinstance(exc, PrivilegeError):
        denied = exc.message.split(". Give the application user")[0].rstrip(".")
        return Conflict(
            f"{denied}; assign the {ADMIN_ROLE} role to the application user while enabling "
            "or disabling the bidirectional flow (nothing was left half-created)."
        )
    return Conflict(str(exc))


async def _preflight(
    runtime: IntegrationRuntime,
    needed: tuple[str, ...],
    purpose: str,
    flow_needs: tuple[str, ...] = (),
) -> str:
    """Token, WhoAmI and privileges (``needed`` for the operation, ``flow_needs`` for the flow
    itself); the application user id. Raises before any change."""
    await runtime.tokens.token()
    who = await runtime.dataverse.who_am_i()
    # A user that may not even read its own privileges (an empty set) is no administrator.
    granted = await granted_privileges(runtime, who.user_id)
    if granted is None:
        # No RetrieveUserPrivileges here: the writes themselves will tell, and are undone.
        return who.user_id.lower()
    missing = [p for p in needed if p not in granted]
    if missing:
        raise Conflict(
            f"The application user lacks {' and '.join(missing)}: assign it the {ADMIN_ROLE} "
            f"role in the Power Platform admin center while you {purpose} the bidirectional "
            "flow (it can be removed again afterwards); nothing was changed."
        )
    lacking = [p for p in flow_needs if p not in granted]
    if lacking:
        raise Conflict(
            f"The application user lacks {' and '.join(lacking)}, which the flow needs to read "
            "the Journeys consent rows its webhook names: give its security role Read on "
            "Contact Point Consent, Purpose and Topic, then enable again; nothing was changed."
        )
    return who.user_id.lower()


async def enable(
    ctx: AppContext,
    integration_id: str,
    *,
    public_url: str | None = None,
    actor: str = revisions.CLI,
) -> Report:
    """Register (or repair) the webhook and its steps; a second run changes nothing."""
    integration = await _integration(ctx, integration_id)
    if integration.didomi is None:
        raise Conflict(
            f"Integration '{integration_id}' has no didomi block: add didomi.api_key and "
            "didomi.api_secret, which the bidirectional flow uses to send consent events."
        )
    base = public_url or ctx.settings.public_url
    if not base:
        raise Conflict(
            "Set CONSENTBRIDGE_PUBLIC_URL (or serve --public-url) to the URL at which Dataverse "
            "can reach this service; enable registers {public_url}/webhooks/dataverse/"
            f"{integration_id} there."
        )
    previous_raw = await ctx.store.get_registration(integration_id)
    previous = RegistrationRecord.from_stored(previous_raw)
    runtime = await one_off_runtime(integration)
    try:
        flow_needs = CONSENT_FLOW_PRIVILEGES if has_consent_rows(integration) else ()
        user_id = await _preflight(runtime, ENABLE_PRIVILEGES, "enable", flow_needs)
        other_ids, unreachable = await _other_user_ids(runtime, previous)
        secret, encrypted = _secret(ctx, previous)
        spec = webhook_spec(integration, webhook_url(base, integration_id), secret)
        provisional = RegistrationRecord(
            url=spec.url,
            public_url=base,
            secret=encrypted,
            application_user_id=user_id,
            filtering_attributes=spec.filtering_attributes,
            enabled_at=previous.enabled_at if previous is not None else iso_utc(time.time()),
            endpoint_id=previous.endpoint_id if previous is not None else None,
            step_ids=previous.step_ids if previous is not None else {},
            other_user_ids=other_ids,
        )
        # Recorded before any step exists, so that the first deliveries already authenticate.
        if provisional.stored() != previous_raw:
            await ctx.store.set_registration(integration_id, provisional.stored())
        try:
            ensured = await ensure_registration(
                runtime.dataverse,
                spec,
                recorded_endpoint_id=provisional.endpoint_id,
                secret_current=previous is not None and encrypted == previous.secret,
            )
        except Exception:
            await ctx.store.set_registration(integration_id, previous_raw)
            raise
    except DataverseError as exc:
        log.warning(
            "registration.failed", integration=integration_id, action="enable", reason=str(exc)
        )
        raise _failure(exc) from exc
    finally:
        await runtime.aclose()
    record = RegistrationRecord(
        **{
            **provisional.stored(),
            "endpoint_id": ensured.endpoint_id,
            "step_ids": ensured.step_ids,
        }
    )
    recorded_changes = _record_changes(previous, record) + unreachable
    await ctx.store.set_registration(integration_id, record.stored())
    await _store_flag(ctx, integration_id, enabled=True, actor=actor)
    ctx.forget(integration_id)
    lines = [*(f"{a[0].upper()}{a[1:]}." for a in ensured.actions), *recorded_changes]
    changed = bool(lines)
    log.log(
        logging.INFO if changed else logging.DEBUG,
        "registration.changed" if changed else "registration.unchanged",
        integration=integration_id,
        action="enable" if previous is None else "repair",
        url=record.url,
        endpoint_id=record.endpoint_id,
        steps=sorted(record.step_ids),
        actions=list(ensured.actions),
    )
    if not changed:
        lines.append(
            f"Nothing to change: the webhook {endpoint_name(integration_id)} and its Create and "
            f"Update steps{_consent_words(integration)} are registered as recorded."
        )
    lines += one_way_lines(integration)
    lines.append(ROLE_CAN_GO)
    return Report(integration_id, "enable", True, changed, lines, record.public())


def _consent_words(integration: Integration) -> str:
    return f" (on contact and on {CONSENT_ENTITY})" if has_consent_rows(integration) else ""


async def recorded(ctx: AppContext, integration_id: str) -> dict[str, Any] | None:
    """The registration recorded for the integration, without its secret (None if off)."""
    record = RegistrationRecord.from_stored(await ctx.store.get_registration(integration_id))
    return record.public() if record is not None else None


def one_way_lines(integration: Integration) -> list[str]:
    """A sentence per mapped column whose CRM changes cannot be sent back to Didomi."""
    properties = [Property(p.id, p.value, p.transform) for p in integration.config.rows_of(CONTACT)]
    return [
        f"Column {column} is one-way (CRM changes to it are not sent to Didomi): {reason}."
        for column, reason in sorted(one_way_columns(properties).items())
    ]


async def _other_user_ids(
    runtime: IntegrationRuntime, previous: RegistrationRecord | None
) -> tuple[tuple[str, ...], list[str]]:
    """The WhoAmI ids of the integration's other application users (`config.credentials`),
    and a line for each that could not be asked (its id from the previous record is kept)."""
    writers = runtime.app_users.writers[1:] if runtime.app_users is not None else []
    known = previous.other_user_ids if previous is not None else ()
    ids: list[str] = []
    lines: list[str] = []
    for writer in writers:
        try:
            ids.append((await writer.client.who_am_i()).user_id.lower())
        except DataverseError as exc:
            lines.append(
                f"Could not ask WhoAmI as the application user {writer.app_user.client_id} "
                f"({exc}); its changes are recognised as ConsentBridge's once enable runs "
                "again after it is fixed."
            )
    ids += [i for i in known if i not in ids] if lines else []
    return tuple(dict.fromkeys(ids)), lines


def _secret(ctx: AppContext, previous: RegistrationRecord | None) -> tuple[str, str]:
    """(secret, stored token): the recorded one, else a new one — also when the recorded one
    cannot be decrypted any more (CONSENTBRIDGE_SECRET_KEY changed), so enable can repair it."""
    if previous is not None:
        try:
            return ctx.secrets.decrypt(previous.secret).get_secret_value(), previous.secret
        except SecretDecryptionError:
            pass
    secret = secrets.token_urlsafe(32)
    return secret, ctx.secrets.encrypt(secret)


def _record_changes(previous: RegistrationRecord | None, record: RegistrationRecord) -> list[str]:
    others = previous.other_user_ids if previous is not None else ()
    added = [i for i in record.other_user_ids if i not in others]
    also = (
        [
            f"Recorded the application users {', '.join(added)} of config.credentials, whose "
            "own changes are ignored as echoes."
        ]
        if added
        else []
    )
    if previous is None:
        return [
            f"Recorded the registration; Dataverse now sends contact changes to {record.url}.",
            *also,
        ]
    lines = also
    if previous.application_user_id != record.application_user_id:
        lines.append(
            f"Recorded the application user {record.application_user_id}, whose own changes "
            "are ignored as echoes."
        )
    if (previous.endpoint_id, previous.step_ids) != (record.endpoint_id, record.step_ids):
        lines.append("Recorded the ids of the registered rows.")
    return lines


async def disable(ctx: AppContext, integration_id: str, *, actor: str = revisions.CLI) -> Report:
    """Remove exactly the recorded steps and endpoint, then forget the registration."""
    integration = await _integration(ctx, integration_id)
    previous = RegistrationRecord.from_stored(await ctx.store.get_registration(integration_id))
    if previous is None:
        await _store_flag(ctx, integration_id, enabled=False, actor=actor)
        ctx.forget(integration_id)
        return Report(
            integration_id,
            "disable",
            True,
            False,
            [f"Nothing to disable: no webhook registration is recorded for '{integration_id}'."],
        )
    runtime = await one_off_runtime(integration)
    try:
        await _preflight(runtime, DISABLE_PRIVILEGES, "disable")
        ordered = [previous.step_ids[m] for m in MESSAGES if m in previous.step_ids]
        ordered += [s for m, s in previous.step_ids.items() if m not in MESSAGES]
        actions = await remove_registration(runtime.dataverse, ordered, previous.endpoint_id)
    except DataverseError as exc:
        log.warning(
            "registration.failed", integration=integration_id, action="disable", reason=str(exc)
        )
        raise _failure(exc) from exc
    finally:
        await runtime.aclose()
    await ctx.store.set_registration(integration_id, None)
    await _store_flag(ctx, integration_id, enabled=False, actor=actor)
    log.info(
        "registration.changed",
        integration=integration_id,
        action="disable",
        url=previous.url,
        endpoint_id=previous.endpoint_id,
        actions=list(actions),
    )
    ctx.forget(integration_id)
    lines = [f"{a[0].upper()}{a[1:]}." for a in actions]
    lines.append(
        f"Forgot the registration: Dataverse no longer sends contact changes for "
        f"'{integration_id}', and changes already received are still sent to Didomi."
    )
    lines.append(ROLE_CAN_GO)
    return Report(integration_id, "disable", True, True, lines, previous.public())


async def _store_flag(ctx: AppContext, integration_id: str, *, enabled: bool, actor: str) -> None:
    """Make the stored document's `bidirectional` say what was just done, so that the
    document `show`, the API and the console editor hand out — and that is applied again
    unchanged — keeps the webhook as it is instead of undoing the operation."""

    def change(document: dict[str, Any]) -> dict[str, Any] | None:
        if document.get("bidirectional") is enabled:
            return None
        return {**document, "bidirectional": enabled}

    action = "bidirectional_on" if enabled else "bidirectional_off"
    await ctx.store.update_integration(
        integration_id, change, revision=revisions.flag_revision(actor, action)
    )


def registration_problems(
    integration_id: str,
    record: RegistrationRecord | None,
    found: Found,
    expected_filter: str,
    watched: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """What differs between the record and Dataverse (pure): ``expected_filter`` is the
    contact Update step's, ``watched`` the other tables' (``watched_tables``)."""
    problems: list[str] = []
    name = endpoint_name(integration_id)
    recorded_steps = set(record.step_ids.values()) if record else set()
    if record is None:
        if found.endpoints or found.steps:
            count = len(found.endpoints) + len(found.steps)
            problems.append(
                f"extra: Dataverse holds {count} row(s) named {name} that are not recorded here "
                "(left by an earlier enable whose record was lost)"
            )
        return problems
    if record.endpoint_id not in {e.id for e in found.endpoints}:
        problems.append(f"missing: the service endpoint {record.endpoint_id} no longer exists")
    for endpoint in found.endpoints:
        if endpoint.id != record.endpoint_id:
            problems.append(f"extra: a second service endpoint {endpoint.id} is named {name}")
        elif endpoint.url != record.url:
            problems.append(
                f"drift: the service endpoint calls {endpoint.url} instead of {record.url}"
            )
    by_id = {s.id: s for s in found.steps}
    spec = WebhookSpec(integration_id, record.url, "", expected_filter, watched)
    for wanted in spec.steps:
        message = wanted.key.replace(":", " ")
        step_id = record.step_ids.get(wanted.key)
        step = by_id.get(step_id or "")
        if step is None:
            problems.append(f"missing: the {message} step {step_id or '(none recorded)'} is gone")
            continue
        if step.statecode != STATE_ENABLED:
            problems.append(f"disabled: the {message} step {step.id} is disabled in Dataverse")
        if (
            wanted.message == FILTERED_MESSAGE
            and step.filtering_attributes != wanted.filtering_attributes
        ):
            problems.append(
                f"drift: the {message} step filters on '{step.filtering_attributes}' but the "
                f"mapping needs '{wanted.filtering_attributes}'"
            )
    needed = {s.key for s in spec.steps}
    for key, step_id in sorted(record.step_ids.items()):
        if key not in needed and step_id in by_id:
            problems.append(
                f"extra: the step {by_id[step_id].name} is no longer needed by the mapping"
            )
    for step in found.steps:
        if step.id not in recorded_steps:
            problems.append(f"extra: step {step.id} ({step.name}) is not recorded")
    return problems


async def status(ctx: AppContext, integration_id: str) -> Report:
    """Compare the recorded registration with what exists in Dataverse."""
    integration = await _integration(ctx, integration_id)
    record = RegistrationRecord.from_stored(await ctx.store.get_registration(integration_id))
    runtime = await one_off_runtime(integration)
    try:
        found = await find_registration(runtime.dataverse, integration_id)
    except PrivilegeError as exc:
        return Report(
            integration_id,
            "status",
            False,
            False,
            [
                f"Cannot inspect the registration: {exc.message.rstrip('.')}; reading service "
                f"endpoints and steps needs the {ADMIN_ROLE} (or System Customizer) role."
            ],
            record.public() if record else None,
        )
    except DataverseError as exc:
        raise _failure(exc) from exc
    finally:
        await runtime.aclose()
    problems = registration_problems(
        integration_id,
        record,
        found,
        filtering_attributes(integration),
        watched_tables(integration),
    )
    repair = f"Run `consentbridge bidirectional enable {integration_id}` to repair"
    if record is None and not problems:
        lines = [f"The bidirectional flow is not enabled for '{integration_id}'."]
    elif not problems:
        lines = [
            f"Enabled: the webhook calls {record.url if record else ''}; its Create and Update "
            f"steps{_consent_words(integration)} exist, are enabled and filter on the mapped "
            "columns."
        ]
    elif record is None:
        lines = [*problems, f"{repair} (it adopts and records them), then disable if unwanted."]
    else:
        lines = [*problems, f"{repair}."]
    return Report(
        integration_id,
        "status",
        not problems,
        False,
        lines,
        record.public() if record else None,
        problems,
    )
