"""Reverse sync: CRM changes become Didomi consent events — once, only when Didomi does not hold
them already, never over a newer Didomi change — and are remembered so Didomi's echo is inert.

Both sides are the sandbox over real HTTPS: contacts are read from its Dataverse, and events go
to its Didomi API through the `DidomiClient` that `build_runtime` builds, as in the product. What
was sent is read back from the sandbox (`GET /v1/consents/events`, `/_sandbox/stats`); outages
and lost answers are the sandbox's Didomi faults (`didomi_error_rate`,
`didomi_lose_answer_rate`), set only for the step that meets them."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consentbridge.context import AppContext
from consentbridge.dataverse.client import DataverseClient
from consentbridge.didomi.client import MAX_ATTEMPTS
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
    open_context,
    record_registration,
    webhook_body,
)
from tests.support.sandbox import SandboxClient

ADA = "ada@example.com"
T1 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
WORKER = "worker-1"


class Flow:
    """The store and the sandbox (Dataverse and Didomi), and one reverse worker step at a
    time."""

    def __init__(
        self, ctx: AppContext, runtime: IntegrationRuntime, sandbox: SandboxClient
    ) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.sandbox = sandbox

    def events(self, user: str = ADA) -> list[dict[str, Any]]:
        """The consent events the sandbox's Didomi holds for `user`."""
        return self.sandbox.didomi_events(user)

    def didomi_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.sandbox.stats()["didomi"]
        return stats

    def event_posts(self) -> int:
        """`POST /v1/consents/events` calls the sandbox received (retries included)."""
        return int(self.didomi_stats()["by_operation"].get("POST consents/events", 0))

    async def crm_change(self, attributes: dict[str, Any], **kwargs: Any) -> None:
        await receive_contact_change(
            self.ctx,
            INTEGRATION_ID,
            webhook_body(attributes, **kwargs),
            headers={"x-consentbridge-key": SECRET},
            query={},
        )

    async def truncated_change_sent(
        self, message: str, contact: str, operation_id: str
    ) -> dict[str, Any]:
        """A payload Dataverse truncated (size limit: only the contact's id) received, then
        resolved and sent by two worker steps; returns the one event Didomi got."""
        await receive_contact_change(
            self.ctx,
            INTEGRATION_ID,
            {"MessageName": message, "PrimaryEntityId": contact, "OperationId": operation_id},
            headers={"x-consentbridge-key": SECRET, "x-ms-dynamics-msg-size-exceeded": "1"},
            query={},
        )
        await self.step()
        (sent,) = await self.step()
        assert sent.kind == "written"
        (event,) = self.events()
        return event

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
    runtime = await build_runtime(integration, "test")  # Entra, Web API and Didomi: the sandbox's
    assert runtime.didomi is not None
    assert runtime.didomi.base_url == f"{live_sandbox.base_url}/v1"
    yield Flow(ctx, runtime, live_sandbox)
    await runtime.aclose()
    await ctx.aclose()


async def test_a_crm_change_becomes_one_consent_event_through_the_reverse_mapping(
    flow: Flow,
) -> None:
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "written"
    (event,) = flow.events()
    assert event["user"]["organization_user_id"] == ADA
    assert event["consents"]["purposes"] == [{"id": "newsletter", "enabled": False}]
    # modifiedon has whole seconds: the change is stamped with the end of its second.
    assert event["created_at"] == "2025-03-01T12:00:00.999Z"
    assert event["id"] == event_id(
        INTEGRATION_ID, ADA, {"donotbulkemail": (True, T1.timestamp() + 0.999)}
    )
    assert flow.sandbox.didomi_user(ADA)["consents"]["purposes"][0]["enabled"] is False


async def test_sent_values_are_recorded_so_the_didomi_echo_writes_nothing(flow: Flow) -> None:
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    await flow.step()
    assert len(flow.events()) == 1
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
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    # Didomi stores the events but the answer is a gateway's 504: the client sends again, gets
    # 409 for the batch, then 409 for the event alone — which counts as done.
    with flow.sandbox.faulted(didomi_lose_answer_rate=1):
        (outcome,) = await flow.step()
    assert outcome.kind == "written"
    assert len(flow.events()) == 1
    stats = flow.didomi_stats()
    assert (stats["answers_lost"], stats["events_created"]) == (1, 1)
    assert flow.event_posts() == 3
    assert await flow.forward_value(ADA, "donotbulkemail") is True


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
    (sent,) = flow.events()
    # The lease expires and another worker redoes the batch: same event id, Didomi says 409.
    (outcome,) = await flow.step(now=time.time() + 120, worker="worker-2")
    assert outcome.kind == "written"
    assert [e["id"] for e in flow.events()] == [sent["id"]]
    assert flow.didomi_stats()["events_created"] == 1
    assert await flow.forward_value(ADA, "donotbulkemail") is True


