"""`$batch` bodies: read as Microsoft's SDK and docs write them, written so the SDK reads them."""

from __future__ import annotations

import contextlib
import json
import re

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PowerPlatform.Dataverse.data._batch_base import _BatchBase, _ChangeSetBatchItem
from PowerPlatform.Dataverse.data._raw_request import _RawRequest

from consentbridge.sandbox.dataverse.multipart import (
    MAX_REQUESTS,
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    ChangeSet,
    ChangeSetResponse,
    Headers,
    parse_batch,
    relative_url,
    resolve_content_id,
    serialize_batch_response,
)

API = "https://org.crm.dynamics.com/api/data/v9.2"
CONTACT_ID = "d31ba648-c592-ed11-aad1-000d3a993550"


def sdk_batch_body(items: list[_RawRequest | _ChangeSetBatchItem], boundary: str) -> bytes:
    """The body Microsoft's SDK sends, from its own serializer (pure, needs no client)."""
    return _BatchBase(None)._build_batch_body(items, boundary).encode()  # type: ignore[arg-type]


def sdk_reads(body: bytes, content_type: str) -> list[dict[str, object]]:
    """What Microsoft's SDK makes of a `$batch` response."""
    response = httpx.Response(200, headers={"Content-Type": content_type}, content=body)
    result = _BatchBase(None)._parse_batch_response(response)  # type: ignore[arg-type]
    return [vars(item) for item in result.responses]


def one_request(method: str = "GET", url: str = "contacts", boundary: str = "b") -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        f"\r\n{method} {url} HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n--{boundary}--\r\n"
    ).encode()


# --- reading what the SDK sends -------------------------------------------------------------


def test_batch_built_by_the_microsoft_sdk_reads_back_request_by_request() -> None:
    created = json.dumps({"firstname": "Zoë", "lastname": "O'Brien"}, ensure_ascii=False)
    body = sdk_batch_body(
        [
            _RawRequest(
                "GET",
                f"{API}/contacts?$select=fullname&$filter=emailaddress1 eq 'a@x.com'",
                headers={"Prefer": "odata.maxpagesize=50"},
            ),
            _ChangeSetBatchItem(
                [
                    _RawRequest("POST", f"{API}/contacts", body=created, content_id=1),
                    _RawRequest(
                        "PATCH",
                        "$1",
                        body='{"donotemail":true}',
                        headers={"If-Match": "*"},
                        content_id=2,
                    ),
                    _RawRequest("DELETE", "$1", headers={"If-Match": "*"}, content_id=3),
                ]
            ),
            _RawRequest("PATCH", f"{API}/contacts(emailaddress1='a@x.com')", body="{}"),
        ],
        "batch_2f1c",
    )

    items = parse_batch(body, 'multipart/mixed; boundary="batch_2f1c"')

    assert len(items) == 3
    query, change_set, upsert = items
    assert isinstance(query, BatchRequest) and isinstance(change_set, ChangeSet)
    assert (query.method, query.url, query.body, query.content_id) == (
        "GET",
        f"{API}/contacts?$select=fullname&$filter=emailaddress1 eq 'a@x.com'",
        b"",
        None,
    )
    assert query.headers["prefer"] == "odata.maxpagesize=50"
    create, update, delete = change_set.requests
    assert (create.method, create.url, create.content_id) == ("POST", f"{API}/contacts", "1")
    assert json.loads(create.body) == {"firstname": "Zoë", "lastname": "O'Brien"}
    assert create.headers["CONTENT-TYPE"] == "application/json; type=entry"
    assert (update.method, update.url, update.body, update.content_id) == (
        "PATCH",
        "$1",
        b'{"donotemail":true}',
        "2",
    )
    assert update.headers["if-match"] == "*"
    assert (delete.method, delete.url, delete.body, delete.content_id) == ("DELETE", "$1", b"", "3")
    assert isinstance(upsert, BatchRequest) and upsert.body == b"{}"


