"""The integration document (CONTRACT §2) as pydantic models, with per-field rules.

The shape Didomi documents for its Dynamics 365 connector (``upsert_mode`` and
``config.{client_id, client_secret, tenant_id, instance, properties[{id, value}]}``) is accepted
verbatim; everything ConsentBridge adds is optional.

Unknown keys are refused everywhere, ``config`` included. A misspelt optional key would
otherwise fall back to its default without a word (``match_atribute`` would match contacts on
``emailaddress1``), which is worse than refusing a pasted document; the refusal names the closest
known key. Keys Didomi's console may add in the future get added here explicitly.

Rules that span several fields (duplicate columns, ``bidirectional`` needing ``didomi``) and the
mapping hook live in ``validation.py``, so that every problem can be reported at once: use
``parse_integration`` rather than ``Integration.model_validate`` on user input.

Custom rule failures are ``PydanticCustomError`` of type ``consentbridge`` whose ``reason``
completes a sentence that starts with the field name (``instance`` + ``must use https; …``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    WithJsonSchema,
    model_serializer,
)
from pydantic_core import PydanticCustomError

MAX_STRING: Final = 2048
MAX_PROPERTIES: Final = 500
MAX_TRANSFORM_ENTRIES: Final = 500
MAX_REGULATIONS: Final = 50
MAX_CREDENTIALS: Final = 32
MIN_WEBHOOK_SECRET: Final = 16
ID_SUFFIX: Final = "-d365"

DEFAULT_MATCH_ATTRIBUTE: Final = "emailaddress1"
DEFAULT_AUTHORITY_HOST: Final = "https://login.microsoftonline.com"
DEFAULT_REGULATIONS: Final = ("gdpr",)
DEFAULT_DIDOMI_BASE_URL: Final = "https://api.didomi.io/v1"
CONTACT: Final = "contact"
CONTACT_POINT_CONSENT: Final = "contactpointconsent"
TARGETS: Final = (CONTACT, CONTACT_POINT_CONSENT)
CHANNELS: Final = ("email", "sms", "voice", "custom")
DEFAULT_CHANNEL: Final = "email"
MAX_JOURNEYS_NAME: Final = 100  # msdynmkt_name of msdynmkt_purpose / msdynmkt_topic
WEB_API_PATH: Final = "/api/data/v9.2"
REDACTED: Final = "***"

# Where the secrets sit in a document; encryption, redaction and merging walk these paths
# (`secret_paths` adds those of `config.credentials[i].client_secret`).
SECRET_PATHS: Final = (
    ("config", "client_secret"),
    ("didomi", "api_secret"),
    ("webhook_auth", "client_secret"),
)
SecretPath: TypeAlias = tuple[str | int, ...]


def secret_paths(document: object) -> list[SecretPath]:
    """Every secret's path in a raw or stored document: `SECRET_PATHS`, then
    ``("config", "credentials", i, "client_secret")`` for each entry of a credentials list."""
    paths: list[SecretPath] = list(SECRET_PATHS)
    config = document.get("config") if isinstance(document, dict) else None
    credentials = config.get("credentials") if isinstance(config, dict) else None
    if isinstance(credentials, list):
        paths += [("config", "credentials", i, "client_secret") for i in range(len(credentials))]
    return paths


CUSTOM_ERROR: Final = "consentbridge"

_SLUG = re.compile(r"[a-z0-9-]{1,63}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.IGNORECASE)
_LOGICAL_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_REGULATION = re.compile(r"[a-z][a-z0-9_-]*")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,255}")
# Dataverse hosts: org.crm4.dynamics.com (the environment URL) or org.api.crm4.dynamics.com (Web
# API), in the public and sovereign clouds.
_DYNAMICS_HOST = re.compile(
    r"(?P<org>[a-z0-9-]+)\.(?:api\.)?(?P<rest>crm\d*\."
    r"(?:dynamics\.com|dynamics\.cn|microsoftdynamics\.us|appsplatform\.us))(?P<port>:\d+)?"
)


def invalid(reason: str) -> PydanticCustomError:
    """A rule failure whose ``reason`` follows the field name: ``'must use https; …'``."""
    return PydanticCustomError(CUSTOM_ERROR, "{reason}", {"reason": reason})


def _check_slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise invalid(
            "must be 1 to 63 lowercase letters, digits or hyphens; rename it, e.g. acme-d365"
        )
    return value


def _check_guid(value: str) -> str:
    if not _GUID.fullmatch(value):
        raise invalid(
            "must be a GUID such as 11111111-2222-3333-4444-555555555555; copy the Application "
            "(client) ID from the app registration's Overview page in the Entra admin center"
        )
    return value.lower()


def _check_tenant(value: str) -> str:
    if not (_GUID.fullmatch(value) or _DOMAIN.fullmatch(value)):
        raise invalid(
            "must be a GUID or a domain name such as contoso.onmicrosoft.com; copy the Directory "
            "(tenant) ID from the app registration's Overview page in the Entra admin center"
        )
    return value.lower()


def _check_logical_name(value: str) -> str:
    if not _LOGICAL_NAME.fullmatch(value):
        raise invalid(LOGICAL_NAME_REASON)
    return value


def is_logical_name(value: str) -> bool:
    return _LOGICAL_NAME.fullmatch(value) is not None


def is_guid(value: str) -> bool:
    return _GUID.fullmatch(value) is not None


LOGICAL_NAME_REASON: Final = (
    "must be the logical name of a contact column (lowercase letters, digits and "
    "underscores, such as donotbulkemail or new_smsoptin); use the logical name, "
    "not the display name"
)


def _check_regulation(value: str) -> str:
    if not _REGULATION.fullmatch(value):
        raise invalid("must be a lowercase regulation id such as gdpr or cpra; fix its spelling")
    return value


def _check_webhook_client_id(value: str) -> str:
    if not _CLIENT_ID.fullmatch(value):
        # Kept to URL-safe characters so it survives HTTP Basic and form encoding unchanged.
        raise invalid(
            "must be 1 to 255 letters, digits, '.', '_', '~' or '-'; choose an id without "
            "spaces, colons or other punctuation"
        )
    return value


def normalize_https_url(value: str, *, origin_only: bool, example: str) -> str:
    """Normalise an https URL (lowercase scheme and host, no trailing slash) or refuse it."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise invalid(f"is not a valid URL; write it like {example}") from None
    if parts.scheme.lower() != "https":
        raise invalid(f"must use https; write it like {example}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise invalid(f"must be an https URL with a host name and no user name; e.g. {example}")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise invalid(f"must not contain a query or fragment; remove them, e.g. {example}")
    path = parts.path.rstrip("/")
    if origin_only and path:
        raise invalid(
            f"must be a bare origin without a path; remove everything after the host name, "
            f"e.g. {example}"
        )
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == 443 else f"{host}:{port}"
    return f"https://{netloc}{path}"


def _check_instance(value: str) -> str:
    return normalize_https_url(value, origin_only=True, example="https://org.crm.dynamics.com")


def _check_authority_host(value: str) -> str:
    return normalize_https_url(value, origin_only=False, example=DEFAULT_AUTHORITY_HOST)


def _check_base_url(value: str) -> str:
    return normalize_https_url(value, origin_only=False, example=DEFAULT_DIDOMI_BASE_URL)


def _check_not_placeholder(value: SecretStr) -> SecretStr:
    if value.get_secret_value() == REDACTED:
        raise invalid(
            'is the placeholder "***", which keeps the stored secret only when replacing an '
            "existing integration whose endpoint for that secret is unchanged; enter the secret"
        )
    return value


def _check_webhook_secret(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_WEBHOOK_SECRET:
        # It guards our own token endpoint, so a short one could be guessed online.
        raise invalid(
            f"is shorter than {MIN_WEBHOOK_SECRET} characters; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value


TransformMap: TypeAlias = dict[str, bool | int | str | None]
Transform: TypeAlias = Literal["not"] | TransformMap


def _check_transform(value: object) -> Transform | None:
    """``"not"``, or a value map of string keys to bool / int / str / null values."""
    if value is None:
        return None
    if value == "not":
        return "not"
    if not isinstance(value, dict):
        raise invalid(
            'must be "not" or an object mapping Didomi values to column values, '
            'such as {"true": 1, "false": 2}; fix its type'
        )
    if not value:
        raise invalid('is an empty value map; add entries such as {"true": 1} or remove it')
    if len(value) > MAX_TRANSFORM_ENTRIES:
        raise invalid(f"has more than {MAX_TRANSFORM_ENTRIES} entries; keep at most that many")
    for key, mapped in value.items():
        if not isinstance(key, str) or len(key) > MAX_STRING:
            raise invalid(f"has a key that is not a string of at most {MAX_STRING} characters")
        # bool is an int subclass; both are allowed, but floats, lists and objects are not.
        if mapped is not None and not isinstance(mapped, bool | int | str):
            raise invalid(
                "maps a value to something other than true/false, an integer, a string or "
                "null; use one of those (choice columns take their integer option value)"
            )
        if isinstance(mapped, str) and len(mapped) > MAX_STRING:
            raise invalid(f"maps a value to a string longer than {MAX_STRING} characters")
    return dict(value)


_TRANSFORM_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"const": "not"},
        {
            "type": "object",
            "additionalProperties": {"type": ["boolean", "integer", "string", "null"]},
            "minProperties": 1,
            "maxProperties": MAX_TRANSFORM_ENTRIES,
        },
        {"type": "null"},
    ]
}

Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STRING)]
Slug = Annotated[Text, AfterValidator(_check_slug)]
Guid = Annotated[Text, AfterValidator(_check_guid)]
TenantId = Annotated[Text, AfterValidator(_check_tenant)]
LogicalName = Annotated[Text, AfterValidator(_check_logical_name)]
Regulation = Annotated[Text, AfterValidator(_check_regulation)]
Secret = Annotated[
    SecretStr, Field(min_length=1, max_length=MAX_STRING), AfterValidator(_check_not_placeholder)
]
WebhookSecret = Annotated[Secret, AfterValidator(_check_webhook_secret)]
TransformField = Annotated[
    Transform | None, PlainValidator(_check_transform), WithJsonSchema(_TRANSFORM_SCHEMA)
]


