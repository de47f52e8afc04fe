"""The OData `$batch` wire format as Dataverse documents it: a multipart/mixed request of
`application/http` parts (change sets nested), and the matching response parser."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import HTTP
from typing import Any

CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class BatchRequest:
    method: str
    url: str  # absolute, or relative to the Web API base
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _part(request: BatchRequest, content_id: int | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{request.method} {request.url} HTTP/1.1"]
    payload = ""
    headers = dict(request.headers)
    if request.body is not None:
        headers.setdefault("Content-Type", "application/json; type=entry")
        payload = json.dumps(request.body, separators=(",", ":"))
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["", payload]
    return CRLF.join(lines)


def build_batch(requests: list[BatchRequest], *, changeset: bool = False) -> tuple[bytes, str]:
    """Body and Content-Type of a `$batch` request. GETs never go in a change set; with
    `changeset=True` all writes share one atomic change set."""
    boundary = f"batch_{uuid.uuid4()}"
    chunks: list[str] = []
    if changeset:
        inner = f"changeset_{uuid.uuid4()}"
        parts = [f"--{inner}{CRLF}{_part(r, i)}" for i, r in enumerate(requests, start=1)]
        chunks.append(
            f"--{boundary}{CRLF}Content-Type: multipart/mixed; boundary={inner}{CRLF}{CRLF}"
            + CRLF.join(parts)
            + f"{CRLF}--{inner}--"
        )
    else:
        chunks += [f"--{boundary}{CRLF}{_part(r, None)}" for r in requests]
    body = CRLF.join(chunks) + f"{CRLF}--{boundary}--{CRLF}"
    return body.encode(), f"multipart/mixed; boundary={boundary}"


def _parse_http(payload: bytes) -> BatchResponse:
    head, _, body = payload.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("utf-8", "replace").split("\n")
    status_line = lines[0].strip()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"malformed status line in $batch response: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return BatchResponse(int(parts[1]), headers, body.strip())


def _walk(message: Message, out: list[BatchResponse]) -> None:
    for part in message.get_payload():
        assert isinstance(part, Message)
        if part.is_multipart():
            _walk(part, out)
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            out.append(_parse_http(payload))


def parse_batch_response(body: bytes, content_type: str) -> list[BatchResponse]:
    """Responses in request order (change-set responses flattened)."""
    message = message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=HTTP
    )
    if not message.is_multipart():
        raise ValueError("the $batch response is not multipart/mixed")
    out: list[BatchResponse] = []
    _walk(message, out)
    return out
