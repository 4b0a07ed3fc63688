"""HJ 212 gateway load: N station connections at R packets per second each, against `envgrid run`.

Starts its own mosquitto and influxd, then `envgrid run` as a subprocess with the gateway on
(ENVGRID_HJ212__PORT) and a registry of N stations; this process plays the stations: one TCP
connection each, every packet a real-time packet asking for a reply, spread evenly over each
second. It checks that every packet was replied to (the reply only comes after the broker's
PUBACK) and stored in InfluxDB exactly once, and reports reply latency and the service's CPU.

    .venv/bin/python bench/hj212_load.py [--connections 500] [--seconds 60] [--rate 1]

Measured 2026-11-25 (2-core VM shared with other test runs, Python 3.11 + uvloop, mosquitto
2.0.11 with its defaults, InfluxDB 1.x; service, broker, InfluxDB and this generator on one host):

    connections x packet/s x s   replied = stored   reply p50 / p95 / p99 / max     service CPU
    500 x 1 x 60                 30,000 of 30,000   2 / 4 / 6 / 42 ms               16 % of a core
    500 x 4 x 30                 60,000 of 60,000   2 / 7 / 18 / 53 ms              47 %
    2000 x 1 x 30                60,000 of 60,000   3 / 40 / 91 / 129 ms            46 %

(~240-330 µs of service CPU per packet: gateway, broker round trip, intake, InfluxDB write; RSS
85 MiB at 500 connections, 114 MiB at 2,000.) Before the gateway had an MQTT connection of its
own it shared the service's, and at 2,000 packets/s its PUBACKs waited behind the readings the
broker streams to the consumer: mosquitto does not set TCP_NODELAY by default (set_tcp_nodelay)
and allows 20 QoS 1 messages in flight, so replies took seconds (p99 4.4 s in-process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envgrid.localstack import LocalInfluxDB, LocalMosquitto, free_port
from testkit.service_proc import service
from testkit.stations import station_load, station_registry


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(connections: int, seconds: float, rate: float) -> int:
    with tempfile.TemporaryDirectory(prefix="hj212-load-") as tmp_name:
        tmp = Path(tmp_name)
        registry = station_registry(tmp / "stations.yaml", connections)
        devices = list(registry)
        with (
            LocalMosquitto(tmp / "mosquitto") as broker,
            LocalInfluxDB(tmp / "influxdb") as influx,
        ):
            influx.create_database("envgrid")
            port = free_port()
            async with service(
                tmp,
                broker,
                influx.url,
                "envgrid",
                devices__registry=str(tmp / "stations.yaml"),
                hj212__port=str(port),
                hj212__host="127.0.0.1",
                # Every simulated station connects from this one address.
                hj212__max_connections_per_source=str(max(connections, 1)),
            ) as svc:
                assert svc.proc is not None
                pid = svc.proc.pid
                cpu0, t0 = _cpu_seconds(pid), time.monotonic()
                result = await station_load(port, devices, seconds, rate)
                wall = time.monotonic() - t0
                cpu = _cpu_seconds(pid) - cpu0
                rss = _rss_mib(pid)
                total = int(connections * seconds * rate)

                def stored() -> int:
                    return influx.count("water_quality", "envgrid", "ph") + influx.count(
                        "air_quality", "envgrid", "pm25_ug_m3"
                    )

                deadline = time.monotonic() + 60
                while stored() < total and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                n_stored = stored()
        ms = 1000.0
        print(
            f"{connections} connections x {rate:g} packet/s x {seconds:g} s: "
            f"sent {result.sent}, replied {result.replied}, stored {n_stored} of {total}; "
            f"errors {len(result.errors)}; "
            f"generator max send lag {result.max_send_lag * ms:.0f} ms\n"
            f"reply latency (send -> 9014 reply, after PUBACK): "
            f"p50 {result.quantile(0.5) * ms:.1f} ms, p95 {result.quantile(0.95) * ms:.1f} ms, "
            f"p99 {result.quantile(0.99) * ms:.1f} ms, max {max(result.latencies) * ms:.1f} ms\n"
            f"envgrid run (gateway + intake + InfluxDB writes): CPU {cpu:.1f} s over {wall:.1f} s "
            f"({cpu / wall:.0%} of one core, {cpu / max(1, result.sent) * 1e6:.0f} µs per packet), "
            f"RSS {rss:.0f} MiB"
        )
        for e in result.errors[:10]:
            print("error:", e)
        ok = result.sent == result.replied == n_stored == total and not result.errors
        print("OK: every packet replied to and stored once" if ok else "LOSS: see above")
        return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=1.0, help="packets per second per connection")
    a = ap.parse_args()
    try:
        import uvloop

        sys.exit(uvloop.run(main(a.connections, a.seconds, a.rate)))
    except ImportError:
        sys.exit(asyncio.run(main(a.connections, a.seconds, a.rate)))
