"""The OData `$batch` wire format (multipart/mixed), read and written as Dataverse does.

Requests arrive as Microsoft documents them (MS Learn "Execute batch operations using the Web
API") and as Microsoft's Python SDK `PowerPlatform-Dataverse-Client` sends them: parts of type
``application/http`` with ``Content-Transfer-Encoding: binary``, change sets as nested
``multipart/mixed; boundary=changeset_…`` parts whose requests carry ``Content-ID``. CRLF and bare
LF line endings are both accepted; checks follow Microsoft.OData's batch reader, and its wording
where it is known.

Responses are written the way Dataverse writes them (``batchresponse_<uuid>``,
``changesetresponse_<uuid>``, CRLF), which that SDK's response parser reads back. A change set
that failed is answered, as Dataverse does, by one plain :class:`BatchResponse` in its place.

Pure: no I/O. Executing the requests, and resolving ``$n`` references with
:func:`resolve_content_id`, is the caller's job.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from itertools import pairwise

__all__ = [
    "MAX_REQUESTS",
    "BatchFormatError",
    "BatchItem",
    "BatchRequest",
    "BatchResponse",
    "BatchResponseItem",
    "ChangeSet",
    "ChangeSetResponse",
    "Headers",
    "parse_batch",
    "relative_url",
    "resolve_content_id",
    "serialize_batch_response",
]

MAX_REQUESTS = 1000  # per batch, change-set requests included (MS Learn)
_MAX_BOUNDARY = 70  # RFC 2046
_CHANGESET_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_METHODS = _CHANGESET_METHODS | {"GET"}
_SYSTEM_RESOURCES = frozenset({"metadata", "batch", "entity", "crossjoin", "all", "root"})
_CRLF = b"\r\n"


class BatchFormatError(ValueError):
    """A `$batch` body Dataverse would refuse with HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Headers(Mapping[str, str]):
    """Read-only headers with case-insensitive names; repeated headers are joined by ", "."""

    __slots__ = ("_items",)

    def __init__(self, pairs: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        items: dict[str, tuple[str, str]] = {}
        for name, value in pairs.items() if isinstance(pairs, Mapping) else pairs:
            known = items.get(name.lower())
            items[name.lower()] = (
                (name, value) if known is None else (known[0], f"{known[1]}, {value}")
            )
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self.items())!r})"


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One operation. `url` is as written: absolute, ``/api/data/v9.2/…``, relative, or ``$1…``."""

    method: str
    url: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Requests that succeed or fail together."""

    requests: tuple[BatchRequest, ...]


BatchItem = BatchRequest | ChangeSet


