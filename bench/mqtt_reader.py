"""Backlog drain: paho-mqtt 2.x (asyncio external loop) against ingest.mqtt.MqttClient.

Starts its own mosquitto (free port, persistence, max_queued_messages 0), and per run: creates two
persistent QoS 1 sessions, publishes N QoS 1 messages of ~140 bytes with paho while both are
offline, then lets each subscriber drain its backlog alone (Receive Maximum 20000, acks every
5,000) and reports msgs/s, CPU µs per message (getrusage, this process only: mosquitto is a
separate process) and the ratio ours/paho. The order of the two alternates between runs.
Finally every session is reopened once to check that nothing is left unacked.

    .venv/bin/python bench/mqtt_reader.py [-n 100000] [--runs 3] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envgrid.localstack import LocalMosquitto
from ingest.mqtt import Message, MqttClient, MqttOptions

TOPIC_PREFIX = "envgrid/water"  # + /run<N>/<device>: a run's sessions never see other runs
SESSION_EXPIRY_S = 3600


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.messages * 1e6


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def payload(seq: int, size: int) -> bytes:
    """A water-station reading as devices send it, padded to ``size`` bytes."""
    body = (
        f'{{"ts":{1732500000000 + seq},"do_mg_l":7.81,"ph":7.21,"temp_c":18.3,'
        f'"turbidity_ntu":3.1,"cond_us_cm":512,"nh3n_mg_l":0.21,"seq":{seq}'
    )
    pad = size - len(body) - 1
    return (body + (',"x":"' + "p" * (pad - 7) + '"' if pad >= 7 else "") + "}").encode()


# ------------------------------------------------------------------------------------ paho


def publish_backlog(host: str, port: int, prefix: str, n: int, size: int) -> float:
    """Publish n QoS 1 messages with paho (its own network thread); returns seconds taken."""
    done = threading.Event()
    # paho's packet ids wrap at 65535: with more queued at once it reuses ids still in flight
    # and loses PUBACKs, so keep at most this many outstanding.
    window = threading.Semaphore(10_000)
    acked = 0

    def on_publish(client: paho.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        nonlocal acked
        acked += 1
        window.release()
        if acked >= n:
            done.set()

    pub = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=paho.MQTTv5
    )
    pub.on_publish = on_publish
    pub.max_queued_messages_set(0)
    pub.connect(host, port, 60)
    pub.loop_start()
    began = time.perf_counter()
    for seq in range(n):
        window.acquire()
        pub.publish(f"{prefix}/WQ-{seq % 500:05d}", payload(seq, size), qos=1)
    if not done.wait(600):
        raise RuntimeError(f"publisher: only {acked}/{n} PUBACKs")
    took = time.perf_counter() - began
    pub.disconnect()
    pub.loop_stop()
    return took


class AsyncioHelper:
    """paho's documented external-loop pattern (examples/loop_asyncio.py)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: paho.Client) -> None:
        self.loop = loop
        self.client = client
        self.misc: asyncio.Task[None] | None = None
        client.on_socket_open = self.on_socket_open
        client.on_socket_close = self.on_socket_close
        client.on_socket_register_write = self.on_socket_register_write
        client.on_socket_unregister_write = self.on_socket_unregister_write

    def on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self.loop.add_reader(sock, client.loop_read)
        self.misc = self.loop.create_task(self.misc_loop())

    def on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self.loop.remove_reader(sock)
        if self.misc is not None:
            self.misc.cancel()

    def on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self.loop.remove_writer(sock)

    async def misc_loop(self) -> None:
        while self.client.loop_misc() == paho.MQTT_ERR_SUCCESS:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                break


async def paho_session(
    host: str,
    port: int,
    client_id: str,
    topic_filter: str,
    n: int,
    batch: int,
    receive_maximum: int,
) -> Result:
    """Connect a paho MQTTv5 manual-ack subscriber, take n messages, ack every ``batch``."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    connected: asyncio.Future[None] = loop.create_future()
    pending: list[int] = []
    count = 0

    def on_connect(client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(topic_filter, qos=1)  # as a real subscriber does after every CONNACK

    def on_subscribe(client: paho.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        if not connected.done():
            connected.set_result(None)

    def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        nonlocal count
        pending.append(msg.mid)
        count += 1
        if len(pending) >= batch or count == n:
            for mid in pending:
                client.ack(mid, 1)
            pending.clear()
            if count >= n and not done.done():
                done.set_result(None)

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=True
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    AsyncioHelper(loop, client)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = receive_maximum
    cpu0, t0 = _cpu(), time.perf_counter()
    client.connect(host, port, 60, clean_start=False, properties=props)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2048)  # as in paho's example
    if n:
        await asyncio.wait_for(done, 600)
    else:
        await asyncio.wait_for(connected, 10)
    while client.want_write():  # the last acks are on the wire before the clock stops
        await asyncio.sleep(0)
    t1, cpu1 = time.perf_counter(), _cpu()
    client.disconnect()
    await asyncio.sleep(0.05)
    return Result("paho", count, t1 - t0, cpu1 - cpu0)


# ------------------------------------------------------------------------------------ ours


async def ours_session(
    host: str,
    port: int,
    client_id: str,
    topic_filter: str,
    n: int,
    batch: int,
    receive_maximum: int,
) -> Result:
    """Connect an envgrid MqttClient, take n messages, ack_many every ``batch``."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    pending: list[tuple[int, int]] = []
    count = 0

    def on_message(msg: Message) -> None:
        nonlocal count
        pending.append((msg.packet_id, msg.epoch))
        count += 1
        if len(pending) >= batch or count == n:
            client.ack_many(pending)
            pending.clear()
            if count >= n and not done.done():
                done.set_result(None)

    client = MqttClient(
        MqttOptions(
            host,
            port,
            client_id,
            subscriptions=[topic_filter],
            session_expiry_s=SESSION_EXPIRY_S,
            receive_maximum=receive_maximum,
        ),
        on_message,
    )
    cpu0, t0 = _cpu(), time.perf_counter()
    await client.start()
    if n:
        await asyncio.wait_for(done, 600)
    else:
        await client.wait_connected(10)
    t1, cpu1 = time.perf_counter(), _cpu()
    await client.close()
    return Result("ours", count, t1 - t0, cpu1 - cpu0)


