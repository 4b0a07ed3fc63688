"""Raw HJ 212 packets published on envgrid/hj212/<MN> (as a DTU forwarding to MQTT would) flow
through the service's pipeline into InfluxDB; the ones it cannot store are dead-lettered."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from hj212.gateway import ServiceGateway
from ingest.mqtt import Message
from tests.helpers import make_settings, mqtt_client, running_service, wait_for
from tests.hj212_support import local_now, ms_of, packet

REG = load_registry(DEFAULT_REGISTRY)


async def test_raw_packets_on_the_topic_are_stored(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    wq4, aq5 = REG.get("WQ-004"), REG.get("AQ-005")  # MODBUS CRC; PM in ng/m³ as PM25/PM10
    assert wq4 is not None and aq5 is not None
    t0 = local_now(minutes_ago=15)
    day = (local_now(minutes_ago=60 * 26)).replace(hour=0, minute=0, second=0)
    good = [
        packet(wq4, "2011", t0, {"w01001": {"rtd": 7.3, "flag": "N"}, "w21011": {"rtd": 0.05}}),
        packet(
            wq4,
            "2051",
            t0 + timedelta(minutes=1),
            {"w01009": {"avg": 6.1, "min": 5.9, "max": 6.4, "flag": "C"}, "w01001": {"avg": 7.2}},
        ),
        packet(aq5, "2011", t0, {"PM25": {"rtd": 41000.0, "flag": "N"}}),
        packet(aq5, "2031", day, {"PM10": {"avg": 80000.0, "flag": "N"}}),
    ]
    bad = [
        # An unregistered MN, a wrong PW, a command instead of data, an out-of-range value.
        ("320800219999999999999999", packet(wq4, "2011", t0, {"w01001": {"rtd": 7.0}},
                                            mn="320800219999999999999999")[1], "unknown MN"),
        (str(wq4.facts["mn"]), packet(wq4, "2011", t0, {"w01001": {"rtd": 7.0}}, pw="NOTPW1")[1],
         "wrong PW for MN"),
        (str(aq5.facts["mn"]), packet(aq5, "9014", t0, {"PM25": {"rtd": 1.0}})[1],
         "CN 9014 is not a data upload"),
        (str(aq5.facts["mn"]), packet(aq5, "2011", t0, {"PM25": {"rtd": -5000.0}})[1],
         "a34004-Rtd (pm25_ug_m3) = -5"),
    ]  # fmt: skip

    letters: list[Message] = []
    settings = make_settings(mosquitto, influxdb, influx_db, tmp_path)
    hj = ServiceGateway(settings, REG)  # no port: intake only
    async with (
        mqtt_client(mosquitto, ["envgrid/deadletter/#"], letters.append, "hj212-intake-dl"),
        running_service(settings, protocols=hj.protocols) as service,
        mqtt_client(mosquitto, client_id="dtu") as dtu,
    ):
        await hj.start(service)
        assert hj.gateway is None
        for device, (_qn, frame) in zip([wq4, wq4, aq5, aq5], good, strict=True):
            await dtu.publish(f"envgrid/hj212/{device.facts['mn']}", frame, qos=1)
        for mn, frame, _why in bad:
            await dtu.publish(f"envgrid/hj212/{mn}", frame, qos=1)
        await wait_for(
            lambda: service.stats.acked >= len(good) + len(bad) and len(letters) >= len(bad),
            20,
            "every packet taken and the bad ones dead-lettered",
        )

    water = {
        int(r["time"]): r
        for r in influxdb.points("SELECT * FROM water_quality GROUP BY *", influx_db)
    }
    air = {
        int(r["time"]): r
        for r in influxdb.points("SELECT * FROM air_quality GROUP BY *", influx_db)
    }
    assert set(water) == {ms_of(t0), ms_of(t0 + timedelta(minutes=1))}
    assert set(air) == {ms_of(t0), ms_of(day)}
    assert water[ms_of(t0)]["tp_mg_l"] == 0.05 and water[ms_of(t0)]["data_kind"] == "rtd"
    m = water[ms_of(t0 + timedelta(minutes=1))]
    assert m["data_kind"] == "minute" and m["ph"] == 7.2 and m.get("do_mg_l") is None
    assert (m["do_mg_l_invalid"], m["do_mg_l_flag"]) == (6.1, "C")
    assert m.get("do_mg_l_min") is None  # min/max of an invalid value are not kept
    assert air[ms_of(t0)]["pm25_ug_m3"] == 41.0 and air[ms_of(t0)]["device_id"] == "AQ-005"
    daily = air[ms_of(day)]
    assert daily["data_kind"] == "daily" and daily["pm10_ug_m3"] == 80.0
    # HJ 633 PM10 24 h table of the day's edition: 2012 → 65, 2026 → 50 + 30 / 70 × 50 → 72.
    assert daily["aqi"] == {"2012": 65, "2026": 72}[daily["aqi_edition"]]
    assert len(letters) == len(bad)
    reasons = {}
    for letter in letters:
        body = json.loads(letter.payload)
        reasons[body["topic"], body["payload"].encode()] = body["reason"]
    for mn, frame, why in bad:
        assert why in reasons[f"envgrid/hj212/{mn}", frame]
