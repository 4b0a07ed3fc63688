"""HJ 212 stations over TCP through the gateway, the real broker and InfluxDB (issue 5).

A water station and an air station keep a connection each and send real-time and hourly packets
the ways real loggers do (split across reads, two in one read, Flag 4/5/9), plus one packet with a
bad CRC, one from an unknown MN and one with a wrong PW. InfluxDB must then hold exactly their
valid readings (invalid values only under ``_invalid``/``_flag``), each socket must have had a
reply for exactly the packets that asked for one and were taken, and each bad packet must be in
the dead-letter topic once, with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from devices.registry import Device, load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from ingest.mqtt import Message
from tests.helpers import make_settings, mqtt_client, wait_for
from tests.hj212_support import StationLink, local_now, ms_of, packet, service_with_gateway

REG = load_registry(DEFAULT_REGISTRY)


def _device(device_id: str) -> Device:
    d = REG.get(device_id)
    assert d is not None
    return d


WQ = _device("WQ-001")
AQ = _device("AQ-001")
WQ_MN, AQ_MN = str(WQ.facts["mn"]), str(AQ.facts["mn"])
UNKNOWN_MN = "320800229999999999999999"

# Class II river water on every assessed item (GB 3838-2002).
WATER = {
    "w01001": 7.5,  # pH
    "w01009": 7.0,  # DO
    "w01019": 3.0,  # CODMn
    "w21003": 0.4,  # NH3-N
    "w21011": 0.08,  # TP
    "w21001": 1.1,  # TN
    "w01010": 18.5,  # water temperature
    "w01014": 520.0,  # conductivity
    "w01003": 8.0,  # turbidity
}
FIELD = {
    "w01001": "ph",
    "w01009": "do_mg_l",
    "w01019": "codmn_mg_l",
    "w21003": "nh3n_mg_l",
    "w21011": "tp_mg_l",
    "w21001": "tn_mg_l",
    "w01010": "temp_c",
    "w01014": "conductivity_us_cm",
    "w01003": "turbidity_ntu",
}
AIR = {
    "a34004": 30.0,
    "a34002": 50.0,
    "a21026": 8.0,
    "a21004": 25.0,
    "a21005": 0.6,
    "a05024": 60.0,
    "a01001": 20.0,
    "a01002": 55.0,
    "a01006": 101.2,  # kPa on the wire, 1012 hPa stored
    "a01007": 2.5,
    "a01008": 180.0,
}


def rtd(values: dict[str, float], **flags: str) -> dict[str, dict[str, Any]]:
    """Real-time groups: code → {rtd, flag} (flag N unless given)."""
    return {c: {"rtd": v, "flag": flags.get(c, "N")} for c, v in values.items()}


def hourly(values: dict[str, float], **flags: str) -> dict[str, dict[str, Any]]:
    """Hourly groups: -Avg with -Min/-Max around it."""
    return {
        c: {
            "avg": v,
            "min": round(v * 0.95, 4),
            "max": round(v * 1.05, 4),
            "flag": flags.get(c, "N"),
        }
        for c, v in values.items()
    }


def rows(influxdb: LocalInfluxDB, db: str, measurement: str, device: str) -> dict[int, dict]:
    """Every stored point of one device by timestamp (ms), tags included."""
    pts = influxdb.points(
        f"SELECT * FROM \"{measurement}\" WHERE device_id = '{device}' GROUP BY *", db
    )
    return {int(p["time"]): p for p in pts}


async def test_two_stations_over_tcp_end_to_end(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    t0 = local_now(minutes_ago=20)
    hour = (local_now(minutes_ago=70)).replace(minute=0, second=0)
    assert AQ.facts["pw"] != "WRONG1"

    # Water station: W1 split over three writes, W2+W3 in one write (W3 with DO in maintenance),
    # a bad CRC, hourly W4 (Flag 9, turbidity a set value S), W5 without reply (Flag 4), W6 last.
    w1 = packet(WQ, "2011", t0, rtd(WATER))
    w2 = packet(WQ, "2011", t0 + timedelta(seconds=30), rtd(WATER))
    w3 = packet(WQ, "2011", t0 + timedelta(seconds=60), rtd({**WATER, "w01009": 1.0}, w01009="M"))
    _, good = packet(WQ, "2011", t0 + timedelta(seconds=90), rtd(WATER))
    bad_crc = good[:-3] + (b"0" if good[-3:-2] != b"0" else b"1") + b"\r\n"
    w4 = packet(WQ, "2061", hour, hourly(WATER, w01003="S"), flag=9)
    w5 = packet(WQ, "2011", t0 + timedelta(seconds=120), rtd(WATER), flag=4)
    w6 = packet(WQ, "2011", t0 + timedelta(seconds=150), rtd(WATER))

    # Air station: A1, an unknown MN, a wrong PW, hourly A2 (PM2.5 analyser fault D), A3 last.
    a1 = packet(AQ, "2011", t0, rtd(AIR))
    unknown = packet(AQ, "2011", t0, rtd(AIR), mn=UNKNOWN_MN)
    wrong_pw = packet(AQ, "2011", t0 + timedelta(seconds=5), rtd(AIR), pw="WRONG1")
    a2 = packet(AQ, "2061", hour, hourly({**AIR, "a34004": 500.0}, a34004="D"))
    a3 = packet(AQ, "2011", t0 + timedelta(seconds=30), rtd(AIR))

    letters: list[Message] = []
    settings = make_settings(
        mosquitto, influxdb, influx_db, tmp_path, hj212={"port": 0, "host": "127.0.0.1"}
    )
    async with (
        mqtt_client(mosquitto, ["envgrid/deadletter/#"], letters.append, "hj212-dl") as _dl,
        service_with_gateway(settings) as (service, gateway),
    ):
        water = await StationLink.open(gateway.port)
        air = await StationLink.open(gateway.port)
        frame = w1[1]
        for part in (frame[:10], frame[10:57], frame[57:]):
            await water.send(part)
            await asyncio.sleep(0.05)
        await water.send(w2[1] + w3[1])
        await water.send(bad_crc)
        await air.send(a1[1])
        await air.send(unknown[1])
        await water.send(w4[1] + w5[1])
        await air.send(wrong_pw[1])
        await air.send(a2[1] + a3[1])
        await water.send(w6[1])

        await wait_for(
            lambda: w6[0] in water.replies and a3[0] in air.replies, 20, "the last replies"
        )
        await wait_for(
            lambda: (
                len(rows(influxdb, influx_db, "water_quality", "WQ-001")) >= 6
                and len(rows(influxdb, influx_db, "air_quality", "AQ-001")) >= 3
                and len(letters) >= 3
            ),
            30,
            "readings stored and bad packets dead-lettered",
        )
        await asyncio.sleep(1.0)  # anything extra (a duplicate, a stray reject) would show now
        metrics = generate_latest(service.metrics).decode()
        await water.close()
        await air.close()

    # Replies: exactly the taken packets that asked for one, in order, with their QN.
    assert water.replies == [w1[0], w2[0], w3[0], w4[0], w6[0]]
    assert air.replies == [a1[0], a2[0], a3[0]]

    # InfluxDB: exactly the valid readings.
    water_rows = rows(influxdb, influx_db, "water_quality", "WQ-001")
    t = [ms_of(t0 + timedelta(seconds=s)) for s in (0, 30, 60, 120, 150)]
    assert set(water_rows) == {*t, ms_of(hour)}
    for ts in t:
        row = water_rows[ts]
        assert row["data_kind"] == "rtd" and row["site"] == WQ.site
        for code, field in FIELD.items():
            if ts == t[2] and code == "w01009":
                continue
            assert row[field] == WATER[code], (ts, field)
        assert row["water_class"] == 2 and row["meets_iii"] is True
    maint = water_rows[t[2]]
    # DO 1.0 would make the reading class 6: flagged M it is kept only under do_mg_l_invalid.
    assert maint["do_mg_l"] is None
    assert (maint["do_mg_l_invalid"], maint["do_mg_l_flag"]) == (1.0, "M")
    assert water_rows[t[0]]["do_mg_l_flag"] is None
    h = water_rows[ms_of(hour)]
    assert h["data_kind"] == "hourly" and h["ph"] == 7.5 and h["ph_min"] == 7.125
    assert h["ph_max"] == 7.875 and h["turbidity_ntu"] == 8.0 and h["turbidity_ntu_flag"] == "S"

    air_rows = rows(influxdb, influx_db, "air_quality", "AQ-001")
    assert set(air_rows) == {ms_of(t0), ms_of(t0 + timedelta(seconds=30)), ms_of(hour)}
    r = air_rows[ms_of(t0)]
    assert r["data_kind"] == "rtd" and r["pressure_hpa"] == 1012.0 and r["pm25_ug_m3"] == 30.0
    ha = air_rows[ms_of(hour)]
    # PM2.5 500 with Flag D would give AQI 500; the AQI comes from the valid values only.
    assert ha["pm25_ug_m3"] is None and ha["pm25_ug_m3_invalid"] == 500.0
    assert ha["pm25_ug_m3_flag"] == "D" and ha["aqi"] <= 50 and ha["pm10_ug_m3_max"] == 52.5
    assert ha["data_kind"] == "hourly"

    # Dead letters: each bad packet once, on its MN's topic, with the raw packet and its reason.
    got = {}
    for m in letters:
        body = json.loads(m.payload)
        assert m.topic == f"envgrid/deadletter/{body['topic']}"
        got[body["topic"]] = (body["payload"].encode(), body["reason"])
    assert set(got) == {
        f"envgrid/hj212/{WQ_MN}",
        f"envgrid/hj212/{UNKNOWN_MN}",
        f"envgrid/hj212/{AQ_MN}",
    }
    assert len(letters) == 3
    payload, reason = got[f"envgrid/hj212/{WQ_MN}"]
    assert payload == bad_crc and reason.startswith("bad CRC: got ")
    payload, reason = got[f"envgrid/hj212/{UNKNOWN_MN}"]
    assert payload == unknown[1] and reason.startswith(f"unknown MN {UNKNOWN_MN}")
    payload, reason = got[f"envgrid/hj212/{AQ_MN}"]
    assert payload == wrong_pw[1] and reason.startswith(f"wrong PW for MN {AQ_MN} (AQ-001)")
    assert str(AQ.facts["pw"]) not in reason and "WRONG1" not in reason

    # Per-MN and per-connection counters on /metrics.
    assert f'envgrid_hj212_packets_total{{mn="{WQ_MN}",result="ok"}} 6.0' in metrics
    assert f'envgrid_hj212_packets_total{{mn="{WQ_MN}",result="bad_crc"}} 1.0' in metrics
    assert f'envgrid_hj212_packets_total{{mn="{AQ_MN}",result="wrong_pw"}} 1.0' in metrics
    assert 'envgrid_hj212_packets_total{mn="unknown",result="unknown_mn"} 1.0' in metrics
    assert f'envgrid_hj212_replies_total{{mn="{WQ_MN}"}} 5.0' in metrics
    assert "envgrid_hj212_connections 2.0" in metrics
    per_conn = rf'envgrid_hj212_connection_packets_total{{mn="{WQ_MN}",peer="127.0.0.1:\d+"}} 7.0'
    assert re.search(per_conn, metrics)
    assert service.stats.rejected.total() == 0  # nothing reached the intake to be refused


async def test_reply_only_after_the_broker_took_the_packet(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = make_settings(
        fresh_mosquitto, influxdb, influx_db, tmp_path, hj212={"port": 0, "host": "127.0.0.1"}
    )
    t = local_now(minutes_ago=5)
    first = packet(WQ, "2011", t, rtd(WATER))
    held = packet(WQ, "2011", t + timedelta(seconds=30), rtd(WATER))
    async with service_with_gateway(settings) as (_service, gateway):
        water = await StationLink.open(gateway.port)
        await water.send(first[1])
        await wait_for(lambda: water.replies == [first[0]], 10, "the first reply")
        fresh_mosquitto.pause()  # the broker stops answering: no PUBACK
        try:
            await water.send(held[1])
            await asyncio.sleep(1.5)
            assert water.replies == [first[0]]  # not confirmed to the station while unpublished
        finally:
            fresh_mosquitto.resume()
        await wait_for(lambda: water.replies == [first[0], held[0]], 20, "the held reply")
        await wait_for(
            lambda: len(rows(influxdb, influx_db, "water_quality", "WQ-001")) == 2,
            20,
            "both readings stored",
        )
        await water.close()


async def test_garbage_and_misbehaving_connections_do_not_affect_a_good_station(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        hj212={"port": 0, "host": "127.0.0.1", "idle_timeout": 2.0, "max_connections": 4},
    )
    t = local_now(minutes_ago=10)
    letters: list[Message] = []
    async with (
        mqtt_client(mosquitto, ["envgrid/deadletter/#"], letters.append, "hj212-dl2"),
        service_with_gateway(settings) as (service, gateway),
    ):
        good = await StationLink.open(gateway.port)
        sent: list[str] = []

        async def good_packet(i: int) -> None:
            qn, frame = packet(WQ, "2011", t + timedelta(seconds=30 * i), rtd(WATER))
            sent.append(qn)
            await good.send(frame)

        await good_packet(0)
        # 1. Oversize garbage, then a valid packet on the same connection: dropped, resynced.
        noisy = await StationLink.open(gateway.port)
        after = packet(AQ, "2011", t, rtd(AIR))
        await noisy.send(b"GET / HTTP/1.1\r\n" + b"##" + b"9" * 3000 + after[1])
        await good_packet(1)
        # 2. A flood of garbage with no frame at all: the connection is closed at 64 KiB.
        flood = await StationLink.open(gateway.port)
        with contextlib.suppress(ConnectionError):
            for _ in range(40):
                await flood.send(b"x" * 4096)
        await wait_for(lambda: gateway.stats.closed["garbage"] == 1, 10, "the flood closed")
        await good_packet(2)
        # 3. A station that sends and never reads its replies.
        deaf = await StationLink.open(gateway.port)
        assert deaf.task is not None
        deaf.task.cancel()
        for i in range(50):
            await deaf.send(packet(AQ, "2011", t + timedelta(seconds=i + 100), rtd(AIR))[1])
        await good_packet(3)
        # 4. A connection that never says anything: closed after the idle timeout.
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", gateway.port)
        # 5. Over max_connections (4 open): refused at once.
        await wait_for(lambda: len(gateway.stats.open) == 4, 5, "four open connections")
        extra_r, extra_w = await asyncio.open_connection("127.0.0.1", gateway.port)
        assert await asyncio.wait_for(extra_r.read(), 5) == b""
        extra_w.close()
        await good_packet(4)

        # Meanwhile the good station was served as usual.
        await wait_for(lambda: good.replies == sent, 10, "the good station's replies")
        await wait_for(lambda: noisy.replies == [after[0]], 10, "the reply after resync")
        assert gateway.stats.refused == 1
        assert await asyncio.wait_for(silent_r.read(), 10) == b""  # closed when idle
        assert gateway.stats.closed["idle"] >= 1
        silent_w.close()
        await wait_for(
            lambda: (
                len(rows(influxdb, influx_db, "water_quality", "WQ-001")) == 5
                and len(rows(influxdb, influx_db, "air_quality", "AQ-001")) == 51
            ),
            20,
            "the good, the resynced and the deaf station's readings stored",
        )
        for link in (good, noisy, flood, deaf):
            await link.close()

    bodies = [json.loads(m.payload) for m in letters]
    assert {b["topic"] for b in bodies} == {"envgrid/hj212/unknown"}
    reasons = sorted(b["reason"].split(":")[0] for b in bodies)
    assert reasons == [
        "bytes outside an HJ 212 frame (## ... CR LF)",
        "bytes outside an HJ 212 frame (## ... CR LF)",
        "frame longer than 1036 bytes without CR LF",
    ]
    sizes = sorted(b.get("size", len(b["payload"])) for b in bodies)
    assert sizes[0] == len(b"GET / HTTP/1.1\r\n")
    assert sizes[-1] > 64 * 1024  # the flood, reported once with its size
    assert service.stats.rejected.total() == 0
