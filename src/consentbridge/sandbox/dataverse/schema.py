"""Tables and columns: column types, the standard `contact` columns with their real types and
defaults, and validation of custom columns added through `/_sandbox/columns`.

A row is a plain dict keyed by *property name*: the column's logical name, except lookups, which
the Web API shows as `_<logicalname>_value` (`_modifiedby_value`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Column types, named as `AttributeMetadata.AttributeType` names them (MultiSelectPicklist is
# `Virtual` there; metadata.py maps it).
STRING = "String"
MEMO = "Memo"
BOOLEAN = "Boolean"
PICKLIST = "Picklist"
MULTI_SELECT = "MultiSelectPicklist"
DATETIME = "DateTime"
UNIQUEIDENTIFIER = "Uniqueidentifier"
LOOKUP = "Lookup"
OWNER = "Owner"
INTEGER = "Integer"
BIGINT = "BigInt"
STATE = "State"
STATUS = "Status"
ENTITY_NAME = "EntityName"

LOOKUP_TYPES = frozenset({LOOKUP, OWNER})
CHOICE_TYPES = frozenset({PICKLIST, MULTI_SELECT, STATE, STATUS})
CUSTOM_COLUMN_TYPES = (BOOLEAN, PICKLIST, MULTI_SELECT, STRING, DATETIME)

REQUIRED_NONE = "None"
APPLICATION_REQUIRED = "ApplicationRequired"
SYSTEM_REQUIRED = "SystemRequired"

NAMESPACE = uuid.UUID("5b0e8f64-2f1e-4d57-9a0c-1d7c3b8e4a21")  # stable metadata ids


def metadata_id(*names: str) -> str:
    """A stable MetadataId, so ids survive restarts and match across snapshots."""
    return str(uuid.uuid5(NAMESPACE, "/".join(names)))


@dataclass(frozen=True, slots=True)
class Option:
    value: int
    label: str
    state: int | None = None  # for Status options: the State they belong to


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table, as far as the Web API and its metadata need it."""

    logical_name: str
    type: str
    display_name: str
    max_length: int | None = None
    options: tuple[Option, ...] = ()
    default: Any = None
    required: str = REQUIRED_NONE
    valid_for_create: bool = True
    valid_for_update: bool = True
    valid_for_read: bool = True
    targets: tuple[str, ...] = ()  # lookup targets
    custom: bool = False
    format: str | None = None  # "Email", "Text", ... for strings
    option_set_name: str | None = None
    option_values: frozenset[int] = field(default=frozenset(), compare=False)
    # A choice whose options live in a global option set (`option_set_name`), shared by columns
    # of several tables, as most Customer Insights - Journeys choices do.
    global_option_set: bool = False
    # The SchemaName when it is not derived from the logical name: a lookup's SchemaName is
    # its navigation property name (`msdynmkt_purposeId`), which `@odata.bind` must match.
    explicit_schema_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "option_values", frozenset(o.value for o in self.options))

    @property
    def property_name(self) -> str:
        """The name rows, `$select` and `$filter` use."""
        if self.type in LOOKUP_TYPES:
            return f"_{self.logical_name}_value"
        return self.logical_name

    @property
    def schema_name(self) -> str:
        if self.explicit_schema_name is not None:
            return self.explicit_schema_name
        if self.custom:
            prefix, _, rest = self.logical_name.partition("_")
            return f"{prefix}_{rest[:1].upper()}{rest[1:]}"
        return "".join(part[:1].upper() + part[1:] for part in self.logical_name.split("_"))

    @property
    def writable(self) -> bool:
        return self.valid_for_create or self.valid_for_update

    def public(self) -> dict[str, Any]:
        """How `/_sandbox/columns` describes a column."""
        data: dict[str, Any] = {"logical_name": self.logical_name, "type": self.type}
        if self.options and self.type in CHOICE_TYPES:
            data["options"] = [{"value": o.value, "label": o.label} for o in self.options]
        if self.max_length is not None:
            data["max_length"] = self.max_length
        if self.custom and self.default is not None:
            data["default"] = self.default
        return data


