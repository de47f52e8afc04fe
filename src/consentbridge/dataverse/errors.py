"""Errors of the Dataverse side, translated at the boundary from httpx, msal and OData. Each
keeps Dataverse's own error code and message (of the failed part, for a `$batch` refused
whole), bounded by `consentbridge.remote_text`.

DataverseError
 ├── AuthError            token could not be obtained (AADSTS code → the fix)
 ├── TransientError       429, 5xx, timeouts, connection loss — retry later
 └── RequestError         a 4xx Dataverse will answer the same way again
      ├── PrivilegeError  403: the application user lacks a privilege
      └── NotFoundError   404
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import httpx

from consentbridge.dataverse.batch import BatchResponse, parse_batch_response
from consentbridge.remote_text import bounded_code, error_detail


class DataverseError(Exception):
    """Base class; `str(exc)` is one sentence naming the problem and the fix."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class AuthError(DataverseError):
    """Entra ID refused to issue a token."""

    def __init__(self, message: str, *, code: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class TransientError(DataverseError):
    """Worth retrying: throttling, server errors, timeouts and connection failures."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        request_id: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after_s = retry_after_s
        self.status = status


class RequestError(DataverseError):
    """Dataverse refused the request; the same request will fail again."""

    def __init__(
        self, message: str, *, status: int, code: str = "", request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status = status
        self.code = code


class PrivilegeError(RequestError):
    """403: the application user's security role lacks a privilege."""


class NotFoundError(RequestError):
    """404: the row or resource does not exist."""


def odata_error(body: Any) -> tuple[str, str]:
    """(code, message) from a Dataverse error body, tolerating odd shapes."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code") or ""), str(err.get("message") or "")
    return "", ""


# Dataverse wraps what Microsoft.OData could not read of a payload in a sentence with a help
# link ("Error identified in Payload … ---->  InnerException : Microsoft.OData.ODataException:
# The property 'x' does not exist …"); the inner message is the part that names the problem.
_INNER: Final = re.compile(r"InnerException\s*:\s*(?:[\w.]+Exception:\s*)?(?P<inner>.+)", re.S)


def essential_message(message: str) -> str:
    """Dataverse's message, or only its inner exception's message when it wraps one."""
    found = _INNER.search(message[:20_000])
    inner = found["inner"].strip() if found else ""
    return inner or message


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _response_error(response: httpx.Response) -> tuple[str, str]:
    content_type = response.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/"):
        return odata_error(_json_or_none(response.content))
    # A `$batch` refused whole (no continue-on-error): the status is the first failed part's,
    # and so are the code and message Dataverse wrote.
    try:
        parts = parse_batch_response(response.content, content_type)
    except ValueError:
        return "", ""
    failed = next((part for part in parts if part.status >= 400), None)
    return odata_error(_json_or_none(failed.body)) if failed is not None else ("", "")


def from_response(response: httpx.Response, *, what: str) -> DataverseError:
    """Translate a non-2xx Web API response into the error hierarchy."""
    code, message = _response_error(response)
    return _translate(
        response.status_code,
        code,
        message,
        what=what,
        request_id=response.headers.get("x-ms-service-request-id"),
        reason=response.reason_phrase,
    )


def from_batch_part(part: BatchResponse, *, what: str) -> DataverseError:
    """Translate the failed response of one `$batch` part into the error hierarchy."""
    code, message = odata_error(_json_or_none(part.body))
    return _translate(
        part.status,
        code,
        message,
        what=what,
        request_id=part.headers.get("x-ms-service-request-id"),
        reason="",
    )


def _translate(
    status: int, code: str, message: str, *, what: str, request_id: str | None, reason: str
) -> DataverseError:
    # Whatever the server wrote is bounded: `config.instance` may point anywhere.
    detail = error_detail(code, essential_message(message), reason)
    code = bounded_code(code) if code else ""
    if status == 429 or status >= 500:
        return TransientError(
            f"Dataverse answered {status} to {what}: {detail}",
            status=status,
            request_id=request_id,
        )
    if status == 401:
        return TransientError(
            f"Dataverse refused the access token for {what} (401); the token is refreshed and "
            "the request retried.",
            status=status,
            request_id=request_id,
        )
    if status == 403:
        return PrivilegeError(
            f"Dataverse denied {what}: {detail}. Give the application user a security role "
            "with this privilege.",
            status=status,
            code=code,
            request_id=request_id,
        )
    if status == 404:
        return NotFoundError(
            f"Dataverse found nothing for {what}: {detail}",
            status=status,
            code=code,
            request_id=request_id,
        )
    return RequestError(
        f"Dataverse rejected {what} ({status}): {detail}",
        status=status,
        code=code,
        request_id=request_id,
    )
