"""Target ``contactpointconsent``: Customer Insights - Journeys consent rows
(``msdynmkt_contactpointconsent4``), one per contact point value x channel x purpose (x topic).

Intake projects a user's Didomi state into the slot's columns: one entry per consent row the
mapping names (key ``consent_key``: channel, purpose, topic) holding the ``msdynmkt_value``
choice (``mapping/consent.py``: true → Opted In, false → Opted Out), plus the contact point of
each channel used (``~cp:<channel>``, read through ``config.contact_points``). Writing is in
``ConsentBatch`` below (docs/journeys.md).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from consentbridge.config.integration import (
    CONTACT_POINT_CONSENT,
    Channel,
    Integration,
    Property,
    is_guid,
)
from consentbridge.dataverse.batch import BatchRequest
from consentbridge.dataverse.client import DataverseClient
from consentbridge.dataverse.errors import (
    DataverseError,
    RequestError,
    TransientError,
    from_batch_part,
)
from consentbridge.dataverse.tables import CONTACT_POINT_CONSENT_TABLE, PURPOSE_TABLE, TOPIC_TABLE
from consentbridge.mapping import ConsentSnapshot, apply_transform, lookup, read_path, resolve
from consentbridge.mapping import Property as MappingProperty
from consentbridge.mapping.consent import (
    NOT_SET,
    OPTED_IN,
    VALUE_COLUMN,
    consent_property,
    consent_value,
)
from consentbridge.store.values import ClaimedState, Outcome
from consentbridge.sync.merge import last_event, last_event_id
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.targets.base import ForwardRuntime, SlotPlan, TargetBatch, WriteLocks

CONTACT_POINT_KEY: Final = "~cp:"
"""Slot columns ``~cp:<channel>`` hold the contact point value of that channel."""

_PARSED: dict[int, tuple[Property, MappingProperty]] = {}
_MAX_PARSED = 1024


def consent_key(row: Property) -> str:
    """The slot column of a consent row: ``["email","<purpose>","<topic or null>"]``."""
    return json.dumps([row.consent_channel, row.id, row.topic], separators=(",", ":"))


def contact_point_key(channel: str) -> str:
    return f"{CONTACT_POINT_KEY}{channel}"


def _parsed(row: Property) -> MappingProperty:
    cached = _PARSED.get(id(row))
    if cached is not None and cached[0] is row:
        return cached[1]
    parsed = consent_property(row.value, row.transform)
    if len(_PARSED) >= _MAX_PARSED:
        _PARSED.clear()
    _PARSED[id(row)] = (row, parsed)
    return parsed


def _contact_point(value: object) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None


class ConsentTarget:
    """Journeys consent rows of the user's contact points."""

    name: str = CONTACT_POINT_CONSENT

    def project(
        self, integration: Integration, rows: Sequence[Property], snapshot: ConsentSnapshot
    ) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        channels: set[Channel] = set()
        for row in rows:
            prop = _parsed(row)
            reading = resolve(prop.candidates, snapshot)
            _, value = lookup(reading, snapshot)
            if value is None:
                continue  # absent or null: a value nobody chose is never consent
            mapped = apply_transform(prop.transform, value, reading.value_kind, column=VALUE_COLUMN)
            if mapped is None:
                continue
            columns[consent_key(row)] = consent_value(mapped)
            channels.add(row.consent_channel)
        points = integration.config.contact_points
        for channel in sorted(channels):
            point = _contact_point(read_path(points[channel], snapshot))
            if point is not None:
                columns[contact_point_key(channel)] = point
        return columns

    async def write(
        self,
        runtime: ForwardRuntime,
        claims: Sequence[ClaimedState],
        policy: RetryPolicy,
        locks: WriteLocks | None = None,
    ) -> list[Outcome]:
        return await ConsentBatch(runtime, claims, policy, locks).run()


# -- writing ---------------------------------------------------------------------------------

CONSENTS: Final = CONTACT_POINT_CONSENT_TABLE
CHANNEL_CODES: Final = {
    "email": 534120000,
    "sms": 534120001,
    "custom": 534120002,
    "voice": 534120003,
}
LEVEL_PURPOSE: Final = 534120000
LEVEL_TOPIC: Final = 534120001
SOURCE_INTERNAL: Final = 534120000
"""``msdynmkt_source`` of our writes: Internal (no choice names an external platform)."""
REASON_NONE: Final = 534119999
"""``msdynmkt_logicalreason`` of our writes: No reasons (Didomi does not say why)."""
MARKER: Final = "ConsentBridge: didomi"
"""``msdynmkt_reason`` of our writes starts with this (Microsoft's loop-breaking advice)."""
RETRY_LOCKED_S: Final = 2.0

CATALOG_PRIVILEGES: Final = (
    f"prvRead{PURPOSE_TABLE.logical_name}",
    f"prvRead{TOPIC_TABLE.logical_name}",
)
"""Reading purposes and topics (resolving names, `validate --online`)."""
PRIVILEGES: Final = (
    f"prvCreate{CONSENTS.logical_name}",
    f"prvRead{CONSENTS.logical_name}",
    f"prvWrite{CONSENTS.logical_name}",
    *CATALOG_PRIVILEGES,
)
"""What writing consent rows needs: create, read and write them, read purposes and topics
(Dataverse names a table's privileges after its SchemaName, lowercase for these tables)."""

ROW_COLUMNS: Final = (
    CONSENTS.primary_id,
    "msdynmkt_contactpointvalue",
    "msdynmkt_contactpointtype",
    "msdynmkt_contactpointconsenttype",
    "_msdynmkt_purposeid_value",
    "_msdynmkt_topicid_value",
    "msdynmkt_value",
)
"""The columns of a consent row that writing reads back: its id, identity and value."""

Identity = tuple[str, int, str, str, int]
"""(contact point value casefolded, channel, purpose id, topic id or "", consent type)."""


def marker(event_id: str | None, event_type: str | None) -> str:
    """The reason text that marks a row as ConsentBridge's write of one Didomi event."""
    if event_id:
        return f"{MARKER} event {event_id}"
    return f"{MARKER} {event_type or 'change'}"


def lock_key(identity: Identity) -> str:
    return "|".join([CONSENTS.logical_name, *(str(part) for part in identity)])


def _identity_of(row: dict[str, Any]) -> Identity | None:
    value, channel = row.get("msdynmkt_contactpointvalue"), row.get("msdynmkt_contactpointtype")
    purpose = row.get("_msdynmkt_purposeid_value")
    if not isinstance(value, str) or not isinstance(channel, int) or not isinstance(purpose, str):
        return None
    topic = row.get("_msdynmkt_topicid_value")
    topic = topic.lower() if isinstance(topic, str) else ""
    level = row.get("msdynmkt_contactpointconsenttype")
    if not isinstance(level, int):
        level = LEVEL_TOPIC if topic else LEVEL_PURPOSE
    return (value.strip().casefold(), channel, purpose.lower(), topic, level)


@dataclass
class _Want:
    """One consent row a slot wants: ``ensure`` rows (a topic's purpose) are only created."""

    identity: Identity
    value: str
    choice: int
    ts: float
    key: str  # the slot column it comes from (the log names it)
    ensure: bool = False


@dataclass
class _ConsentPlan(SlotPlan):
    wants: dict[Identity, _Want] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    locked_out: bool = False


