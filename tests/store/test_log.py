"""append_log / user_log."""

from __future__ import annotations

from consentbridge.store import LogEntry, Store

from .builders import ACME, OTHER, T0, entry


async def test_user_log_returns_the_users_entries_in_order(store: Store) -> None:
    await store.append_log(
        [
            entry("u1", event="user.created", at=T0, columns={"donotbulkemail": False}),
            entry("u2", event="user.created", at=T0 + 1),
            entry("u1", event="user.updated", outcome="written", at=T0 + 2),
            entry("u1", integration=OTHER, event="user.deleted", at=T0 + 3),
        ]
    )
    await store.append_log(
        [
            LogEntry(
                ACME,
                "u1",
                "to_didomi",
                "contact.updated",
                "ignored_echo",
                "own write",
                {},
                "req-7",
                T0 + 4,
            )
        ]
    )

    log = await store.user_log(ACME, "u1")

    assert log == [
        {
            "at": "2023-11-14T22:13:20.000Z",
            "direction": "to_dataverse",
            "event": "user.created",
            "outcome": "received",
            "reason": "",
            "columns": {"donotbulkemail": False},
            "request_id": None,
            "target": "contact",
            "regulation": "gdpr",
        },
        {
            "at": "2023-11-14T22:13:22.000Z",
            "direction": "to_dataverse",
            "event": "user.updated",
            "outcome": "written",
            "reason": "",
            "columns": {},
            "request_id": None,
            "target": "contact",
            "regulation": "gdpr",
        },
        {
            "at": "2023-11-14T22:13:24.000Z",
            "direction": "to_didomi",
            "event": "contact.updated",
            "outcome": "ignored_echo",
            "reason": "own write",
            "columns": {},
            "request_id": "req-7",
            "target": "contact",
            "regulation": "gdpr",
        },
    ]


async def test_user_log_limit_keeps_the_latest_entries(store: Store) -> None:
    await store.append_log([entry("u1", event=f"e{i}", at=T0 + i) for i in range(10)])

    log = await store.user_log(ACME, "u1", limit=3)

    assert [e["event"] for e in log] == ["e7", "e8", "e9"]
