"""One adopted session: connect with a dead member's worker client id, drain, end the session.

``python -m envgrid.cluster.adopt --member M --worker I`` is started by a surviving member's
supervisor once it holds M's lease. The session's queued and in-flight messages go through the
normal ingest pipeline (acked only once durable: InfluxDB or this host's spool). Order matters:

1. connect with M's client id and the session kept (no new subscription);
2. UNSUBSCRIBE M's ``$share`` filters: from UNSUBACK on the broker routes nothing new to this
   session, so what is left is a finite queue;
3. consume until nothing arrived for ``cluster.drain_quiet``, nothing is unacknowledged and the
   spool is empty (InfluxDB took every reading);
4. stop the service (final acks) and DISCONNECT with Session Expiry 0: the broker deletes the
   empty session, so it stops collecting a share of the stream for a member that is gone.

Exit code 0 means drained; anything else and the supervisor tries again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.app import configure_standards
from envgrid.cluster.members import client_base
from envgrid.settings import ConfigError, Settings, load_settings
from hj212.gateway import ServiceGateway
from ingest.mqtt import Message, MqttClient, MqttError, MqttOptions
from ingest.service import IngestService

log = logging.getLogger("envgrid.cluster.adopt")


def adopter_settings(settings: Settings, member: str, group: str) -> Settings:
    """The dead member's client id base and share group; a spool folder of its own here."""
    m, ing = settings.mqtt, settings.ingest
    mqtt = m.model_copy(
        update={"client_id": client_base(m.client_id, member), "shared_group": group}
    )
    ingest = ing.model_copy(update={"spool_dir": ing.spool_dir / f"adopted-{member}"})
    return settings.model_copy(update={"mqtt": mqtt, "ingest": ingest})


async def drain(settings: Settings, member: str, worker: int, group: str) -> int:
    """Drain one session of ``member``; the number of messages taken over."""
    configure_standards(settings)
    settings = adopter_settings(settings, member, group)
    registry = load_registry(settings.devices.registry)
    hj212 = ServiceGateway(settings, registry)
    clients: list[MqttClient] = []

    def broker(
        options: MqttOptions,
        on_message: Callable[[Message], None],
        on_state: Callable[[bool, str], None],
    ) -> MqttClient:
        # The real client, kept here for what only a drain needs: UNSUBSCRIBE, ending the session.
        clients.append(MqttClient(options, on_message, on_state))
        return clients[-1]

    service = IngestService(
        settings,
        KINDS,
        registry,
        worker=worker,
        subscribe=False,
        protocols=hj212.protocols,
        broker=broker,
    )
    mqtt = clients[0]
    quiet_s = settings.cluster.drain_quiet.total_seconds()
    client_id = settings.mqtt.effective_client_id(worker)
    await service.start()
    try:
        await mqtt.wait_connected(timeout=settings.mqtt.connect_timeout_s + 10)
        await mqtt.unsubscribe(service.topics.subscriptions())
        log.info(
            "adopted session %s (%s): draining",
            client_id,
            "resumed" if mqtt.session_present else "none was left",
        )
        seen, since = -1, time.monotonic()
        while True:
            await asyncio.sleep(0.2)
            n = sum(service.stats.received.values())
            if n != seen or mqtt.unacked_count or len(service.spool):
                seen, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s and mqtt.connected:
                break
        mqtt.end_session_on_close = True
    finally:
        await service.stop()
    log.info("session %s drained: %d messages, session ended", client_id, seen)
    return seen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m envgrid.cluster.adopt")
    p.add_argument("--member", required=True)
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--config", type=Path)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s %(levelname)s [adopt {args.member}-w{args.worker}] %(name)s: "
        "%(message)s",
    )
    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"envgrid: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(drain(settings, args.member, args.worker, args.group))
    except MqttError as e:
        log.error("cannot drain %s-w%d: %s", args.member, args.worker, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
