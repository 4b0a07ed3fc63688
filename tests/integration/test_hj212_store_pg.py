"""The HJ 212 command store in PostgreSQL (issue 21): the SQLite store's interface, plus claims
and shared station state, against a real PostgreSQL (initdb in a temp folder)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from envgrid.localstack import LocalMosquitto
from hj212.commands import Command, new_command
from hj212.dispatch import StationState
from hj212.store_pg import PgCommandStore, SharedConfig, StoreError
from tests.cluster_support import pg_url, postgres

__all__ = ["pg_url", "postgres"]  # fixtures

TZ = ZoneInfo("Asia/Shanghai")
MN = "88888880000001"


def _cmd(mn: str = MN, cn: str = "1011") -> Command:
    return new_command(mn, cn, {}, "test", TZ, 3600)


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[PgCommandStore, PgCommandStore]]:
    """Two gateways (hosts a and b) sharing one database."""
    a = PgCommandStore(SharedConfig(pg_url, "a", 1.0, 30.0))
    b = PgCommandStore(SharedConfig(pg_url, "b", 1.0, 30.0))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _expire_lease(url: str, store: PgCommandStore) -> None:
    """As if the gateway's host died ``failover`` ago: its lease has run out."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "UPDATE hj212_gateways SET until = now() - interval '1 s' WHERE id = %s",
            (store.gateway,),
        )


def test_same_interface_as_the_sqlite_store(
    stores: tuple[PgCommandStore, PgCommandStore],
) -> None:
    a, b = stores
    first, second = _cmd(), _cmd(cn="1061")
    assert a.add(first) and a.add(second)
    assert not b.add(first)  # the same QN routed to another gateway: stored once
    got = b.get(first.qn)
    assert got is not None and (got.mn, got.cn, got.status) == (MN, "1011", "queued")
    assert [c.qn for c in b.find(mn=MN)] == [second.qn, first.qn]  # newest first
    assert [c.qn for c in b.find(cn="1061")] == [second.qn]
    assert [c.qn for c in a.open_commands(MN)] == [first.qn, second.qn]  # oldest first
    assert b.get("00000000000000000") is None
    a.set_pw(MN, "654321")
    assert b.passwords() == {MN: "654321"}
    a.set_pw(MN, "111111")
    assert b.passwords() == {MN: "111111"}


def test_a_command_for_a_station_connected_nowhere_waits_and_is_claimed_by_its_holder(
    stores: tuple[PgCommandStore, PgCommandStore],
) -> None:
    a, b = stores
    cmd = _cmd()
    b.add(cmd)  # queued through host b's API; the station is connected nowhere
    assert a.claim(MN) is None and b.claim(MN) is None
    assert [c.qn for c in a.open_commands(MN)] == [cmd.qn]  # not lost
    assert a.waiting([MN]) == {MN}
    a.hold(MN, "10.0.0.7:4711", "2017")  # the station connects to host a
    assert b.claim(MN) is None  # b does not hold it
    claimed = a.claim(MN)
    assert claimed is not None and claimed.qn == cmd.qn
    assert a.claimed_by(cmd.qn) == (a.gateway, "a")
    assert b.waiting([MN]) == set()  # a's claim counts
    assert a.claim(MN) is not None  # a may pick it up again (e.g. after a sender restart)
    claimed.status, claimed.qn_rtn, claimed.exe_rtn = "succeeded", 1, 1
    assert a.save(claimed)
    final = b.get(cmd.qn)
    assert final is not None and final.status == "succeeded"
    assert not a.save(claimed)  # ended: no second end
    assert a.claim(MN) is None


