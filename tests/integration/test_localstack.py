"""The local servers of envgrid.localstack, exercised for real (paho-mqtt and HTTP)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from envgrid.localstack import (
    InfluxQueryError,
    LocalInfluxDB,
    LocalMosquitto,
    LocalServerError,
    LocalVictoriaMetrics,
    mosquitto_conf,
)

# ------------------------------------------------------------------------ MQTT helpers


class Subscriber:
    """A paho MQTTv5 client that records what it receives."""

    def __init__(self, broker: LocalMosquitto, client_id: str, *, persistent: bool) -> None:
        self.broker = broker
        self.persistent = persistent
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.payloads: list[bytes] = []
        self.session_present: bool | None = None
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.payloads.append(bytes(message.payload))

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        if self.persistent:
            props.SessionExpiryInterval = 3600
        self.connected.clear()
        self.client.connect(
            self.broker.host,
            self.broker.port,
            clean_start=not self.persistent,
            properties=props,
        )
        self.client.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def subscribe(self, topic: str) -> None:
        result, _ = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.1)  # SUBACK

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.payloads) < count:
            time.sleep(0.02)
        return len(self.payloads)

    def wait_quiet(self, quiet: float = 0.5, timeout: float = 10.0) -> int:
        """Wait until nothing arrived for ``quiet`` seconds; return the count."""
        deadline = time.monotonic() + timeout
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_seen = len(self.payloads)
            if now_seen != seen:
                seen, since = now_seen, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            time.sleep(0.02)
        return len(self.payloads)


def publish_qos1(broker: LocalMosquitto, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


@contextmanager
def subscriber(
    broker: LocalMosquitto, topic: str, *, persistent: bool = False
) -> Iterator[Subscriber]:
    sub = Subscriber(broker, f"sub-{uuid.uuid4().hex[:8]}", persistent=persistent)
    sub.connect()
    sub.subscribe(topic)
    try:
        yield sub
    finally:
        sub.disconnect()


# --------------------------------------------------------------------------- mosquitto


def test_mosquitto_publish_subscribe_round_trip(mosquitto: LocalMosquitto) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    topic = f"envgrid/test/{uuid.uuid4().hex}"
    with subscriber(mosquitto, f"{topic}/#") as sub:
        publish_qos1(mosquitto, f"{topic}/water/w1", [b'{"do_mg_l": 7.5}', b'{"do_mg_l": 7.6}'])
        assert sub.wait_for(2, 5) == 2
    assert sub.payloads == [b'{"do_mg_l": 7.5}', b'{"do_mg_l": 7.6}']


def test_mosquitto_config_is_the_shared_one(fresh_mosquitto: LocalMosquitto) -> None:
    text = fresh_mosquitto.conf_file.read_text()
    assert text == fresh_mosquitto.conf_text()
    assert f"listener {fresh_mosquitto.port} 127.0.0.1" in text
    assert "max_queued_messages 0" in text
    assert "autosave_interval 1" in text
    shipped = mosquitto_conf(bind_address=None, persistence_location="/mosquitto/data/")
    assert "listener 1883\n" in shipped
    assert "persistence_location /mosquitto/data\n" in shipped
    assert "log_dest stdout" in shipped
    assert "user " not in shipped


def test_persistent_session_keeps_3000_queued_messages_across_restart(
    fresh_mosquitto: LocalMosquitto,
) -> None:
    broker, topic, total = fresh_mosquitto, "envgrid/water/persist", 3000
    sub = Subscriber(broker, "envgrid-persistent-sub", persistent=True)
    sub.connect()
    sub.subscribe(topic)
    sub.disconnect()

    # More than mosquitto's default queue of 1000 arrive while the subscriber is away.
    publish_qos1(broker, topic, [str(i).encode() for i in range(total)])

    broker.stop()  # SIGTERM: mosquitto writes mosquitto.db on the way out
    assert broker.persistence_file.stat().st_size > 0
    port = broker.port
    broker.start()
    assert broker.port == port

    sub.connect()
    try:
        assert sub.session_present is True
        assert sub.wait_for(total, 20) >= total
    finally:
        sub.disconnect()
    assert sorted(int(p) for p in set(sub.payloads)) == list(range(total))


def test_small_queue_drops_messages_of_a_lagging_session(tmp_path: Path) -> None:
    """Why max_queued_messages defaults to 0: a bounded queue silently drops."""
    with LocalMosquitto(tmp_path / "mq", max_queued_messages=50) as broker:
        sub = Subscriber(broker, "lagging-sub", persistent=True)
        sub.connect()
        sub.subscribe("envgrid/lag")
        sub.disconnect()
        publish_qos1(broker, "envgrid/lag", [str(i).encode() for i in range(200)])
        sub.connect()
        try:
            received = sub.wait_quiet()
        finally:
            sub.disconnect()
    assert 0 < received < 200
    assert "Outgoing messages are being dropped" in broker.log_tail(200)


def test_save_then_kill_keeps_queued_messages(fresh_mosquitto: LocalMosquitto) -> None:
    """A crash (SIGKILL) keeps what was saved; save() does not wait for the timer."""
    sub = Subscriber(fresh_mosquitto, "crash-sub", persistent=True)
    sub.connect()
    sub.subscribe("envgrid/crash")
    sub.disconnect()
    publish_qos1(fresh_mosquitto, "envgrid/crash", [str(i).encode() for i in range(200)])
    fresh_mosquitto.save()
    fresh_mosquitto.kill()
    fresh_mosquitto.start()
    sub.connect()
    try:
        assert sub.session_present is True
        assert sub.wait_for(200, 10) == 200
    finally:
        sub.disconnect()


def test_mosquitto_pause_resume_kill(fresh_mosquitto: LocalMosquitto) -> None:
    fresh_mosquitto.pause()
    assert fresh_mosquitto.paused and fresh_mosquitto.is_running()
    fresh_mosquitto.resume()
    with subscriber(fresh_mosquitto, "envgrid/alive") as sub:
        publish_qos1(fresh_mosquitto, "envgrid/alive", [b"1"])
        assert sub.wait_for(1, 5) == 1
    fresh_mosquitto.kill()
    assert not fresh_mosquitto.is_running()
    fresh_mosquitto.restart()
    assert fresh_mosquitto.is_running()


# ---------------------------------------------------------------------------- influxdb


def test_influxdb_write_query_count(influxdb: LocalInfluxDB, influx_db: str) -> None:
    assert influxdb.url == f"http://127.0.0.1:{influxdb.port}"
    assert influx_db in influxdb.databases()
    lines = "\n".join(
        f"water,device_id=w{i % 2},site=s1 do_mg_l={7 + i / 10},ph=7.1 {1_700_000_000_000 + i}"
        for i in range(10)
    )
    influxdb.write(lines.encode(), influx_db)
    influxdb.write(b"water,device_id=w0,site=s1 do_mg_l=9 1700000000100", influx_db)

    assert influxdb.count("water", influx_db) == 11
    assert influxdb.count("water", influx_db, field="ph") == 10
    assert influxdb.count("nothing_here", influx_db) == 0

    rows = influxdb.points('SELECT last("do_mg_l") FROM "water" GROUP BY *', influx_db)
    assert {r["device_id"]: r["last"] for r in rows} == {"w0": 9, "w1": 7.9}
    assert all(r["site"] == "s1" and isinstance(r["time"], int) for r in rows)

    with pytest.raises(InfluxQueryError, match="error parsing query"):
        influxdb.query("SELEKT 1", influx_db)
    with pytest.raises(InfluxQueryError, match="database not found"):
        influxdb.query('SELECT * FROM "water"', "no_such_db")
    with pytest.raises(InfluxQueryError, match="unable to parse"):
        influxdb.write(b"water do_mg_l=", influx_db)


# ---------------------------------------------------------------------- victoriametrics


def test_victoria_reads_back_influx_line_protocol(victoria: LocalVictoriaMetrics) -> None:
    measurement = f"vmtest_{uuid.uuid4().hex[:8]}"
    now_ms = int(time.time() * 1000)
    victoria.write(
        f"{measurement},device_id=pv1,site=s1 ac_power_w=1500,energy_kwh=12.5 {now_ms}\n"
        f"{measurement},device_id=pv2,site=s1 ac_power_w=800 {now_ms}\n"
    )
    series = victoria.export(f'{{__name__=~"{measurement}_.*"}}')
    got = {
        (s["metric"]["__name__"], s["metric"]["device_id"]): (s["values"], s["timestamps"])
        for s in series
    }
    assert got == {
        (f"{measurement}_ac_power_w", "pv1"): ([1500], [now_ms]),
        (f"{measurement}_ac_power_w", "pv2"): ([800], [now_ms]),
        (f"{measurement}_energy_kwh", "pv1"): ([12.5], [now_ms]),
    }
    assert all(s["metric"]["site"] == "s1" for s in series)


# ---------------------------------------------------------------------- start failures


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_mosquitto_on_a_taken_port_fails_with_log_tail(tmp_path: Path, taken_port: int) -> None:
    server = LocalMosquitto(tmp_path / "mq", port=taken_port)
    with pytest.raises(LocalServerError, match=r"(?i)address already in use") as info:
        server.start()
    assert f"port {taken_port}" in str(info.value)
    assert not server.is_running()


def test_influxdb_on_a_taken_port_fails_with_log_tail(tmp_path: Path, taken_port: int) -> None:
    server = LocalInfluxDB(tmp_path / "influx", port=taken_port)
    with pytest.raises(LocalServerError, match="address already in use"):
        server.start()
    assert not server.is_running()


def test_bad_mosquitto_config_fails_with_log_tail(tmp_path: Path) -> None:
    server = LocalMosquitto(tmp_path / "mq", password_file=tmp_path / "missing.pwfile")
    with pytest.raises(LocalServerError, match="exited with code") as info:
        server.start()
    assert "missing.pwfile" in str(info.value)


def test_missing_binary_names_the_debian_package(tmp_path: Path) -> None:
    for cls, package in (
        (LocalMosquitto, "mosquitto"),
        (LocalInfluxDB, "influxdb"),
        (LocalVictoriaMetrics, "victoria-metrics"),
    ):
        server = cls(tmp_path / package, binary=str(tmp_path / "no-such-binary"))
        with pytest.raises(LocalServerError, match=f"apt-get install {package}"):
            server.start()
