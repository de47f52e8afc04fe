"""Issue 12: a slot of the queue is (integration, direction, user, target, regulation), so two
targets or two regulations of one user never share one, and a batch is claimed per target."""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa

from consentbridge.store import Outcome, Store
from consentbridge.store.engine import create_engine, normalize_url

from .builders import ACME, FORWARD, T0, entry, item
from .test_migrate import _diff, _run_sync, _upgrade_to

CONSENT = "contactpointconsent"


async def test_two_targets_and_two_regulations_of_one_user_are_four_slots(store: Store) -> None:
    for target in ("contact", CONSENT):
        for regulation in ("gdpr", "cpra"):
            result = await store.intake(
                replace(
                    item("u1", {"who": f"{target}/{regulation}"}),
                    target=target,
                    regulation=regulation,
                )
            )
            assert result.changed and result.seq == 1

    slots = await store.get_user_states(ACME, FORWARD, "u1")
    assert sorted((s.target, s.regulation, s.columns["who"]) for s in slots) == [
        ("contact", "cpra", "contact/cpra"),
        ("contact", "gdpr", "contact/gdpr"),
        (CONSENT, "cpra", f"{CONSENT}/cpra"),
        (CONSENT, "gdpr", f"{CONSENT}/gdpr"),
    ]
    default = await store.get_state(ACME, FORWARD, "u1")
    assert default is not None and default.columns == {"who": "contact/gdpr"}


async def test_a_batch_is_claimed_per_target(store: Store) -> None:
    await store.intake(item("u1", {"c": 1}))
    await store.intake(replace(item("u1", {"c": 2}), target=CONSENT))
    await store.intake(replace(item("u2", {"c": 3}), target=CONSENT, regulation="cpra"))

    assert await store.due_targets(ACME, FORWARD, T0) == ["contact", CONSENT]
    consent = await store.claim_batch(ACME, FORWARD, "w1", 10, 30.0, T0, CONSENT)
    assert sorted((c.organization_user_id, c.target, c.regulation) for c in consent) == [
        ("u1", CONSENT, "gdpr"),
        ("u2", CONSENT, "cpra"),
    ]
    contact = await store.claim_batch(ACME, FORWARD, "w1", 10, 30.0, T0)
    assert [(c.organization_user_id, c.target, c.regulation) for c in contact] == [
        ("u1", "contact", "gdpr")
    ]


async def test_an_outcome_lands_on_its_own_slot_only(store: Store) -> None:
    await store.intake(item("u1", {"c": 1}))
    await store.intake(replace(item("u1", {"c": 2}), regulation="cpra"))
    claimed = await store.claim_batch(ACME, FORWARD, "w1", 10, 30.0, T0)
    cpra = next(c for c in claimed if c.regulation == "cpra")
    dropped = await store.record_outcomes(
        "w1",
        [Outcome(ACME, FORWARD, "u1", cpra.seq, "written", target="contact", regulation="cpra")],
        T0 + 1,
    )
    assert dropped == 0
    gdpr_row = await store.get_state(ACME, FORWARD, "u1")
    cpra_row = await store.get_state(ACME, FORWARD, "u1", "contact", "cpra")
    assert gdpr_row is not None and gdpr_row.status == "pending" and gdpr_row.lease_owner == "w1"
    assert cpra_row is not None and cpra_row.status == "synced" and cpra_row.lease_owner is None


async def test_the_log_records_target_and_regulation(store: Store) -> None:
    await store.append_log([replace(entry("u1"), target=CONSENT, regulation="cpra")])
    (line,) = await store.user_log(ACME, "u1")
    assert (line["target"], line["regulation"]) == (CONSENT, "cpra")


async def test_slots_stored_before_targets_become_contact_gdpr(store_url: str) -> None:
    await _run_sync(store_url, _upgrade_to("0007"))
    engine = create_engine(normalize_url(store_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO integrations (id, document, created_at, updated_at) "
                    "VALUES ('acme', '{}', 1, 1)"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO sync_states (integration_id, direction, organization_user_id, "
                    "columns, seq, written_seq, pending, status, attempts, next_attempt_at, "
                    "pending_since, updated_at) VALUES ('acme', 'to_dataverse', 'ann@ex.com', "
                    "'{}', 1, 0, :t, 'pending', 0, 0, 1, 1)"
                ),
                {"t": True},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO sync_log (integration_id, organization_user_id, at, direction, "
                    "event, outcome, reason, columns) VALUES ('acme', 'ann@ex.com', 1, "
                    "'to_dataverse', 'user.updated', 'written', '', '{}')"
                )
            )
    finally:
        await engine.dispose()
    store = await Store.open(store_url)
    try:
        (claimed,) = await store.claim_batch("acme", "to_dataverse", "w1", 10, 30.0, now=2.0)
        assert (claimed.target, claimed.regulation) == ("contact", "gdpr")
        (line,) = await store.user_log("acme", "ann@ex.com")
        assert (line["target"], line["regulation"]) == ("contact", "gdpr")
    finally:
        await store.close()
    assert await _run_sync(store_url, _diff) == []


async def test_a_delivery_recorded_as_skipped_counts_as_skipped(store: Store) -> None:
    """A change of a regulation no property row serves is recorded as skipped at intake: in
    the log and in the integration's skipped count (CONTRACT §5)."""
    skip = replace(entry("u1"), outcome="skipped", regulation="lgpd")
    await store.intake(item("u1", merge=lambda old: None, log_unchanged=skip, delivery_key="d1"))
    await store.intake(item("u1", merge=lambda old: None, log_unchanged=skip, delivery_key="d1"))

    status = await store.status(ACME, T0)
    assert status["skipped"] == 1  # the duplicate delivery counts once
    (line,) = await store.user_log(ACME, "u1")
    assert (line["outcome"], line["regulation"]) == ("skipped", "lgpd")
