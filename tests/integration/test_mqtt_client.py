"""ingest.mqtt.MqttClient against a real mosquitto, with paho-mqtt as the independent peer.

The broker is never mocked. Where a test needs a broker that misbehaves (garbage bytes, silence,
a refused subscription) it talks to a small asyncio server in this file that speaks just enough
MQTT; where it needs a network cut it goes through a TCP proxy in this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from envgrid.localstack import LocalMosquitto, free_port
from ingest.mqtt import (
    ConnectError,
    ConnectionLost,
    Message,
    MqttClient,
    MqttOptions,
    ProtocolError,
    SubscribeError,
)

HOST = "127.0.0.1"
CONNACK_OK = b"\x20\x03\x00\x00\x00"  # session not present, success, no properties


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def options(port: int, *subscriptions: str, **overrides: Any) -> MqttOptions:
    """Test options: unique client id, short session expiry, fast reconnects."""
    values: dict[str, Any] = {
        "client_id": uid("envgrid-test"),
        "session_expiry_s": 120,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.3,
        "connect_timeout_s": 3.0,
    }
    values.update(overrides)
    return MqttOptions(HOST, port, subscriptions=list(subscriptions), **values)


async def eventually(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll until condition() is true or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(client: MqttClient, timeout: float = 5.0) -> AsyncIterator[MqttClient]:
    await client.start()
    try:
        await client.wait_connected(timeout)
        yield client
    finally:
        await client.close()


@contextlib.contextmanager
def paho_client(port: int, **kwargs: Any) -> Iterator[paho.Client]:
    """A paho-mqtt 2.x MQTTv5 client running its own network thread."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=uid("paho"), protocol=paho.MQTTv5, **kwargs
    )
    client.connect(HOST, port, 30)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish_all(client: paho.Client, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    """Publish with paho and wait until every one is PUBACKed (run it in a thread)."""
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published()


# ----------------------------------------------------------------------------- helpers: servers


class TcpProxy:
    """A loopback TCP proxy whose cut() drops every connection at once, like a killed client."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        self._pairs.append((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def cut(self) -> None:
        for client_side, broker_side in self._pairs:
            client_side.transport.abort()
            broker_side.transport.abort()
        self._pairs.clear()


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT packet (fixed header included)."""
    head = await reader.readexactly(1)
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        head += bytes((byte,))
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return head + await reader.readexactly(length)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class FakeBroker:
    """An asyncio server that speaks just enough MQTT 5 to misbehave on purpose."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.port = 0
        self.connections = 0
        self.packets: list[list[bytes]] = []  # per connection, what the client sent
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeBroker:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.packets.append([])
        received = self.packets[-1]
        original = reader.readexactly

        async def recording(n: int) -> bytes:  # so scripts can use read_packet as they like
            data = await original(n)
            received.append(data)
            return data

        try:
            first = await read_packet(reader)
            assert first[0] == 0x10, "expected CONNECT"
            reader.readexactly = recording  # type: ignore[method-assign]
            await self.script(reader, writer)
            while True:  # then record what the client sends until DISCONNECT or hang-up
                if (await read_packet(reader))[0] == 0xE0:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def sent_bytes(self, connection: int) -> bytes:
        return b"".join(self.packets[connection])


def protocol_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.exc_info is not None and isinstance(r.exc_info[1], ProtocolError)
    ]


# ----------------------------------------------------------------------------------- real broker


async def test_round_trip_qos0_and_qos1_with_paho_as_peer(mosquitto: LocalMosquitto) -> None:
    base = uid("rt")
    got: list[Message] = []
    client = MqttClient(options(mosquitto.port, f"{base}/in/#"), got.append)
    paho_got: list[paho.MQTTMessage] = []
    subscribed = threading.Event()
    with paho_client(mosquitto.port) as peer:
        peer.on_message = lambda c, u, m: paho_got.append(m)
        peer.on_subscribe = lambda *args: subscribed.set()
        peer.subscribe(f"{base}/out/#", qos=1)
        assert await asyncio.to_thread(subscribed.wait, 5)
        async with running(client):
            assert client.connected and client.epoch == 1

            # paho → broker → us
            await asyncio.to_thread(publish_all, peer, [(f"{base}/in/q0", b"zero")], 0)
            await asyncio.to_thread(publish_all, peer, [(f"{base}/in/q1", b"one")], 1)
            await eventually(lambda: len(got) == 2, what="two messages from paho")
            by_topic = {m.topic: m for m in got}
            assert by_topic[f"{base}/in/q0"].payload == b"zero"
            assert by_topic[f"{base}/in/q0"].qos == 0
            assert by_topic[f"{base}/in/q0"].packet_id == 0
            q1 = by_topic[f"{base}/in/q1"]
            assert (q1.payload, q1.qos, q1.epoch, q1.dup) == (b"one", 1, client.epoch, False)
            assert q1.packet_id > 0
            assert client.ack(q1.packet_id, q1.epoch) is True
            assert client.ack(q1.packet_id, q1.epoch) is False  # never twice: ids get reused
            assert client.ack(0, q1.epoch) is False  # a QoS 0 message has nothing to ack

            # us → broker → paho; 300 QoS 1 publishes at once stay within the broker's
            # Receive Maximum (mosquitto: 20), or it would disconnect us.
            await client.publish(f"{base}/out/q0", b"from-us-0", qos=0)
            await client.publish(f"{base}/out/q1", b"from-us-1", qos=1)
            await asyncio.gather(
                *(client.publish(f"{base}/out/many", str(i).encode()) for i in range(300))
            )
            await eventually(lambda: len(paho_got) == 302, what="paho receiving our publishes")
            seen = {(m.topic, m.payload): m.qos for m in paho_got[:2]}
            assert seen == {
                (f"{base}/out/q0", b"from-us-0"): 0,
                (f"{base}/out/q1", b"from-us-1"): 1,
            }
            many = [int(m.payload) for m in paho_got if m.topic.endswith("/many")]
            assert many == list(range(300))  # in publish order
            assert client.epoch == 1  # no reconnect happened


async def test_20000_messages_acked_in_durable_batches_of_5000(mosquitto: LocalMosquitto) -> None:
    """Receive Maximum 20000 lets the broker send far more than mosquitto's default 20 unacked."""
    base = uid("batch")
    batch: list[Message] = []
    received = acked = 0
    max_unacked = 0
    durable: asyncio.Queue[list[Message]] = asyncio.Queue()

    def on_message(msg: Message) -> None:
        nonlocal received, max_unacked
        received += 1
        batch.append(msg)
        max_unacked = max(max_unacked, received - acked)
        if len(batch) == 5000:
            durable.put_nowait(batch[:])
            batch.clear()

    opts = options(mosquitto.port, f"{base}/#", receive_maximum=20000)
    client = MqttClient(opts, on_message)

    async def writer() -> None:  # stands in for "InfluxDB accepted the batch"
        nonlocal acked
        while True:
            done = await durable.get()
            await asyncio.sleep(0.01)
            acked += client.ack_many([(m.packet_id, m.epoch) for m in done])

    async with running(client):
        task = asyncio.create_task(writer())
        with paho_client(mosquitto.port) as peer:
            messages = [(f"{base}/dev{i % 50}", b"%d" % i) for i in range(20000)]
            await asyncio.to_thread(publish_all, peer, messages)
        await eventually(lambda: acked == 20000, timeout=30, what="20000 acks")
        task.cancel()
        assert received == 20000
        assert max_unacked >= 5000  # held far more than 20 without acking
        assert client.epoch == 1

    # Everything was acked: the persistent session has nothing to redeliver.
    again: list[Message] = []
    async with running(
        MqttClient(options(mosquitto.port, f"{base}/#", client_id=opts.client_id), again.append)
    ):
        await asyncio.sleep(0.3)
    assert again == []


async def test_unacked_are_redelivered_after_abrupt_loss_and_stale_acks_refused(
    mosquitto: LocalMosquitto,
) -> None:
    base = uid("session")
    got: list[Message] = []
    async with TcpProxy(mosquitto.port) as proxy:
        client = MqttClient(options(proxy.port, f"{base}/#"), got.append)
        async with running(client):
            e1 = client.epoch
            payloads = [b"m%d" % i for i in range(10)]
            with paho_client(mosquitto.port) as peer:
                await asyncio.to_thread(publish_all, peer, [(f"{base}/x", p) for p in payloads])
            await eventually(lambda: len(got) == 10, what="10 messages")
            first = got[:]
            assert client.ack_many([(m.packet_id, m.epoch) for m in first[:4]]) == 4
            # Our QoS 1 publish is PUBACKed only after the broker read the acks before it.
            await client.publish(f"{base}-sync", b"")

            async def kill_and_reconnect() -> list[Message]:
                epoch = client.epoch
                got.clear()
                proxy.cut()  # like a killed process: no DISCONNECT, just a dead socket
                await eventually(
                    lambda: client.connected and client.epoch == epoch + 1,
                    what="automatic reconnect",
                )
                assert client.session_present
                await asyncio.sleep(0.3)
                return got[:]

            again = await kill_and_reconnect()
            assert sorted(m.payload for m in again) == payloads[4:]
            assert all(m.dup and m.epoch == e1 + 1 for m in again)
            # Stale acks: the same packet ids are live again, but on a new connection.
            stale = [(m.packet_id, e1) for m in first[4:]]
            assert {pid for pid, _ in stale} & {m.packet_id for m in again}
            assert client.ack(first[4].packet_id, e1) is False
            assert client.ack_many(stale) == 0
            await client.publish(f"{base}-sync", b"")

            # Nothing was sent for the stale acks: all six come back once more.
            again = await kill_and_reconnect()
            assert sorted(m.payload for m in again) == payloads[4:]
            assert client.ack_many([(m.packet_id, m.epoch) for m in again]) == 6
            await client.publish(f"{base}-sync", b"")

            assert await kill_and_reconnect() == []
            assert proxy.connections == 4


async def test_reconnects_after_broker_restart_and_delivers_outage_publishes(
    fresh_mosquitto: LocalMosquitto,
) -> None:
    base = uid("restart")
    got: list[Message] = []
    states: list[bool] = []

    def on_message(msg: Message) -> None:
        got.append(msg)
        client.ack(msg.packet_id, msg.epoch)

    client = MqttClient(
        options(fresh_mosquitto.port, f"{base}/#"), on_message, lambda up, reason: states.append(up)
    )
    async with running(client):
        await client.publish(f"{base}/before", b"before")
        await eventually(lambda: len(got) == 1, what="message before the restart")
        epoch = client.epoch

        await asyncio.to_thread(fresh_mosquitto.stop)
        await eventually(lambda: not client.connected, what="noticing the broker is gone")
        during = [
            asyncio.create_task(client.publish(f"{base}/during", b"%d" % i)) for i in range(50)
        ]
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in during)  # waiting, not failed, not dropped

        await asyncio.to_thread(fresh_mosquitto.start)
        await asyncio.wait_for(asyncio.gather(*during), 15)
        await eventually(lambda: len(got) == 51, what="the outage publishes")
        assert sorted(int(m.payload) for m in got[1:]) == list(range(50))
        assert client.epoch > epoch
        assert client.session_present  # restored from mosquitto's persistence file
        assert states[0] is True and False in states and states[-1] is True


async def test_bad_credentials_raise_connect_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    passwd = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if Path("/usr/bin/mosquitto_passwd").exists() else None
    )
    if passwd is None:
        pytest.skip("mosquitto_passwd not installed (Debian package mosquitto)")
    password_file = tmp_path / "passwd"
    subprocess.run(
        [passwd, "-b", "-c", str(password_file), "envgrid", "right-secret-7"],
        check=True,
        capture_output=True,
    )
    caplog.set_level(logging.DEBUG, logger="envgrid.mqtt")
    with LocalMosquitto(tmp_path / "broker", password_file=password_file) as broker:
        for username, password in (("envgrid", "wrong-secret-3"), (None, None)):
            client = MqttClient(
                options(broker.port, username=username, password=password), lambda m: None
            )
            await client.start()
            with pytest.raises(ConnectError) as info:
                await client.wait_connected(5)
            # mosquitto 2.0.11 answers a wrong password with 0x87, not 0x86.
            assert info.value.reason_code in (0x86, 0x87)
            assert info.value.reason in ("bad user name or password", "not authorized")
            assert info.value.reason in str(info.value)
            await asyncio.sleep(0.3)  # it keeps retrying in the background, and still raises
            with pytest.raises(ConnectError):
                await client.wait_connected(1)
            assert not client.connected
            await client.close()
        assert broker.log_tail(200).count("not authorised") >= 3

        async with running(
            MqttClient(
                options(broker.port, username="envgrid", password="right-secret-7"), lambda m: None
            )
        ) as ok:
            assert ok.connected
    assert "secret" not in caplog.text
    assert "secret" not in repr(options(1, password="right-secret-7"))


async def test_shared_subscription_splits_messages(mosquitto: LocalMosquitto) -> None:
    base = uid("shared")
    got: dict[str, list[Message]] = {"a": [], "b": []}
    clients = [
        MqttClient(options(mosquitto.port, f"$share/workers/{base}/#"), got[name].append)
        for name in got
    ]
    async with running(clients[0]), running(clients[1]):
        for i in range(40):
            await clients[0].publish(f"{base}/dev", b"%d" % i)
        await eventually(lambda: len(got["a"]) + len(got["b"]) == 40, what="40 shared messages")
        assert got["a"] and got["b"]
        assert sorted(int(m.payload) for m in got["a"] + got["b"]) == list(range(40))


async def test_handler_exception_is_logged_and_connection_survives(
    mosquitto: LocalMosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    base = uid("handler")
    seen: list[bytes] = []

    def on_message(msg: Message) -> None:
        seen.append(msg.payload)
        if msg.payload == b"boom":
            raise ValueError("handler bug")

    async with running(MqttClient(options(mosquitto.port, f"{base}/#"), on_message)) as client:
        for payload in (b"before", b"boom", b"after"):
            await client.publish(f"{base}/t", payload)
        await eventually(lambda: len(seen) == 3, what="all three messages")
        assert client.connected and client.epoch == 1
    failures = [r for r in caplog.records if "on_message handler raised" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], ValueError)


async def test_pause_reading_holds_messages_and_keepalive_survives(
    mosquitto: LocalMosquitto,
) -> None:
    """With keepalive 1 s, a 2.5 s pause must not look like a dead broker (nor to the broker)."""
    base = uid("pause")
    got: list[Message] = []
    states: list[tuple[bool, str]] = []
    client = MqttClient(
        options(mosquitto.port, f"{base}/#", keepalive_s=1),
        got.append,
        lambda up, reason: states.append((up, reason)),
    )
    await client.start()
    await client.wait_connected(5)
    try:
        client.pause_reading()
        with paho_client(mosquitto.port) as peer:
            await asyncio.to_thread(publish_all, peer, [(f"{base}/t", b"%d" % i) for i in range(5)])
        await asyncio.sleep(2.5)
        assert got == []
        assert client.connected and client.epoch == 1
        client.resume_reading()
        await eventually(lambda: len(got) == 5, what="messages after resume")
        assert [m.payload for m in got] == [b"%d" % i for i in range(5)]
        assert client.epoch == 1
        assert client.ack_many([(m.packet_id, m.epoch) for m in got]) == 5
        client.pause_reading()  # as the service does before close(): must not slow close down
    finally:
        began = asyncio.get_running_loop().time()
        await client.close()
    assert asyncio.get_running_loop().time() - began < 1.0
    assert states[-1] == (False, "client closed")
    assert client.ack(got[0].packet_id, got[0].epoch) is False


async def test_close_fails_pending_publishes(caplog: pytest.LogCaptureFixture) -> None:
    nobody = free_port()  # nothing listens there
    client = MqttClient(options(nobody), lambda m: None)
    await client.start()
    with pytest.raises(ConnectError, match="cannot connect"):
        await client.wait_connected(0.5)
    pending = asyncio.create_task(client.publish("t/x", b"x"))
    await asyncio.sleep(0.1)
    assert not pending.done()  # waits for a connection instead of dropping the message
    await client.close()
    with pytest.raises(ConnectionLost):
        await pending
    with pytest.raises(ConnectionLost):
        await client.wait_connected(1)


# ---------------------------------------------------------------------------------- fake brokers

GARBAGE = {
    # remaining length with a fifth byte: over 256 MiB
    "5-byte length": b"\x30\xff\xff\xff\xff\x01",
    # topic length 64 in a 5-byte PUBLISH
    "topic overrun": b"\x30\x05\x00\x40ab\x00",
    "qos 3": b"\x36\x07\x00\x01a\x00\x01\x00x",
    "bad utf-8 topic": b"\x30\x05\x00\x02\xff\xfe\x00",
    "packet type 0": b"\x00\x00",
    "second CONNACK": CONNACK_OK,
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
async def test_malformed_packet_is_logged_and_client_reconnects(
    garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A valid PUBLISH first, in the same write as the garbage: it is still delivered.
        writer.write(CONNACK_OK + b"\x32\x08\x00\x01v\x00\x07\x00ok" + garbage)

    got: list[Message] = []
    async with FakeBroker(script) as fake:
        client = MqttClient(options(fake.port), got.append)
        await client.start()
        await eventually(lambda: fake.connections >= 2, timeout=5, what="a reconnect")
        await client.close()
    errors = protocol_errors(caplog)
    assert errors, "the ProtocolError was not logged"
    assert errors[0].levelno == logging.ERROR
    assert got and got[0].payload == b"ok" and got[0].packet_id == 7
    assert fake.sent_bytes(0).endswith((b"\xe0\x01\x81", b"\xe0\x01\x82"))  # DISCONNECT w/ reason


async def test_keepalive_sends_pingreq_and_drops_a_silent_broker() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)  # and then never a PINGRESP

    async with FakeBroker(silent) as fake:
        client = MqttClient(options(fake.port, keepalive_s=1), lambda m: None)
        await client.start()
        await client.wait_connected(2)
        began = asyncio.get_running_loop().time()
        await eventually(lambda: fake.connections >= 2, timeout=4, what="drop and reconnect")
        took = asyncio.get_running_loop().time() - began
        await client.close()
    assert b"\xc0\x00" in fake.sent_bytes(0)  # PINGREQ
    assert 1.2 <= took <= 2.5  # 1.5 × keepalive, plus a reconnect delay


async def test_refused_subscription_raises_subscribe_error() -> None:
    async def refuse_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        subscribe = await read_packet(reader)
        assert subscribe[0] == 0x82
        packet_id = subscribe[2:4]
        writer.write(b"\x90\x05" + packet_id + b"\x00\x01\x87")  # ok, not authorized

    async with FakeBroker(refuse_second) as fake:
        client = MqttClient(options(fake.port, "ok/#", "secret/#"), lambda m: None)
        await client.start()
        with pytest.raises(SubscribeError) as info:
            await client.wait_connected(3)
        await client.close()
    assert info.value.topic_filter == "secret/#"
    assert info.value.reason_code == 0x87
    assert "secret/#" in str(info.value) and "not authorized" in str(info.value)
    subscribe = fake.sent_bytes(0)
    assert b"ok/#\x11" in subscribe and b"secret/#\x11" in subscribe  # QoS 1, retain handling 1


async def test_publish_properties_and_topic_aliases_are_parsed() -> None:
    """We announce Topic Alias Maximum 0, but a broker that uses aliases anyway still works."""

    async def with_properties(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            CONNACK_OK
            + b"\x30\x0b\x00\x03a/b\x03\x23\x00\x01p1"  # topic a/b, sets alias 1
            + b"\x30\x08\x00\x00\x03\x23\x00\x01p2"  # empty topic, alias 1
            + b"\x30\x0d\x00\x01c\x07\x26\x00\x01k\x00\x01vp3"  # a user property
        )

    got: list[Message] = []
    async with FakeBroker(with_properties) as fake:
        client = MqttClient(options(fake.port), got.append)
        await client.start()
        await eventually(lambda: len(got) == 3, timeout=3, what="three messages")
        await client.close()
    assert [(m.topic, m.payload) for m in got] == [("a/b", b"p1"), ("a/b", b"p2"), ("c", b"p3")]
    assert fake.connections == 1
