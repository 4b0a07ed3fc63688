"""HJ 212 both ways (issue 15): commands, recovery, clock watch, routing and restarts, with
simulated data loggers on real TCP against the real gateway, mosquitto and InfluxDB."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.settings import Settings
from hj212.codec import parse
from hj212.commands import Command, new_command
from hj212.gateway import ServiceGateway
from hj212.recovery import HOUR, hour_floor
from hj212.routing import publish_command
from hj212.station import DataLogger, LoggerState
from tests.helpers import make_settings, mqtt_client, wait_for
from tests.hj212_support import (
    SHANGHAI,
    StationLink,
    hourly_factors,
    local_now,
    logger_state,
    packet,
    rtd_factors,
    service_with_commands,
)
from tests.integration.test_hj212_gateway import AIR, AQ, WATER, WQ, hourly, rows

WQ_MN, AQ_MN = str(WQ.facts["mn"]), str(AQ.facts["mn"])


def _settings(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, db: str, tmp: Path, **hj: Any
) -> Settings:
    base = {
        "port": 0,
        "host": "127.0.0.1",
        "command_store": tmp / "commands.db",
        "backfill_lookback": "30h",
        "backfill_interval": "2s",
    }
    return make_settings(mosquitto, influxdb, db, tmp, hj212={**base, **hj})


def _window(lookback: timedelta = timedelta(hours=30)) -> list[datetime]:
    """The hours the backfill looks at with a lookback (30 h: the default; naive Shanghai time)."""
    now = datetime.now(SHANGHAI)
    start = hour_floor(now - lookback).replace(tzinfo=None)
    end = hour_floor(now - timedelta(minutes=15)).replace(tzinfo=None)
    out = []
    while start < end:
        out.append(start)
        start += HOUR
    return out


def _commands(hj: ServiceGateway, mn: str, cn: str | None = None) -> list[Command]:
    assert hj.commands is not None
    return hj.commands.store.find(mn=mn, cn=cn)


async def _logger(hj: ServiceGateway, state: LoggerState) -> DataLogger:
    """Connect a logger and send one real-time packet (stations authenticate by sending)."""
    assert hj.gateway is not None
    logger = DataLogger(state)
    await logger.connect("127.0.0.1", hj.gateway.port)
    await logger.upload("2011", state.now(), rtd_factors(WATER if state.station.kind == "water"
                                                        else AIR))  # fmt: skip
    return logger


async def _seed_hours(
    hj: ServiceGateway, hours: list[datetime], influxdb: LocalInfluxDB, db: str
) -> None:
    """Upload hourly packets of WQ-001 live through the gateway and wait until stored."""
    assert hj.gateway is not None
    link = await StationLink.open(hj.gateway.port)
    qns = []
    for h in hours:
        qn, frame = packet(WQ, "2061", h, hourly(WATER))
        qns.append(qn)
        await link.send(frame)
    await wait_for(lambda: sorted(link.replies) == sorted(qns), 20, "the live uploads' replies")
    await link.close()
    await wait_for(
        lambda: len(_hourly_rows(influxdb, db)) == len(hours), 20, "the live hours stored"
    )


def _hourly_rows(influxdb: LocalInfluxDB, db: str) -> dict[int, dict]:
    return {
        t: p
        for t, p in rows(influxdb, db, "water_quality", "WQ-001").items()
        if p.get("data_kind") == "hourly"
    }


async def test_skipped_hours_are_re_requested_stored_and_succeeded(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = _settings(mosquitto, influxdb, influx_db, tmp_path)
    hours = _window()
    skipped = [hours[2], hours[3], hours[10]]  # a station that skipped three uploads
    async with service_with_commands(settings) as hj:
        await _seed_hours(hj, [h for h in hours if h not in skipped], influxdb, influx_db)
        state = logger_state(settings, WQ)
        for h in hours:
            state.keep("2061", h, hourly_factors(WATER))
        logger = await _logger(hj, state)
        await wait_for(
            lambda: [c.status for c in _commands(hj, WQ_MN, "2061")] == ["succeeded"] * 2,
            30,
            "two 2061 requests succeeded",
        )
        await wait_for(
            lambda: len(_hourly_rows(influxdb, influx_db)) == len(hours), 20, "every hour stored"
        )
        stored = _hourly_rows(influxdb, influx_db)
        assert set(stored) == {int(h.replace(tzinfo=SHANGHAI).timestamp() * 1000) for h in hours}
        # Newest gap first, each the smallest covering range, one open request at a time.
        older, newest = _commands(hj, WQ_MN, "2061")  # the store lists the latest command first
        assert newest.params == {"BeginTime": f"{skipped[2]:%Y%m%d%H%M%S}",
                                 "EndTime": f"{skipped[2]:%Y%m%d%H%M%S}"}  # fmt: skip
        assert older.params == {"BeginTime": f"{skipped[0]:%Y%m%d%H%M%S}",
                                "EndTime": f"{skipped[1]:%Y%m%d%H%M%S}"}  # fmt: skip
        assert (newest.packets, older.packets) == (1, 2)
        assert newest.requested_by == older.requested_by == "auto"
        assert (newest.qn_rtn, newest.exe_rtn) == (1, 1)
        # Each hour was asked for once: the station saw two requests, no more.
        await asyncio.sleep(3)
        assert [r.cn for r in state.requests] == ["2061", "2061"]
        assert hj.commands is not None
        assert hj.commands.dispatcher.states[WQ_MN].gaps == 0
        await logger.close()


async def test_no_data_answer_is_recorded_and_not_asked_again(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = _settings(mosquitto, influxdb, influx_db, tmp_path)
    hours = _window()
    skipped = [hours[5], hours[6], hours[7]]
    async with service_with_commands(settings) as hj:
        await _seed_hours(hj, [h for h in hours if h not in skipped], influxdb, influx_db)
        state = logger_state(settings, WQ)  # holds no history: it answers ExeRtn 100
        logger = await _logger(hj, state)
        await wait_for(
            lambda: [c.status for c in _commands(hj, WQ_MN, "2061")] == ["no_data"],
            30,
            "the request recorded no_data",
        )
        (cmd,) = _commands(hj, WQ_MN, "2061")
        assert cmd.exe_rtn == 100 and cmd.packets == 0
        # Several backfill intervals later (2 s each) nothing more is asked for those hours.
        await asyncio.sleep(5)
        assert hj.commands is not None
        assert await hj.commands.backfill.scan(WQ_MN) is None
        assert len(_commands(hj, WQ_MN, "2061")) == 1
        assert [r.cn for r in state.requests] == ["2061"]
        assert hj.commands.dispatcher.states[WQ_MN].gaps == 3
        await logger.close()


async def test_a_station_ten_minutes_off_gets_one_1012(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = _settings(mosquitto, influxdb, influx_db, tmp_path, backfill=False)
    async with service_with_commands(settings) as hj:
        state = logger_state(settings, AQ)
        state.clock_offset = timedelta(minutes=10)
        logger = await _logger(hj, state)
        await wait_for(
            lambda: [c.status for c in _commands(hj, AQ_MN)] == ["succeeded"], 15, "one 1012"
        )
        (cmd,) = _commands(hj, AQ_MN)
        assert cmd.cn == "1012" and cmd.requested_by == "auto"
        sent = datetime.strptime(cmd.params["SystemTime"], "%Y%m%d%H%M%S")
        assert abs((sent - local_now()).total_seconds()) < 10  # the platform's time
        assert abs(state.clock_offset.total_seconds()) < 10  # the logger took it
        for _ in range(3):  # more real-time data, now on time: no second 1012
            await logger.upload("2011", state.now(), rtd_factors(AIR))
        await asyncio.sleep(1.0)
        assert len(_commands(hj, AQ_MN)) == 1
        assert hj.commands is not None
        offset = hj.commands.dispatcher.states[AQ_MN].clock_offset_s
        assert offset is not None and abs(offset) < 10
        await logger.close()


async def test_commands_wait_for_their_station_or_expire(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = _settings(mosquitto, influxdb, influx_db, tmp_path, backfill=False)
    async with (
        service_with_commands(settings) as hj,
        mqtt_client(mosquitto, client_id="hj212-cmd-sender") as sender,
    ):
        await asyncio.sleep(0.5)
        read = new_command(WQ_MN, "1061", {}, "operator:alice", SHANGHAI, 3600)
        doomed = new_command(AQ_MN, "1011", {}, "operator:alice", SHANGHAI, 1.0)
        for cmd in (read, doomed):
            await publish_command(sender, "envgrid", cmd)
        await wait_for(lambda: len(_commands(hj, WQ_MN) + _commands(hj, AQ_MN)) == 2, 10, "routed")
        assert [c.status for c in _commands(hj, WQ_MN)] == ["queued"]
        state = logger_state(settings, WQ)
        logger = await _logger(hj, state)
        await wait_for(
            lambda: [c.status for c in _commands(hj, WQ_MN)] == ["succeeded"], 10, "sent on connect"
        )
        assert _commands(hj, WQ_MN)[0].result == {"RtdInterval": "30"}
        await wait_for(
            lambda: [c.status for c in _commands(hj, AQ_MN)] == ["expired"], 15, "expired"
        )
        await logger.close()


async def test_a_gateway_restart_mid_command_loses_no_command(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = _settings(
        mosquitto, influxdb, influx_db, tmp_path, backfill=False, command_timeout="60s"
    )
    state = logger_state(settings, WQ)
    state.ignore = 1  # the first request is lost on the way
    async with service_with_commands(settings) as hj:
        assert hj.commands is not None
        cmd = hj.commands.dispatcher.command(WQ_MN, "1064", {"MinInterval": "5"}, "cli")
        logger = await _logger(hj, state)
        await wait_for(lambda: _commands(hj, WQ_MN)[0].status == "sent", 10, "sent")
    await logger.close()
    # While the gateway is down an operator sends another command through the broker.
    later = new_command(WQ_MN, "1062", {"RtdInterval": "60"}, "api", SHANGHAI, 3600)
    async with mqtt_client(mosquitto, client_id="hj212-cmd-sender2") as sender:
        await publish_command(sender, "envgrid", later)
    async with service_with_commands(settings) as hj:
        logger = await _logger(hj, state)
        await wait_for(
            lambda: [c.status for c in _commands(hj, WQ_MN)] == ["succeeded"] * 2,
            15,
            "both commands succeeded after the restart",
        )
        again = hj.commands.store.get(cmd.qn) if hj.commands else None
        assert again is not None and again.attempts == 2  # the same QN, sent again
        assert (state.min_interval, state.rtd_interval) == (5, 60)
        await logger.close()


async def test_2025_edition_packets_are_stored_and_answered_in_their_edition(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = _settings(mosquitto, influxdb, influx_db, tmp_path, backfill=False)
    async with service_with_commands(settings) as hj:
        assert hj.gateway is not None and hj.commands is not None
        state = logger_state(settings, WQ, edition="2025")
        logger = DataLogger(state)
        await logger.connect("127.0.0.1", hj.gateway.port)
        t = local_now(minutes_ago=2)
        qn = await logger.upload("2011", t, rtd_factors(WATER))  # Flag = 0b1001 = 9
        await logger.send(state.frame("9015", state.qn(), st="91"))  # 2025 heartbeat
        await wait_for(lambda: len(logger.replies) == 1, 10, "the 9014 reply")
        reply = logger.replies[0]
        assert (reply.cn, reply.qn, reply.flag) == ("9014", qn, 8)  # version bits 2, no A
        await wait_for(
            lambda: len(rows(influxdb, influx_db, "water_quality", "WQ-001")) == 1, 10, "stored"
        )
        cmd = hj.commands.dispatcher.command(WQ_MN, "1011", {}, "cli")
        await wait_for(lambda: _commands(hj, WQ_MN)[0].status == "succeeded", 10, "1011 done")
        assert state.requests[0].flag == 9  # the command went out in the 2025 edition
        assert hj.commands.store.get(cmd.qn) is not None
        assert hj.gateway.stats.packets[WQ_MN]["command_answer"] >= 3  # 9015, 9011, 1011, 9012
        assert hj.commands.dispatcher.states[WQ_MN].edition == "2025"
        await logger.close()


def test_request_frames_parse_back() -> None:
    # The platform's own request is a valid HJ 212 frame (Flag 5: version 1, answer wanted).
    from hj212.codec import build
    from hj212.commands import request_packet

    span = {"BeginTime": "20260101000000", "EndTime": "20260101020000"}
    cmd = new_command(WQ_MN, "2061", span, "cli", SHANGHAI, 60)
    p = parse(build(request_packet(cmd, "21", "123456", "2017")))
    assert (p.cn, p.flag, p.cp_extra["BeginTime"]) == ("2061", 5, "20260101000000")
    assert time.time() < cmd.expires


async def test_recovered_hours_make_yesterdays_daily_rollup_valid(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    from devices.registry import load_registry
    from envgrid.recovered import recompute_recovered
    from rollups.runner import Rollup

    settings = _settings(mosquitto, influxdb, influx_db, tmp_path, backfill_lookback="48h")
    # All of yesterday lies inside a 48 h lookback at any time of today (not a 30 h one).
    hours = _window(timedelta(hours=48))
    today = datetime.now(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    day = [yesterday.replace(tzinfo=None) + k * HOUR for k in range(24)]
    skipped = day[8:13]  # five hours lost: 19 valid hours, under GB 3095's 20
    assert set(day) <= set(hours)

    def daily() -> list[dict]:
        return influxdb.points(
            "SELECT * FROM air_quality_daily WHERE device_id = 'AQ-001'", influx_db
        )

    async with (
        service_with_commands(settings) as hj,
        Rollup(settings, load_registry(settings.devices.registry)) as rollup,
    ):
        assert hj.gateway is not None and hj.commands is not None
        link = await StationLink.open(hj.gateway.port)
        qns = []
        for h in hours:
            if h not in skipped:
                qn, frame = packet(AQ, "2061", h, hourly(AIR))
                qns.append(qn)
                await link.send(frame)
        await wait_for(lambda: sorted(link.replies) == sorted(qns), 20, "the live uploads")
        await link.close()
        await asyncio.sleep(1.0)  # the intake's last batch
        await rollup.run_range(yesterday, today)
        (before,) = daily()
        assert before["valid"] is False
        recompute_recovered(hj.commands.dispatcher, rollup, delay_s=2.0)
        state = logger_state(settings, AQ)
        for h in day:
            state.keep("2061", h, hourly_factors(AIR))
        logger = await _logger(hj, state)
        await wait_for(
            lambda: [c.status for c in _commands(hj, AQ_MN, "2061")] == ["succeeded"],
            20,
            "the re-request succeeded",
        )
        await wait_for(lambda: daily()[0]["valid"] is True, 20, "yesterday's daily rollup valid")
        await logger.close()
