"""Errors of the Dataverse side, translated at the boundary from httpx, msal and OData.

DataverseError
 ├── AuthError            token could not be obtained (AADSTS code → the fix)
 ├── TransientError       429, 5xx, timeouts, connection loss — retry later
 └── RequestError         a 4xx Dataverse will answer the same way again
      ├── PrivilegeError  403: the application user lacks a privilege
      └── NotFoundError   404
"""

from __future__ import annotations

from typing import Any

import httpx


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


def from_response(response: httpx.Response, *, what: str) -> DataverseError:
    """Translate a non-2xx Web API response into the error hierarchy."""
    request_id = response.headers.get("x-ms-service-request-id")
    try:
        body = response.json()
    except ValueError:
        body = None
    code, message = odata_error(body)
    status = response.status_code
    detail = f"{message} ({code})" if code else (message or response.reason_phrase)
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
