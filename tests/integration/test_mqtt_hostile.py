"""ingest.mqtt.MqttClient against a hostile broker (tests/fake_broker.py), issue 20.

Each test scripts what mosquitto never does: QoS 2 deliveries and their redelivery, a packet id
reused while unacked, Receive Maximum 0, malformed packets on every connection, a publish whose
caller gave up, a resumed session that still holds filters the config dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ingest.mqtt import Message, MqttClient, MqttOptions, ProtocolError
from tests.fake_broker import (
    DISCONNECT,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    UNSUBSCRIBE,
    FakeBroker,
    FakeSession,
    packet,
    publish,
)

HOST = "127.0.0.1"


def options(port: int, *subscriptions: str, **overrides: Any) -> MqttOptions:
    values: dict[str, Any] = {
        "client_id": f"hostile-{uuid.uuid4().hex[:8]}",
        "reconnect_min_s": 0.02,
        "reconnect_max_s": 5.0,
        "connect_timeout_s": 3.0,
        "protocol_error_backoff_s": 0.05,
    }
    values.update(overrides)
    return MqttOptions(HOST, port, subscriptions=list(subscriptions or ["envgrid/#"]), **values)


async def eventually(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def client(opts: MqttOptions, got: list[Message]) -> AsyncIterator[MqttClient]:
    c = MqttClient(opts, got.append)
    await c.start()
    try:
        yield c
    finally:
        await c.close()


def check(broker: FakeBroker) -> None:
    if broker.errors:
        raise broker.errors[0]


# ------------------------------------------------------------------------------ QoS 2


async def test_qos2_is_delivered_once_and_completed_after_the_ack() -> None:
    """QoS 2 PUBLISH → on_message once; ack_many → PUBREC; a DUP before PUBREL is not delivered
    again but answered with PUBREC; PUBREL → PUBCOMP. Before: the client disconnected and the
    broker redelivered forever."""
    step = asyncio.Event()

    async def script(s: FakeSession) -> None:
        await s.accept()
        s.send(publish("envgrid/pv/PV-1", b"one", qos=2, packet_id=7))
        s.send(publish("envgrid/pv/PV-1", b"one", qos=2, packet_id=7, dup=True))  # not yet acked
        rec = await s.expect(PUBREC)
        assert rec.packet_id == 7
        s.send(publish("envgrid/pv/PV-1", b"one", qos=2, packet_id=7, dup=True))  # PUBREC lost
        again = await s.expect(PUBREC)
        assert again.packet_id == 7
        s.send(packet(0x62, (7).to_bytes(2, "big")))  # PUBREL
        comp = await s.expect(PUBCOMP)
        assert (comp.packet_id, comp.reason) == (7, 0)
        step.set()
        await s.closed()

    got: list[Message] = []
    async with FakeBroker(script) as broker, client(options(broker.port), got) as c:
        await c.wait_connected(5)
        await eventually(lambda: len(got) == 1, what="the QoS 2 message")
        await asyncio.sleep(0.1)  # the DUP sent before the ack has arrived by now
        assert len(got) == 1 and got[0].qos == 2
        assert not broker.packets(PUBREC), "PUBREC before the application's ack"
        assert c.ack_many([(got[0].packet_id, got[0].epoch)]) == 1
        await asyncio.wait_for(step.wait(), 5)
        check(broker)
        assert len(got) == 1
        assert not broker.packets(DISCONNECT) and len(broker.sessions) == 1


async def test_qos2_redelivered_after_reconnect_once_durable_is_not_delivered_again() -> None:
    """PUBREC sent, the connection drops before PUBREL: the resumed session's redelivery is
    answered with PUBREC and not handed to the application a second time."""
    done = asyncio.Event()

    async def script(s: FakeSession) -> None:
        if s.index == 0:
            await s.accept()
            s.send(publish("envgrid/pv/PV-1", b"two", qos=2, packet_id=9))
            await s.expect(PUBREC)
            return  # hang up before PUBREL
        await s.accept(session_present=True)
        s.send(publish("envgrid/pv/PV-1", b"two", qos=2, packet_id=9, dup=True))
        assert (await s.expect(PUBREC)).packet_id == 9
        s.send(packet(0x62, (9).to_bytes(2, "big")))
        assert (await s.expect(PUBCOMP)).reason == 0
        done.set()
        await s.closed()

    got: list[Message] = []
    async with FakeBroker(script) as broker, client(options(broker.port), got) as c:
        await eventually(lambda: len(got) == 1, what="the QoS 2 message")
        c.ack_many([(got[0].packet_id, got[0].epoch)])
        await asyncio.wait_for(done.wait(), 10)
        check(broker)
        assert [m.payload for m in got] == [b"two"]


# ------------------------------------------------------------------- packet id reuse


async def test_packet_id_reused_while_unacked_reconnects_and_loses_no_ack() -> None:
    """Two PUBLISHes with id 5 and no PUBACK between: acking the first would ack the second
    too. The client disconnects (0x82) instead; the session redelivers both, and each gets
    its own PUBACK."""
    done = asyncio.Event()

    async def script(s: FakeSession) -> None:
        if s.index == 0:
            await s.accept()
            s.send(publish("envgrid/pv/A", b"a", packet_id=5))
            s.send(publish("envgrid/pv/B", b"b", packet_id=5))
            await s.closed()
            return
        await s.accept(session_present=True)
        s.send(publish("envgrid/pv/A", b"a", packet_id=5, dup=True))
        s.send(publish("envgrid/pv/B", b"b", packet_id=6))
        acks = {(await s.expect(PUBACK)).packet_id for _ in range(2)}
        assert acks == {5, 6}
        done.set()
        await s.closed()

    got: list[Message] = []

    def on_message(m: Message) -> None:
        got.append(m)
        if m.epoch > 1:  # the first connection's messages stay unacked, as if not durable yet
            c.ack_many([(m.packet_id, m.epoch)])

    async with FakeBroker(script) as broker:
        c = MqttClient(options(broker.port), on_message)
        await c.start()
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            await c.close()
        check(broker)
        first = broker.packets(DISCONNECT, 0)
        assert first and first[0].reason == 0x82
        assert [m.topic for m in got if m.epoch == 2] == ["envgrid/pv/A", "envgrid/pv/B"]


# -------------------------------------------------------------- CONNACK and malformed


async def test_receive_maximum_zero_is_a_protocol_error() -> None:
    async def script(s: FakeSession) -> None:
        await s.accept(props=b"\x21\x00\x00", subscribe=False)
        await s.closed()

    async with FakeBroker(script) as broker, client(options(broker.port), []) as c:
        await eventually(lambda: len(broker.packets(DISCONNECT)) >= 1, what="DISCONNECT")
        assert broker.packets(DISCONNECT)[0].reason == 0x82
        assert not c.connected
        assert isinstance(c._last_error, ProtocolError)
        assert "Receive Maximum 0" in str(c._last_error)


async def test_repeated_malformed_packets_back_off_and_say_0x81() -> None:
    """A broker that sends a malformed packet on every connection: DISCONNECT 0x81 each time,
    and the waits between attempts at least double (not a tight loop)."""

    async def script(s: FakeSession) -> None:
        await s.accept(subscribe=False)
        s.send(b"\x30\x03\x00\x05a")  # PUBLISH whose topic length overruns the packet
        await s.closed()

    async with FakeBroker(script) as broker:
        async with client(options(broker.port, protocol_error_backoff_s=0.1), []):
            await eventually(lambda: len(broker.connected_at) >= 5, timeout=20, what="5 attempts")
        check(broker)
        reasons = [p.reason for p in broker.packets(DISCONNECT)]
        assert reasons[:4] == [0x81] * 4
        t = broker.connected_at
        gaps = [b - a for a, b in itertools.pairwise(t)][:4]
        # Jitter takes each wait to between half and all of 0.1 s × 2^n.
        for n, gap in enumerate(gaps):
            assert gap >= 0.5 * 0.1 * 2**n, gaps


async def test_unexpected_packet_is_a_protocol_error_0x82() -> None:
    async def script(s: FakeSession) -> None:
        await s.accept(subscribe=False)
        s.send(b"\x10\x00")  # CONNECT from the broker
        await s.closed()

    async with FakeBroker(script) as broker, client(options(broker.port), []):
        await eventually(lambda: len(broker.packets(DISCONNECT)) >= 1, what="DISCONNECT")
        assert broker.packets(DISCONNECT)[0].reason == 0x82


# ------------------------------------------------------- a publish cancelled after sending


async def test_cancelled_publish_keeps_our_receive_maximum() -> None:
    """Our publish is sent, the broker never acks it, the caller gives up. Before: the entry
    stayed in the client's outgoing table and switched off the Receive Maximum throttle for
    good, so a broker that ignores it (mosquitto 2.0.11 after acks flow) flooded us."""
    flood = asyncio.Event()

    async def script(s: FakeSession) -> None:
        await s.accept()
        pub = await s.expect(PUBLISH)  # our publish: never acked
        assert pub.flags & 0x06 == 0x02
        await flood.wait()
        for i in range(1, 61):
            s.send(publish("envgrid/pv/PV-1", b"x", packet_id=i))
        await s.closed()

    got: list[Message] = []
    async with (
        FakeBroker(script) as broker,
        client(options(broker.port, receive_maximum=20), got) as c,
    ):
        await c.wait_connected(5)
        task = asyncio.create_task(c.publish("envgrid/deadletter/x", b"dl"))
        await eventually(lambda: len(broker.packets(PUBLISH)) == 1, what="our publish")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        flood.set()
        await eventually(lambda: len(got) >= 20, what="20 messages")
        await asyncio.sleep(0.3)
        check(broker)
        assert len(got) == 20  # held at our Receive Maximum until acks come
        c.ack_many([(m.packet_id, m.epoch) for m in got])
        await eventually(lambda: len(got) == 40, what="the next 20")


# ------------------------------------------------------------ filters dropped from config


async def test_filters_dropped_from_the_config_are_unsubscribed(tmp_path: Path) -> None:
    record = tmp_path / "subscriptions.json"
    seen: dict[int, list[str]] = {}

    async def script(s: FakeSession) -> None:
        filters = await s.accept(session_present=s.index > 0)
        seen[s.index] = filters
        if s.index == 1:
            unsub = await s.expect(UNSUBSCRIBE)
            seen[-1] = unsub.filters()
            s.send(packet(0xB0, unsub.body[:2] + b"\x00\x00"))
        await s.closed()

    async with FakeBroker(script) as broker:
        client_id = "envgrid-sub-record"
        first = options(
            broker.port, "envgrid/+/+", "old/#", client_id=client_id, subscriptions_file=record
        )
        async with client(first, []) as c:
            await c.wait_connected(5)
            await eventually(record.exists, what="the record")
        key = f"{HOST}:{broker.port}/{client_id}"
        assert json.loads(record.read_text())["sessions"][key] == ["envgrid/+/+", "old/#"]
        second = options(
            broker.port, "envgrid/#", "/envgrid/#", client_id=client_id, subscriptions_file=record
        )
        async with client(second, []) as c:
            await c.wait_connected(5)
            await eventually(lambda: -1 in seen, what="UNSUBSCRIBE")
            await eventually(
                lambda: json.loads(record.read_text())["sessions"][key][0] == "envgrid/#",
                what="the new record",
            )
        check(broker)
        assert seen[1] == ["envgrid/#", "/envgrid/#"]
        assert seen[-1] == ["envgrid/+/+", "old/#"]


async def test_new_session_unsubscribes_nothing(tmp_path: Path) -> None:
    """A session the broker did not keep holds no old filters: no UNSUBSCRIBE."""
    record = tmp_path / "subscriptions.json"

    async def script(s: FakeSession) -> None:
        await s.accept(session_present=False)
        await s.closed(timeout=1.0)

    async with FakeBroker(script) as broker:
        key_id = "envgrid-sub-new"
        record.write_text(json.dumps({"sessions": {f"{HOST}:{broker.port}/{key_id}": ["gone/#"]}}))
        opts = options(broker.port, "envgrid/#", client_id=key_id, subscriptions_file=record)
        async with client(opts, []) as c:
            await c.wait_connected(5)
            await asyncio.sleep(0.2)
        assert not broker.packets(UNSUBSCRIBE)
        assert json.loads(record.read_text())["sessions"][f"{HOST}:{broker.port}/{key_id}"] == [
            "envgrid/#"
        ]
