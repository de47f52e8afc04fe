"""The emulator's own request/response model, shared by HTTP requests and `$batch` parts: the
caller (application user), the per-request context, `Prefer` parsing and JSON responses with
Dataverse's OData headers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from consentbridge.sandbox.dataverse.caller import Bypass, Caller, Origin
from consentbridge.sandbox.dataverse.errors import DataverseError, bad_query, payload_error
from consentbridge.sandbox.dataverse.transaction import Transaction

API_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"


@dataclass
class Context:
    """What every operation of one HTTP request shares (a `$batch` shares it with its parts)."""

    caller: Caller
    origin: str  # https://127.0.0.1:8443
    request_id: str
    correlation_id: str
    transaction: Transaction | None = None
    content_ids: dict[str, str] = field(default_factory=dict)  # Content-ID → entity URL
    user_agent: str = ""  # of the HTTP request: a webhook's `InitiatingUserAgent`
    # The (method, path, rows) of every `$batch` part run, for the cost model.
    batch_parts: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def service_root(self) -> str:
        return f"{self.origin}{API_PATH}/"

    @property
    def host(self) -> str:
        return self.origin.split("://", 1)[-1]

    def entity_url(self, entity_set: str, row_id: str) -> str:
        return f"{self.service_root}{entity_set}({row_id})"

    def metadata_url(self, fragment: str) -> str:
        return f"{self.service_root}$metadata#{fragment}"


@dataclass
class ApiRequest:
    method: str
    path: str  # relative to the service root, percent-decoded: `contacts(…)/…`
    query: dict[str, str]
    headers: dict[str, str]  # lowercase names
    body: bytes
    ctx: Context
    bypass: Bypass = field(default_factory=Bypass)
    in_batch: bool = False  # a part of a $batch

    def __post_init__(self) -> None:
        if not self.in_batch and not self.ctx.user_agent:
            self.ctx.user_agent = self.headers.get("user-agent", "")  # parts share the request's

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def prefer(self) -> dict[str, str | None]:
        return parse_prefer(self.header("prefer") or "")

    def origin(self) -> Origin:
        ctx = self.ctx
        return Origin(
            ctx.caller, ctx.request_id, ctx.correlation_id, ctx.host, self.bypass, ctx.user_agent
        )

    def json_object(self, entity_set: str) -> dict[str, Any]:
        try:
            body = json.loads(self.body or b"null")
        except json.JSONDecodeError as exc:
            raise payload_error(entity_set, f"Invalid JSON. {exc.msg}.") from None
        except UnicodeDecodeError:
            raise payload_error(entity_set, "Invalid JSON. The body is not UTF-8.") from None
        if not isinstance(body, dict):
            raise payload_error(
                entity_set, "A JSON object was expected in the request body (an entity)."
            )
        return body


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    rows: int = 0  # rows read or written, for the `latency_per_row_ms` fault


def parse_query(raw: str) -> dict[str, str]:
    """Query options; a system option given twice is refused, as Microsoft.OData does."""
    options: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        if name in options and name.startswith("$"):
            raise bad_query(
                f"Query option '{name}' was specified more than once, but it must be specified "
                "at most once."
            )
        options[name] = value
    return options


def parse_prefer(header: str) -> dict[str, str | None]:
    """`return=representation, odata.maxpagesize=10` → {"return": "representation", …}."""
    preferences: dict[str, str | None] = {}
    for item in _split_outside_quotes(header):
        name, eq, value = item.strip().partition("=")
        if name:
            preferences[name.strip().lower()] = value.strip().strip('"') if eq else None
    return preferences


def _split_outside_quotes(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char in ",;" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def json_response(
    payload: Mapping[str, Any] | list[Any],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    rows: int = 0,
) -> ApiResponse:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    all_headers = {"Content-Type": JSON_TYPE, **(headers or {})}
    return ApiResponse(status, all_headers, body, rows)


def error_response(error: DataverseError) -> ApiResponse:
    return json_response(error.body(), error.status, error.headers)


def no_content(headers: Mapping[str, str] | None = None, rows: int = 0) -> ApiResponse:
    return ApiResponse(204, dict(headers or {}), b"", rows)