# MS Learn "Execute batch operations using the Web API", change-set example, with its LF endings.
MS_LEARN_REQUEST = b"""--batch_22975cad-7f57-410d-be15-6363209367ea
Content-Type: multipart/mixed; boundary="changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a"

--changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST /api/data/v9.2/tasks HTTP/1.1
Content-Type: application/json; type=entry

{
  "subject": "Task 1 in batch",
  "regardingobjectid_account_task@odata.bind": "accounts(00000000-0000-0000-0000-000000000001)"
}
--changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a
Content-Type: application/http
Content-Transfer-Encoding:binary
Content-ID: 2

POST /api/data/v9.2/tasks HTTP/1.1
Content-Type: application/json; type=entry

{"subject": "Task 2 in batch"}
--changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a--

--batch_22975cad-7f57-410d-be15-6363209367ea
Content-Type: application/http
Content-Transfer-Encoding: binary

<GET>


--batch_22975cad-7f57-410d-be15-6363209367ea--
""".replace(
    b"<GET>",
    b"GET /api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)/Account_Tasks"
    b"?$select=subject HTTP/1.1",
)
MS_LEARN_TYPE = 'multipart/mixed; boundary="batch_22975cad-7f57-410d-be15-6363209367ea"'


def test_documented_example_with_lf_endings_reads() -> None:
    change_set, query = parse_batch(MS_LEARN_REQUEST, MS_LEARN_TYPE)
    assert isinstance(change_set, ChangeSet) and isinstance(query, BatchRequest)
    assert [(r.method, r.url, r.content_id) for r in change_set.requests] == [
        ("POST", "/api/data/v9.2/tasks", "1"),
        ("POST", "/api/data/v9.2/tasks", "2"),
    ]
    assert json.loads(change_set.requests[0].body)["subject"] == "Task 1 in batch"
    assert change_set.requests[1].body == b'{"subject": "Task 2 in batch"}'
    assert query.url.endswith("/Account_Tasks?$select=subject")
    assert (query.method, query.body, dict(query.headers)) == ("GET", b"", {})


def test_crlf_and_lf_bodies_read_the_same() -> None:
    crlf = MS_LEARN_REQUEST.replace(b"\n", b"\r\n")
    lf_items = parse_batch(MS_LEARN_REQUEST, MS_LEARN_TYPE)
    crlf_items = parse_batch(crlf, MS_LEARN_TYPE)
    lf_set, crlf_set = lf_items[0], crlf_items[0]
    assert isinstance(lf_set, ChangeSet) and isinstance(crlf_set, ChangeSet)
    assert [r.url for r in lf_set.requests] == [r.url for r in crlf_set.requests]
    assert crlf_set.requests[1].body == b'{"subject": "Task 2 in batch"}'


def test_preamble_epilogue_and_unquoted_boundary_are_accepted() -> None:
    body = b"preamble\r\n" + one_request(boundary="batch_x") + b"epilogue --batch_x\r\n"
    (item,) = parse_batch(body, "Multipart/Mixed;boundary=batch_x")
    assert isinstance(item, BatchRequest) and item.url == "contacts"


def test_empty_batch_reads_as_no_items() -> None:
    assert parse_batch(b"--b--\r\n", "multipart/mixed; boundary=b") == []


def test_content_id_on_the_inner_request_is_accepted() -> None:
    body = one_request(method="POST").replace(
        b"Accept: application/json", b"Content-ID: 7\r\nAccept: application/json"
    )
    (item,) = parse_batch(body, "multipart/mixed; boundary=b")
    assert isinstance(item, BatchRequest) and item.content_id == "7"


def test_exactly_the_request_limit_is_accepted() -> None:
    part = one_request().removesuffix(b"--b--\r\n")
    body = part * MAX_REQUESTS + b"--b--\r\n"
    assert len(parse_batch(body, "multipart/mixed; boundary=b")) == MAX_REQUESTS


# --- refusing malformed batches -------------------------------------------------------------


