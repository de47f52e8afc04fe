"""Reverse sync: CRM changes become Didomi consent events — once, only when Didomi does not hold
them already, never over a newer Didomi change — and are remembered so Didomi's echo is inert.

Contacts are read from the sandbox's Dataverse over HTTPS; Didomi is the in-memory `FakeDidomi`
(it can lose an answer after storing the events, which the sandbox cannot)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.operations.reverse_intake import receive_contact_change
from consentbridge.store import IntakeItem, Outcome
from consentbridge.sync.merge import Stamp, merge_columns
from consentbridge.sync.retry import RetryPolicy
from consentbridge.sync.reverse import ReverseEngine, event_id
from consentbridge.sync.runtime import IntegrationRuntime, build_runtime
from tests.e2e.conftest import integration_document
from tests.support.bidirectional import (
    INTEGRATION_ID,
    PROPERTIES,
    SECRET,
    FakeDidomi,
    open_context,
    record_registration,
    webhook_body,
)
from tests.support.sandbox import SandboxClient

ADA = "ada@example.com"
T1 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
WORKER = "worker-1"


class Flow:
    """The store, the sandbox's Dataverse and a fake Didomi, and one reverse worker step at a
    time."""

    def __init__(
        self,
        ctx: AppContext,
        runtime: IntegrationRuntime,
        didomi: FakeDidomi,
        dataverse: SandboxClient,
    ) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.didomi = didomi
        self.dataverse = dataverse

    async def crm_change(self, attributes: dict[str, Any], **kwargs: Any) -> None:
        await receive_contact_change(
            self.ctx,
            INTEGRATION_ID,
            webhook_body(attributes, **kwargs),
            headers={"x-consentbridge-key": SECRET},
            query={},
        )

    async def didomi_state(self, user: str, values: dict[str, Any], stamp: Stamp) -> None:
        await self.ctx.store.intake(
            IntakeItem(
                INTEGRATION_ID,
                "to_dataverse",
                user,
                None,
                lambda old: merge_columns(old, values, stamp).columns,
                None,
                time.time(),
            )
        )

    async def step(
        self, policy: RetryPolicy | None = None, now: float | None = None, worker: str = WORKER
    ) -> list[Outcome]:
        now = now or time.time()
        claims = await self.ctx.store.claim_batch(
            INTEGRATION_ID, "to_didomi", worker, 1000, 60.0, now
        )
        outcomes = await ReverseEngine(self.ctx.store)(
            self.runtime, claims, policy or RetryPolicy()
        )
        await self.ctx.store.record_outcomes(worker, outcomes, now)
        return outcomes

    async def forward_value(self, user: str, column: str) -> Any:
        row = await self.ctx.store.get_state(INTEGRATION_ID, "to_dataverse", user)
        return None if row is None else row.columns.get(column, {}).get("v")


@pytest.fixture
async def flow(tmp_path: Path, live_sandbox: SandboxClient) -> AsyncIterator[Flow]:
    ctx = await open_context(tmp_path, integration_document(live_sandbox, PROPERTIES))
    await record_registration(ctx)
    integration = await ctx.integration(INTEGRATION_ID)
    assert integration is not None
    runtime = build_runtime(integration, "test")  # tokens and Web API: the sandbox's
    assert runtime.didomi is not None
    await runtime.didomi.aclose()
    didomi = FakeDidomi()
    runtime.didomi = didomi.client()
    yield Flow(ctx, runtime, didomi, live_sandbox)
    await runtime.aclose()
    await ctx.aclose()


async def test_a_crm_change_becomes_one_consent_event_through_the_reverse_mapping(
    flow: Flow,
) -> None:
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "written"
    (event,) = flow.didomi.events.values()
    assert event["user"] == {"organization_user_id": ADA}
    assert event["consents"] == {"purposes": [{"id": "newsletter", "enabled": False}]}
    # modifiedon has whole seconds: the change is stamped with the end of its second.
    assert event["created_at"] == "2025-03-01T12:00:00.999Z"
    assert event["id"] == event_id(
        INTEGRATION_ID, ADA, {"donotbulkemail": (True, T1.timestamp() + 0.999)}
    )


async def test_sent_values_are_recorded_so_the_didomi_echo_writes_nothing(flow: Flow) -> None:
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    await flow.step()
    assert await flow.forward_value(ADA, "donotbulkemail") is True
    # Didomi's user.updated echo: newer stamp, same value — no value change for Dataverse.
    row = await flow.ctx.store.get_state(INTEGRATION_ID, "to_dataverse", ADA)
    assert row is not None
    echo = merge_columns(row.columns, {"donotbulkemail": True}, Stamp(7, T1.timestamp() + 1))
    assert not echo.value_changed


async def test_a_lost_answer_from_didomi_does_not_duplicate_the_event(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("consentbridge.didomi.client._backoff", lambda attempt: 0.0)
    flow.didomi.lose_answers = 1  # stored, but the answer is a 504: the client sends again
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "written"
    assert len(flow.didomi.events) == 1


async def test_a_batch_redone_after_a_crash_never_duplicates_an_event(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)

    async def killed(items: object) -> None:
        raise RuntimeError("killed after sending, before recording")

    monkeypatch.setattr(flow.ctx.store, "intake_many", killed)
    with pytest.raises(RuntimeError):
        await flow.step()
    monkeypatch.undo()
    assert len(flow.didomi.events) == 1
    # The lease expires and another worker redoes the batch: same event id, Didomi says 409.
    (outcome,) = await flow.step(now=time.time() + 120, worker="worker-2")
    assert outcome.kind == "written"
    assert len(flow.didomi.events) == 1
    assert await flow.forward_value(ADA, "donotbulkemail") is True


async def test_a_value_didomi_already_holds_is_not_sent(flow: Flow) -> None:
    await flow.didomi_state(ADA, {"donotbulkemail": True}, Stamp(3, T1.timestamp() - 60))
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "unchanged"
    assert flow.didomi.events == {}


async def test_a_newer_didomi_change_wins_and_the_loser_is_logged_with_both_stamps(
    flow: Flow,
) -> None:
    newer = T1.timestamp() + 30
    await flow.didomi_state(ADA, {"donotbulkemail": False}, Stamp(5, newer))
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "skipped"
    assert flow.didomi.events == {}
    assert outcome.log is not None
    assert "conflict on donotbulkemail" in outcome.log.reason
    assert "2025-03-01T12:00:30.000Z (version 5)" in outcome.log.reason
    assert "modifiedon 2025-03-01T12:00:00.000Z" in outcome.log.reason
    assert await flow.forward_value(ADA, "donotbulkemail") is False


async def test_an_older_didomi_state_loses_to_the_crm_change(flow: Flow) -> None:
    await flow.didomi_state(ADA, {"donotbulkemail": False}, Stamp(5, T1.timestamp() - 30))
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "written"
    assert len(flow.didomi.events) == 1
    assert await flow.forward_value(ADA, "donotbulkemail") is True


async def test_a_one_way_column_is_listed_and_not_sent(flow: Flow) -> None:
    await flow.crm_change({"new_tier": 1, "donotemail": False, "emailaddress1": ADA})
    (outcome,) = await flow.step()
    (event,) = flow.didomi.events.values()
    assert event["consents"] == {"purposes": [{"id": "email", "enabled": True}]}
    assert outcome.log is not None and "new_tier is one-way" in outcome.log.reason


async def test_a_placeholder_is_resolved_by_contact_id_and_moved_to_its_user(flow: Flow) -> None:
    contact = flow.dataverse.create_contact(emailaddress1=ADA)
    await flow.crm_change({"donotbulkemail": True}, contact_id=contact, modified=T1)
    (moved,) = await flow.step()
    assert moved.organization_user_id == f"contact:{contact}" and moved.kind == "unchanged"
    assert flow.didomi.events == {}
    (sent,) = await flow.step()  # the moved change, now under the real user
    assert sent.organization_user_id == ADA and sent.kind == "written"
    assert len(flow.didomi.events) == 1
    placeholder = await flow.ctx.store.get_state(INTEGRATION_ID, "to_didomi", f"contact:{contact}")
    assert placeholder is not None and not placeholder.pending


async def test_a_truncated_payload_is_re_read_with_its_modifiedon(flow: Flow) -> None:
    # new_tier is mapped but the sandbox's contact has no such column: the re-read must not
    # select it, or Dataverse would refuse the whole lookup.
    contact = flow.dataverse.create_contact(
        emailaddress1=ADA, donotbulkemail=True, donotemail=False
    )
    modified = dt.datetime.fromisoformat(flow.dataverse.contact(contact)["modifiedon"])
    await receive_contact_change(
        flow.ctx,
        INTEGRATION_ID,
        {"MessageName": "Update", "PrimaryEntityId": contact, "OperationId": "big-1"},
        headers={"x-consentbridge-key": SECRET, "x-ms-dynamics-msg-size-exceeded": "1"},
        query={},
    )
    await flow.step()
    (sent,) = await flow.step()
    assert sent.kind == "written"
    (event,) = flow.didomi.events.values()
    # No later than the end of the modifiedon second, nor than the re-read.
    created = dt.datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
    assert modified <= created <= modified + dt.timedelta(seconds=0.999)
    assert {p["id"]: p["enabled"] for p in event["consents"]["purposes"]} == {
        "newsletter": False,
        "email": True,
    }


async def test_a_placeholder_of_a_deleted_contact_is_skipped(flow: Flow) -> None:
    await flow.crm_change({"donotbulkemail": True})
    (outcome,) = await flow.step()
    assert outcome.kind == "skipped"
    assert outcome.log is not None and "no longer exists" in outcome.log.reason


async def test_a_didomi_outage_is_retried_later(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("consentbridge.didomi.client._backoff", lambda attempt: 0.0)
    flow.didomi.fail_status = 503
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA})
    (outcome,) = await flow.step(RetryPolicy(base_delay_s=60))
    assert outcome.kind == "retry" and outcome.next_attempt_at is not None
    assert await flow.forward_value(ADA, "donotbulkemail") is None  # nothing recorded as sent


async def test_an_event_didomi_refuses_becomes_a_dead_letter(flow: Flow) -> None:
    flow.didomi.fail_status = 400
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA})
    (outcome,) = await flow.step()
    assert outcome.kind == "dead"
    assert outcome.log is not None and outcome.log.outcome == "dead_letter"


async def test_events_go_out_in_calls_of_at_most_one_hundred(flow: Flow) -> None:
    for n in range(150):
        await flow.crm_change({"donotbulkemail": True, "emailaddress1": f"u{n}@example.com"})
    outcomes = await flow.step()
    assert {o.kind for o in outcomes} == {"written"}
    assert flow.didomi.calls == [100, 50]
    assert len(flow.didomi.events) == 150
