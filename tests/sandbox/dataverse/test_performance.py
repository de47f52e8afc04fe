"""Throughput of the benchmark target, printed (not asserted: timings depend on the machine):
bulk writes of 1,000 rows per request, with an async webhook step registered, and 1,000-value
`In` lookups among 50,000 contacts. The results themselves are asserted."""

from __future__ import annotations

import time
from typing import Any

import pytest

from consentbridge.sandbox.dataverse.emulator import DataverseEmulator
from tests.sandbox.dataverse.conftest import Api, Receiver
from tests.sandbox.dataverse.test_webhooks import register

ROWS = 50_000
CHUNK = 1_000


def _targets(start: int, **columns: Any) -> list[dict[str, Any]]:
    return [
        {
            "@odata.type": "Microsoft.Dynamics.CRM.contact",
            "lastname": f"Load{i}",
            "emailaddress1": f"load{i}@example.com",
            **columns,
        }
        for i in range(start, start + CHUNK)
    ]


async def test_bulk_writes_and_indexed_lookups_at_benchmark_scale(
    api: Api,
    emulator: DataverseEmulator,
    receiver: Receiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.perf_counter()
    ids: list[str] = []
    for start in range(0, ROWS, CHUNK):
        response = await api.post(
            "contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": _targets(start)}
        )
        assert response.status_code == 200
        ids += response.json()["Ids"]
    create_rate = ROWS / (time.perf_counter() - started)
    assert len(set(ids)) == ROWS

    await register(api, receiver, filtering="donotemail")
    started = time.perf_counter()
    updated = ids[:CHUNK]
    response = await api.post(
        "contacts/Microsoft.Dynamics.CRM.UpdateMultiple",
        json={
            "Targets": [
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.contact",
                    "contactid": i,
                    "donotemail": True,
                }
                for i in updated
            ]
        },
    )
    assert response.status_code == 204
    update_rate = CHUNK / (time.perf_counter() - started)
    await emulator.wait_for_webhooks(timeout_s=60)
    delivery_rate = CHUNK / (time.perf_counter() - started)
    assert len(receiver.bodies) == CHUNK

    wanted = [f"load{i}@example.com" for i in range(20_000, 20_000 + CHUNK)]
    literal = ",".join(f"'{email}'" for email in wanted)
    text = f"Microsoft.Dynamics.CRM.In(PropertyName='emailaddress1',PropertyValues=[{literal}])"
    started = time.perf_counter()
    found = await api.get(
        "contacts", params={"$filter": text, "$select": "contactid,emailaddress1"}
    )
    lookup_ms = (time.perf_counter() - started) * 1000
    assert sorted(r["emailaddress1"] for r in found.json()["value"]) == sorted(wanted)

    with capsys.disabled():
        print(
            f"\n[dataverse emulator] CreateMultiple {create_rate:,.0f} rows/s; "
            f"UpdateMultiple {update_rate:,.0f} rows/s (webhooks delivered at "
            f"{delivery_rate:,.0f}/s); 1,000-value In lookup among {ROWS:,} in {lookup_ms:.1f} ms"
        )