def test_a_station_that_moves_takes_its_commands_along(
    stores: tuple[PgCommandStore, PgCommandStore],
) -> None:
    a, b = stores
    cmd = _cmd()
    a.add(cmd)
    a.hold(MN, "10.0.0.7:4711", "2017")
    mine = a.claim(MN)
    assert mine is not None
    mine.status, mine.attempts = "sent", 1
    assert a.save(mine)
    # The station's connection to a is half-open; it connects to b (the newest connection wins)
    # while a still thinks it holds it.
    b.hold(MN, "10.0.0.7:4712", "2017")
    assert a.claim(MN) is None
    theirs = b.claim(MN)
    assert theirs is not None and theirs.qn == cmd.qn and theirs.attempts == 1
    mine.attempts = 2
    assert not a.save(mine)  # a's next step finds it lost the command: it stops
    theirs.status, theirs.attempts = "sent", 2
    assert b.save(theirs)


def test_a_dead_hosts_stations_show_offline_and_its_claims_are_free(
    pg_url: str, stores: tuple[PgCommandStore, PgCommandStore]
) -> None:
    a, b = stores
    cmd = _cmd()
    a.add(cmd)
    a.hold(MN, "10.0.0.7:4711", "2017")
    assert a.claim(MN) is not None
    state = StationState(MN, "AQ-1", online=True, edition="2017", last_packet=time.time())
    state.packets, state.clock_offset_s, state.last_command = 12, -3.5, f"1011 {cmd.qn}"
    a.publish([state])
    (row,) = b.stations()
    assert (row.online, row.member, row.peer, row.packets) == (True, "a", "10.0.0.7:4711", 12)
    assert (row.clock_offset_s, row.last_command) == (-3.5, f"1011 {cmd.qn}")
    _expire_lease(pg_url, a)
    (row,) = b.stations()
    assert not row.online  # the row still names a, but a's lease ran out
    # The station reconnects to b, which takes a's claim over.
    b.hold(MN, "10.0.0.7:4800", "2017")
    got = b.claim(MN)
    assert got is not None and got.qn == cmd.qn
    (row,) = a.stations()
    assert (row.online, row.member, row.peer) == (True, "b", "10.0.0.7:4800")


def test_a_closed_connection_and_a_clean_stop_free_stations_and_claims(
    pg_url: str, stores: tuple[PgCommandStore, PgCommandStore]
) -> None:
    a, b = stores
    a.add(_cmd())
    a.hold(MN, "p", "2017")
    assert a.claim(MN) is not None
    a.let_go(MN)
    assert not b.stations()[0].online
    b.hold(MN, "q", "2017")
    assert b.claim(MN) is not None
    c = PgCommandStore(SharedConfig(pg_url, "c", 1.0, 30.0))
    other = "88888880000002"
    c.add(_cmd(other))
    c.hold(other, "r", "2017")
    assert c.claim(other) is not None
    c.close()  # a clean stop: at once, without waiting for the lease to run out
    online = {s.mn: s.online for s in a.stations()}
    assert online == {MN: True, other: False}
    a.hold(other, "s", "2017")
    assert a.claim(other) is not None


def test_an_expiry_ends_a_command_once(stores: tuple[PgCommandStore, PgCommandStore]) -> None:
    a, b = stores
    cmd = _cmd()
    a.add(cmd)
    first, second = a.get(cmd.qn), b.get(cmd.qn)
    assert first is not None and second is not None
    first.status = second.status = "expired"
    assert a.save(first)  # nobody claimed it: any gateway's sweep may end it
    assert not b.save(second)  # the other sweep finds it ended


