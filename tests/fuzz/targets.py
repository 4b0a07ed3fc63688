"""Fuzz targets for the parsers that read bytes from the network (issue 20).

Each target takes arbitrary bytes and must either succeed or fail with the parser's documented
error; any other exception is a finding (the fuzzer reports it with the input). They run under
atheris (coverage-guided: ``tests/fuzz/run.py``, ``make fuzz``) and, briefly, in ``make test``
(tests/unit/test_fuzz_short.py).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from hj212 import codec
from hj212.gateway import Framer, Junk
from hj212.intake import decoder_factory, load_stations
from ingest.mqtt import Message, MqttClient, MqttOptions, _Connection
from ingest.pipeline import Accepted, Pipeline, Rejected
from ingest.topics import TopicMap

LENIENT = codec.Leniency(
    short_mn=True,
    length_mismatch=True,
    unknown_factors=True,
    legacy_aliases=True,
    split_without_pnum=True,
)


def hj212_frame(data: bytes) -> None:
    """codec.parse on raw bytes, and on the bytes wrapped in a valid header and CRC (so the
    data segment parser is reached, not only the CRC check)."""
    leniency = LENIENT if data[:1] == b"L" else codec.STRICT
    for frame in (data, _frame(data)):
        try:
            packet = codec.parse(frame, leniency)
        except codec.Hj212Error:
            continue
        codec.build(packet)  # what parses must build again


def hj212_framer(data: bytes) -> None:
    """The gateway's stream framer, fed in two chunks; never more than one frame held."""
    framer = Framer(max_frame=256)
    cut = data[0] % (len(data) + 1) if data else 0
    out = framer.feed(data[:cut]) + framer.feed(data[cut:])
    for item in out:
        if not isinstance(item, Junk):
            assert item.startswith(b"##") and len(item) <= 256, item
    assert len(framer.buf) <= 256 + 2, len(framer.buf)


@functools.cache
def _mqtt() -> tuple[asyncio.AbstractEventLoop, MqttClient, list[Message]]:
    loop = asyncio.new_event_loop()
    got: list[Message] = []
    opts = MqttOptions("127.0.0.1", 1, "fuzz", subscriptions=["envgrid/#"])

    async def make() -> MqttClient:
        return MqttClient(opts, got.append)

    return loop, loop.run_until_complete(make()), got


def mqtt_packets(data: bytes) -> None:
    """The client's packet parser on a byte stream from the broker, before or after CONNACK:
    anything malformed must be a ProtocolError (handled inside _feed), nothing else."""
    loop, client, got = _mqtt()

    async def feed() -> None:
        conn = _Connection(client)
        client._conn = conn
        if data[:1] == b"\x00":
            conn.epoch = 1  # as if CONNACKed: PUBLISH is parsed
            conn.connacked.set_result(None)
        conn.max_unacked = 65535
        conn._feed(data[1:])
        conn.drain()
        for fut in (conn.connacked, conn.ready):
            if fut.done() and not fut.cancelled():
                fut.exception()  # the connect loop reads these in the client; nobody here

    loop.run_until_complete(feed())
    got.clear()
    client._released_wait.clear()


@functools.cache
def _pipeline() -> Pipeline:
    registry = load_registry(DEFAULT_REGISTRY)
    topics = TopicMap("envgrid", KINDS, protocols=("hj212",))
    pipeline = Pipeline(KINDS, registry, topics)
    pipeline.decoders["hj212"] = decoder_factory(load_stations(registry))(pipeline)
    return pipeline


_TOPICS = (*(f"envgrid/{k}/" for k in KINDS), "envgrid/hj212/", "envgrid/")


def payloads(data: bytes) -> None:
    """Pipeline.process on any payload for every kind's topic and HJ 212: never raises."""
    pipeline = _pipeline()
    head, _, payload = data.partition(b"\n")
    topic = _TOPICS[head[0] % len(_TOPICS)] if head else _TOPICS[0]
    topic += head[1:].decode("utf-8", "replace") or "X-1"
    res = pipeline.process(topic, payload)
    assert isinstance(res, Accepted | Rejected), res
    if isinstance(res, Accepted) and res.line:
        assert "\n" not in res.line, res.line


TARGETS: dict[str, Callable[[bytes], None]] = {
    "hj212_frame": hj212_frame,
    "hj212_framer": hj212_framer,
    "mqtt_packets": mqtt_packets,
    "payloads": payloads,
}


def _frame(data: bytes) -> bytes:
    return b"##%04d" % len(data) + data + b"%04X\r\n" % codec.crc16(data)


_HJ212_DATA = (
    b"QN=20260601120000001;ST=21;CN=2011;PW=641122;MN=320800210000000000000001;Flag=5;"
    b"CP=&&DataTime=20261202120000;w01018-Rtd=35.2,w01018-Flag=N;w01001-Rtd=7.1&&"
)

# Seeds: one valid input per target, so the fuzzer starts from the interesting paths.
SEEDS: dict[str, list[bytes]] = {
    "hj212_frame": [_HJ212_DATA, b"L" + _HJ212_DATA],
    "hj212_framer": [b"junk##0010QN=1;ST=2ABCD\r\n##00"],
    "mqtt_packets": [
        b"\x00\x32\x12\x00\x0cenvgrid/pv/X\x00\x07\x00{}"
        b"\x00\x34\x12\x00\x0cenvgrid/pv/X\x00\x08\x00{}\x62\x02\x00\x08\xd0\x00"
    ],
    "payloads": [
        b'\x02PV-1\n{"ts": 1780272000000, "ac_power_w": 1.5}',
        b"\x05320800210000000000000001\n" + _frame(_HJ212_DATA),
    ],
}


def everything(data: bytes) -> None:
    """All targets in one process, chosen by the first byte (for the short run in make test:
    one interpreter start instead of one per target)."""
    if data:
        _ORDER[data[0] % len(_ORDER)](data[1:])


_ORDER = [TARGETS[name] for name in sorted(TARGETS)]
TARGETS_AND_ALL: dict[str, Callable[[bytes], None]] = {**TARGETS, "all": everything}
SEEDS["all"] = [
    bytes((i,)) + seed for i, name in enumerate(sorted(TARGETS)) for seed in SEEDS[name]
]