@dataclass
class Catalog:
    """Purpose and topic ids by name, cached for the runtime's life (names are stable); the
    forward writer and the reverse flow (which matches a changed row to the mapping) share
    it through ``catalog_of``."""

    purposes: dict[str, str] = field(default_factory=dict)  # casefolded name -> id
    topics: dict[tuple[str, str], str] = field(default_factory=dict)  # (purpose id, name) -> id

    def purpose_id(self, name: str) -> str | None:
        return name.lower() if is_guid(name) else self.purposes.get(name.casefold())

    def topic_id(self, purpose_id: str, name: str) -> str | None:
        return name.lower() if is_guid(name) else self.topics.get((purpose_id, name.casefold()))

    def ids_of(self, row: Property) -> tuple[str | None, str | None]:
        """A property row's (purpose id, topic id); None where the name is not known."""
        purpose = self.purpose_id(row.id)
        if purpose is None or row.topic is None:
            return purpose, None
        return purpose, self.topic_id(purpose, row.topic)

    async def load(self, client: DataverseClient, rows: Sequence[Property]) -> None:
        """Resolve the names of ``rows`` not known yet: one lookup for purposes, one for
        topics (none when every name is known)."""
        names = sorted({r.id for r in rows if self.purpose_id(r.id) is None})
        if names:
            found = await client.find_by_column(
                PURPOSE_TABLE.entity_set,
                "msdynmkt_name",
                names,
                [PURPOSE_TABLE.primary_id, "msdynmkt_name"],
            )
            for row in found:
                self.purposes[str(row["msdynmkt_name"]).casefold()] = str(
                    row[PURPOSE_TABLE.primary_id]
                ).lower()
        topics = sorted(
            {
                r.topic
                for r in rows
                if r.topic is not None
                and (pid := self.purpose_id(r.id)) is not None
                and self.topic_id(pid, r.topic) is None
            }
        )
        if topics:
            found = await client.find_by_column(
                TOPIC_TABLE.entity_set,
                "msdynmkt_name",
                topics,
                [TOPIC_TABLE.primary_id, "msdynmkt_name", "_msdynmkt_purposeid_value"],
            )
            for row in found:
                parent = row.get("_msdynmkt_purposeid_value")
                if isinstance(parent, str):
                    key = (parent.lower(), str(row["msdynmkt_name"]).casefold())
                    self.topics[key] = str(row[TOPIC_TABLE.primary_id]).lower()


def catalog_of(state: dict[str, Any]) -> Catalog:
    """The runtime's catalog (``ForwardRuntime.state``), made on first use."""
    catalog = state.setdefault(CONTACT_POINT_CONSENT, Catalog())
    assert isinstance(catalog, Catalog)
    return catalog


