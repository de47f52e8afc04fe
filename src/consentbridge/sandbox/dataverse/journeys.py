"""Customer Insights - Journeys consent: the tables `msdynmkt_contactpointconsent4` (consent
rows), `msdynmkt_purpose` and `msdynmkt_topic` with their documented columns, global choices,
navigation property names and messages; the server-maintained `owningbusinessunit`; and the
seeded compliance-style set of purposes and topics with stable ids.

Facts: MS Learn's generated entity references (`msdynmkt_contactpointconsent4`,
`msdynmkt_purpose`, `msdynmkt_topic`) as summarised in shared/reference/journeys.md. Consent rows
have **no alternate key**: two rows with the same value, channel and purpose are accepted, as
Dataverse accepts them. `Upsert` and `UpsertMultiple` are callable but are not events (no custom
steps may be registered on them); Create, Update, Delete, CreateMultiple and UpdateMultiple are.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from consentbridge.sandbox.dataverse import registration
from consentbridge.sandbox.dataverse import schema as s
from consentbridge.sandbox.dataverse.rows import Row
from consentbridge.sandbox.dataverse.schema import Column, Navigation, Option
from consentbridge.sandbox.dataverse.tables import Database, Table
from consentbridge.sandbox.dataverse.values import now_utc, parse_guid

CONSENT = "msdynmkt_contactpointconsent4"
PURPOSE = "msdynmkt_purpose"
TOPIC = "msdynmkt_topic"
CONSENT_SET = "msdynmkt_contactpointconsent4s"
PURPOSE_SET = "msdynmkt_purposes"
TOPIC_SET = "msdynmkt_topics"
TABLES = (PURPOSE, TOPIC, CONSENT)

# Navigation property names (the lookups' SchemaNames): `@odata.bind` must use these exactly.
PURPOSE_NAVIGATION = "msdynmkt_purposeId"
TOPIC_NAVIGATION = "msdynmkt_topicId"
MESSAGE_NAVIGATION = "email_msdynmkt_messageid"

# msdynmkt_contactpointtype (Channel)
CHANNEL_EMAIL = 534120000
CHANNEL_TEXT_MESSAGE = 534120001
CHANNEL_CUSTOM = 534120002
CHANNEL_VOICE = 534120003
# msdynmkt_consentvalue (Consent status)
NOT_SET = 534120000
OPTED_IN = 534120001
OPTED_OUT = 534120002
# msdynmkt_consentlevel (Consent type)
LEVEL_PURPOSE = 534120000
LEVEL_TOPIC = 534120001
# msdynmkt_consentsource (Source)
SOURCE_INTERNAL = 534120000
# msdynmkt_reason (Reason)
REASON_NONE = 534119999
# msdynmkt_purposetype
PURPOSE_COMMERCIAL = 534120000
PURPOSE_TRANSACTIONAL = 534120001
PURPOSE_TRACKING = 534120002
# msdynmkt_purposeenforcementmodel
RESTRICTIVE = 534120000
NON_RESTRICTIVE = 534120001
DISABLED = 534120002

CHANNELS = {
    CHANNEL_EMAIL: "Email",
    CHANNEL_TEXT_MESSAGE: "Text Message",
    CHANNEL_CUSTOM: "Custom",
    CHANNEL_VOICE: "Voice",
}
CONSENT_VALUES = {NOT_SET: "Not Set", OPTED_IN: "Opted In", OPTED_OUT: "Opted Out"}
CONSENT_LEVELS = {LEVEL_PURPOSE: "Purpose", LEVEL_TOPIC: "Topic"}
SOURCES = {
    SOURCE_INTERNAL: "Internal",
    534120001: "Preference page",
    534120002: "Text message",
    534120003: "Loaded",
    534120004: "Preference Center",
    534120005: "Realtime Marketing Form",
    534120006: "Subscription Center",
    534120007: "Email - list-unsubscribe",
}
REASONS = {
    REASON_NONE: "No reasons",
    534120000: "Opt-in - Advertisement",
    534120001: "Opt-in - Landing page",
    534120002: "Opt-in - Events",
    534120003: "Opt-out - Content was irrelevant",
    534120004: "Opt-out - Received too frequently",
    534120005: "Opt-out - Didn\u2019t recall signing up",
    534120006: "Opt-out - Privacy concerns",
    534120007: "Opt-out - One-click unsubscribe",
}
PURPOSE_TYPES = {
    PURPOSE_COMMERCIAL: "Commercial Communication",
    PURPOSE_TRANSACTIONAL: "Transactional Communication",
    PURPOSE_TRACKING: "Tracking",
}
ENFORCEMENT_MODELS = {
    RESTRICTIVE: "Restrictive",
    NON_RESTRICTIVE: "Non-Restrictive",
    DISABLED: "Disabled",
}

# Object type codes of solution tables differ per organization; these are the sandbox's.
_TYPE_CODES = {PURPOSE: 10740, TOPIC: 10741, CONSENT: 10742}
SEED_NAMESPACE = uuid.UUID("6f1c2a4e-7d0b-5c3e-9a8f-1b2c3d4e5f60")
# The organization's SYSTEM user, which owns the seeded purposes and topics.
SYSTEM_USER_ID = str(uuid.uuid5(SEED_NAMESPACE, "systemuser/SYSTEM"))


def _choice(
    name: str,
    display: str,
    global_name: str,
    options: Mapping[int, str],
    *,
    required: str = s.REQUIRED_NONE,
    default: int | None = None,
) -> Column:
    return Column(
        name,
        s.PICKLIST,
        display,
        options=tuple(Option(value, label) for value, label in options.items()),
        default=default,
        required=required,
        option_set_name=global_name,
        global_option_set=True,
    )


def _text(name: str, display: str, length: int, required: str = s.REQUIRED_NONE) -> Column:
    return Column(name, s.STRING, display, max_length=length, format="Text", required=required)


def _lookup(
    name: str, display: str, target: str, navigation: str, required: str = s.REQUIRED_NONE
) -> Column:
    return Column(
        name,
        s.LOOKUP,
        display,
        targets=(target,),
        required=required,
        explicit_schema_name=navigation if navigation.lower() == name else None,
    )


def _server_columns(entity: str) -> list[Column]:
    """statecode/statuscode, the system columns and `owningbusinessunit`."""
    return [
        *s.state_and_status(
            entity,
            [Option(0, "Active"), Option(1, "Inactive")],
            [Option(1, "Active", state=0), Option(2, "Inactive", state=1)],
        ),
        *s.system_columns(),
        Column(
            "owningbusinessunit",
            s.LOOKUP,
            "Owning Business Unit",
            targets=("businessunit",),
            valid_for_create=False,
            valid_for_update=False,
        ),
        Column(
            "overriddencreatedon",
            s.DATETIME,
            "Record Created On",
            valid_for_update=False,
        ),
        Column("importsequencenumber", s.INTEGER, "Import Sequence Number", valid_for_update=False),
    ]


def purpose_schema() -> s.TableSchema:
    enforcement = "msdynmkt_purposeenforcementmodel"
    columns = [
        s.primary_key("msdynmkt_purposeid", "Purpose"),
        _text("msdynmkt_name", "Name", 100, s.APPLICATION_REQUIRED),
        _text("msdynmkt_description", "Description", 100),
        _choice(
            "msdynmkt_type",
            "Type",
            "msdynmkt_purposetype",
            PURPOSE_TYPES,
            required=s.APPLICATION_REQUIRED,
        ),
        _choice(
            "msdynmkt_enforcementmodel",
            "Email Enforcement Model",
            enforcement,
            ENFORCEMENT_MODELS,
            required=s.APPLICATION_REQUIRED,
        ),
        _choice(
            "msdynmkt_smsenforcementmodel",
            "SMS Enforcement Model",
            enforcement,
            ENFORCEMENT_MODELS,
            default=RESTRICTIVE,
        ),
        _choice(
            "msdynmkt_voiceenforcementmodel",
            "Voice Enforcement Model",
            enforcement,
            ENFORCEMENT_MODELS,
            default=RESTRICTIVE,
        ),
        _choice(
            "msdynmkt_customenforcementmodel",
            "Custom Enforcement Model",
            enforcement,
            ENFORCEMENT_MODELS,
            default=RESTRICTIVE,
        ),
        Column("msdynmkt_topiccount", s.INTEGER, "Topics", required=s.APPLICATION_REQUIRED),
        *_server_columns(PURPOSE),
    ]
    return s.table(
        PURPOSE,
        PURPOSE_SET,
        ("Purpose", "Purposes"),
        ("msdynmkt_purposeid", "msdynmkt_name"),
        _TYPE_CODES[PURPOSE],
        PURPOSE,
        columns,
        schema_name=PURPOSE,
    )


def topic_schema() -> s.TableSchema:
    columns = [
        s.primary_key("msdynmkt_topicid", "Topic"),
        _text("msdynmkt_name", "Name", 100, s.APPLICATION_REQUIRED),
        _lookup(
            "msdynmkt_purposeid",
            "Purpose",
            PURPOSE,
            PURPOSE_NAVIGATION,
            s.APPLICATION_REQUIRED,
        ),
        *_server_columns(TOPIC),
    ]
    return s.table(
        TOPIC,
        TOPIC_SET,
        ("Topic", "Topics"),
        ("msdynmkt_topicid", "msdynmkt_name"),
        _TYPE_CODES[TOPIC],
        TOPIC,
        columns,
        [Navigation(PURPOSE_NAVIGATION, "msdynmkt_purposeid", PURPOSE, PURPOSE_SET)],
        schema_name=TOPIC,
    )


def consent_schema() -> s.TableSchema:
    consent_value = "msdynmkt_consentvalue"
    columns = [
        s.primary_key("msdynmkt_contactpointconsent4id", "Contact Point Consent"),
        _text("msdynmkt_contactpointvalue", "Contact point", 400, s.APPLICATION_REQUIRED),
        _choice(
            "msdynmkt_contactpointtype",
            "Channel",
            "msdynmkt_contactpointtype",
            CHANNELS,
            required=s.APPLICATION_REQUIRED,
        ),
        _choice(
            "msdynmkt_value",
            "Consent status",
            consent_value,
            CONSENT_VALUES,
            required=s.APPLICATION_REQUIRED,
        ),
        _choice(
            "msdynmkt_contactpointconsenttype",
            "Consent type",
            "msdynmkt_consentlevel",
            CONSENT_LEVELS,
        ),
        _lookup(
            "msdynmkt_purposeid",
            "Purpose",
            PURPOSE,
            PURPOSE_NAVIGATION,
            s.APPLICATION_REQUIRED,
        ),
        _lookup("msdynmkt_topicid", "Topic", TOPIC, TOPIC_NAVIGATION),
        _choice(
            "msdynmkt_source",
            "Source",
            "msdynmkt_consentsource",
            SOURCES,
            required=s.APPLICATION_REQUIRED,
            default=SOURCE_INTERNAL,
        ),
        _choice(
            "msdynmkt_logicalreason",
            "Reason",
            "msdynmkt_reason",
            REASONS,
            required=s.APPLICATION_REQUIRED,
        ),
        _text("msdynmkt_reason", "Reason Description", 500),
        _text("msdynmkt_modifiedonbehalf", "Who requested the change", 500),
        Column(
            "msdynmkt_messageid",
            s.LOOKUP,
            "Message",
            targets=("email",),
            explicit_schema_name="msdynmkt_messageId",
        ),
        Column("msdynmkt_migrationtimestamp", s.DATETIME, "Migration timestamp"),
        _choice(
            "msdynmkt_uionly_value_tracking",
            "Tracking (used in ui only)",
            consent_value,
            CONSENT_VALUES,
            default=NOT_SET,
        ),
        *_server_columns(CONSENT),
    ]
    return s.table(
        CONSENT,
        CONSENT_SET,
        ("Contact Point Consent", "Contact Point Consents"),
        ("msdynmkt_contactpointconsent4id", "msdynmkt_contactpointvalue"),
        _TYPE_CODES[CONSENT],
        CONSENT,
        columns,
        [
            Navigation(PURPOSE_NAVIGATION, "msdynmkt_purposeid", PURPOSE, PURPOSE_SET),
            Navigation(TOPIC_NAVIGATION, "msdynmkt_topicid", TOPIC, TOPIC_SET),
            Navigation(MESSAGE_NAVIGATION, "msdynmkt_messageid", "email", "emails"),
        ],
        schema_name=CONSENT,
    )


def schemas() -> list[s.TableSchema]:
    return [purpose_schema(), topic_schema(), consent_schema()]


# --- write rules -------------------------------------------------------------------------------


def rules(business_unit_id: str) -> dict[str, Callable[[Database, Table, Row, Row | None], None]]:
    """Writer rules for the three tables: a new row belongs to the caller's business unit."""

    def owning_business_unit(db: Database, table: Table, new: Row, old: Row | None) -> None:
        if old is None:
            new["_owningbusinessunit_value"] = business_unit_id

    return {name: owning_business_unit for name in TABLES}


