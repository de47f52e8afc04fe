"""The `$batch` request builder and response parser (pure)."""

from __future__ import annotations

from consentbridge.dataverse.batch import BatchRequest, build_batch, parse_batch_response


def test_request_parts_follow_the_documented_format() -> None:
    body, content_type = build_batch(
        [
            BatchRequest("GET", "https://x/api/data/v9.2/contacts?$select=contactid"),
            BatchRequest(
                "PATCH",
                "https://x/api/data/v9.2/contacts(1)",
                {"donotemail": True},
                {"If-Match": "*"},
            ),
        ]
    )
    text = body.decode()
    boundary = content_type.split("boundary=")[1]
    assert content_type.startswith("multipart/mixed; boundary=batch_")
    assert text.count(f"--{boundary}\r\n") == 2 and text.endswith(f"--{boundary}--\r\n")
    assert "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n" in text
    assert "PATCH https://x/api/data/v9.2/contacts(1) HTTP/1.1\r\nIf-Match: *\r\n" in text
    assert '{"donotemail":true}' in text


def test_response_parts_are_parsed_in_order_including_change_sets() -> None:
    body = (
        b"--batchresponse_1\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
        b'{"value":[{"contactid":"a"}]}\r\n'
        b"--batchresponse_1\r\n"
        b"Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
        b"--changesetresponse_2\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        b"Content-ID: 1\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\nOData-EntityId: https://x/contacts(b)\r\n\r\n\r\n"
        b"--changesetresponse_2--\r\n"
        b"--batchresponse_1\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n"
        b'{"error":{"code":"0x80060888","message":"bad"}}\r\n'
        b"--batchresponse_1--\r\n"
    )
    parts = parse_batch_response(body, "multipart/mixed; boundary=batchresponse_1")
    assert [p.status for p in parts] == [200, 204, 400]
    assert parts[0].json() == {"value": [{"contactid": "a"}]}
    assert parts[1].headers["odata-entityid"] == "https://x/contacts(b)"
    assert parts[2].json()["error"]["code"] == "0x80060888"