class ConsentBatch(TargetBatch[_ConsentPlan]):
    """One claimed batch of consent slots: resolve purposes and topics, find every row of the
    batch's contact points in one lookup, update rows in place, create the missing ones under
    write locks (looking again first), isolate a refused row."""

    def __init__(
        self,
        runtime: ForwardRuntime,
        claims: Sequence[ClaimedState],
        policy: RetryPolicy,
        locks: WriteLocks | None = None,
        now: float | None = None,
    ) -> None:
        super().__init__(runtime, [_ConsentPlan(c) for c in claims], policy, now)
        self.locks = locks
        self.owner = uuid.uuid4().hex
        self.catalog = catalog_of(runtime.state)
        self.rows = self.integration.config.rows_of(CONTACT_POINT_CONSENT)

    async def run(self) -> list[Outcome]:
        try:
            await self._resolve()
            self._plan()
            existing = await self._lookup(
                {w.value for p in self.open_plans() for w in p.wants.values()}
            )
            updates, creates = self._diff(existing)
            await self._create(creates, updates)
            await self._update(updates)
        except DataverseError as exc:
            self.fail_all(list(self.plans.values()), exc)
        for plan in self.plans.values():
            if plan.outcome is None:
                self._settle(plan)
        return self.outcomes()

    # -- purposes and topics ---------------------------------------------------------------

    def _purpose_id(self, name: str) -> str | None:
        return self.catalog.purpose_id(name)

    def _topic_id(self, purpose_id: str, name: str) -> str | None:
        return self.catalog.topic_id(purpose_id, name)

    async def _resolve(self) -> None:
        await self.catalog.load(self.rt.client, self.rows)

    # -- what each slot wants --------------------------------------------------------------

    def _plan(self) -> None:
        for plan in self.open_plans():
            columns = plan.claim.columns
            problem: str | None = None
            for index, row in enumerate(self.integration.config.properties):
                if row.target != CONTACT_POINT_CONSENT:
                    continue
                entry = columns.get(consent_key(row))
                if not isinstance(entry, dict) or entry.get("v") is None:
                    continue
                point_entry = columns.get(contact_point_key(row.consent_channel))
                point = point_entry.get("v") if isinstance(point_entry, dict) else None
                if not isinstance(point, str) or not point:
                    path = self.integration.config.contact_points[row.consent_channel]
                    plan.notes.append(
                        f"no {row.consent_channel} contact point: {path} is empty for this user"
                    )
                    continue
                purpose = self._purpose_id(row.id)
                if purpose is None:
                    problem = (
                        f"config.properties[{index}]: no msdynmkt_purpose is named {row.id!r}; "
                        "create it in Customer Insights - Journeys or use the purpose's GUID"
                    )
                    break
                topic = None
                if row.topic is not None:
                    topic = self._topic_id(purpose, row.topic)
                    if topic is None:
                        problem = (
                            f"config.properties[{index}]: purpose {row.id!r} has no msdynmkt_topic "
                            f"named {row.topic!r}; create it or use the topic's GUID"
                        )
                        break
                channel = CHANNEL_CODES[row.consent_channel]
                value = point.strip()
                choice = int(entry["v"])
                ts = float(entry.get("ts") or 0.0)
                folded = value.casefold()
                if topic is not None:
                    plan.wants[(folded, channel, purpose, topic, LEVEL_TOPIC)] = _Want(
                        (folded, channel, purpose, topic, LEVEL_TOPIC),
                        value,
                        choice,
                        ts,
                        consent_key(row),
                    )
                    # A topic needs its purpose row: made if missing (Opted In only when the
                    # topic is, since Journeys sends a topic only with both opted in).
                    purpose_identity = (folded, channel, purpose, "", LEVEL_PURPOSE)
                    if purpose_identity not in plan.wants:
                        ensure = OPTED_IN if choice == OPTED_IN else NOT_SET
                        key = json.dumps([row.consent_channel, row.id, None], separators=(",", ":"))
                        plan.wants[purpose_identity] = _Want(
                            purpose_identity, value, ensure, ts, key, ensure=True
                        )
                else:
                    identity = (folded, channel, purpose, "", LEVEL_PURPOSE)
                    plan.wants[identity] = _Want(identity, value, choice, ts, consent_key(row))
            if problem is not None:
                self.finish(plan, "dead", problem, error=problem)

    async def _lookup(self, values: set[str]) -> dict[Identity, list[dict[str, Any]]]:
        """Every consent row of these contact point values (any state: an inactive row still
        holds its consent), by identity: one request for the batch."""
        found: dict[Identity, list[dict[str, Any]]] = defaultdict(list)
        if not values:
            return found
        rows = await self.rt.client.find_by_column(
            CONSENTS.entity_set, "msdynmkt_contactpointvalue", sorted(values), list(ROW_COLUMNS)
        )
        for row in rows:
            identity = _identity_of(row)
            if identity is not None:
                found[identity].append(row)
        return found

    def _diff(
        self, existing: dict[Identity, list[dict[str, Any]]]
    ) -> tuple[dict[str, _Write], dict[Identity, _Write]]:
        """Rows to update (by row id) and to create (by identity), each once for the batch:
        where slots disagree (two users sharing a phone), the newest change wins."""
        updates: dict[str, _Write] = {}
        creates: dict[Identity, _Write] = {}
        for plan in self.open_plans():
            for want in plan.wants.values():
                rows = existing.get(want.identity, [])
                if not rows:
                    _offer(creates, want.identity, want, plan)
                    continue
                if want.ensure:
                    continue  # the purpose row exists: a topic row never changes it
                for row in rows:
                    if row.get("msdynmkt_value") != want.choice:
                        _offer(updates, str(row[CONSENTS.primary_id]), want, plan)
        return updates, creates

    # -- writes ----------------------------------------------------------------------------

    async def _create(self, creates: dict[Identity, _Write], updates: dict[str, _Write]) -> None:
        if not creates:
            return
        if self.locks is not None:
            held = await self.locks.acquire(
                self.rt.integration.config.instance,
                [lock_key(i) for i in creates],
                self.owner,
            )
            for identity in [i for i in creates if lock_key(i) not in held]:
                for plan in creates.pop(identity).plans:
                    plan.locked_out = True
        try:
            if creates:
                # Another writer may have created some since our lookup: look again, under lock.
                again = await self._lookup({w.want.value for w in creates.values()})
                for identity in [i for i in creates if i in again]:
                    write = creates.pop(identity)
                    if write.want.ensure:
                        continue
                    for row in again[identity]:
                        if row.get("msdynmkt_value") != write.want.choice:
                            for plan in write.plans:
                                _offer(updates, str(row[CONSENTS.primary_id]), write.want, plan)
            await self._send(list(creates.values()), create=True)
        finally:
            if self.locks is not None:
                await self.locks.release(self.owner)

    async def _update(self, updates: dict[str, _Write]) -> None:
        await self._send(list(updates.values()), create=False)

    def _body(self, write: _Write, create: bool) -> dict[str, Any]:
        want = write.want
        claim_columns = write.source.claim.columns
        body: dict[str, Any] = {
            "msdynmkt_value": want.choice,
            "msdynmkt_source": SOURCE_INTERNAL,
            "msdynmkt_logicalreason": REASON_NONE,
            "msdynmkt_reason": marker(last_event_id(claim_columns), last_event(claim_columns)),
        }
        if not create:
            return {CONSENTS.primary_id: write.row_id, **body}
        _, channel, purpose, topic, level = want.identity
        body.update(
            {
                "msdynmkt_contactpointvalue": want.value,
                "msdynmkt_contactpointtype": channel,
                "msdynmkt_contactpointconsenttype": level,
                "msdynmkt_purposeId@odata.bind": f"/{PURPOSE_TABLE.entity_set}({purpose})",
            }
        )
        if topic:
            body["msdynmkt_topicId@odata.bind"] = f"/{TOPIC_TABLE.entity_set}({topic})"
        return body

    async def _send(self, writes: list[_Write], *, create: bool) -> None:
        client = self.rt.client
        chunk = self.rt.write_chunk
        suspects: list[_Write] = []
        for start in range(0, len(writes), chunk):
            part = writes[start : start + chunk]
            bodies = [self._body(w, create) for w in part]
            try:
                if create:
                    _, request_id = await client.create_multiple(CONSENTS.entity_set, bodies)
                else:
                    request_id = await client.update_multiple(CONSENTS.entity_set, bodies)
            except RequestError:
                suspects.extend(part)
                continue
            except DataverseError as exc:
                self.fail_all([p for w in part for p in w.plans], exc)
                continue
            for write in part:
                write.done(request_id)
        if suspects:
            await self._isolate(suspects, create)

    async def _isolate(self, writes: list[_Write], create: bool) -> None:
        """Replay refused rows one by one in a `$batch` with continue-on-error."""
        client = self.rt.client
        requests = []
        for write in writes:
            body = self._body(write, create)
            if create:
                requests.append(BatchRequest("POST", client.url(CONSENTS.entity_set), body))
            else:
                row_id = body.pop(CONSENTS.primary_id)
                url = client.url(f"{CONSENTS.entity_set}({row_id})")
                requests.append(BatchRequest("PATCH", url, body, {"If-Match": "*"}))
        try:
            responses = await client.batch(
                requests, what=f"$batch of {len(requests)} consent row writes"
            )
        except DataverseError as exc:
            self.fail_all([p for w in writes for p in w.plans], exc)
            return
        for write, response in zip(writes, responses, strict=False):
            if response.status < 300:
                write.done(response.headers.get("x-ms-service-request-id"))
                continue
            error = from_batch_part(response, what="the write of this consent row")
            for plan in write.plans:
                if plan.failure is None or isinstance(error, TransientError):
                    plan.failure = error

    def _settle(self, plan: _ConsentPlan) -> None:
        if self.settle_failure(plan):
            return
        notes = "; ".join(plan.notes)
        if plan.locked_out:
            self.finish(
                plan,
                "retry",
                "another writer is creating the same consent row; will look again shortly",
                plan.written,
                next_attempt_at=self.now + RETRY_LOCKED_S,
            )
        elif plan.written:
            reason = "written: consent rows created or updated" + (f"; {notes}" if notes else "")
            self.finish(plan, "written", reason, plan.written)
        elif plan.wants:
            self.finish(
                plan, "unchanged", "already up to date: every consent row holds the desired value"
            )
        else:
            self.finish(plan, "skipped", f"nothing to write: {notes or 'no consent row mapped'}")