async def test_a_value_didomi_already_holds_is_not_sent(flow: Flow) -> None:
    await flow.didomi_state(ADA, {"donotbulkemail": True}, Stamp(3, T1.timestamp() - 60))
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "unchanged"
    assert flow.event_posts() == 0
    assert flow.events() == []


async def test_a_newer_didomi_change_wins_and_the_loser_is_logged_with_both_stamps(
    flow: Flow,
) -> None:
    newer = T1.timestamp() + 30
    await flow.didomi_state(ADA, {"donotbulkemail": False}, Stamp(5, newer))
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "skipped"
    assert flow.event_posts() == 0
    assert flow.events() == []
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
    (event,) = flow.events()
    assert event["consents"]["purposes"] == [{"id": "newsletter", "enabled": False}]
    assert await flow.forward_value(ADA, "donotbulkemail") is True


async def test_a_one_way_column_is_listed_and_not_sent(flow: Flow) -> None:
    await flow.crm_change({"new_tier": 1, "donotemail": False, "emailaddress1": ADA})
    (outcome,) = await flow.step()
    (event,) = flow.events()
    assert event["consents"]["purposes"] == [{"id": "email", "enabled": True}]
    assert outcome.log is not None and "new_tier is one-way" in outcome.log.reason


async def test_a_placeholder_is_resolved_by_contact_id_and_moved_to_its_user(flow: Flow) -> None:
    contact = flow.sandbox.create_contact(emailaddress1=ADA)
    await flow.crm_change({"donotbulkemail": True}, contact_id=contact, modified=T1)
    (moved,) = await flow.step()
    assert moved.organization_user_id == f"contact:{contact}" and moved.kind == "unchanged"
    assert flow.event_posts() == 0
    (sent,) = await flow.step()  # the moved change, now under the real user
    assert sent.organization_user_id == ADA and sent.kind == "written"
    assert len(flow.events()) == 1
    assert flow.events(f"contact:{contact}") == []
    placeholder = await flow.ctx.store.get_state(INTEGRATION_ID, "to_didomi", f"contact:{contact}")
    assert placeholder is not None and not placeholder.pending


async def test_a_truncated_payload_is_re_read_with_its_modifiedon(flow: Flow) -> None:
    # new_tier is mapped but the sandbox's contact has no such column: the re-read must not
    # select it, or Dataverse would refuse the whole lookup.
    contact = flow.sandbox.create_contact(emailaddress1=ADA, donotbulkemail=True, donotemail=False)
    modified = dt.datetime.fromisoformat(flow.sandbox.contact(contact)["modifiedon"])
    event = await flow.truncated_change_sent("Update", contact, "big-1")
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
    assert flow.event_posts() == 0


async def test_a_didomi_outage_is_retried_later(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("consentbridge.didomi.client._backoff", lambda attempt: 0.0)
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA})
    with flow.sandbox.faulted(didomi_error_rate=1):  # every consent call answers 503
        (outcome,) = await flow.step(RetryPolicy(base_delay_s=60))
    assert outcome.kind == "retry" and outcome.next_attempt_at is not None
    assert flow.event_posts() == MAX_ATTEMPTS  # the client's own retries, then the engine's
    assert flow.events() == []
    assert await flow.forward_value(ADA, "donotbulkemail") is None  # nothing recorded as sent