def _change_set(*requests: str) -> bytes:
    parts = "".join(
        f"--cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: {i}\r\n\r\n{line}\r\n\r\n{{}}\r\n"
        for i, line in enumerate(requests, start=1)
    )
    return (
        f"--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n{parts}--cs--\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (one_request(), "application/json", "'multipart/mixed' with a boundary"),
        (one_request(), "multipart/mixed", "has no boundary parameter"),
        (one_request(), "multipart/mixed; boundary=" + "x" * 71, "maximum of 70 characters"),
        (one_request(), "multipart/mixed; boundary=other", "no part delimited by '--other'"),
        (
            one_request().removesuffix(b"--b--\r\n"),
            "multipart/mixed; boundary=b",
            "closing delimiter",
        ),
        (
            _change_set("POST contacts HTTP/1.1", "GET contacts HTTP/1.1"),
            "multipart/mixed; boundary=b",
            "An invalid HTTP method 'GET' was detected for a request in a change set.",
        ),
        (one_request(url="$batch"), "multipart/mixed; boundary=b", "can't contain other batch"),
        (
            one_request(url=f"{API}/$batch"),
            "multipart/mixed; boundary=b",
            "can't contain other batch",
        ),
        (
            _change_set("POST contacts HTTP/1.1").replace(
                b"Content-Type: application/http", b"Content-Type: multipart/mixed; boundary=z", 1
            ),
            "multipart/mixed; boundary=b",
            "Change sets cannot contain other change sets.",
        ),
        (
            _change_set("POST contacts HTTP/1.1", "PATCH $1 HTTP/1.1").replace(
                b"Content-ID: 2", b"Content-ID: 1"
            ),
            "multipart/mixed; boundary=b",
            "The content ID '1' was found more than once",
        ),
        (
            one_request().replace(b"HTTP/1.1", b"HTTP/2"),
            "multipart/mixed; boundary=b",
            "The HTTP version 'HTTP/2' used in a batch operation",
        ),
        (one_request(method="TRACE"), "multipart/mixed; boundary=b", "HTTP method 'TRACE'"),
        (
            one_request().replace(b"GET contacts HTTP/1.1", b"GET"),
            "multipart/mixed; boundary=b",
            "The request line 'GET' of a batch operation is invalid.",
        ),
        (
            one_request().replace(b"Content-Transfer-Encoding: binary\r\n", b""),
            "multipart/mixed; boundary=b",
            "'Content-Transfer-Encoding' header is missing or invalid",
        ),
        (
            one_request().replace(b"Content-Type: application/http\r\n", b""),
            "multipart/mixed; boundary=b",
            "has no 'Content-Type' header",
        ),
        (
            one_request().replace(b"application/http", b"text/plain"),
            "multipart/mixed; boundary=b",
            "The content type 'text/plain' of a batch part is not valid",
        ),
        (
            one_request().replace(b"Accept: application/json", b"Accept application/json"),
            "multipart/mixed; boundary=b",
            "The message header 'Accept application/json' is invalid.",
        ),
        (
            one_request().replace(b"Accept: application/json", b"Accept: \xff"),
            "multipart/mixed; boundary=b",
            "not valid UTF-8",
        ),
    ],
)
def test_malformed_batches_are_refused(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(BatchFormatError, match=re.escape(message)):
        parse_batch(body, content_type)


def test_more_than_a_thousand_requests_are_refused_naming_the_limit() -> None:
    part = one_request().removesuffix(b"--b--\r\n")
    with pytest.raises(BatchFormatError) as caught:
        parse_batch(part * 1001 + b"--b--\r\n", "multipart/mixed; boundary=b")
    assert caught.value.message == (
        "The current batch message contains too many parts. Only batch messages with a maximum "
        "number of '1000' query operations, including changeset operations, are allowed."
    )


def test_change_set_requests_count_toward_the_limit() -> None:
    requests = ["POST contacts HTTP/1.1"] * (MAX_REQUESTS + 1)
    with pytest.raises(BatchFormatError, match="maximum number of '1000' query operations"):
        parse_batch(_change_set(*requests), "multipart/mixed; boundary=b")


_VALID = MS_LEARN_REQUEST


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["multipart/mixed; boundary=b", "text/plain"]))
def test_random_bytes_give_items_or_a_format_error(body: bytes, content_type: str) -> None:
    with contextlib.suppress(BatchFormatError):
        items = parse_batch(b"--b\r\n" + body, content_type)
        assert all(isinstance(item, BatchRequest | ChangeSet) for item in items)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID)), st.integers(0, 40), st.binary(max_size=8))
