"""Member leases against a real PostgreSQL: one holder per member's sessions, whatever races."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from envgrid.cluster.members import Members, Orphan, client_base
from tests.cluster_support import pg_url, postgres

__all__ = ["pg_url", "postgres"]  # fixtures

SHORT = timedelta(seconds=1)


async def _member(url: str, name: str, failover: timedelta = SHORT) -> Members:
    return await Members.connect(url, name, failover)


def test_client_ids_derive_from_the_member() -> None:
    assert client_base("", "host-a") == "envgrid-host-a"
    assert client_base("city", "host-a") == "city-host-a"


async def test_a_dead_member_is_adopted_by_one_survivor_and_rejoins_after_release(
    pg_url: str,
) -> None:
    a, b, c = [await _member(pg_url, n) for n in ("a", "b", "c")]
    try:
        assert await a.join(2) and await b.join(2) and await c.join(2)
        assert await b.orphans() == []  # everyone's lease is fresh
        for _ in range(4):  # a stops renewing (its host died); b and c renew
            await asyncio.sleep(0.35)
            assert (await b.renew())[0] and (await c.renew())[0]
        orphans = await b.orphans()
        assert orphans == [Orphan("a", a.epoch, 2)]
        # b and c race for a's sessions: exactly one wins.
        won = await asyncio.gather(b.adopt(orphans[0]), c.adopt(orphans[0]))
        assert sorted(won) == [False, True]
        winner = b if won[0] else c
        assert (await winner.holder("a")).holder == winner.member
        # a comes back (a new process: a new token) while the winner drains: it must wait.
        back = await _member(pg_url, "a")
        try:
            assert not await back.join(2)
            mine, held = await winner.renew()
            assert mine and held == ["a"]
            assert await winner.release(orphans[0])
            assert await back.join(2)
            assert back.epoch == a.epoch + 1
            # Drained and back: nobody adopts a again.
            assert await winner.orphans() == []
            # The old a process (same member id, old token) has lost its sessions.
            assert (await a.renew()) == (False, [])
        finally:
            await back.close()
    finally:
        for m in (a, b, c):
            await m.close()


async def test_a_restarted_member_waits_for_its_earlier_lease(pg_url: str) -> None:
    first = await _member(pg_url, "h")
    second = await _member(pg_url, "h")  # same member id, another process
    try:
        assert await first.join(1)
        assert not await second.join(1)  # the first may still hold the sessions
        h = await second.holder("h")
        assert h.holder == "h" and 0 < h.remaining_s <= 1.0
        await asyncio.sleep(1.2)
        assert await second.join(1)
        assert (await first.renew())[0] is False
    finally:
        await first.close()
        await second.close()


async def test_a_clean_leave_frees_the_sessions_at_once(pg_url: str) -> None:
    a, b = await _member(pg_url, "a", timedelta(seconds=30)), await _member(pg_url, "b")
    try:
        assert await a.join(1) and await b.join(1)
        await a.leave()
        orphans = await b.orphans()
        assert [o.member_id for o in orphans] == ["a"]  # no 30 s wait after a clean stop
        assert await b.adopt(orphans[0])
        assert not await b.adopt(orphans[0])  # claimed once only
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("bad", ["mysql://x/y", "http://x"])
def test_the_database_setting_wants_a_postgresql_url(bad: str) -> None:
    from envgrid.settings import ConfigError, load_settings

    with pytest.raises(ConfigError) as e:
        load_settings(cluster={"database": bad})
    assert "cluster.database" in str(e.value) and bad not in str(e.value)  # secret-safe


async def test_a_member_that_lost_its_lease_fences_itself(pg_url: str, tmp_path: Path) -> None:
    """Another process took our sessions (we were cut off past the failover): the supervisor's
    cue to kill its ingest workers is set at the next renewal, and it must join again."""
    from envgrid.cluster.member import ClusterMember
    from envgrid.settings import load_settings

    settings = load_settings(
        cluster={"database": pg_url, "member_id": "m", "failover": "3s", "renew": "1s"},
        ingest={"spool_dir": str(tmp_path / "spool")},
    )
    member = ClusterMember(settings, 1, "envgrid", None, "INFO")
    stopping = asyncio.Event()
    assert await member.join(stopping)
    assert member.joined.is_set() and not member.fenced.is_set()
    assert member.client_id_base() == "envgrid-m"
    thief = await _member(pg_url, "m")
    try:
        await thief.conn.execute(
            "UPDATE envgrid_members SET holder = 'x', holder_token = 'x' WHERE member_id = 'm'"
        )
        run = asyncio.create_task(member.run(stopping))
        await asyncio.wait_for(member.fenced.wait(), 5)
        assert not member.joined.is_set()
        stopping.set()
        await asyncio.wait_for(run, 5)
    finally:
        await member.leave()
        await thief.close()
