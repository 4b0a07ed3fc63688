"""The alert engine's tests on the PostgreSQL store (the same tests as on SQLite), and what only
the cluster needs: outbox rows claimed, never sent by two processes at once."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator

import pytest

import tests.unit.test_alert_engine as on_sqlite
from alerts.store import AlertRecord, AlertStore
from alerts.store_pg import PgAlertStore
from tests.cluster_support import pg_url, postgres

__all__ = ["pg_url", "postgres"]  # fixtures


@pytest.fixture
def store(pg_url: str) -> Iterator[AlertStore]:
    """The PostgreSQL store where the SQLite tests take their ``store`` fixture."""
    s = PgAlertStore(pg_url, claimer="test")
    yield s
    s.close()


# Every engine test that takes the ``store`` fixture runs here once more, on PostgreSQL.
_SHARED = [
    name
    for name, fn in inspect.getmembers(on_sqlite, inspect.isfunction)
    if name.startswith("test_")
    and "store" in inspect.signature(fn).parameters
    # The engine's memory per device does not depend on the store; measured once, on SQLite.
    and not name.startswith("test_memory_")
]
for _name in _SHARED:
    globals()[_name] = getattr(on_sqlite, _name)
clock = on_sqlite.clock


def test_the_shared_tests_are_many() -> None:
    assert len(_SHARED) >= 15


def _firing(store: AlertStore, n: int = 1) -> None:
    with store.transaction():
        for i in range(n):
            rec = AlertRecord(
                0, "r", "water", f"D{i}", "", "", "", "critical", "firing", "do_mg_l", 1.0,
                "m", "", "", {}, 0, 0, 0, None, 0, 0,
            )  # fmt: skip
            aid = store.insert_alert(rec)
            hid = store.add_history(aid, 0, "firing")
            store.enqueue(hid, aid, ["mqtt"], json.dumps({"alert_id": aid}), 0)


def test_an_outbox_row_is_claimed_by_one_process_at_a_time(pg_url: str) -> None:
    old = PgAlertStore(pg_url, claimer="host-a", claim_ms=60_000)
    new = PgAlertStore(pg_url, claimer="host-b", claim_ms=60_000)
    try:
        _firing(old, 2)
        first = old.next_for("mqtt")
        assert first is not None and json.loads(first.payload)["alert_id"] == 1
        # The other process sees the same row but must wait for the claim to run out
        # (order is kept: it does not skip ahead to the second row either).
        held = new.next_for("mqtt")
        assert held is not None and held.id == first.id
        now_ms = int(__import__("time").time() * 1000)
        assert held.next_ms > now_ms + 50_000
        old.delivered(first.id, 1)
        second = new.next_for("mqtt")
        assert second is not None and second.id != first.id and second.next_ms <= now_ms + 1000
        assert new.outbox_backlog() == {"mqtt": 1}
    finally:
        old.close()
        new.close()


def test_a_dead_claimers_row_is_taken_over_after_the_claim(pg_url: str) -> None:
    dead = PgAlertStore(pg_url, claimer="host-a", claim_ms=1)
    alive = PgAlertStore(pg_url, claimer="host-b")
    try:
        _firing(dead)
        taken = dead.next_for("mqtt")
        assert taken is not None
        __import__("time").sleep(0.05)
        again = alive.next_for("mqtt")
        assert again is not None and again.id == taken.id
        assert dead.next_for("mqtt") is not None  # it sees the row, now held by host-b …
        assert dead.next_for("mqtt").next_ms > taken.next_ms  # type: ignore[union-attr]
    finally:
        dead.close()
        alive.close()


def test_an_unreachable_database_is_one_clear_error() -> None:
    from alerts.store import StoreError

    with pytest.raises(StoreError) as e:
        PgAlertStore("postgresql://u:secret@127.0.0.1:1/x", claimer="t")
    assert "ENVGRID_CLUSTER__DATABASE" in str(e.value) and "secret" not in str(e.value)


def test_the_dispatchers_tables_are_found_on_postgresql(pg_url: str) -> None:
    from alerts.dispatch import ensure_schema, notifications

    s = PgAlertStore(pg_url, claimer="t")
    try:
        ensure_schema(s)
        _firing(s)
        sent = notifications(s, 1)
        assert [(x.target, x.result) for x in sent] == [("mqtt", "queued")]
    finally:
        s.close()
