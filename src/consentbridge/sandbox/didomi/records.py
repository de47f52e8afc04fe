"""The stored shapes: a consent user (one consent state per regulation), a consent event, the
webhook `Change` a write produces, and the opaque paging cursor of `GET /consents/users`."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from consentbridge.sandbox.didomi.errors import bad_request
from consentbridge.sandbox.didomi.merge import empty_consents
from consentbridge.sandbox.didomi.models import DEFAULT_REGULATION, STATUS_CONFIRMED, JsonObject


@dataclass(frozen=True)
class Change:
    """One webhook notification: `type`, its `parameters`, the regulation, and the user whose
    deliveries it must follow in order."""

    type: str
    regulation: str
    parameters: JsonObject
    user_id: str


@dataclass
class UserRecord:
    id: str
    organization_id: str
    seq: int
    created_at: str
    updated_at: str
    version: int = 1
    organization_user_id: str | None = None
    metadata: JsonObject = field(default_factory=dict)
    country: str | None = None
    last_seen_country: str | None = None
    consents: dict[str, JsonObject] = field(default_factory=dict)
    # Consents written directly on the user (deprecated API): the base of a recomputation.
    base_consents: dict[str, JsonObject] = field(default_factory=dict)

    def view(self, regulation: str = DEFAULT_REGULATION) -> JsonObject:
        data: JsonObject = {
            "id": self.id,
            "organization_id": self.organization_id,
            "organization_user_id": self.organization_user_id,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": self.metadata,
            "consents": self.consents.get(regulation) or empty_consents(),
        }
        if self.country is not None:
            data["country"] = self.country
        if self.last_seen_country is not None:
            data["last_seen_country"] = self.last_seen_country
        return data

    def to_json(self) -> JsonObject:
        return dict(self.__dict__)


@dataclass
class EventRecord:
    seq: int
    user_id: str
    data: JsonObject

    @property
    def confirmed(self) -> bool:
        return bool(self.data["status"] == STATUS_CONFIRMED)

    @property
    def regulation(self) -> str:
        return str(self.data["regulation"])


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "after":
            raise ValueError(text)
        return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_request("'$cursor' is not a cursor returned by this API.", "$cursor") from None