def test_two_gateways_racing_for_one_command_send_it_once(pg_url: str) -> None:
    """Many claimers at once on the gateway holding the station and on one that lost it: the
    holder's claims all name the same command, nobody else gets it."""
    holder = [PgCommandStore(SharedConfig(pg_url, "a", 1.0, 30.0)) for _ in range(2)]
    # The same gateway process claiming from two connections (its sender restarted).
    holder[1].gateway = holder[0].gateway
    loser = PgCommandStore(SharedConfig(pg_url, "b", 1.0, 30.0))
    try:
        loser.hold(MN, "old", "2017")
        holder[0].hold(MN, "new", "2017")
        cmds = [_cmd() for _ in range(3)]
        for c in cmds:
            holder[0].add(c)
        got: list[str | None] = []
        lock = threading.Lock()

        def claim(store: PgCommandStore) -> None:
            for _ in range(10):
                c = store.claim(MN)
                with lock:
                    got.append(c.qn if c else None)

        threads = [threading.Thread(target=claim, args=(s,)) for s in (*holder, loser)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {qn for qn in got if qn is not None} == {cmds[0].qn}  # one command at a time, oldest
        assert got.count(None) == 10  # every one of the loser's tries
    finally:
        for s in (*holder, loser):
            s.close()


def test_an_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(StoreError) as e:
        PgCommandStore(SharedConfig("postgresql://envgrid:secret@127.0.0.1:1/none", "a"))
    message = str(e.value)
    assert "ENVGRID_CLUSTER__DATABASE" in message and "secret" not in message


async def test_a_process_without_the_gateway_serves_the_api_from_the_shared_store(
    pg_url: str,
) -> None:
    """``envgrid run --workers``: the API is served by the alerts process, where no gateway
    runs; with a cluster database it queues and shows every host's commands and stations."""
    from fastapi import FastAPI
    from prometheus_client.registry import CollectorRegistry
    from pydantic import SecretStr

    from devices.registry import load_registry
    from envgrid.app import DEFAULT_REGISTRY
    from envgrid.settings import load_settings
    from hj212.gateway import ServiceGateway
    from tests.helpers import wait_for

    settings = load_settings(None, devices={"registry": DEFAULT_REGISTRY})
    hj = ServiceGateway(
        settings, load_registry(DEFAULT_REGISTRY), SharedConfig(pg_url, "x", 0.2, 30.0)
    )

    class AlertsRole:
        evaluate_only = True
        worker: int | None = None
        metrics = CollectorRegistry()

    await hj.start(AlertsRole())
    assert hj.gateway is None and hj.shared_api is not None
    app = FastAPI()
    app.include_router(hj.router(SecretStr("t0ken")))
    gateway = PgCommandStore(SharedConfig(pg_url, "gw", 1.0, 30.0))
    mn = next(iter(hj.stations))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://api",
            headers={"Authorization": "Bearer t0ken"},
        ) as api:
            r = await api.post("/api/hj212/commands", json={"mn": mn, "cn": "1011"})
            assert r.status_code == 201, r.text
            qn = r.json()["qn"]
            bad = await api.post("/api/hj212/commands", json={"mn": "nope", "cn": "1011"})
            assert bad.status_code == 400 and "unknown MN" in bad.json()["detail"]
            listed = (await api.get("/api/hj212/commands", params={"mn": mn})).json()
            assert [(c["qn"], c["status"]) for c in listed] == [(qn, "queued")]
            shown = (await api.get("/api/hj212/stations")).json()
            assert len(shown) == len(hj.stations) and not any(s["online"] for s in shown)
            gateway.hold(mn, "10.1.2.3:5000", "2017")  # a gateway on another host has it
            shown = {s["mn"]: s for s in (await api.get("/api/hj212/stations")).json()}
            assert (shown[mn]["online"], shown[mn]["member"]) == (True, "gw")
            assert shown[mn]["peer"] == "10.1.2.3:5000"
            claimed = gateway.claim(mn)
            assert claimed is not None and claimed.qn == qn
            # The console's view: every host's stations, and its buttons queue in the store.
            viewer = hj.dispatcher()
            assert viewer is not None

            def connected() -> bool:
                assert viewer is not None
                return viewer.states[mn].online and viewer.states[mn].peer == "10.1.2.3:5000"

            await wait_for(connected, 5, "the console's view shows the station connected")
            sync = viewer.sync_clock(mn, "operator:ops")
            assert sync is not None and gateway.get(sync.qn) is not None
            # The database gone: a 503 with the reason, no stack trace, no password.
            store = hj.shared_api.store
            store.cfg = SharedConfig("postgresql://envgrid:secret@127.0.0.1:1/gone", "x")
            assert store._conn is not None
            store._conn.close()
            for r in (
                await api.get("/api/hj212/stations"),
                await api.post("/api/hj212/commands", json={"mn": mn, "cn": "1011"}),
            ):
                assert r.status_code == 503, r.text
                assert "cluster database" in r.json()["detail"] and "secret" not in r.text
    finally:
        gateway.close()
        await hj.stop()


