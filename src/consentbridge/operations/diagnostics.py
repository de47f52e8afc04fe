"""`integrations test`, `integrations preview` and `validate --online`: read-only checks of an
integration against the real services, each result one line naming the problem and the fix.

`test` and `validate --online` judge the mapped columns against Dataverse's metadata with one
function (`column_issues`), and an integration's Journeys consent rows with two more: the
privileges on the three consent tables (`consent_privilege_problem`) and the purposes and
topics the rows name (`_consent_issues`); contact-only integrations skip both. A connection
setting that does not work is a failed check in `test` and a 4xx naming the setting in
`preview` (`operations/connection.py`), never a 500."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from consentbridge.config.integration import CONTACT, CONTACT_POINT_CONSENT, Integration
from consentbridge.context import AppContext
from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.errors import (
    AuthError,
    DataverseError,
    NotFoundError,
    PrivilegeError,
)
from consentbridge.dataverse.metadata import ColumnInfo, read_contact_columns
from consentbridge.didomi.client import DidomiError
from consentbridge.mapping import (
    AttributeType,
    ColumnSpec,
    ConsentSnapshot,
    MappingError,
    Property,
    coerce,
    project,
)
from consentbridge.operations.connection import (
    dataverse_failure,
    didomi_failure,
    one_off_didomi,
    one_off_runtime,
)
from consentbridge.operations.errors import InvalidInput, Issue, NotFound
from consentbridge.sync.app_users import AppUserWriter
from consentbridge.sync.clients import didomi_client, runtime_for
from consentbridge.sync.runtime import ClientSetupError, IntegrationRuntime
from consentbridge.sync.targets.consent import CATALOG_PRIVILEGES, unknown_purposes_and_topics
from consentbridge.sync.targets.consent import PRIVILEGES as CONSENT_PRIVILEGES

CONTACT_PRIVILEGES = ("prvReadContact", "prvWriteContact", "prvCreateContact")
REGISTRATION_PRIVILEGES = ("prvCreateServiceEndpoint", "prvCreateSdkMessageProcessingStep")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def _integration(ctx: AppContext, integration_id: str) -> Integration:
    integration = await ctx.integration(integration_id)
    if integration is None:
        raise NotFound(
            f"No integration has the id '{integration_id}'; list them with "
            "`consentbridge integrations list`."
        )
    return integration


async def user_privileges(runtime: Any, user_id: str) -> set[str]:
    body = await runtime.dataverse.get_json(
        f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()",
        what="RetrieveUserPrivileges",
    )
    return {str(p.get("PrivilegeName")) for p in body.get("RolePrivileges", [])}


async def granted_privileges(
    runtime: IntegrationRuntime, user_id: str | None = None
) -> set[str] | None:
    """The integration's application user's privileges (RetrieveUserPrivileges, after WhoAmI
    unless ``user_id`` is known); an empty set when it may not read its own, None when this
    Dataverse cannot say."""
    if user_id is None:
        user_id = (await runtime.dataverse.who_am_i()).user_id
    try:
        return await user_privileges(runtime, user_id)
    except PrivilegeError:
        return set()
    except NotFoundError:
        return None


def has_consent_rows(integration: Integration) -> bool:
    return bool(integration.config.rows_of(CONTACT_POINT_CONSENT))


def reads_catalog(granted: set[str] | None) -> bool:
    """Whether the purposes and topics can be checked (None: privileges unknown, so try)."""
    return granted is None or all(p in granted for p in CATALOG_PRIVILEGES)


def consent_privilege_problem(granted: set[str]) -> str | None:
    """The sentence naming what the application user lacks to write Journeys consent rows and
    the fix; None when it has every privilege."""
    missing = [p for p in CONSENT_PRIVILEGES if p not in granted]
    if not missing:
        return None
    return (
        f"The application user lacks {', '.join(missing)}: give it a security role that can "
        "create, read and write msdynmkt_contactpointconsent4 and read msdynmkt_purpose and "
        "msdynmkt_topic (Customer Insights - Journeys consent)."
    )


async def _check_app_user(writer: AppUserWriter, consent: bool = False) -> Check:
    """One line for one application user of `config.credentials` (the seed's included): a
    token, WhoAmI, and the contact privileges writes need (and, with `consent`, those on the
    Journeys consent tables)."""
    client_id = writer.app_user.client_id
    try:
        who = await writer.client.who_am_i()
        body = await writer.client.get_json(
            f"systemusers({who.user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()",
            what="RetrieveUserPrivileges",
        )
    except DataverseError as exc:
        return Check("app_user", False, f"{client_id}: {exc}")
    granted = {str(p.get("PrivilegeName")) for p in body.get("RolePrivileges", [])}
    needed = CONTACT_PRIVILEGES + (CONSENT_PRIVILEGES if consent else ())
    missing = [p for p in needed if p not in granted]
    if missing:
        return Check(
            "app_user",
            False,
            f"{client_id}: application user {who.user_id} is missing {', '.join(missing)}; "
            "give it the same security role as the first application user",
        )
    return Check(
        "app_user",
        True,
        f"{client_id}: application user {who.user_id} can write contacts"
        + (" and consent rows" if consent else ""),
    )


async def test_connection(ctx: AppContext, integration_id: str) -> list[Check]:
    integration = await _integration(ctx, integration_id)
    try:
        runtime = await runtime_for(integration)
    except ClientSetupError as exc:
        return [Check("ca_bundle", False, exc.message)]
    checks: list[Check] = []
    try:
        try:
            await runtime.tokens.token()
            checks.append(
                Check("token", True, f"Entra ID issued a token for {integration.token_scope}")
            )
        except AuthError as exc:
            checks.append(Check("token", False, str(exc)))
            return checks
        try:
            await runtime.dataverse.get_json(
                "EntityDefinitions(LogicalName='contact')",
                what="the contact table definition",
                params={"$select": "LogicalName"},
            )
            checks.append(Check("web_api", True, f"{integration.web_api_base} answers"))
        except DataverseError as exc:
            checks.append(Check("web_api", False, f"{exc} Check config.instance."))
            return checks
        try:
            who = await runtime.dataverse.who_am_i()
            checks.append(Check("whoami", True, f"application user {who.user_id}"))
        except DataverseError as exc:
            checks.append(
                Check(
                    "whoami",
                    False,
                    f"{exc} Create the application user for "
                    "this app in the Power Platform admin center.",
                )
            )
            return checks
        try:
            granted = await user_privileges(runtime, who.user_id)
        except DataverseError as exc:
            checks.append(Check("privileges", False, str(exc)))
            return checks
        missing = [p for p in CONTACT_PRIVILEGES if p not in granted]
        checks.append(
            Check(
                "contact_privileges",
                not missing,
                "read, create and write contacts"
                if not missing
                else f"missing {', '.join(missing)}: give the application user a security role "
                "that can read, create and write contacts",
            )
        )
        if has_consent_rows(integration):
            problem = consent_privilege_problem(granted)
            checks.append(
                Check(
                    "consent_privileges",
                    problem is None,
                    problem or "create, read and write consent rows; read purposes and topics",
                )
            )
        checks += await _column_checks(runtime, integration)
        if has_consent_rows(integration) and reads_catalog(granted):
            # Without read access the lookup would only repeat consent_privileges' failure.
            checks.append(await _purposes_check(runtime, integration))
        if integration.bidirectional:
            missing = [p for p in REGISTRATION_PRIVILEGES if p not in granted]
            checks.append(
                Check(
                    "registration_privileges",
                    not missing,
                    "can register the webhook"
                    if not missing
                    else f"missing {', '.join(missing)}: assign the System Administrator role "
                    "while enabling or disabling the bidirectional flow",
                )
            )
        if runtime.app_users is not None and len(runtime.app_users.writers) > 1:
            for writer in runtime.app_users.writers:
                checks.append(await _check_app_user(writer, has_consent_rows(integration)))
        if integration.didomi is not None:
            try:
                didomi = await didomi_client(integration)
            except ClientSetupError as exc:
                checks.append(Check("didomi", False, exc.message))
                return checks
            try:
                await didomi.request(
                    "GET", "consents/users", what="a Didomi user page", params={"$limit": "1"}
                )
                checks.append(
                    Check("didomi", True, f"{integration.didomi.base_url} accepts the API key")
                )
            except DidomiError as exc:
                checks.append(Check("didomi", False, exc.message))
            finally:
                await didomi.aclose()
    finally:
        await runtime.aclose()
    return checks


async def preview(
    ctx: AppContext, integration_id: str, organization_user_id: str
) -> dict[str, Any]:
    """Dry run for one user: the contact(s) found and the exact values that would be written."""
    integration = await _integration(ctx, integration_id)
    if not organization_user_id:
        raise InvalidInput(
            [Issue("organization_user_id", "Give the organization_user_id of the user to preview.")]
        )
    runtime = await one_off_runtime(integration)
    try:
        values, source = await _desired_values(ctx, integration, organization_user_id)
        columns = await read_contact_columns(runtime.dataverse)
        coerced: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for column, value in values.items():
            info = columns.get(column)
            if info is None:
                problems[column] = "the contact table has no such column"
                continue
            try:
                coerced[column] = coerce(
                    value,
                    ColumnSpec(
                        column,
                        AttributeType.from_metadata(info.attribute_type, info.attribute_type_name),
                        info.options,
                        info.max_length,
                    ),
                )
            except MappingError as exc:
                problems[column] = str(exc)
        match = integration.config.match_attribute
        select = ["contactid", match, *sorted(set(coerced) - {match})]
        contacts = await runtime.dataverse.find_by_column(
            "contacts", match, [organization_user_id], select
        )
        writes = []
        for contact in contacts:
            diff = {c: v for c, v in coerced.items() if contact.get(c) != v}
            writes.append(
                {
                    "contactid": contact["contactid"],
                    "current": {c: contact.get(c) for c in coerced},
                    "would_write": diff,
                }
            )
        if not contacts:
            action = (
                "create a contact"
                if integration.upsert_mode
                else "skip: no matching contact (upsert_mode is false)"
            )
        elif all(not w["would_write"] for w in writes):
            action = "nothing: every mapped column already holds the desired value"
        else:
            action = f"update {sum(1 for w in writes if w['would_write'])} contact(s)"
        return {
            "organization_user_id": organization_user_id,
            "source": source,
            "values": coerced,
            "problems": problems,
            "contacts": writes,
            "action": action,
        }
    except DataverseError as exc:
        raise dataverse_failure(exc) from exc
    finally:
        await runtime.aclose()


async def _desired_values(
    ctx: AppContext, integration: Integration, user: str
) -> tuple[dict[str, Any], str]:
    properties = [Property(p.id, p.value, p.transform) for p in integration.config.rows_of(CONTACT)]
    if integration.didomi is not None:
        client = await one_off_didomi(integration)
        try:
            raw = await client.get_user(user)
        except DidomiError as exc:
            raise didomi_failure(exc) from exc
        finally:
            await client.aclose()
        if raw is None:
            raise NotFound(f"Didomi has no user with organization_user_id '{user}'.")
        return project(properties, ConsentSnapshot.from_user(raw)), "didomi"
    from consentbridge.sync.merge import desired_values

    state = await ctx.store.get_state(integration.id, "to_dataverse", user)
    if state is None:
        raise NotFound(
            f"No change has been received for '{user}' and no didomi block is "
            "configured to fetch the user; add didomi.api_key/api_secret."
        )
    return desired_values(state.columns), "last received change"


async def _column_checks(runtime: IntegrationRuntime, integration: Integration) -> list[Check]:
    """One failed check per mapped column Dataverse does not have (or cannot write), or one
    passed check."""
    try:
        columns = await read_contact_columns(runtime.dataverse)
    except DataverseError as exc:
        return [Check("columns", False, str(exc))]
    issues = column_issues(integration, columns)
    if not issues:
        count = len(integration.config.properties)
        return [Check("columns", True, f"the contact table has all {count} mapped column(s)")]
    return [Check("columns", False, f"{issue.path}: {issue.message}") for issue in issues]


async def _purposes_check(runtime: IntegrationRuntime, integration: Integration) -> Check:
    """The purposes and topics of the consent rows, as `validate --online` judges them."""
    issues = await _consent_issues(runtime.dataverse, integration)
    if not issues:
        return Check("consent_purposes", True, "every mapped purpose and topic exists")
    return Check("consent_purposes", False, "; ".join(f"{i.path}: {i.message}" for i in issues))


async def validate_online(ctx: AppContext, integration: Integration) -> list[Issue]:
    """Every mapped column checked against the Dataverse metadata of `contact`; with consent
    rows, the privileges on the Journeys tables and the purposes and topics named."""
    try:
        runtime = await runtime_for(integration)
    except ClientSetupError as exc:
        return [Issue(exc.path, exc.message)]
    try:
        columns = await read_contact_columns(runtime.dataverse)
        consent: list[Issue] = []
        if has_consent_rows(integration):
            granted = await granted_privileges(runtime)
            problem = consent_privilege_problem(granted) if granted is not None else None
            if problem is not None:
                consent.append(Issue("config.client_id", problem))
            if reads_catalog(granted):
                consent += await _consent_issues(runtime.dataverse, integration)
    except DataverseError as exc:
        return [Issue("config.instance", str(exc))]
    finally:
        await runtime.aclose()
    return column_issues(integration, columns) + consent


async def _consent_issues(client: DataverseClient, integration: Integration) -> list[Issue]:
    """Each consent row whose purpose or topic the environment does not have."""
    try:
        problems = await unknown_purposes_and_topics(client, integration)
    except DataverseError as exc:
        first = next(i for i, p in enumerate(integration.config.properties) if p.target != CONTACT)
        return [
            Issue(
                f"config.properties[{first}].target",
                "the Customer Insights - Journeys consent tables cannot be read "
                f"({exc}); install Journeys in this environment or remove the "
                "contactpointconsent rows.",
            )
        ]
    return [Issue(f"config.properties[{i}].{key}", message) for i, key, message in problems]


def column_issues(integration: Integration, columns: dict[str, ColumnInfo]) -> list[Issue]:
    """Each mapped column (and the match column) missing from ``columns``, of a type the
    mapping cannot write, or not writable through the Web API."""
    issues: list[Issue] = []
    for index, prop in enumerate(integration.config.properties):
        if prop.target != CONTACT:
            continue  # a consent row's id is a purpose, not a contact column
        info = columns.get(prop.id)
        path = f"config.properties[{index}].id"
        if info is None:
            issues.append(
                Issue(
                    path,
                    f"the contact table has no column '{prop.id}'; check the "
                    "logical name (not the display name) in the maker portal.",
                )
            )
            continue
        try:
            AttributeType.from_metadata(info.attribute_type, info.attribute_type_name)
        except MappingError as exc:
            issues.append(Issue(path, str(exc)))
            continue
        if not info.valid_for_update:
            issues.append(
                Issue(
                    path,
                    f"column '{prop.id}' cannot be updated through the Web "
                    "API; map another column.",
                )
            )
    if integration.config.match_attribute not in columns:
        issues.append(
            Issue(
                "config.match_attribute",
                f"the contact table has no column '{integration.config.match_attribute}'.",
            )
        )
    return issues
