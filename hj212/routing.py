"""Commands travel as MQTT messages to whichever gateway holds the station's connection.

A command is published (QoS 1) as JSON on ``<prefix>/hj212cmd/<MN>``. Each gateway subscribes
with a persistent session and acknowledges a command only after it is committed to its command
store, so a command published while the gateway was down, or taken just before a restart, is not
lost. Every gateway keeps every command of a registered station, connected or not, so a station
that connects later still gets it; a message for an MN not in the registry is acknowledged and
ignored.

With a shared store (gateways on several hosts, ``hj212/store_pg.py``) the gateways write the
same row (same QN: stored once), and only the gateway holding the station's connection claims
and sends it; there the message is a nudge, since a command queued straight into the database
(the API of a host without the station) is found at the holding gateway's next look anyway.
"""

from __future__ import annotations

import logging

from hj212.commands import Command, CommandError
from hj212.config import GatewayConfig
from hj212.dispatch import Dispatcher
from ingest.broker import client_options
from ingest.mqtt import Message, MqttClient

__all__ = ["CommandInbox", "command_topic", "publish_command"]

log = logging.getLogger("envgrid.hj212.commands")


def command_topic(prefix: str, mn: str) -> str:
    """The routing topic of a station's commands."""
    return f"{prefix}/hj212cmd/{mn}"


async def publish_command(client: MqttClient, prefix: str, cmd: Command) -> None:
    """Send a command towards the gateway that holds its station (QoS 1)."""
    await client.publish(command_topic(prefix, cmd.mn), cmd.to_json(), qos=1)


class CommandInbox:
    """The gateway's subscription to ``<prefix>/hj212cmd/+``: message → store → dispatcher."""

    def __init__(
        self, settings: GatewayConfig, dispatcher: Dispatcher, client_suffix: str = "hj212cmd"
    ) -> None:
        m = settings.mqtt
        self.prefix = m.topic_prefix
        self.dispatcher = dispatcher
        self.taken = 0
        self.ignored = 0
        opts = client_options(
            m, f"{m.effective_client_id(None)}-{client_suffix}", [f"{self.prefix}/hj212cmd/+"]
        )
        self.client = MqttClient(opts, self._on_message)

    async def start(self) -> None:
        """Connect (in the background if the broker is not there yet)."""
        await self.client.start()

    async def close(self) -> None:
        """Disconnect, keeping the session: commands sent meanwhile wait at the broker."""
        await self.client.close()

    def _on_message(self, m: Message) -> None:
        try:
            cmd = Command.from_json(m.payload)
            if m.topic.rpartition("/")[2] != cmd.mn:
                raise CommandError(f"topic {m.topic} is not the command's MN {cmd.mn}")
            if cmd.mn in self.dispatcher.stations:
                self.dispatcher.submit(cmd)  # committed before the ack below
                self.taken += 1
            else:
                self.ignored += 1
        except CommandError as e:
            self.ignored += 1
            log.warning("HJ 212 command message on %s ignored: %s", m.topic[:200], e)
        if m.qos:
            self.client.ack(m.packet_id, m.epoch)
