"""The MQTT reader parses a large read in slices, yielding to the event loop between them.

Fed straight into the connection's protocol object (no socket): what matters here is the
parser's bookkeeping, that every message arrives once and in order, and that a read ending
inside a packet waits for the rest instead of spinning.
"""

from __future__ import annotations

import asyncio

from ingest.mqtt import SLICE_BYTES, Message, MqttClient, MqttOptions, _Connection, _publish_packet

TOPIC = b"envgrid/water/WQ-00001"


def _packets(n: int, start: int = 1, size: int = 150) -> bytes:
    return b"".join(
        _publish_packet(TOPIC, b"%d;" % i + b"x" * size, 1, False, False, i)
        for i in range(start, start + n)
    )


def _connection(got: list[Message]) -> _Connection:
    conn = _Connection(MqttClient(MqttOptions("127.0.0.1", 1883, "slicing"), got.append))
    conn.epoch = 1  # as after CONNACK
    return conn


async def _settle() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


async def test_a_large_read_is_parsed_one_slice_per_loop_iteration() -> None:
    got: list[Message] = []
    conn = _connection(got)
    data = _packets(2000)
    assert len(data) > 8 * SLICE_BYTES
    conn.data_received(data)
    first = len(got)
    assert 0 < first < 2000  # one slice now, the rest after other tasks had their turn
    assert first * 150 <= SLICE_BYTES + 400
    await _settle()
    assert [m.packet_id for m in got] == list(range(1, 2001))
    assert not conn.yielding and not conn.buf


async def test_a_read_ending_inside_a_packet_waits_for_the_rest() -> None:
    got: list[Message] = []
    conn = _connection(got)
    tail = _publish_packet(TOPIC, b"last", 1, False, False, 1001)
    for cut in (1, 2, 3, len(tail) - 1):  # inside the fixed header, the length, the body
        got.clear()
        conn.unacked.clear()
        conn.data_received(_packets(1000) + tail[:cut])
        await _settle()
        assert len(got) == 1000, cut
        assert not conn.yielding, f"still yielding with {cut} byte(s) of a packet buffered"
        conn.data_received(tail[cut:])
        await _settle()
        assert [m.packet_id for m in got[-2:]] == [1000, 1001]
        assert got[-1].payload == b"last" and not conn.buf


async def test_reading_stops_at_our_receive_maximum_until_acks_free_room() -> None:
    got: list[Message] = []
    client = MqttClient(MqttOptions("127.0.0.1", 1883, "rm", receive_maximum=100), got.append)
    conn = _Connection(client)
    conn.epoch = 1
    conn.data_received(_packets(250, size=20))
    await _settle()
    assert len(got) == 100 and conn.throttled  # a broker that overshoots is not followed
    # No socket here: take the acks out of the unacked set as ack_many() does, then unthrottle.
    conn.unacked.difference_update(m.packet_id for m in got[:60])
    conn.unthrottle()
    await _settle()
    assert len(got) == 160 and conn.throttled
    conn.unacked.clear()
    conn.unthrottle()
    await _settle()
    assert [m.packet_id for m in got] == list(range(1, 251)) and not conn.throttled


async def test_a_publish_of_ours_lifts_the_limit_so_its_puback_can_be_read() -> None:
    # The service acks a batch only after its dead letters' PUBACKs: those arrive on the same
    # stream, behind the messages held back, so holding back must stop while they are due.
    got: list[Message] = []
    client = MqttClient(MqttOptions("127.0.0.1", 1883, "rm", receive_maximum=50), got.append)
    conn = _Connection(client)
    conn.epoch = 1
    client._conn = conn
    conn.data_received(_packets(120, size=20))
    await _settle()
    assert len(got) == 50 and conn.throttled
    letter = asyncio.create_task(client.publish("envgrid/deadletter/x", b"why", qos=1))
    await _settle()
    assert not conn.throttled and len(got) == 120  # read on while the PUBACK is due
    letter.cancel()
    await asyncio.gather(letter, return_exceptions=True)