def test_a_lost_connection_fails_fast_on_the_gateways_loop_and_comes_back(
    pg_url: str, stores: tuple[PgCommandStore, PgCommandStore]
) -> None:
    """The gateway's event loop never waits for a reconnect; its store thread reconnects."""
    a, _ = stores
    cmd = _cmd()
    a.add(cmd)
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid != pg_backend_pid()"
        )
    for _ in range(2):  # the first finds the connection gone, the second does not try
        with pytest.raises(psycopg.OperationalError):
            a.get(cmd.qn)
    store_thread = threading.Thread(target=a.renew)  # the dispatcher's share tick
    store_thread.start()
    store_thread.join()
    got = a.get(cmd.qn)
    assert got is not None and got.qn == cmd.qn


async def test_the_standalone_gateway_shares_its_stations_and_commands(
    mosquitto: LocalMosquitto, pg_url: str, tmp_path: Path
) -> None:
    """``envgrid hj212-gateway`` with a cluster database: a station connected to it is shown
    from the shared table, and a command queued by another host goes out to it."""
    from devices.registry import load_registry
    from envgrid.app import DEFAULT_REGISTRY
    from envgrid.gateway import run_gateway
    from envgrid.ports import free_port
    from envgrid.settings import load_settings
    from hj212.intake import load_stations
    from hj212.station import DataLogger, LoggerState
    from tests.helpers import wait_for
    from tests.hj212_support import rtd_factors
    from tests.integration.test_hj212_gateway import AIR

    http_port, hj_port = free_port(), free_port()
    settings = load_settings(
        None,
        mqtt={"url": mosquitto.url, "client_id": f"gw-{tmp_path.name}"},
        http={"host": "127.0.0.1", "port": http_port, "token": "t0ken"},
        hj212={"host": "127.0.0.1", "port": hj_port, "backfill": False},
        cluster={"database": pg_url, "member_id": "solo", "renew": "1s", "failover": "3s"},
        devices={"registry": DEFAULT_REGISTRY},
        alerts={"store": tmp_path / "alerts.db"},
    )
    stations = load_stations(load_registry(DEFAULT_REGISTRY), "Asia/Shanghai")
    station = next(s for s in stations.values() if s.kind == "air")
    other_host = PgCommandStore(SharedConfig(pg_url, "other", 1.0, 30.0), gateway=False)
    stop = asyncio.Event()
    task = asyncio.create_task(run_gateway(settings, stop))
    logger = DataLogger(LoggerState(station))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as api:
            for _ in range(100):
                with contextlib.suppress(OSError):
                    await logger.connect("127.0.0.1", hj_port)
                    break
                await asyncio.sleep(0.1)
            await logger.upload("2011", logger.state.now(), rtd_factors(AIR))

            async def shown() -> dict[str, Any]:
                r = await api.get("/api/hj212/stations")
                return next(s for s in r.json() if s["mn"] == station.mn)

            seen: dict[str, Any] = {}

            async def online() -> bool:
                seen.update(await shown())
                return bool(seen["online"])

            deadline = time.monotonic() + 10
            while not await online():
                assert time.monotonic() < deadline, seen
                await asyncio.sleep(0.2)
            assert seen["member"] == "solo" and seen["peer"].startswith("127.0.0.1:")
            cmd = _cmd(station.mn, "1061")
            other_host.add(cmd)  # queued on another host, no MQTT nudge: found at a renew
            await wait_for(
                lambda: (other_host.get(cmd.qn) or cmd).status == "succeeded",
                10,
                "the command queued elsewhere succeeded",
            )
            assert [p.qn for p in logger.state.requests].count(cmd.qn) == 1
    finally:
        await logger.close()
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0
        other_host.close()