# --- messages ----------------------------------------------------------------------------------

# (message, is an event): the entity reference's Messages table for these messages.
CONSENT_MESSAGES = (
    ("Create", True),
    ("Update", True),
    ("Delete", True),
    ("CreateMultiple", True),
    ("UpdateMultiple", True),
    ("Upsert", False),
    ("UpsertMultiple", False),
)


def seed_filters(db: Database) -> None:
    """`sdkmessagefilters` for the three tables; Upsert and UpsertMultiple are not events
    (`iscustomprocessingstepallowed` false), so no step can be registered on them."""
    filters = db.table(registration.SDKMESSAGEFILTER).store
    stamp = now_utc()
    for entity in TABLES:
        for message, is_event in CONSENT_MESSAGES:
            filters.put(
                {
                    "sdkmessagefilterid": registration.filter_id(message, entity),
                    "name": f"{message} of {entity}",
                    "_sdkmessageid_value": registration.message_id(message),
                    "primaryobjecttypecode": entity,
                    "secondaryobjecttypecode": "none",
                    "iscustomprocessingstepallowed": is_event,
                    "availability": 0,
                    "createdon": stamp,
                    "modifiedon": stamp,
                    "versionnumber": db.next_version(),
                }
            )


# --- seeded purposes and topics ------------------------------------------------------------------