async def unknown_purposes_and_topics(
    client: DataverseClient, integration: Integration
) -> list[tuple[int, str, str]]:
    """``(row index, key, sentence)`` for every consent row whose purpose or topic this
    environment does not have (``validate --online``). Raises DataverseError when the tables
    cannot be read (e.g. Customer Insights - Journeys is not installed)."""
    rows = list(enumerate(integration.config.properties))
    consent_rows = [(i, r) for i, r in rows if r.target == CONTACT_POINT_CONSENT]
    if not consent_rows:
        return []
    select = [PURPOSE_TABLE.primary_id, "msdynmkt_name"]
    names = sorted({r.id for _, r in consent_rows if not is_guid(r.id)})
    guids = sorted({r.id.lower() for _, r in consent_rows if is_guid(r.id)})
    purposes = await client.find_by_column(PURPOSE_TABLE.entity_set, "msdynmkt_name", names, select)
    purposes += await client.find_by_column(
        PURPOSE_TABLE.entity_set, PURPOSE_TABLE.primary_id, guids, select
    )
    purpose_ids = {
        str(p["msdynmkt_name"]).casefold(): str(p[PURPOSE_TABLE.primary_id]).lower()
        for p in purposes
    }
    known_ids = set(purpose_ids.values())
    topic_select = [TOPIC_TABLE.primary_id, "msdynmkt_name", "_msdynmkt_purposeid_value"]
    topic_names = sorted({r.topic for _, r in consent_rows if r.topic and not is_guid(r.topic)})
    topic_guids = sorted({r.topic.lower() for _, r in consent_rows if r.topic and is_guid(r.topic)})
    topics = await client.find_by_column(
        TOPIC_TABLE.entity_set, "msdynmkt_name", topic_names, topic_select
    )
    topics += await client.find_by_column(
        TOPIC_TABLE.entity_set, TOPIC_TABLE.primary_id, topic_guids, topic_select
    )
    problems: list[tuple[int, str, str]] = []
    for index, row in consent_rows:
        purpose = row.id.lower() if is_guid(row.id) else purpose_ids.get(row.id.casefold())
        if purpose is None or purpose not in known_ids:
            problems.append(
                (
                    index,
                    "id",
                    f"this environment has no msdynmkt_purpose {row.id!r}; create it in Customer "
                    "Insights - Journeys or use an existing purpose's name or GUID.",
                )
            )
            continue
        if row.topic is None:
            continue
        wanted = row.topic.casefold()
        if not any(
            str(t.get("_msdynmkt_purposeid_value") or "").lower() == purpose
            and (
                str(t[TOPIC_TABLE.primary_id]).lower() == wanted
                or str(t["msdynmkt_name"]).casefold() == wanted
            )
            for t in topics
        ):
            problems.append(
                (
                    index,
                    "topic",
                    f"purpose {row.id!r} has no msdynmkt_topic {row.topic!r}; create it in "
                    "Customer Insights - Journeys or use one of the purpose's topics.",
                )
            )
    return problems


@dataclass
class _Write:
    """One row to create or update, for one or more slots; ``source`` is the slot whose
    (newest) value it writes."""

    want: _Want
    source: _ConsentPlan
    plans: list[_ConsentPlan]
    row_id: str | None = None

    def done(self, request_id: str | None) -> None:
        for plan in self.plans:
            plan.request_id = request_id or plan.request_id
            if plan is self.source or self.want.choice == plan.wants[self.want.identity].choice:
                plan.written[plan.wants[self.want.identity].key] = self.want.choice


def _offer(writes: dict[Any, _Write], key: Any, want: _Want, plan: _ConsentPlan) -> None:
    """Add ``plan``'s wish to the write at ``key``; the newest wish decides the value."""
    write = writes.get(key)
    if write is None:
        writes[key] = _Write(want, plan, [plan], key if isinstance(key, str) else None)
        return
    if plan not in write.plans:
        write.plans.append(plan)
    if want.ts > write.want.ts and not want.ensure:
        write.want, write.source = want, plan
