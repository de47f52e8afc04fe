"""Dataverse's error responses: `{"error": {"code": "0x…", "message": "…"}}` with the HTTP status
and the hexadecimal code the real service uses for each failure.

Codes come from MS Learn's Web service error codes list; messages follow the wording the real
service (or Microsoft.OData, which parses its URLs and payloads) uses where it is known.
"""

from __future__ import annotations

from collections.abc import Mapping

OBJECT_DOES_NOT_EXIST = "0x80040217"
PRIVILEGE_DENIED = "0x80040220"
INVALID_ARGUMENT = "0x80040203"
UNEXPECTED = "0x80040216"
CANNOT_DELETE_DUE_TO_ASSOCIATION = "0x80040227"
DUPLICATE_RECORD = "0x80040237"
PLUGIN_FAILED = "0x80040265"  # IsvAborted: custom business logic made the operation fail
CONCURRENCY_VERSION_MISMATCH = "0x80060882"
ODATA_QUERY = "0x80060888"
RESOURCE_NOT_FOUND = "0x8006088a"
KEY_NOT_DEFINED = "0x80060890"
RECORD_NOT_FOUND_BY_KEY = "0x80060891"
DUPLICATE_KEY = "0x80060892"
PICKLIST_OUT_OF_RANGE = "0x8004431A"
VALIDATION = "0x80044331"
PAYLOAD = "0x80048d19"  # "Error identified in Payload provided by the user for Entity"
REQUESTS_EXCEEDED = "0x80072322"
CONCURRENCY_EXCEEDED = "0x80072326"

PAYLOAD_HELP_LINK = "https://go.microsoft.com/fwlink/?linkid=2195293"


class DataverseError(Exception):
    """A failure answered with `status` and Dataverse's error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_query(message: str) -> DataverseError:
    return DataverseError(400, ODATA_QUERY, message)


def unknown_property(name: str, type_name: str) -> DataverseError:
    return bad_query(f"Could not find a property named '{name}' on type '{type_name}'.")


def payload_error(entity_set: str, inner: str) -> DataverseError:
    """A body Microsoft.OData could not read (unknown property, wrong JSON type, bad date)."""
    return DataverseError(
        400,
        PAYLOAD,
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For "
        f"more information on this error please follow this help link {PAYLOAD_HELP_LINK}  "
        f"---->  InnerException : Microsoft.OData.ODataException: {inner}",
    )


def not_found_by_id(entity: str, row_id: str) -> DataverseError:
    return DataverseError(404, OBJECT_DOES_NOT_EXIST, f"{entity} With Id = {row_id} Does Not Exist")


def update_target_missing(entity: str, row_id: str) -> DataverseError:
    """An update-only PATCH (`If-Match`) on a row id that does not exist: MS Learn's example
    answers 404 with an empty code."""
    return DataverseError(404, "", f"{entity} With Id = {row_id} Does Not Exist")


def not_found_by_key(entity: str) -> DataverseError:
    return DataverseError(
        404,
        RECORD_NOT_FOUND_BY_KEY,
        f"A record with the specified key values does not exist in {entity} entity",
    )


def resource_not_found(segment: str) -> DataverseError:
    return DataverseError(
        404, RESOURCE_NOT_FOUND, f"Resource not found for the segment '{segment}'."
    )


def no_http_resource(request_uri: str) -> DataverseError:
    """A function (`WhoAmI`, `RetrieveUserPrivileges`) called with another method than GET:
    no route matches, and ASP.NET's own message comes back with an empty code."""
    return DataverseError(
        404, "", f"No HTTP resource was found that matches the request URI '{request_uri}'."
    )


def method_not_allowed(method: str) -> DataverseError:
    return DataverseError(
        405, ODATA_QUERY, f"The requested resource does not support http method '{method}'."
    )


def invalid_argument(message: str) -> DataverseError:
    return DataverseError(400, INVALID_ARGUMENT, message)