def purpose_id(name: str) -> str:
    """The stable id of a purpose the sandbox seeds (or `/_sandbox/purposes` adds) by name."""
    return str(uuid.uuid5(SEED_NAMESPACE, f"purpose/{name}"))


def topic_id(purpose_name: str, name: str) -> str:
    """The stable id of a topic under the purpose named `purpose_name`."""
    return str(uuid.uuid5(SEED_NAMESPACE, f"topic/{purpose_name}/{name}"))


@dataclass(frozen=True)
class PurposeSeed:
    name: str
    type: int
    email: int  # email enforcement model
    topics: tuple[str, ...] = ()
    description: str | None = None


SEEDS = (
    PurposeSeed(
        "Commercial communications",
        PURPOSE_COMMERCIAL,
        NON_RESTRICTIVE,
        ("Product updates", "Events"),
        "Marketing e-mail and text messages.",
    ),
    PurposeSeed("Newsletter", PURPOSE_COMMERCIAL, RESTRICTIVE, ("Events",), "The newsletter."),
    PurposeSeed("Transactional", PURPOSE_TRANSACTIONAL, DISABLED, (), "Receipts and notices."),
    PurposeSeed("Tracking", PURPOSE_TRACKING, RESTRICTIVE, (), "Opens, clicks and web tracking."),
)