@dataclass(frozen=True, slots=True)
class BatchResponse:
    """One operation's outcome; `content_id` echoes the request's (change sets do)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeSetResponse:
    """The outcomes of a change set that succeeded, one per request, in order."""

    responses: tuple[BatchResponse, ...]


BatchResponseItem = BatchResponse | ChangeSetResponse


# --------------------------------------------------------------------------------------------
# Reading requests
# --------------------------------------------------------------------------------------------


def parse_batch(body: bytes, content_type: str) -> list[BatchItem]:
    """The operations of a `$batch` request body, in order."""
    reader = _Reader()
    items: list[BatchItem] = []
    for part in _split(body, _boundary(content_type)):
        headers, content = _split_head(part)
        part_type = _part_type(headers)
        if part_type == "multipart/mixed":
            inner = _split(content, _boundary(headers["Content-Type"]))
            items.append(ChangeSet(tuple(reader.request(p, in_change_set=True) for p in inner)))
        else:
            items.append(reader.request(part, in_change_set=False))
    return items


class _Reader:
    """Reads request parts, counting them and checking Content-IDs across the whole batch."""

    def __init__(self) -> None:
        self.count = 0
        self.content_ids: set[str] = set()

    def request(self, part: bytes, in_change_set: bool) -> BatchRequest:
        self.count += 1
        if self.count > MAX_REQUESTS:
            raise BatchFormatError(
                "The current batch message contains too many parts. Only batch messages with a "
                f"maximum number of '{MAX_REQUESTS}' query operations, including changeset "
                "operations, are allowed."
            )
        part_headers, message = _split_head(part)
        if _part_type(part_headers) != "application/http":
            raise BatchFormatError("Change sets cannot contain other change sets.")
        encoding = part_headers.get("Content-Transfer-Encoding", "").strip().lower()
        if encoding != "binary":
            raise BatchFormatError(
                "The 'Content-Transfer-Encoding' header is missing or invalid. "
                "The header value must be 'binary'."
            )
        request = _http_request(message, part_headers.get("Content-ID"))
        if in_change_set and request.method not in _CHANGESET_METHODS:
            raise BatchFormatError(
                f"An invalid HTTP method '{request.method}' was detected for a request in a "
                "change set. Requests in change sets only support the HTTP methods 'POST', "
                "'PUT', 'DELETE', and 'PATCH'."
            )
        if request.content_id is not None:
            if request.content_id in self.content_ids:
                raise BatchFormatError(
                    f"The content ID '{request.content_id}' was found more than once in the "
                    "same batch request. Content IDs have to be unique across all operations."
                )
            self.content_ids.add(request.content_id)
        return request


def _http_request(message: bytes, content_id: str | None) -> BatchRequest:
    message = message.lstrip(b"\r\n")
    line_end = message.find(b"\n")
    request_line = _text(message if line_end < 0 else message[:line_end]).rstrip("\r")
    headers, body = _split_head(b"" if line_end < 0 else message[line_end + 1 :])
    # Like Microsoft.OData: method up to the first space, version after the last, so a URL with
    # unencoded spaces (the SDK sends `$filter=a eq 'b'` as is) still reads.
    method, _, rest = request_line.partition(" ")
    url, _, version = rest.rpartition(" ")
    if not method or not url.strip():
        raise BatchFormatError(
            f"The request line '{request_line}' of a batch operation is invalid."
        )
    if version != "HTTP/1.1":
        raise BatchFormatError(
            f"The HTTP version '{version}' used in a batch operation request or response is not "
            "valid. The value must be 'HTTP/1.1'."
        )
    if method not in _METHODS:
        raise BatchFormatError(f"The HTTP method '{method}' is not valid in a batch operation.")
    if url.split("?", 1)[0].rstrip("/").endswith("$batch"):
        raise BatchFormatError("Batch requests can't contain other batch requests.")
    if content_id is None:
        content_id = headers.get("Content-ID")  # some clients put it on the inner request
    return BatchRequest(method, url.strip(), headers, body, content_id)


def _boundary(content_type: str) -> str:
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/mixed":
        raise BatchFormatError(
            f"The content type '{content_type}' is not valid for a batch; it must be "
            "'multipart/mixed' with a boundary."
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() != "boundary":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not 0 < len(value) <= _MAX_BOUNDARY:
            raise BatchFormatError(
                f"The boundary delimiter '{value}' is invalid. A boundary delimiter must be "
                f"non-null, be non-empty, and have a maximum of {_MAX_BOUNDARY} characters."
            )
        return value
    raise BatchFormatError(f"The content type '{content_type}' has no boundary parameter.")


def _split(body: bytes, boundary: str) -> list[bytes]:
    """The parts between `--boundary` lines, up to `--boundary--` (RFC 2046)."""
    # The line break before a delimiter belongs to the delimiter, not to the part before it.
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?=\r?\n|\Z)"
    )
    matches = list(delimiter.finditer(body))
    parts: list[bytes] = []
    for match, following in pairwise(matches):
        if match.group(1):
            return parts
        part = body[match.end() : following.start()]
        parts.append(part[2:] if part.startswith(_CRLF) else part[1:])
    if matches and matches[-1].group(1):
        return parts
    raise BatchFormatError(
        f"The batch payload ends without the closing delimiter '--{boundary}--'."
        if matches
        else f"The batch payload has no part delimited by '--{boundary}'."
    )


def _split_head(data: bytes) -> tuple[Headers, bytes]:
    """Header lines up to the first empty line, and what follows; no empty line: no body."""
    lines: list[str] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            end = len(data)
        line = _text(data[pos:end]).removesuffix("\r")
        pos = end + 1
        if not line:
            return _headers(lines), data[pos:]
        lines.append(line)
    return _headers(lines), b""


def _headers(lines: list[str]) -> Headers:
    pairs: list[tuple[str, str]] = []
    for line in lines:
        if line[0] in " \t" and pairs:  # folded continuation of the previous header
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise BatchFormatError(
                f"The message header '{line}' is invalid. The header value must be of the "
                "format '<header name>: <header value>'."
            )
        pairs.append((name, value.strip()))
    return Headers(pairs)


def _part_type(headers: Headers) -> str:
    content_type = headers.get("Content-Type")
    if content_type is None:
        raise BatchFormatError("A part of the batch has no 'Content-Type' header.")
    media = content_type.partition(";")[0].strip().lower()
    if media not in ("application/http", "multipart/mixed"):
        raise BatchFormatError(
            f"The content type '{content_type}' of a batch part is not valid. It must be "
            "'application/http', or 'multipart/mixed' for a change set."
        )
    return media


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchFormatError(f"A batch part header is not valid UTF-8: {exc.reason}.") from None


# --------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------

_REFERENCE_RE = re.compile(r"\$([^/?#]+)")


def resolve_content_id(url: str, entity_urls: Mapping[str, str]) -> str:
    """Replace a leading ``$n`` with the URL of the entity that request ``n`` created.

    ``$1/lastname`` becomes ``https://…/contacts(<id>)/lastname``. URLs without a reference, and
    system resources such as ``$metadata``, come back unchanged.
    """
    match = _REFERENCE_RE.match(url)
    if match is None:
        return url
    content_id = match.group(1)
    if content_id in entity_urls:
        return entity_urls[content_id] + url[match.end() :]
    if content_id in _SYSTEM_RESOURCES:
        return url
    raise BatchFormatError(
        f"Content-ID Reference: '${content_id}' does not exist in the batch context."
    )


def relative_url(url: str, api_root: str = "/api/data/v9.2/") -> str:
    """A request URL relative to the service root: ``contacts(…)?$select=…``.

    Accepts the forms a batch may use: ``https://host/api/data/v9.2/x``, ``/api/data/v9.2/x``
    and ``x``. Resolve ``$n`` references first.
    """
    path = re.sub(r"\A[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", "", url)
    if path.startswith("/"):
        if not path.startswith(api_root):
            raise BatchFormatError(f"The URL '{url}' is not under the service root '{api_root}'.")
        return path[len(api_root) :]
    return path


# --------------------------------------------------------------------------------------------
# Writing responses
# --------------------------------------------------------------------------------------------


def serialize_batch_response(
    items: Sequence[BatchResponseItem], boundary: str | None = None
) -> tuple[bytes, str]:
    """The response body and its Content-Type header value."""
    boundary = boundary or f"batchresponse_{uuid.uuid4()}"
    if not 0 < len(boundary) <= _MAX_BOUNDARY or not re.fullmatch(r"[A-Za-z0-9_.-]+", boundary):
        raise ValueError(f"unusable multipart boundary {boundary!r}")
    out = bytearray()
    for item in items:
        out += b"--" + boundary.encode() + _CRLF
        if isinstance(item, ChangeSetResponse):
            inner = f"changesetresponse_{uuid.uuid4()}".encode()
            out += b"Content-Type: multipart/mixed; boundary=" + inner + _CRLF + _CRLF
            for response in item.responses:
                out += b"--" + inner + _CRLF + _response_part(response, boundary) + _CRLF
            out += b"--" + inner + b"--" + _CRLF
        else:
            out += _response_part(item, boundary) + _CRLF
    out += b"--" + boundary.encode() + b"--" + _CRLF
    return bytes(out), f"multipart/mixed; boundary={boundary}"


def _response_part(response: BatchResponse, boundary: str) -> bytes:
    if f"--{boundary}".encode() in response.body:
        raise ValueError(f"a response body contains the boundary {boundary!r}")
    part_headers = {"Content-Type": "application/http", "Content-Transfer-Encoding": "binary"}
    if response.content_id is not None:
        part_headers["Content-ID"] = response.content_id
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    headers = Headers(response.headers)
    if "OData-Version" not in headers:
        headers = Headers([("OData-Version", "4.0"), *headers.items()])
    return (
        _header_block(part_headers.items())
        + _CRLF
        + f"HTTP/1.1 {response.status} {reason}".encode()
        + _CRLF
        + _header_block(headers.items())
        + _CRLF
        + response.body
    )


def _header_block(pairs: Iterable[tuple[str, str]]) -> bytes:
    lines = []
    for name, value in pairs:
        if any(c in name + value for c in "\r\n") or not name:
            raise ValueError(f"invalid header {name!r}: {value!r}")
        lines.append(f"{name}: {value}".encode() + _CRLF)
    return b"".join(lines)
