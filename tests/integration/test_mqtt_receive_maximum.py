"""Our Receive Maximum holds even when the broker overshoots it.

Mosquitto 2.0.11 (Debian bookworm) honours a client's Receive Maximum until PUBACKs start to
flow, then sends far more (measured: 90,000 unacknowledged with Receive Maximum 20,000). The
client stops reading at its Receive Maximum, so memory stays bounded by it.
"""

from __future__ import annotations

import asyncio

from envgrid.localstack import LocalMosquitto
from ingest.mqtt import Message, MqttClient, MqttOptions
from tests.helpers import mqtt_client

N = 6000
RECEIVE_MAXIMUM = 500


async def test_unacked_messages_never_exceed_our_receive_maximum(
    fresh_mosquitto: LocalMosquitto,
) -> None:
    got: list[Message] = []
    sub = MqttClient(
        MqttOptions(
            "127.0.0.1",
            fresh_mosquitto.port,
            "rm-sub",
            subscriptions=["rm/#"],
            receive_maximum=RECEIVE_MAXIMUM,
            session_expiry_s=600,
        ),
        got.append,
    )
    await sub.start()
    await sub.wait_connected(10)
    sub.pause_reading()  # a backlog builds up at the broker, as after a restart
    async with mqtt_client(fresh_mosquitto, client_id="rm-pub") as pub:
        await asyncio.gather(*(pub.publish(f"rm/{i}", b"%d" % i) for i in range(N)))
    sub.resume_reading()
    acked = 0
    worst = 0
    for _ in range(2000):
        await asyncio.sleep(0.01)
        worst = max(worst, len(got) - acked)
        batch = got[acked : acked + 200]  # ack in batches, as the service does
        sub.ack_many([(m.packet_id, m.epoch) for m in batch])
        acked += len(batch)
        if acked >= N:
            break
    await sub.close()
    assert worst <= RECEIVE_MAXIMUM
    assert sorted(int(m.payload) for m in got) == list(range(N))  # each exactly once