TYPE_NAMES = {"commercial": PURPOSE_COMMERCIAL, "transactional": PURPOSE_TRANSACTIONAL}
TYPE_NAMES["tracking"] = PURPOSE_TRACKING
ENFORCEMENT_NAMES = {
    "restrictive": RESTRICTIVE,
    "non-restrictive": NON_RESTRICTIVE,
    "disabled": DISABLED,
}


class Catalog:
    """The organization's purposes and topics, written straight into the tables (as a
    Journeys administrator creates them in the app: no webhooks, no history)."""

    def __init__(self, db: Database, business_unit_id: str, owner_id: str = SYSTEM_USER_ID) -> None:
        self.db = db
        self.business_unit_id = business_unit_id
        self.owner_id = owner_id

    def seed(self) -> None:
        for seed in SEEDS:
            row_id = str(self._add_purpose(seed)["msdynmkt_purposeid"])
            for topic in seed.topics:
                parent = self.db.table(PURPOSE).store.get(row_id)
                assert parent is not None
                self._add_topic(parent, topic)

    def _system(self) -> Row:
        stamp = now_utc()
        return {
            "createdon": stamp,
            "modifiedon": stamp,
            "_createdby_value": self.owner_id,
            "_modifiedby_value": self.owner_id,
            "_ownerid_value": self.owner_id,
            "_owningbusinessunit_value": self.business_unit_id,
            "statecode": 0,
            "statuscode": 1,
            "versionnumber": self.db.next_version(),
        }

    def _add_purpose(self, seed: PurposeSeed) -> Row:
        row: Row = {
            "msdynmkt_purposeid": purpose_id(seed.name),
            "msdynmkt_name": seed.name,
            "msdynmkt_description": seed.description,
            "msdynmkt_type": seed.type,
            "msdynmkt_enforcementmodel": seed.email,
            "msdynmkt_smsenforcementmodel": RESTRICTIVE,
            "msdynmkt_voiceenforcementmodel": RESTRICTIVE,
            "msdynmkt_customenforcementmodel": RESTRICTIVE,
            "msdynmkt_topiccount": 0,
            **self._system(),
        }
        self.db.table(PURPOSE).store.put(row)
        return row

    def _add_topic(self, parent: Row, name: str) -> Row:
        row: Row = {
            "msdynmkt_topicid": topic_id(str(parent.get("msdynmkt_name")), name),
            "msdynmkt_name": name,
            "_msdynmkt_purposeid_value": parent["msdynmkt_purposeid"],
            **self._system(),
        }
        self.db.table(TOPIC).store.put(row)
        count = parent.get("msdynmkt_topiccount")
        self.db.table(PURPOSE).store.put(
            {
                **parent,
                "msdynmkt_topiccount": (count if isinstance(count, int) else 0) + 1,
                "versionnumber": self.db.next_version(),
            }
        )
        return row

    # --- control API ---------------------------------------------------------------------------

    def public(self) -> list[dict[str, Any]]:
        """Every purpose with its topics, as `GET /_sandbox/purposes` lists them."""
        topics: dict[str, list[dict[str, Any]]] = {}
        for topic in sorted(self.db.table(TOPIC).store, key=_name):
            parent = str(topic.get("_msdynmkt_purposeid_value"))
            topics.setdefault(parent, []).append(
                {"id": topic["msdynmkt_topicid"], "name": topic.get("msdynmkt_name")}
            )
        out = []
        for row in sorted(self.db.table(PURPOSE).store, key=_name):
            row_id = str(row["msdynmkt_purposeid"])
            out.append(
                {
                    "id": row_id,
                    "name": row.get("msdynmkt_name"),
                    "type": _label(PURPOSE_TYPES, row.get("msdynmkt_type")),
                    "email_enforcement": _label(
                        ENFORCEMENT_MODELS, row.get("msdynmkt_enforcementmodel")
                    ),
                    "topics": topics.get(row_id, []),
                }
            )
        return out

    def add_purpose(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A purpose from a `POST /_sandbox/purposes` body; ValueError (one sentence) if bad."""
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ValueError("Field 'name' must be the purpose's name (1 to 100 characters).")
        if self._purpose_named(name) is not None:
            raise ValueError(f"A purpose named '{name}' exists already; choose another name.")
        kind = _named(spec.get("type", "commercial"), TYPE_NAMES, "type")
        default_model = NON_RESTRICTIVE if kind == PURPOSE_COMMERCIAL else DISABLED
        if kind == PURPOSE_TRACKING:
            default_model = RESTRICTIVE
        email = _named(
            spec.get("email_enforcement", default_model), ENFORCEMENT_NAMES, "email_enforcement"
        )
        description = spec.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 100):
            raise ValueError("Field 'description' must be text of at most 100 characters.")
        self._add_purpose(PurposeSeed(name, kind, email, (), description))
        return next(p for p in self.public() if p["name"] == name)

    def add_topic(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A topic from a `POST /_sandbox/topics` body (`purpose`: name or id, `name`)."""
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise ValueError("Field 'name' must be the topic's name (1 to 100 characters).")
        wanted = spec.get("purpose")
        parent = self._purpose_named(wanted) if isinstance(wanted, str) else None
        if parent is None and isinstance(wanted, str) and parse_guid(wanted) is not None:
            parent = self.db.table(PURPOSE).store.get(str(parse_guid(wanted)))
        if parent is None:
            raise ValueError(
                "Field 'purpose' must name an existing purpose (its name or id); list them "
                "with GET /_sandbox/purposes."
            )
        purpose_name = str(parent.get("msdynmkt_name"))
        parent_id = parent["msdynmkt_purposeid"]
        if any(
            t.get("_msdynmkt_purposeid_value") == parent_id and t.get("msdynmkt_name") == name
            for t in self.db.table(TOPIC).store
        ):
            raise ValueError(f"Purpose '{purpose_name}' has a topic named '{name}' already.")
        row = self._add_topic(parent, name)
        return {"id": row["msdynmkt_topicid"], "name": name, "purpose_id": parent_id}

    def _purpose_named(self, name: str) -> Row | None:
        return next(
            (r for r in self.db.table(PURPOSE).store if r.get("msdynmkt_name") == name), None
        )


def _name(row: Row) -> str:
    return str(row.get("msdynmkt_name") or "")


def _label(labels: Mapping[int, str], value: object) -> str | None:
    return labels.get(value) if isinstance(value, int) else None


def _named(value: object, names: Mapping[str, int], field_name: str) -> int:
    if isinstance(value, str) and value.lower() in names:
        return names[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in names.values():
        return value
    raise ValueError(f"Field '{field_name}' must be one of {', '.join(names)}.")
