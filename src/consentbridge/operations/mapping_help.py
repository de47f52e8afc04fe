"""What the console's mapping builder offers to pick from: the `contact` columns with their
types (live `EntityDefinitions` metadata), the Customer Insights - Journeys purposes and topics
(`msdynmkt_purposes`, `msdynmkt_topics`), the Didomi paths seen for the organization, and one
path judged as it is typed. Used by the admin API and the console alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consentbridge.config.integration import Integration
from consentbridge.context import AppContext
from consentbridge.dataverse.errors import DataverseError, NotFoundError
from consentbridge.dataverse.metadata import read_contact_columns
from consentbridge.didomi.client import DidomiError
from consentbridge.mapping import AttributeType, ConsentSnapshot, ConsentStateError, MappingError
from consentbridge.mapping.suggest import PathSuggestion, PathVerdict, check_path, suggestions
from consentbridge.operations import integrations
from consentbridge.operations.connection import (
    dataverse_failure,
    didomi_failure,
    one_off_didomi,
    one_off_runtime,
)
from consentbridge.operations.errors import InvalidInput
from consentbridge.operations.integrations import load_integration

SAMPLE_USERS: Final = 100
"""How many Didomi users are read for path suggestions (one page)."""


@dataclass(frozen=True)
class ColumnChoice:
    """A `contact` column the builder offers: its logical name, type, and whether a mapping
    can write it (``problem`` says why not)."""

    logical_name: str
    attribute_type: str
    options: tuple[int, ...]
    writable: bool
    problem: str | None = None


@dataclass(frozen=True)
class TopicChoice:
    topic_id: str
    name: str


@dataclass(frozen=True)
class PurposeChoice:
    """A Journeys purpose with its topics (targets of `contactpointconsent` rows)."""

    purpose_id: str
    name: str
    topics: tuple[TopicChoice, ...]


def _choice(
    name: str,
    attribute_type: str,
    type_name: str | None,
    options: frozenset[int] | None,
    valid_for_update: bool,
) -> ColumnChoice:
    problem: str | None = None
    try:
        AttributeType.from_metadata(attribute_type, type_name)
    except MappingError as exc:
        problem = str(exc)
    if problem is None and not valid_for_update:
        problem = "the Web API cannot update this column"
    return ColumnChoice(
        name, type_name or attribute_type, tuple(sorted(options or ())), problem is None, problem
    )


async def contact_columns(ctx: AppContext, integration_id: str) -> list[ColumnChoice]:
    """Every column of `contact`, writable ones first, each by logical name."""
    return await columns_of(await load_integration(ctx, integration_id))


async def columns_of(integration: Integration) -> list[ColumnChoice]:
    """``contact_columns`` of an integration not stored yet (the builder of a new one)."""
    runtime = await one_off_runtime(integration)
    try:
        columns = await read_contact_columns(runtime.dataverse)
    except DataverseError as exc:
        raise dataverse_failure(exc) from exc
    finally:
        await runtime.aclose()
    choices = [
        _choice(
            c.logical_name, c.attribute_type, c.attribute_type_name, c.options, c.valid_for_update
        )
        for c in columns.values()
    ]
    return sorted(choices, key=lambda c: (not c.writable, c.logical_name))


async def journeys_purposes(ctx: AppContext, integration_id: str) -> list[PurposeChoice]:
    """The Journeys purposes with their topics; empty where Journeys is not installed."""
    return await purposes_of(await load_integration(ctx, integration_id))


async def purposes_of(integration: Integration) -> list[PurposeChoice]:
    runtime = await one_off_runtime(integration)
    try:
        purposes = await runtime.dataverse.query_all(
            "msdynmkt_purposes",
            params={"$select": "msdynmkt_purposeid,msdynmkt_name"},
            what="the Journeys purposes",
        )
        topics = await runtime.dataverse.query_all(
            "msdynmkt_topics",
            params={"$select": "msdynmkt_topicid,msdynmkt_name,_msdynmkt_purposeid_value"},
            what="the Journeys topics",
        )
    except DataverseError as exc:
        if isinstance(exc, NotFoundError):
            return []
        raise dataverse_failure(exc) from exc
    finally:
        await runtime.aclose()
    by_purpose: dict[str, list[TopicChoice]] = {}
    for topic in topics:
        owner = str(topic.get("_msdynmkt_purposeid_value") or "")
        by_purpose.setdefault(owner, []).append(
            TopicChoice(str(topic["msdynmkt_topicid"]), str(topic.get("msdynmkt_name") or ""))
        )
    return sorted(
        (
            PurposeChoice(
                str(p["msdynmkt_purposeid"]),
                str(p.get("msdynmkt_name") or ""),
                tuple(
                    sorted(by_purpose.get(str(p["msdynmkt_purposeid"]), []), key=lambda t: t.name)
                ),
            )
            for p in purposes
        ),
        key=lambda p: p.name,
    )


async def path_suggestions(ctx: AppContext, integration_id: str) -> list[PathSuggestion]:
    """The paths of the mapping and those seen in the organization's Didomi users (one page
    of them, when the integration has a `didomi` block)."""
    return await suggestions_of(await load_integration(ctx, integration_id))


async def suggestions_of(integration: Integration) -> list[PathSuggestion]:
    snapshots = await _sample_snapshots(integration)
    found = {s.path: s for s in suggestions(snapshots)}
    for prop in integration.config.properties:
        verdict = check_path(prop.value)
        if verdict.ok and prop.value not in found:
            found[prop.value] = PathSuggestion(
                prop.value, verdict.readings[0], verdict.value_kinds[0]
            )
    return [found[path] for path in sorted(found)]


async def _sample_snapshots(integration: Integration) -> list[ConsentSnapshot]:
    if integration.didomi is None:
        return []
    client = await one_off_didomi(integration)
    snapshots: list[ConsentSnapshot] = []
    try:
        async for user in client.iter_users(page_size=SAMPLE_USERS):
            try:
                snapshots.append(ConsentSnapshot.from_user(user))
            except ConsentStateError:
                continue  # one malformed user must not hide the others' paths
            if len(snapshots) >= SAMPLE_USERS:
                break
    except DidomiError as exc:
        raise didomi_failure(exc) from exc
    finally:
        await client.aclose()
    return snapshots


def judge_path(path: str) -> PathVerdict:
    """One path judged with the mapping grammar, as the builder shows it beside the field."""
    return check_path(path)


@dataclass(frozen=True)
class BuilderChoices:
    """Everything the mapping builder offers for one document's connection."""

    columns: list[ColumnChoice]
    purposes: list[PurposeChoice]
    paths: list[PathSuggestion]


# Stands in for the mapping of a draft, so its connection settings can be judged (and used)
# before any row is complete.
_DRAFT_PROPERTY: Final = {"id": "consentbridge_probe", "value": "organization_user_id"}


async def draft_choices(ctx: AppContext, raw: object) -> BuilderChoices:
    """The builder's choices for a document being written: its connection settings are
    judged as ``apply`` would (stored secrets kept for ``"***"``), whatever its rows hold."""
    if isinstance(raw, dict) and isinstance(raw.get("config"), dict):
        raw = {**raw, "config": {**raw["config"], "properties": [_DRAFT_PROPERTY]}}
    verdict = await integrations.check(ctx, raw)
    if verdict.integration is None:
        raise InvalidInput(verdict.errors)
    integration = verdict.integration
    return BuilderChoices(
        await columns_of(integration),
        await purposes_of(integration),
        await suggestions_of(integration),
    )
