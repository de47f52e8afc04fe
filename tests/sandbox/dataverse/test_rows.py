"""RowStore: hash indexes by folded value, unique (alternate-key) indexes, and undo."""

from __future__ import annotations

from consentbridge.sandbox.dataverse.rows import RowStore
from consentbridge.sandbox.dataverse.transaction import Transaction


def _store() -> RowStore:
    store = RowStore("id", ["email"])
    store.put({"id": "1", "email": "Ann@X.io", "name": "Ann"})
    store.put({"id": "2", "email": "bob@x.io", "name": "Bob"})
    store.put({"id": "3", "email": None, "name": "Nobody"})
    return store


def test_lookups_fold_case_and_follow_updates() -> None:
    store = _store()
    assert [r["id"] for r in store.lookup("email", ["ann@x.io"])] == ["1"]
    store.put({"id": "1", "email": "ann@y.io", "name": "Ann"})
    assert store.lookup("email", ["ann@x.io"]) == []
    assert [r["id"] for r in store.lookup("email", ["ann@y.io"])] == ["1"]
    assert [r["id"] for r in store.lookup("id", ["2", "9"])] == ["2"]
    store.remove("2")
    assert store.lookup("email", ["bob@x.io"]) == []


def test_unique_indexes_spot_conflicts_but_not_nulls() -> None:
    store = _store()
    assert not store.duplicates(("email",))
    store.add_unique("k", ("email",))
    assert store.is_indexed("email")
    clash = store.unique_conflict({"id": "9", "email": "BOB@x.io"})
    assert clash is not None and clash.name == "k"
    assert store.unique_conflict({"id": "2", "email": "bob@x.io"}) is None  # itself
    assert store.unique_conflict({"id": "9", "email": None}) is None
    assert store.find_unique("k", ("ann@x.io",)) == store.get("1")
    store.put({"id": "4", "email": "ann@x.io"})
    assert store.duplicates(("email",))
    store.drop_unique("k")
    assert store.unique_conflict({"id": "9", "email": "bob@x.io"}) is None


def test_a_rollback_restores_rows_and_indexes() -> None:
    store = _store()
    store.add_unique("k", ("email",))
    txn = Transaction()
    old = store.get("1")
    store.put({"id": "1", "email": "changed@x.io"})
    txn.journal(store, "1", old)
    store.put({"id": "5", "email": "new@x.io"})
    txn.journal(store, "5", None)
    removed = store.remove("2")
    txn.journal(store, "2", removed)
    txn.rollback()
    assert store.get("1") == old and store.get("5") is None and store.get("2") == removed
    assert [r["id"] for r in store.lookup("email", ["ann@x.io"])] == ["1"]
    assert store.find_unique("k", ("new@x.io",)) is None
    assert store.find_unique("k", ("bob@x.io",)) == removed
