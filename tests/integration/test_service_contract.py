"""The ingest service's contract, run twice: on an in-memory broker and store (fast, every
branch) and on a real Mosquitto and InfluxDB (proof that the fast run means something).

The service gets its broker session and store through its constructor (``ingest.seams``); no
private method is patched.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from ingest.deadletter import LocalDeadLetters
from ingest.mqtt import Message, MqttClient, MqttOptions
from ingest.service import IngestService
from tests.helpers import make_settings, mqtt_client, running_service, wait_for
from tests.memory import MemoryBroker, MemoryStore

DEVICE = "PV-XH-0001"
TOPIC = f"envgrid/pv/{DEVICE}"


def reading(i: int) -> bytes:
    ts = int(time.time() * 1000) - 120_000 + i
    return json.dumps({"ts": ts, "ac_power_w": 500.0 + i, "energy_total_kwh": 1.0 + i}).encode()


@dataclass
class Harness:
    """One way to run the service: publish, count what is stored, read the dead letters."""

    service: IngestService
    publish: Callable[[str, bytes], Any]  # awaitable
    stored: Callable[[], int]
    letters: Callable[[], list[tuple[str, bytes]]]
    store_down: Callable[[], Any]  # awaitable
    store_up: Callable[[], Any]  # awaitable


@pytest.fixture(params=["memory", "real"])
async def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    influxdb: LocalInfluxDB,
    influx_db: str,
) -> AsyncIterator[Harness]:
    if request.param == "memory":
        async for h in _memory(tmp_path, influxdb, influx_db):
            yield h
    else:
        async for h in _real(tmp_path):
            yield h


async def _memory(tmp: Path, influxdb: LocalInfluxDB, db: str) -> AsyncIterator[Harness]:
    # Only the settings come from the fixtures' servers; nothing connects to them.
    settings = make_settings(LocalMosquitto(tmp / "unused"), influxdb, db, tmp)
    store = MemoryStore()
    brokers: list[MemoryBroker] = []

    def broker(*args: Any) -> MemoryBroker:
        brokers.append(MemoryBroker(*args))
        return brokers[-1]

    async def publish(topic: str, payload: bytes) -> None:
        brokers[0].deliver(topic, payload)

    async def down() -> None:
        store.down = True

    async def up() -> None:
        store.down = False

    async with running_service(settings, broker=broker, writer=store) as service:
        yield Harness(
            service,
            publish,
            lambda: store.count("pv_inverter"),
            lambda: [(t, p) for t, p in brokers[0].published if "/deadletter/" in t],
            down,
            up,
        )


async def _real(tmp: Path) -> AsyncIterator[Harness]:
    # InfluxDB of its own: the store-down case stops and restarts it.
    with (
        LocalMosquitto(tmp / "mosquitto") as broker,
        LocalInfluxDB(tmp / "influxdb") as influx,
    ):
        influx.create_database("contract")
        settings = make_settings(broker, influx, "contract", tmp)
        got: list[Message] = []
        async with (
            mqtt_client(broker, ["envgrid/deadletter/#"], got.append, "dl-sink"),
            mqtt_client(broker, client_id="contract-pub") as pub,
            running_service(settings) as service,
        ):

            async def publish(topic: str, payload: bytes) -> None:
                await pub.publish(topic, payload)

            async def down() -> None:
                influx.stop()

            async def up() -> None:
                influx.start()

            def stored() -> int:
                return influx.count("pv_inverter", "contract") if influx.is_running() else 0

            yield Harness(
                service, publish, stored, lambda: [(m.topic, m.payload) for m in got], down, up
            )


async def settled(h: Harness, stored: int, acked: int) -> None:
    await wait_for(lambda: h.stored() >= stored, 30, f"{stored} readings stored")
    await wait_for(lambda: h.service.stats.acked >= acked, 15, f"{acked} messages acked")
    await wait_for(lambda: h.service.mqtt.unacked_count == 0, 15, "nothing left unacked")


async def test_readings_are_stored_and_a_bad_one_is_dead_lettered_alone(h: Harness) -> None:
    for i in range(20):
        await h.publish(TOPIC, reading(i))
    await h.publish(TOPIC, b'{"ts": 1, "ac_power_w": "lots"}')
    for i in range(20, 40):
        await h.publish(TOPIC, reading(i))
    await settled(h, 40, 41)
    await wait_for(lambda: len(h.letters()) == 1, 10, "one dead letter")
    topic, body = h.letters()[0]
    assert topic == f"envgrid/deadletter/{TOPIC}"
    assert json.loads(body)["payload"] == '{"ts": 1, "ac_power_w": "lots"}'
    assert h.service.stats.rejected["invalid"] == 1


async def test_a_store_outage_spools_acks_and_replays_everything(h: Harness) -> None:
    await h.store_down()
    for i in range(30):
        await h.publish(TOPIC, reading(i))
    await wait_for(lambda: h.service.stats.spooled_points >= 30, 30, "30 readings spooled")
    await wait_for(lambda: h.service.stats.acked >= 30, 15, "spooled readings acked")
    assert h.service.readiness()[0]  # an outage the spool absorbs is not unready
    await h.store_up()
    await settled(h, 30, 30)
    await wait_for(lambda: h.service.stats.replayed_points >= 30, 30, "the spool replayed")
    assert h.stored() == 30


async def test_a_dead_letter_the_broker_refuses_is_kept_locally(
    tmp_path: Path, influxdb: LocalInfluxDB, influx_db: str
) -> None:
    """The memory broker refuses by size like the real one (test_deadletter_stall.py)."""
    settings = make_settings(LocalMosquitto(tmp_path / "unused"), influxdb, influx_db, tmp_path)
    store = MemoryStore()
    made: list[MemoryBroker] = []

    def broker(*args: Any) -> MemoryBroker:
        made.append(MemoryBroker(*args, max_packet_size=120))
        return made[-1]

    async with running_service(settings, broker=broker, writer=store) as service:
        made[0].deliver(TOPIC, b"not json at all")
        made[0].deliver(TOPIC, reading(1))
        await wait_for(lambda: service.stats.acked == 2, 10, "both acked")
    records = LocalDeadLetters(service.spool_dir / "deadletters.jsonl").read()
    assert [r["deadletter"]["topic"] for r in records] == [TOPIC]
    assert store.count("pv_inverter") == 1


def test_the_service_does_no_io_before_start(tmp_path: Path) -> None:
    """Constructing a service neither connects nor takes the spool's lock."""
    from devices.kinds import KINDS
    from devices.registry import Registry
    from envgrid.settings import load_settings

    spool = tmp_path / "spool"
    settings = load_settings(None, ingest={"spool_dir": spool})
    made: list[MqttOptions] = []

    def broker(options: MqttOptions, *_: Any) -> MqttClient:
        made.append(options)
        return MqttClient(options, lambda m: None)

    IngestService(settings, KINDS, Registry(), broker=broker, writer=MemoryStore())
    assert not spool.exists()
    assert made and made[0].subscriptions  # options built and validated, nothing connected


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness
