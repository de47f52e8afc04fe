"""`$batch`: sequential parts, atomic change sets with `$n` references, stop-on-error versus
`odata.continue-on-error`, and the 1000-operation limit."""

from __future__ import annotations

import json
from typing import Any

import httpx
from PowerPlatform.Dataverse.data._batch_base import _BatchBase

from consentbridge.sandbox.state import SandboxState
from tests.sandbox.dataverse.conftest import API, Api, error_code

BOUNDARY = "batch_test"


def _request(method: str, url: str, body: dict[str, Any] | None = None, **headers: str) -> str:
    lines = [f"{method} {url} HTTP/1.1"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    return "\r\n".join(lines) + "\r\n\r\n" + (json.dumps(body) if body is not None else "")


def _part(request: str, content_id: int | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id is not None:
        head += f"Content-ID: {content_id}\r\n"
    return head + "\r\n" + request


def _change_set(name: str, *parts: str) -> str:
    inner = "".join(f"--{name}\r\n{p}\r\n" for p in parts) + f"--{name}--"
    return f"Content-Type: multipart/mixed; boundary={name}\r\n\r\n{inner}"


def _body(*parts: str) -> bytes:
    return ("".join(f"--{BOUNDARY}\r\n{p}\r\n" for p in parts) + f"--{BOUNDARY}--\r\n").encode()


async def _batch(api: Api, *parts: str, continue_on_error: bool = False) -> httpx.Response:
    headers = {"Content-Type": f"multipart/mixed; boundary={BOUNDARY}"}
    if continue_on_error:
        headers["Prefer"] = "odata.continue-on-error"
    return await api.post("$batch", content=_body(*parts), headers=headers)


def _statuses(response: httpx.Response) -> list[int]:
    """The status of every response part, change sets flattened."""
    return [
        int(line.split()[1]) for line in response.text.splitlines() if line.startswith("HTTP/1.1 ")
    ]


def _create(lastname: str, **extra: Any) -> str:
    return _request("POST", f"{API}/contacts", {"lastname": lastname, **extra})


async def _lastnames(api: Api) -> list[str]:
    rows = (await api.get("contacts?$select=lastname&$orderby=lastname")).json()["value"]
    return [r["lastname"] for r in rows]


async def test_parts_run_in_order_and_answer_in_order(api: Api) -> None:
    response = await _batch(
        api,
        _part(_create("First")),
        _part(_request("GET", f"{API}/contacts?$select=lastname")),
        _part(_request("GET", "WhoAmI")),
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert _statuses(response) == [204, 200, 200]
    assert '"lastname":"First"' in response.text
    assert api.app.systemuserid in response.text


async def test_a_change_set_is_atomic(api: Api) -> None:
    response = await _batch(
        api,
        _change_set(
            "changeset_a",
            _part(_create("Atomic1"), 1),
            _part(_create("Atomic2", donotemail="yes"), 2),
        ),
        continue_on_error=True,
    )
    assert response.status_code == 200
    assert _statuses(response) == [400]
    assert await _lastnames(api) == []


async def test_content_id_references_address_what_the_change_set_created(api: Api) -> None:
    response = await _batch(
        api,
        _change_set(
            "changeset_b",
            _part(_create("Ref"), 1),
            _part(_request("PATCH", "$1", {"donotemail": True}, If_Match="*"), 2),
            _part(_request("PUT", "$1/jobtitle", {"value": "Engineer"}), 3),
        ),
    )
    assert response.status_code == 200
    assert _statuses(response) == [204, 204, 204]
    rows = (await api.get("contacts?$select=donotemail,jobtitle")).json()["value"]
    assert [(r["donotemail"], r["jobtitle"]) for r in rows] == [(True, "Engineer")]
    assert "Content-ID: 2" in response.text


async def test_without_continue_on_error_the_first_failure_ends_the_batch(api: Api) -> None:
    response = await _batch(
        api,
        _part(_create("Before")),
        _part(_create("Broken", preferredcontactmethodcode=99)),
        _part(_create("After")),
    )
    assert response.status_code == 400
    assert "Preference-Applied" not in response.headers
    assert _statuses(response) == [204, 400]
    assert "0x8004431A" in response.text
    assert await _lastnames(api) == ["Before"]


async def test_continue_on_error_runs_every_part(api: Api) -> None:
    response = await _batch(
        api,
        _part(_create("One")),
        _part(_create("Two", cb_nosuchcolumn=1)),
        _part(_request("GET", f"{API}/contacts(00000000-0000-0000-0000-000000000001)")),
        _part(_create("Three")),
        continue_on_error=True,
    )
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "odata.continue-on-error"
    assert _statuses(response) == [204, 400, 404, 204]
    assert await _lastnames(api) == ["One", "Three"]


async def test_more_than_1000_operations_is_400_and_runs_nothing(api: Api) -> None:
    parts = [_part(_create(f"N{i}")) for i in range(1001)]
    response = await _batch(api, *parts)
    assert response.status_code == 400
    assert error_code(response) == "0x80060888"
    assert await _lastnames(api) == []


async def test_malformed_batches_are_400(api: Api) -> None:
    bad_type = await api.post("$batch", content=b"x", headers={"Content-Type": "application/json"})
    assert bad_type.status_code == 400
    nested = await _batch(api, _part(_request("POST", f"{API}/$batch")))
    assert nested.status_code == 400
    get_in_change_set = await _batch(
        api, _change_set("changeset_c", _part(_request("GET", f"{API}/contacts"), 1))
    )
    assert get_in_change_set.status_code == 400


async def test_a_batch_is_one_request_whose_parts_are_counted_by_name(
    api: Api, state: SandboxState
) -> None:
    state.stats.reset()
    response = await _batch(
        api,
        _part(_create("A")),
        _change_set("changeset_d", _part(_create("B"), 1), _part(_create("C"), 2)),
        _part(_request("GET", f"{API}/contacts")),
    )
    assert response.status_code == 200
    stats = state.stats.public()["dataverse"]
    assert stats["requests"] == 1
    assert stats["by_operation"] == {"$batch": 1, "POST contacts": 3, "GET contacts": 1}
    assert stats["rows_written"] == 3


async def test_microsofts_sdk_reads_the_batch_response(api: Api) -> None:
    response = await _batch(
        api,
        _part(_create("A")),
        _change_set("changeset_e", _part(_create("B"), 1), _part(_create("C"), 2)),
    )
    result = _BatchBase(None)._parse_batch_response(response)  # type: ignore[arg-type]
    assert [r.status_code for r in result.responses] == [204, 204, 204]
    assert [r.content_id for r in result.responses] == [None, "1", "2"]
    rows = (await api.get("contacts?$select=contactid")).json()["value"]
    assert sorted(result.entity_ids) == sorted(r["contactid"] for r in rows)