def test_damaged_batches_give_items_or_a_format_error(start: int, length: int, junk: bytes) -> None:
    damaged = _VALID[:start] + junk + _VALID[start + length :]
    with contextlib.suppress(BatchFormatError):
        items = parse_batch(damaged, MS_LEARN_TYPE)
        assert all(isinstance(item, BatchRequest | ChangeSet) for item in items)


# --- headers and URLs -----------------------------------------------------------------------


def test_headers_are_case_insensitive_and_keep_their_spelling() -> None:
    headers = Headers([("OData-Version", "4.0"), ("prefer", "a"), ("Prefer", "b")])
    assert headers["odata-version"] == "4.0"
    assert headers["PREFER"] == "a, b"
    assert "if-match" not in headers
    assert list(headers) == ["OData-Version", "prefer"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("$1", f"{API}/contacts({CONTACT_ID})"),
        ("$1/lastname", f"{API}/contacts({CONTACT_ID})/lastname"),
        ("$1?$select=fullname", f"{API}/contacts({CONTACT_ID})?$select=fullname"),
        ("$metadata", "$metadata"),
        ("contacts", "contacts"),
        (f"{API}/contacts", f"{API}/contacts"),
    ],
)
def test_content_id_references_resolve_to_entity_urls(url: str, expected: str) -> None:
    assert resolve_content_id(url, {"1": f"{API}/contacts({CONTACT_ID})"}) == expected


def test_unknown_content_id_reference_is_refused_as_dataverse_words_it() -> None:
    with pytest.raises(BatchFormatError) as caught:
        resolve_content_id("$2/lastname", {"1": f"{API}/contacts({CONTACT_ID})"})
    assert caught.value.message == "Content-ID Reference: '$2' does not exist in the batch context."


@pytest.mark.parametrize(
    "url",
    [
        f"{API}/contacts?$top=1",
        "https://127.0.0.1:8443/api/data/v9.2/contacts?$top=1",
        "/api/data/v9.2/contacts?$top=1",
        "contacts?$top=1",
    ],
)
def test_every_url_form_becomes_relative_to_the_service_root(url: str) -> None:
    assert relative_url(url) == "contacts?$top=1"


def test_url_outside_the_service_root_is_refused() -> None:
    with pytest.raises(BatchFormatError, match="not under the service root"):
        relative_url("https://org.crm.dynamics.com/api/data/v9.1/contacts")


# --- writing responses ----------------------------------------------------------------------


def test_response_bytes_follow_the_documented_layout() -> None:
    body, content_type = serialize_batch_response(
        [
            BatchResponse(
                204,
                {"OData-EntityId": f"{API}/tasks({CONTACT_ID})"},
            ),
            BatchResponse(
                400,
                {"Content-Type": "application/json; odata.metadata=minimal"},
                b'{"error":{"code":"0x80044331","message":"too long"}}',
            ),
        ],
        boundary="batchresponse_1",
    )
    assert content_type == "multipart/mixed; boundary=batchresponse_1"
    assert body == (
        b"--batchresponse_1\r\n"
        b"Content-Type: application/http\r\n"
        b"Content-Transfer-Encoding: binary\r\n"
        b"\r\n"
        b"HTTP/1.1 204 No Content\r\n"
        b"OData-Version: 4.0\r\n"
        b"OData-EntityId: " + f"{API}/tasks({CONTACT_ID})".encode() + b"\r\n"
        b"\r\n"
        b"\r\n"
        b"--batchresponse_1\r\n"
        b"Content-Type: application/http\r\n"
        b"Content-Transfer-Encoding: binary\r\n"
        b"\r\n"
        b"HTTP/1.1 400 Bad Request\r\n"
        b"OData-Version: 4.0\r\n"
        b"Content-Type: application/json; odata.metadata=minimal\r\n"
        b"\r\n"
        b'{"error":{"code":"0x80044331","message":"too long"}}\r\n'
        b"--batchresponse_1--\r\n"
    )


