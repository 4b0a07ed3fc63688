"""A connected MQTT client for tests and benchmarks: a publisher, or a collector when given
subscriptions; it acks what it receives so the broker's in-flight window never fills."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from envgrid.localstack import LocalMosquitto
from ingest.mqtt import Message, MqttClient, MqttOptions


@contextlib.asynccontextmanager
async def mqtt_client(
    broker: LocalMosquitto,
    subscriptions: list[str] | None = None,
    on_message: Callable[[Message], None] | None = None,
    client_id: str = "test-client",
) -> AsyncIterator[MqttClient]:
    """A connected client (publisher, or collector when given subscriptions)."""
    opts = MqttOptions(
        host="127.0.0.1",
        port=broker.port,
        client_id=client_id,
        clean_start=True,
        session_expiry_s=0,
        subscriptions=subscriptions or [],
    )
    client: MqttClient

    def handle(m: Message) -> None:
        if on_message is not None:
            on_message(m)
        if m.qos:
            client.ack(m.packet_id, m.epoch)

    client = MqttClient(opts, handle)
    await client.start()
    await client.wait_connected(timeout=10)
    try:
        yield client
    finally:
        await client.close()