async def test_an_event_didomi_refuses_becomes_a_dead_letter(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Didomi refuses an event with an empty id (400), and the event becomes a dead letter.

    The engine cannot build an event the sandbox refuses: its mapping only builds well-formed
    events, and the sandbox, holding no purpose configuration, accepts any purpose id (real
    Didomi refuses an unknown one). So the test empties the engine's event id — the only thing
    it changes; the event still goes through the real `DidomiClient` over HTTPS, and the 400
    is the sandbox's own validation."""
    monkeypatch.setattr("consentbridge.sync.reverse.event_id", lambda *args: "")
    await flow.crm_change({"donotbulkemail": True, "emailaddress1": ADA})
    (outcome,) = await flow.step()
    assert outcome.kind == "dead"
    assert outcome.log is not None and outcome.log.outcome == "dead_letter"
    assert outcome.error is not None and "(400)" in outcome.error
    assert "must not be empty" in outcome.error  # Didomi's own message, passed on
    assert flow.event_posts() == 1  # refused: not retried
    assert flow.events() == []
    assert await flow.forward_value(ADA, "donotbulkemail") is None


async def test_events_go_out_in_calls_of_at_most_one_hundred(flow: Flow) -> None:
    for n in range(150):
        await flow.crm_change({"donotbulkemail": True, "emailaddress1": f"u{n}@example.com"})
    outcomes = await flow.step()
    assert {o.kind for o in outcomes} == {"written"}
    # Two calls for 150 events: the sandbox refuses a call of more than 100 (400), so the
    # split was at most 100 per call.
    assert flow.event_posts() == 2
    assert flow.didomi_stats()["events_created"] == 150
    assert len(flow.events("u0@example.com")) == len(flow.events("u149@example.com")) == 1


# --- a Create's defaults are nobody's choice ---------------------------------------------------
# A contact created from a form arrives with every column the form posted, defaults included.
# Those equal to the column's default (read from the sandbox's attribute metadata) are not sent;
# a value that differs, or any value an Update sets, is.

FORM_DEFAULTS = {
    "donotbulkemail": False,
    "donotemail": False,
    "followemail": True,
    "preferredcontactmethodcode": 1,
}


async def test_a_create_that_keeps_every_default_sends_nothing(flow: Flow) -> None:
    await flow.crm_change({**FORM_DEFAULTS, "emailaddress1": ADA}, message="Create", modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "skipped"
    assert outcome.log is not None
    assert "donotbulkemail, donotemail kept the defaults of a new contact" in outcome.log.reason
    assert flow.event_posts() == 0 and flow.events() == []
    assert await flow.forward_value(ADA, "donotbulkemail") is None


async def test_a_create_sends_the_values_that_differ_from_the_defaults(flow: Flow) -> None:
    values = {**FORM_DEFAULTS, "donotemail": True, "emailaddress1": ADA}
    await flow.crm_change(values, message="Create", modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "written"
    (event,) = flow.events()
    assert event["consents"]["purposes"] == [{"id": "email", "enabled": False}]
    assert outcome.log is not None and "donotbulkemail kept the default" in outcome.log.reason


async def test_an_update_to_a_default_value_is_a_choice(flow: Flow) -> None:
    await flow.crm_change({"donotbulkemail": False, "emailaddress1": ADA}, modified=T1)
    (outcome,) = await flow.step()
    assert outcome.kind == "written"
    (event,) = flow.events()
    assert event["consents"]["purposes"] == [{"id": "newsletter", "enabled": True}]


async def test_an_update_after_the_create_is_sent_and_the_untouched_defaults_are_not(
    flow: Flow,
) -> None:
    await flow.crm_change({**FORM_DEFAULTS, "emailaddress1": ADA}, message="Create", modified=T1)
    later = T1 + dt.timedelta(seconds=5)
    await flow.crm_change({"donotbulkemail": False, "emailaddress1": ADA}, modified=later)
    (outcome,) = await flow.step()
    assert outcome.kind == "written"
    (event,) = flow.events()
    # donotbulkemail was set again by the Update (a choice, even if equal to the default).
    assert event["consents"]["purposes"] == [{"id": "newsletter", "enabled": True}]


async def test_a_create_that_waited_under_a_placeholder_keeps_its_defaults_unsent(
    flow: Flow,
) -> None:
    contact = flow.sandbox.create_contact(emailaddress1=ADA)
    await flow.crm_change(FORM_DEFAULTS, message="Create", contact_id=contact, modified=T1)
    (moved,) = await flow.step()
    assert moved.kind == "unchanged" and moved.organization_user_id == f"contact:{contact}"
    (outcome,) = await flow.step()
    assert outcome.organization_user_id == ADA and outcome.kind == "skipped"
    assert flow.event_posts() == 0


async def test_without_the_metadata_a_create_waits_for_it(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DataverseClient, "_backoff", staticmethod(lambda attempt: 0.0))
    await flow.crm_change({**FORM_DEFAULTS, "emailaddress1": ADA}, message="Create", modified=T1)
    with flow.sandbox.faulted(rate_503=1):
        (outcome,) = await flow.step(RetryPolicy(base_delay_s=60))
    assert outcome.kind == "retry" and flow.event_posts() == 0
    (outcome,) = await flow.step(now=outcome.next_attempt_at)
    assert outcome.kind == "skipped" and flow.event_posts() == 0


async def test_a_truncated_create_is_re_read_and_still_keeps_its_defaults_unsent(
    flow: Flow,
) -> None:
    contact = flow.sandbox.create_contact(emailaddress1=ADA, donotbulkemail=True)
    event = await flow.truncated_change_sent("Create", contact, "big-2")
    # donotemail was re-read at its default (false): not sent.
    assert event["consents"]["purposes"] == [{"id": "newsletter", "enabled": False}]