async def leftovers(host: str, port: int, client_id: str, topic_filter: str) -> int:
    """Messages the broker still holds for a session (redelivered within 0.5 s of connecting)."""
    got: list[Message] = []
    client = MqttClient(
        MqttOptions(host, port, client_id, subscriptions=[topic_filter], session_expiry_s=0),
        got.append,
    )
    await client.start()
    await client.wait_connected(10)
    await asyncio.sleep(0.5)
    await client.close()
    return len(got)


# ------------------------------------------------------------------------------------ main


Drain = Callable[[str, int, str, str, int, int, int], Awaitable[Result]]


async def bench(args: argparse.Namespace, broker: LocalMosquitto) -> list[tuple[Result, Result]]:
    host, port = broker.host, broker.port
    contenders: dict[str, Drain] = {"paho": paho_session, "ours": ours_session}
    rows: list[tuple[Result, Result]] = []
    sessions: list[tuple[str, str]] = []
    tag = os.getpid()
    for run in range(1, args.runs + 1):
        prefix = f"{TOPIC_PREFIX}/run{run}"
        topic_filter = f"{prefix}/#"
        ids = {name: f"bench-{name}-{tag}-{run}" for name in contenders}
        for name, drain in contenders.items():  # create the persistent sessions, then go away
            await drain(host, port, ids[name], topic_filter, 0, args.batch, args.receive_maximum)
        sessions += [(cid, topic_filter) for cid in ids.values()]
        took = await asyncio.to_thread(publish_backlog, host, port, prefix, args.n, args.size)
        print(
            f"run {run}: published {args.n} QoS 1 messages of {args.size} B in {took:.1f} s "
            f"({args.n / took:,.0f}/s) while both subscribers were offline",
            flush=True,
        )
        order = ["paho", "ours"] if run % 2 else ["ours", "paho"]
        results: dict[str, Result] = {}
        for name in order:
            result = await contenders[name](
                host, port, ids[name], topic_filter, args.n, args.batch, args.receive_maximum
            )
            results[name] = result
            print(
                f"run {run}: {name:4} drained {result.messages} in {result.seconds:.3f} s: "
                f"{result.rate:9,.0f} msgs/s, {result.cpu_us:5.2f} µs CPU/msg",
                flush=True,
            )
        rows.append((results["paho"], results["ours"]))
    if not args.no_verify:
        left = {cid: await leftovers(host, port, cid, flt) for cid, flt in sessions}
        bad = {cid: count for cid, count in left.items() if count}
        print("verify: every session fully acked" if not bad else f"verify: UNACKED LEFT {bad}")
    return rows


def report(rows: list[tuple[Result, Result]], args: argparse.Namespace, loop_name: str) -> None:
    print()
    print(
        f"backlog drain: {args.n:,} QoS 1 msgs x {args.size} B, ack every {args.batch:,}, "
        f"Receive Maximum {args.receive_maximum:,}, loop {loop_name}, mosquitto 2.0.11"
    )
    print(
        f"{'run':>3} | {'paho msgs/s':>11} | {'paho µs/msg':>11} | {'ours msgs/s':>11} | "
        f"{'ours µs/msg':>11} | {'ratio b/a':>9}"
    )
    for run, (a, b) in enumerate(rows, 1):
        print(
            f"{run:>3} | {a.rate:>11,.0f} | {a.cpu_us:>11.2f} | {b.rate:>11,.0f} | "
            f"{b.cpu_us:>11.2f} | {b.rate / a.rate:>8.2f}x"
        )
    med_a = statistics.median(a.rate for a, _ in rows)
    med_b = statistics.median(b.rate for _, b in rows)
    cpu_a = statistics.median(a.cpu_us for a, _ in rows)
    cpu_b = statistics.median(b.cpu_us for _, b in rows)
    print(
        f"med | {med_a:>11,.0f} | {cpu_a:>11.2f} | {med_b:>11,.0f} | {cpu_b:>11.2f} | "
        f"{med_b / med_a:>8.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="messages per backlog")
    parser.add_argument("--size", type=int, default=140, help="payload bytes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5000, help="ack every this many")
    parser.add_argument("--receive-maximum", type=int, default=20000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--no-verify", action="store_true", help="skip the leftovers check")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="mqtt-bench-") as tmp,
        LocalMosquitto(Path(tmp) / "mosquitto", max_queued_messages=0) as broker,
    ):
        if args.loop == "uvloop":
            import uvloop

            rows = uvloop.run(bench(args, broker))
        else:
            rows = asyncio.run(bench(args, broker))
    report(rows, args, args.loop)


if __name__ == "__main__":
    main()