def test_change_set_response_nests_a_changesetresponse_part_echoing_content_ids() -> None:
    body, content_type = serialize_batch_response(
        [
            ChangeSetResponse(
                (BatchResponse(204, content_id="1"), BatchResponse(204, content_id="2"))
            )
        ]
    )
    outer = re.fullmatch(r"multipart/mixed; boundary=(batchresponse_[0-9a-f-]{36})", content_type)
    assert outer is not None
    inner = re.search(rb"boundary=(changesetresponse_[0-9a-f-]{36})\r\n\r\n", body)
    assert inner is not None
    assert body.count(b"--" + inner.group(1) + b"\r\n") == 2
    assert b"Content-ID: 1\r\n" in body and b"Content-ID: 2\r\n" in body
    assert body.endswith(b"--" + inner.group(1) + b"--\r\n--" + outer.group(1).encode() + b"--\r\n")


def test_microsoft_sdk_reads_the_serialized_response() -> None:
    entity = f"{API}/contacts({CONTACT_ID})"
    body, content_type = serialize_batch_response(
        [
            BatchResponse(
                200,
                {"Content-Type": "application/json; odata.metadata=minimal"},
                json.dumps({"value": [{"fullname": "Zoë"}]}, ensure_ascii=False).encode(),
            ),
            ChangeSetResponse(
                (
                    BatchResponse(
                        204, {"OData-EntityId": entity, "Location": entity}, content_id="1"
                    ),
                    BatchResponse(204, content_id="2"),
                )
            ),
            BatchResponse(
                412,
                {"Content-Type": "application/json; odata.metadata=minimal"},
                b'{"error":{"code":"0x80060892","message":"A record with matching key values '
                b'already exists."}}',
            ),
            BatchResponse(429, {"Retry-After": "5"}),
        ]
    )

    read = sdk_reads(body, content_type)

    assert [(r["status_code"], r["content_id"]) for r in read] == [
        (200, None),
        (204, "1"),
        (204, "2"),
        (412, None),
        (429, None),
    ]
    assert read[0]["data"] == {"value": [{"fullname": "Zoë"}]}
    assert read[1]["entity_id"] == CONTACT_ID
    assert read[3]["error_code"] == "0x80060892"
    assert read[3]["error_message"] == "A record with matching key values already exists."


def test_empty_response_is_read_by_the_sdk_as_no_responses() -> None:
    body, content_type = serialize_batch_response([])
    assert sdk_reads(body, content_type) == []


def test_own_responses_read_back_with_the_request_reader_shape() -> None:
    # The response layout is the request layout with status lines; our reader splits it too.
    body, content_type = serialize_batch_response([BatchResponse(204, content_id="9")], "r")
    parts = body.split(b"--r")
    assert parts[0] == b"" and parts[-1] == b"--\r\n" and len(parts) == 3
    assert content_type.endswith("boundary=r")


@pytest.mark.parametrize(
    "response",
    [
        BatchResponse(200, {"X-Bad": "a\r\nInjected: 1"}),
        BatchResponse(200, body=b"oops\r\n--r\r\n"),
    ],
)
def test_unsafe_responses_are_refused(response: BatchResponse) -> None:
    with pytest.raises(ValueError):
        serialize_batch_response([response], boundary="r")


def test_unknown_status_gets_a_status_line_anyway() -> None:
    body, _ = serialize_batch_response([BatchResponse(599)], boundary="r")
    assert b"HTTP/1.1 599 Unknown\r\n" in body