class _Model(BaseModel):
    # strict: a document saying "true" for a boolean is refused rather than guessed at.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


Target = Literal["contact", "contactpointconsent"]
Channel = Literal["email", "sms", "voice", "custom"]
DEFAULT_CONTACT_POINTS: Final[dict[Channel, str]] = {"email": "organization_user_id"}


class Property(_Model):
    """One mapping row: Didomi consent path ``value`` feeds contact column ``id`` (target
    ``contact``, the default) or the Journeys consent rows of purpose ``id`` (and ``topic``) on
    ``channel`` (target ``contactpointconsent``). ``regulations``: the regulations whose
    changes the row carries (default ``config.regulations``).

    ``id`` is checked per target in ``validation.py`` (a logical name, or a purpose GUID or
    name), so both kinds of rows are refused by JSON path with one sentence."""

    id: Text = Field(
        description="the logical name of a contact column, e.g. donotbulkemail, or for "
        "contactpointconsent rows a msdynmkt_purpose GUID or name"
    )
    value: Text = Field(
        description="a path into the Didomi consent state, "
        "e.g. consents_purposes_newsletter_enabled"
    )
    transform: TransformField = Field(
        default=None, description='"not" or a value map such as {"true": 1, "false": 2}'
    )
    target: Target = Field(default="contact", description='"contact" or "contactpointconsent"')
    topic: Annotated[str, StringConstraints(min_length=1, max_length=MAX_JOURNEYS_NAME)] | None = (
        Field(default=None, description="a msdynmkt_topic GUID or name")
    )
    channel: Channel | None = Field(
        default=None, description='"email" (the default), "sms", "voice" or "custom"'
    )
    regulations: list[Regulation] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REGULATIONS,
        description='a list of lowercase regulation ids such as ["cpra"]',
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The default target is left out, so a stored or shown document of a contact-only
        # integration reads exactly as it was written (Didomi's shape).
        dumped: dict[str, Any] = handler(self)
        if dumped.get("target") == CONTACT:
            del dumped["target"]
        return dumped

    @property
    def consent_channel(self) -> Channel:
        """The channel of a consent row (``email`` unless set)."""
        return self.channel or "email"


