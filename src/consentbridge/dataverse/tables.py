"""The Dataverse tables ConsentBridge reads and writes, by their three names.

Every module that talks about a table (the client's bulk operations, the metadata reader,
webhook registration, the sync targets) takes one of these instead of spelling ``contact``, so
writing to another table is a new ``Table``, not edits across the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Table:
    logical_name: str  # contact
    entity_set: str  # contacts
    primary_id: str  # contactid

    @property
    def odata_type(self) -> str:
        """The ``@odata.type`` of a row in a bulk operation's ``Targets``."""
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    @property
    def definition_path(self) -> str:
        """The table's ``EntityDefinitions`` path (metadata)."""
        return f"EntityDefinitions(LogicalName='{self.logical_name}')"


CONTACT_TABLE: Final = Table("contact", "contacts", "contactid")
CONTACT_POINT_CONSENT_TABLE: Final = Table(
    "msdynmkt_contactpointconsent4",
    "msdynmkt_contactpointconsent4s",
    "msdynmkt_contactpointconsent4id",
)
PURPOSE_TABLE: Final = Table("msdynmkt_purpose", "msdynmkt_purposes", "msdynmkt_purposeid")
TOPIC_TABLE: Final = Table("msdynmkt_topic", "msdynmkt_topics", "msdynmkt_topicid")

TABLES: Final = {
    t.entity_set: t
    for t in (CONTACT_TABLE, CONTACT_POINT_CONSENT_TABLE, PURPOSE_TABLE, TOPIC_TABLE)
}


def table_of(entity_set: str) -> Table:
    """The known table of an entity set; otherwise one named by the usual plural rule."""
    known = TABLES.get(entity_set)
    if known is not None:
        return known
    logical = entity_set[:-1] if entity_set.endswith("s") else entity_set
    return Table(logical, entity_set, f"{logical}id")