@dataclass(frozen=True, slots=True)
class Navigation:
    """A single-valued navigation property: `<name>@odata.bind` sets `column` to a row of
    `target` (entity set `target_set`)."""

    name: str
    column: str  # the lookup column's logical name
    target: str
    target_set: str


@dataclass
class TableSchema:
    logical_name: str
    entity_set: str
    display_name: str
    display_collection_name: str
    primary_id: str
    primary_name: str
    object_type_code: int
    privilege_name: str  # prv<Action><privilege_name>
    columns: dict[str, Column] = field(default_factory=dict)
    navigations: dict[str, Navigation] = field(default_factory=dict)
    is_custom: bool = False
    optimistic_concurrency: bool = True
    explicit_schema_name: str | None = None  # e.g. `msdynmkt_purpose`, all lowercase

    def __post_init__(self) -> None:
        self.by_property: dict[str, Column] = {}
        for column in list(self.columns.values()):
            self.by_property[column.property_name] = column

    @property
    def schema_name(self) -> str:
        if self.explicit_schema_name is not None:
            return self.explicit_schema_name
        return "".join(part[:1].upper() + part[1:] for part in self.logical_name.split("_"))

    @property
    def metadata_id(self) -> str:
        return metadata_id("entity", self.logical_name)

    @property
    def edm_type(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    def add_column(self, column: Column) -> None:
        self.columns[column.logical_name] = column
        self.by_property[column.property_name] = column

    def remove_column(self, logical_name: str) -> None:
        column = self.columns.pop(logical_name, None)
        if column is not None:
            self.by_property.pop(column.property_name, None)

    def property(self, name: str) -> Column | None:
        return self.by_property.get(name)

    def privilege(self, action: str) -> str:
        return f"prv{action}{self.privilege_name}"


def table(
    logical_name: str,
    entity_set: str,
    display: tuple[str, str],
    primary: tuple[str, str],
    object_type_code: int,
    privilege_name: str,
    columns: Iterable[Column],
    navigations: Sequence[Navigation] = (),
    optimistic_concurrency: bool = True,
    schema_name: str | None = None,
) -> TableSchema:
    return TableSchema(
        logical_name=logical_name,
        entity_set=entity_set,
        display_name=display[0],
        display_collection_name=display[1],
        primary_id=primary[0],
        primary_name=primary[1],
        object_type_code=object_type_code,
        privilege_name=privilege_name,
        columns={c.logical_name: c for c in columns},
        navigations={n.name: n for n in navigations},
        optimistic_concurrency=optimistic_concurrency,
        explicit_schema_name=schema_name,
    )


# --- columns every table has ---------------------------------------------------------------


def primary_key(logical_name: str, display_name: str) -> Column:
    return Column(logical_name, UNIQUEIDENTIFIER, display_name, valid_for_update=False)


def system_columns(owned: bool = True) -> list[Column]:
    """createdon/modifiedon, createdby/modifiedby, ownerid and versionnumber, which the
    server maintains (not writable)."""
    columns = [
        Column("createdon", DATETIME, "Created On", valid_for_create=False, valid_for_update=False),
        Column(
            "modifiedon", DATETIME, "Modified On", valid_for_create=False, valid_for_update=False
        ),
        Column(
            "createdby",
            LOOKUP,
            "Created By",
            targets=("systemuser",),
            valid_for_create=False,
            valid_for_update=False,
        ),
        Column(
            "modifiedby",
            LOOKUP,
            "Modified By",
            targets=("systemuser",),
            valid_for_create=False,
            valid_for_update=False,
        ),
        Column(
            "versionnumber",
            BIGINT,
            "Version Number",
            valid_for_create=False,
            valid_for_update=False,
        ),
    ]
    if owned:
        columns.append(
            Column(
                "ownerid",
                OWNER,
                "Owner",
                targets=("systemuser", "team"),
                valid_for_create=False,
                valid_for_update=False,
                required=SYSTEM_REQUIRED,
            )
        )
    return columns


def boolean(name: str, display: str, default: bool, labels: tuple[str, str]) -> Column:
    """A Two Options column; `labels` are the (True, False) labels."""
    return Column(
        name,
        BOOLEAN,
        display,
        default=default,
        options=(Option(1, labels[0]), Option(0, labels[1])),
        required=SYSTEM_REQUIRED,
        option_set_name=f"contact_{name}",
    )


def state_and_status(
    entity: str, states: Sequence[Option], statuses: Sequence[Option]
) -> list[Column]:
    return [
        Column(
            "statecode",
            STATE,
            "Status",
            options=tuple(states),
            default=states[0].value,
            required=SYSTEM_REQUIRED,
            option_set_name=f"{entity}_statecode",
        ),
        Column(
            "statuscode",
            STATUS,
            "Status Reason",
            options=tuple(statuses),
            default=statuses[0].value,
            option_set_name=f"{entity}_statuscode",
        ),
    ]


# --- contact -----------------------------------------------------------------------------

CONTACT = "contact"
_DO_NOT = ("Do Not Allow", "Allow")


def contact_schema() -> TableSchema:
    """The stock `contact` table: the consent columns with their documented types and defaults
    (MS Learn, contact entity reference) and enough identity columns to match people."""
    columns = [
        primary_key("contactid", "Contact"),
        Column("firstname", STRING, "First Name", max_length=50, format="Text"),
        Column("middlename", STRING, "Middle Name", max_length=50, format="Text"),
        Column(
            "lastname",
            STRING,
            "Last Name",
            max_length=50,
            format="Text",
            required=APPLICATION_REQUIRED,
        ),
        Column(
            "fullname",
            STRING,
            "Full Name",
            max_length=160,
            format="Text",
            valid_for_create=False,
            valid_for_update=False,
        ),
        Column("emailaddress1", STRING, "Email", max_length=100, format="Email"),
        Column("emailaddress2", STRING, "Email Address 2", max_length=100, format="Email"),
        Column("emailaddress3", STRING, "Email Address 3", max_length=100, format="Email"),
        Column("telephone1", STRING, "Business Phone", max_length=50, format="Phone"),
        Column("mobilephone", STRING, "Mobile Phone", max_length=50, format="Phone"),
        Column("jobtitle", STRING, "Job Title", max_length=100, format="Text"),
        Column("address1_city", STRING, "Address 1: City", max_length=80, format="Text"),
        Column("address1_country", STRING, "Address 1: Country/Region", max_length=80),
        Column("externaluseridentifier", STRING, "External User Identifier", max_length=50),
        Column("employeeid", STRING, "Employee", max_length=50, format="Text"),
        Column("description", MEMO, "Description", max_length=2000),
        boolean("donotemail", "Do not allow Emails", False, _DO_NOT),
        boolean("donotbulkemail", "Do not allow Bulk Emails", False, _DO_NOT),
        boolean("donotphone", "Do not allow Phone Calls", False, _DO_NOT),
        boolean("donotpostalmail", "Do not allow Mails", False, _DO_NOT),
        boolean("donotbulkpostalmail", "Do not allow Bulk Mails", False, ("Yes", "No")),
        boolean("donotfax", "Do not allow Faxes", False, _DO_NOT),
        boolean("donotsendmm", "Send Marketing Materials", False, ("Do Not Send", "Send")),
        boolean("followemail", "Follow Email Activity", True, ("Allow", "Do Not Allow")),
        Column(
            "preferredcontactmethodcode",
            PICKLIST,
            "Preferred Method of Contact",
            options=(
                Option(1, "Any"),
                Option(2, "Email"),
                Option(3, "Phone"),
                Option(4, "Fax"),
                Option(5, "Mail"),
            ),
            default=1,
            option_set_name="contact_preferredcontactmethodcode",
        ),
        *state_and_status(
            CONTACT,
            [Option(0, "Active"), Option(1, "Inactive")],
            [Option(1, "Active", state=0), Option(2, "Inactive", state=1)],
        ),
        *system_columns(),
    ]
    return table(
        CONTACT,
        "contacts",
        ("Contact", "Contacts"),
        ("contactid", "fullname"),
        2,
        "Contact",
        columns,
    )


def full_name(row: dict[str, Any]) -> str | None:
    """`fullname` as Dataverse composes it by default: "First Last"."""
    parts = [row.get("firstname"), row.get("lastname")]
    text = " ".join(p for p in parts if isinstance(p, str) and p)
    return text or None


# --- custom columns ----------------------------------------------------------------------

_CUSTOM_NAME_RE = re.compile(r"[a-z][a-z0-9]{1,7}_[a-z0-9][a-z0-9_]{0,40}")
DEFAULT_CUSTOM_STRING_LENGTH = 100
MAX_STRING_LENGTH = 4000


def custom_column(spec: dict[str, Any], schema: TableSchema) -> Column:
    """A custom column from a `/_sandbox/columns` body; ValueError (one sentence) if bad."""
    table_name = spec.get("table", CONTACT)
    if table_name != schema.logical_name:
        raise ValueError(f"Only the '{schema.logical_name}' table takes custom columns.")
    name = spec.get("logical_name")
    if not isinstance(name, str) or not _CUSTOM_NAME_RE.fullmatch(name):
        raise ValueError(
            "Field 'logical_name' must be a lowercase name with a publisher prefix, such as "
            "'new_smsoptin'."
        )
    if name in schema.columns:
        raise ValueError(f"The {schema.logical_name} table already has a column '{name}'.")
    kind = spec.get("type")
    if kind not in CUSTOM_COLUMN_TYPES:
        raise ValueError(f"Field 'type' must be one of {', '.join(CUSTOM_COLUMN_TYPES)}.")
    display = spec.get("display_name") or name
    if not isinstance(display, str):
        raise ValueError("Field 'display_name' must be a string.")
    if kind in (PICKLIST, MULTI_SELECT):
        options = _custom_options(spec.get("options"))
        # A choice column's "default choice" (DefaultFormValue); a multi-select has none here.
        choice_default = spec.get("default") if kind == PICKLIST else None
        if choice_default is not None and choice_default not in {o.value for o in options}:
            raise ValueError("Field 'default' must be the value of one of the options.")
        return Column(
            name,
            kind,
            display,
            options=options,
            default=choice_default,
            custom=True,
            option_set_name=f"{schema.logical_name}_{name}",
        )
    if kind == BOOLEAN:
        default = spec.get("default", False)
        if not isinstance(default, bool):
            raise ValueError("Field 'default' of a Boolean column must be true or false.")
        return Column(
            name,
            BOOLEAN,
            display,
            default=default,
            options=(Option(1, "Yes"), Option(0, "No")),
            custom=True,
            option_set_name=f"{schema.logical_name}_{name}",
        )
    if kind == STRING:
        length = spec.get("max_length", DEFAULT_CUSTOM_STRING_LENGTH)
        if not isinstance(length, int) or isinstance(length, bool):
            raise ValueError("Field 'max_length' must be an integer.")
        if not 1 <= length <= MAX_STRING_LENGTH:
            raise ValueError(f"Field 'max_length' must be between 1 and {MAX_STRING_LENGTH}.")
        return Column(name, STRING, display, max_length=length, custom=True, format="Text")
    return Column(name, DATETIME, display, custom=True)


def _custom_options(raw: object) -> tuple[Option, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(
            'Field \'options\' must list the choices, e.g. [{"value": 1, "label": "Yes"}].'
        )
    options: list[Option] = []
    seen: set[int] = set()
    for item in raw:
        value = item.get("value") if isinstance(item, dict) else None
        label = item.get("label") if isinstance(item, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or not isinstance(label, str):
            raise ValueError("Each option needs an integer 'value' and a string 'label'.")
        if value in seen:
            raise ValueError(f"Option value {value} appears twice; option values must be unique.")
        seen.add(value)
        options.append(Option(value, label))
    return tuple(options)


def column_from_public(data: dict[str, Any], schema: TableSchema) -> Column:
    """Rebuild a custom column from `Column.public()` (snapshots)."""
    spec = {"table": schema.logical_name, **data}
    return custom_column(spec, schema)
