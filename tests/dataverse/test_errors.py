"""Web API answers translated into errors that keep Dataverse's own code and message, bounded
(pure: responses built in memory, as Dataverse documents them)."""

from __future__ import annotations

import json

import httpx

from consentbridge.dataverse.batch import BatchResponse
from consentbridge.dataverse.errors import (
    NotFoundError,
    RequestError,
    TransientError,
    from_batch_part,
    from_response,
)

VALIDATION = (
    "A validation error occurred.  The length of the 'lastname' attribute of the 'contact' "
    "entity exceeded the maximum allowed length of '50'."
)


def _refused_batch() -> httpx.Response:
    """MS Learn (execute-batch-operations-using-web-api): without continue-on-error the first
    failure ends the batch and becomes its status; the body is still multipart."""
    body = (
        "--batchresponse_9c2f\r\n"
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n\r\n\r\n"
        "--batchresponse_9c2f\r\n"
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 400 Bad Request\r\nREQ_ID: 5a8f\r\n"
        "Content-Type: application/json; odata.metadata=minimal\r\nOData-Version: 4.0\r\n\r\n"
        + json.dumps({"error": {"code": "0x80044331", "message": VALIDATION}})
        + "\r\n--batchresponse_9c2f--\r\n"
    )
    return httpx.Response(
        400,
        headers={
            "Content-Type": "multipart/mixed; boundary=batchresponse_9c2f",
            "x-ms-service-request-id": "8d1e",
        },
        content=body.encode(),
    )


def test_a_batch_refused_whole_keeps_the_failed_parts_code_and_message() -> None:
    error = from_response(_refused_batch(), what="$batch of 2 contact writes")
    assert isinstance(error, RequestError)
    assert error.status == 400
    assert error.code == "0x80044331"
    assert error.request_id == "8d1e"
    assert str(error) == (
        f"Dataverse rejected $batch of 2 contact writes (400): {VALIDATION} (0x80044331)"
    )
    assert "Bad Request" not in str(error)


def test_an_unreadable_multipart_body_falls_back_to_the_status() -> None:
    response = httpx.Response(
        400, headers={"Content-Type": "multipart/mixed; boundary=b"}, content=b"--b\r\nnope"
    )
    error = from_response(response, what="a $batch")
    assert str(error) == "Dataverse rejected a $batch (400): Bad Request"


def test_a_batch_part_keeps_its_code_and_message() -> None:
    body = {"error": {"code": "", "message": "contact With Id = 7 Does Not Exist"}}
    part = BatchResponse(404, {"content-type": "application/json"}, json.dumps(body).encode())
    error = from_batch_part(part, what="the write of this contact")
    assert isinstance(error, NotFoundError)
    assert error.code == ""
    assert "contact With Id = 7 Does Not Exist" in str(error)
    throttled = from_batch_part(BatchResponse(429, {}, b""), what="a lookup")
    assert isinstance(throttled, TransientError)
    assert str(throttled) == "Dataverse answered 429 to a lookup: no error message"


def test_a_huge_message_and_code_are_bounded() -> None:
    response = httpx.Response(
        400,
        json={"error": {"code": "0x" + "8" * 5_000, "message": "Too long. " * 100_000}},
    )
    text = str(from_response(response, what="a read"))
    assert len(text) < 320
    assert text.startswith("Dataverse rejected a read (400): Too long. Too long.")


def test_an_html_page_is_never_echoed() -> None:
    page = "<!DOCTYPE html><html><body>" + "<p>Sorry</p>" * 100_000 + "</body></html>"
    response = httpx.Response(404, headers={"Content-Type": "text/html"}, content=page.encode())
    error = from_response(response, what="the contact table definition")
    assert str(error) == "Dataverse found nothing for the contact table definition: Not Found"


def test_a_payload_error_is_told_by_its_inner_message() -> None:
    # What Dataverse answers for a property the contact does not have: the sentence names the
    # problem only after its help link, so the inner message is what fits the 200 characters.
    message = (
        "Error identified in Payload provided by the user for Entity :'contacts', For more "
        "information on this error please follow this help link "
        "https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : "
        "Microsoft.OData.ODataException: The property 'new_removed' does not exist on type "
        "'Microsoft.Dynamics.CRM.contact'. Make sure to only use property names that are "
        "defined by the type or mark the type as open type."
    )
    response = httpx.Response(400, json={"error": {"code": "0x80048d19", "message": message}})
    assert str(from_response(response, what="a write")) == (
        "Dataverse rejected a write (400): The property 'new_removed' does not exist on type "
        "'Microsoft.Dynamics.CRM.contact'. Make sure to only use property names that are "
        "defined by the type or mark the type as open type. (0x80048d19)"
    )