def slot_regulation(regulations: Sequence[str]) -> str:
    """The regulation part of a queue slot's key for rows serving ``regulations``: the id
    itself for one, the sorted ids joined by ``+`` for several (``cpra+gdpr``)."""
    return "+".join(sorted(set(regulations)))


def slot_regulations(slot: str) -> tuple[str, ...]:
    """The regulations of a slot key (``slot_regulation`` reversed)."""
    return tuple(slot.split("+"))


class Credential(_Model):
    """One more Entra application of ``config.credentials``: an application user in Dataverse
    with the same role as the seed's ``client_id``."""

    client_id: Guid = Field(description="the Application (client) ID of the Entra app, a GUID")
    client_secret: Secret = Field(description="a client secret of that Entra app")


class DataverseConfig(_Model):
    """The ``config`` block: how to reach Dataverse and which columns to feed."""

    client_id: Guid = Field(description="the Application (client) ID of the Entra app, a GUID")
    client_secret: Secret = Field(description="a client secret of that Entra app")
    tenant_id: TenantId = Field(
        description="the Entra tenant, a GUID or a domain such as contoso.onmicrosoft.com"
    )
    instance: Annotated[Text, AfterValidator(_check_instance)] = Field(
        description="the Dataverse environment URL, e.g. https://org.crm.dynamics.com"
    )
    properties: list[Property] = Field(
        min_length=1,
        max_length=MAX_PROPERTIES,
        description='a list of column mappings such as {"id": "donotbulkemail", '
        '"value": "consents_purposes_newsletter_enabled", "transform": "not"}',
    )
    match_attribute: LogicalName = Field(
        default=DEFAULT_MATCH_ATTRIBUTE,
        description="the contact column holding organization_user_id, e.g. emailaddress1",
    )
    authority_host: Annotated[Text, AfterValidator(_check_authority_host)] = Field(
        default=DEFAULT_AUTHORITY_HOST,
        description=f"the Entra login host, e.g. {DEFAULT_AUTHORITY_HOST}",
    )
    ca_bundle: Text | None = Field(
        default=None, description="the path of a PEM file of CA certificates to trust, or null"
    )
    regulations: list[Regulation] = Field(
        default_factory=lambda: list(DEFAULT_REGULATIONS),
        min_length=1,
        max_length=MAX_REGULATIONS,
        description='a list of lowercase regulation ids such as ["gdpr"]',
    )
    credentials: list[Credential] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CREDENTIALS,
        description="a list of further Entra apps, each an object with client_id and "
        "client_secret (an application user with the same role)",
    )

    @property
    def app_credentials(self) -> list[Credential]:
        """Every application user the integration writes as: the seed's ``client_id`` first
        (the default), then ``credentials`` in order."""
        seed = Credential.model_construct(
            client_id=self.client_id, client_secret=self.client_secret
        )
        return [seed, *(self.credentials or [])]

    contact_points: dict[Channel, Text] = Field(
        default_factory=lambda: dict(DEFAULT_CONTACT_POINTS),
        description='channel → the Didomi path of its contact point, e.g. {"email": '
        '"organization_user_id", "sms": "metadata_phone"}',
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Left out when it is the default, like a property's default target.
        dumped: dict[str, Any] = handler(self)
        if dumped.get("contact_points") == DEFAULT_CONTACT_POINTS:
            del dumped["contact_points"]
        return dumped

    def rows_of(self, target: str) -> list[Property]:
        """The property rows that write to ``target``, in mapping order."""
        return [p for p in self.properties if p.target == target]

    def regulations_of(self, prop: Property) -> tuple[str, ...]:
        """The regulations a row serves: its own, else ``config.regulations``."""
        return tuple(prop.regulations if prop.regulations is not None else self.regulations)

    def slot_of(self, prop: Property) -> str:
        """The regulation part of the key of the queue slot this row writes through."""
        return slot_regulation(self.regulations_of(prop))

    def serves(self, regulation: str) -> bool:
        """True when at least one row carries changes of ``regulation``."""
        return any(regulation in self.regulations_of(p) for p in self.properties)

    @property
    def token_scope(self) -> str:
        """The OAuth scope to ask Entra for: ``https://org.crm.dynamics.com/.default``."""
        match = _DYNAMICS_HOST.fullmatch(self.instance.removeprefix("https://"))
        if match is None:
            return f"{self.instance}/.default"
        return f"https://{match['org']}.{match['rest']}{match['port'] or ''}/.default"

    @property
    def web_api_base(self) -> str:
        """The Web API root: ``https://org.api.crm.dynamics.com/api/data/v9.2``."""
        match = _DYNAMICS_HOST.fullmatch(self.instance.removeprefix("https://"))
        if match is None:
            return f"{self.instance}{WEB_API_PATH}"
        return f"https://{match['org']}.api.{match['rest']}{match['port'] or ''}{WEB_API_PATH}"

    @property
    def authority(self) -> str:
        """The MSAL authority: ``{authority_host}/{tenant_id}``."""
        return f"{self.authority_host}/{self.tenant_id}"


class DidomiConfig(_Model):
    """The ``didomi`` block: API credentials used to write consent back to Didomi."""

    api_key: Text = Field(description="the key of a Didomi API key pair")
    api_secret: Secret = Field(description="the secret of that Didomi API key pair")
    base_url: Annotated[Text, AfterValidator(_check_base_url)] = Field(
        default=DEFAULT_DIDOMI_BASE_URL,
        description=f"the Didomi API, e.g. {DEFAULT_DIDOMI_BASE_URL}",
    )


class WebhookAuth(_Model):
    """The ``webhook_auth`` block: credentials Didomi presents to ``POST /oauth/token``."""

    client_id: Annotated[Text, AfterValidator(_check_webhook_client_id)] = Field(
        description="the client id Didomi will send to /oauth/token"
    )
    client_secret: WebhookSecret = Field(
        description=f"the client secret Didomi will send, at least {MIN_WEBHOOK_SECRET} characters"
    )


class Integration(_Model):
    """One integration: a Didomi organization synced with one Dataverse environment.

    The secret fields are ``SecretStr``, so ``repr``/``str`` and JSON dumps show ``**********``.
    """

    id: Slug = Field(description="a slug of lowercase letters, digits and hyphens, e.g. acme-d365")
    organization_id: Text | None = Field(default=None, description="the Didomi organization id")
    upsert_mode: bool = Field(default=False, description="true or false")
    bidirectional: bool = Field(default=False, description="true or false")
    config: DataverseConfig = Field(
        description="an object with client_id, client_secret, tenant_id, instance and properties"
    )
    didomi: DidomiConfig | None = Field(
        default=None, description="an object with api_key, api_secret and optionally base_url"
    )
    webhook_auth: WebhookAuth | None = Field(
        default=None, description="an object with client_id and client_secret"
    )

    @property
    def token_scope(self) -> str:
        """Shortcut for ``config.token_scope``."""
        return self.config.token_scope

    @property
    def web_api_base(self) -> str:
        """Shortcut for ``config.web_api_base``."""
        return self.config.web_api_base

    @property
    def authority(self) -> str:
        """Shortcut for ``config.authority``."""
        return self.config.authority


def slugify(text: str) -> str:
    """Lowercase ``text`` and join its runs of letters and digits with hyphens."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


def derive_id(organization_id: str) -> str | None:
    """The default integration id for a Didomi organization (``acme`` → ``acme-d365``)."""
    stem = slugify(organization_id)[: 63 - len(ID_SUFFIX)].rstrip("-")
    return f"{stem}{ID_SUFFIX}" if stem else None
