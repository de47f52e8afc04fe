"""Alerts, delivered to a real local webhook receiver: one message per condition however many
workers see it, a "resolved" one when it clears, retries bounded, nothing secret or personal in
a message, and the test alert of the admin API and the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consentbridge.alerts.monitor import AlertMonitor
from consentbridge.alerts.sender import AlertSender
from consentbridge.context import AppContext
from consentbridge.operations import intake, integrations
from consentbridge.store import IntakeItem, Outcome, Store
from consentbridge.sync.worker import Worker
from consentbridge.web.app import create_app
from tests.e2e.conftest import integration_document
from tests.support.receiver import Receiver, serve_receiver
from tests.support.sandbox import SandboxClient
from tests.web.support import ADMIN_TOKEN, make_settings, user_updated

ACME = "acme-d365"
USER = "dana.private@example.com"
T0 = 1_700_000_000.0
PROPERTIES = [
    {"id": "donotbulkemail", "value": "consents_purposes_newsletter_enabled", "transform": "not"}
]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


def _monitor(store: Store, receiver: Receiver, **options: Any) -> AlertMonitor:
    sender = AlertSender(receiver.url, first_delay_s=0.01)
    return AlertMonitor(store, sender, backlog_age_s=900.0, **options)


async def _dead_letter(store: Store) -> None:
    await store.put_integration(ACME, {"id": ACME})
    await store.intake(
        IntakeItem(ACME, "to_dataverse", USER, None, lambda _old: {"v": 1}, None, T0)
    )
    (claimed,) = await store.claim_batch(ACME, "to_dataverse", "w1", 10, 60.0, T0)
    dead = Outcome(ACME, "to_dataverse", USER, claimed.seq, "dead", error=f"{USER} refused")
    await store.record_outcomes("w1", [dead], T0)


async def _check_both(monitors: list[AlertMonitor], now: float) -> None:
    await asyncio.gather(*(m.check(now) for m in monitors))
    for monitor in monitors:
        await monitor.sender.flush()


async def test_two_workers_send_one_dead_letter_alert_then_one_resolved(
    two_stores: tuple[Store, Store], receiver: Receiver
) -> None:
    first, second = two_stores
    await _dead_letter(first)
    monitors = [_monitor(first, receiver), _monitor(second, receiver)]
    try:
        await _check_both(monitors, T0 + 1)
        await _check_both(monitors, T0 + 2)  # still raised: nothing more

        assert len(receiver.bodies) == 1
        (alert,) = receiver.bodies
        assert set(alert) == {"text"}
        assert ACME in alert["text"] and "dead letter" in alert["text"]
        assert "resolved" not in alert["text"]

        assert await first.replay_dead_letters(ACME, now=T0 + 3) == 1
        await _check_both(monitors, T0 + 4)
        await _check_both(monitors, T0 + 5)

        assert len(receiver.bodies) == 2
        assert "resolved" in receiver.bodies[1]["text"] and ACME in receiver.bodies[1]["text"]
        assert all(USER not in raw.decode() for raw in receiver.raw)
    finally:
        for monitor in monitors:
            await monitor.sender.aclose()


async def test_an_old_backlog_raises_an_alert_until_it_is_written(
    store_url: str, receiver: Receiver
) -> None:
    store = await Store.open(store_url)
    monitor = _monitor(store, receiver)
    try:
        await store.put_integration(ACME, {"id": ACME})
        await store.intake(
            IntakeItem(ACME, "to_dataverse", USER, None, lambda _old: {"v": 1}, None, T0)
        )
        await _check_both([monitor], T0 + 600)  # younger than 900 s: no alert
        assert receiver.bodies == []

        await _check_both([monitor], T0 + 1200)
        (alert,) = receiver.bodies
        assert "20 min" in alert["text"] and "threshold 15 min" in alert["text"]

        (claimed,) = await store.claim_batch(ACME, "to_dataverse", "w1", 10, 60.0, T0 + 1200)
        written = Outcome(ACME, "to_dataverse", USER, claimed.seq, "written")
        await store.record_outcomes("w1", [written], T0 + 1201)
        await _check_both([monitor], T0 + 1202)
        assert len(receiver.bodies) == 2 and "resolved" in receiver.bodies[1]["text"]
    finally:
        await monitor.sender.aclose()
        await store.close()


async def test_refused_credentials_raise_an_alert_that_clears_once_they_work(
    sqlite_url: str, tmp_path: Path, live_sandbox: SandboxClient, receiver: Receiver
) -> None:
    ctx = await AppContext.open(make_settings(sqlite_url, tmp_path))
    document = integration_document(live_sandbox, PROPERTIES, id=ACME)
    good_secret = document["config"]["client_secret"]
    document["config"]["client_secret"] = "wrong-secret-Zz9Yy8Xx7"
    await integrations.apply(ctx, document)
    live_sandbox.create_contact(emailaddress1=USER, donotbulkemail=False)
    await intake.receive_didomi(ctx, ACME, user_updated(USER))
    worker = Worker(ctx.store, ctx.secrets)
    monitor = _monitor(ctx.store, receiver, auth_states=worker.registry.auth_states)
    try:
        await _check_both([monitor], T0)  # no token asked for yet: nothing known, no alert
        assert receiver.bodies == []

        await worker.run_once()
        await _check_both([monitor], T0 + 1)
        (alert,) = receiver.bodies
        assert ACME in alert["text"] and "authentication fails" in alert["text"]
        assert "Entra ID" in alert["text"]
        raw = receiver.raw[0].decode()
        assert "wrong-secret-Zz9Yy8Xx7" not in raw and good_secret not in raw and USER not in raw

        document["config"]["client_secret"] = good_secret
        await integrations.apply(ctx, document)
        state = await ctx.store.get_state(ACME, "to_dataverse", USER)
        assert state is not None
        await ctx.store.replay_dead_letters(ACME, now=state.next_attempt_at)
        for _ in range(50):
            if worker.registry.auth_states().get(ACME, "x") is None:
                break
            await worker.run_once()
            await asyncio.sleep(0.05)
        await _check_both([monitor], T0 + 2)
        assert len(receiver.bodies) == 2
        assert (
            "resolved" in receiver.bodies[1]["text"]
            and "authentication works" in (receiver.bodies[1]["text"])
        )
    finally:
        await monitor.sender.aclose()
        await worker.registry.aclose()
        await ctx.aclose()


async def test_the_sender_retries_server_errors_and_not_refusals(receiver: Receiver) -> None:
    from consentbridge.alerts import messages

    sender = AlertSender(receiver.url, first_delay_s=0.01, attempts=3)
    try:
        receiver.statuses = [503, 429, 200]
        assert await sender.deliver(messages.test_message()) == 200
        assert receiver.hits == 3 and len(receiver.bodies) == 1

        receiver.statuses = [404]
        assert await sender.deliver(messages.test_message()) == 404
        assert receiver.hits == 4

        receiver.statuses = [500, 500, 500, 200]
        assert await sender.deliver(messages.test_message()) == 500
        assert receiver.hits == 7  # bounded: three attempts, then given up
    finally:
        await sender.aclose()


async def test_the_test_alert_arrives_through_the_admin_api(
    sqlite_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    async def post(**settings: Any) -> httpx.Response:
        ctx = await AppContext.open(make_settings(sqlite_url, tmp_path, **settings))
        try:
            transport = httpx.ASGITransport(app=create_app(ctx))
            async with httpx.AsyncClient(transport=transport, base_url="http://cb") as http:
                return await http.post(
                    "/api/v1/alerts/test", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )
        finally:
            await ctx.aclose()

    sent = await post(alert_webhook_url=receiver.url)
    assert sent.status_code == 200 and sent.json()["sent"] is True
    (body,) = receiver.bodies
    assert body == {"text": "ConsentBridge test alert: this channel receives ConsentBridge alerts."}

    unset = await post()
    assert unset.status_code == 409
    assert "CONSENTBRIDGE_ALERT_WEBHOOK_URL" in unset.json()["error"]

    receiver.statuses = [410, 410, 410]
    refused = await post(alert_webhook_url=receiver.url)
    assert refused.status_code == 503
    assert "HTTP 410" in refused.json()["error"] and receiver.url not in refused.text


async def test_the_cli_sends_the_test_alert(receiver: Receiver) -> None:
    env = {**os.environ, "CONSENTBRIDGE_ALERT_WEBHOOK_URL": receiver.url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consentbridge.cli",
        "alerts",
        "test",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "test alert sent" in out.decode()
    assert len(receiver.bodies) == 1
