"""Throughput with one and with two cluster members on this machine (issue 21).

Starts its own mosquitto, influxd and PostgreSQL (free ports, temporary folder), then, for one
member and for two, runs ``envgrid run --workers W`` per member (alerts off: ingest only) with
``ENVGRID_CLUSTER__*`` set, publishes N readings from this process as fast as the broker takes
them (QoS 1, 5,000 in flight), and reports the time from the first publish until InfluxDB holds
all N, as readings per second, with the CPU time each part used. Every member shares this
machine's cores with the broker, InfluxDB, PostgreSQL and the publisher, so a second member
can only add what the cores have left: the CPU columns say where the time went.

    .venv/bin/python bench/cluster.py [--readings 40000] [--workers 1]
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

from envgrid.localstack import LocalInfluxDB, LocalMosquitto, LocalPostgres
from envgrid.simulator import publish_all
from testkit.mqtt import mqtt_client
from testkit.service_proc import Service, readings, stored_total

TICK = os.sysconf("SC_CLK_TCK")
WINDOW = 5000  # QoS 1 publishes in flight: a small window measures the round trip, not envgrid


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every core since boot, from /proc/stat: others' work included."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    return sum(f) - idle, sum(f)


def tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and its live descendants."""
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += cpu_s(pid)
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        todo += [int(k) for k in kids]
    return total


class Member(Service):
    def __init__(self, tmp: Path, broker: LocalMosquitto, influx: str, workers: int, **env: str):
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, broker, influx, "envgrid", **env)
        self.workers = workers
        self.env["ENVGRID_MQTT__CLIENT_ID"] = "bench"

    def start(self) -> None:
        import subprocess

        from testkit.service_proc import ENVGRID

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [ENVGRID, "run", "--workers", str(self.workers)],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


async def run(members: int, n: int, workers: int, tmp: Path) -> dict[str, float]:
    with (
        LocalMosquitto(tmp / "mosquitto") as broker,
        LocalInfluxDB(tmp / "influx") as influx,
    ):
        pg = LocalPostgres(tmp / "pg").start()
        try:
            influx.create_database("envgrid")
            hosts = [
                Member(
                    tmp / f"m{i}",
                    broker,
                    influx.url,
                    workers,
                    cluster__database=pg.url,
                    cluster__member_id=f"m{i}",
                    alerts__enabled="false",
                )
                for i in range(members)
            ]
            for h in hosts:
                h.start()
            try:
                for h in hosts:
                    await h.ready(60)
                msgs = readings(n, seed=5)
                servers = {"mosquitto": broker.pid, "influxd": influx.pid, "postgres": pg.pid}
                before = {k: tree_cpu_s(p) for k, p in servers.items() if p}
                hosts_before = sum(tree_cpu_s(h.proc.pid) for h in hosts if h.proc)
                pub_before = time.process_time()
                busy0, total0 = machine_busy()
                t0 = time.monotonic()
                async with mqtt_client(broker, client_id="bench-pub") as pub:
                    await publish_all(pub, iter(msgs), window=WINDOW, rate=None)
                published = time.monotonic() - t0
                while stored_total(influx, "envgrid") < n:
                    await asyncio.sleep(0.2)
                took = time.monotonic() - t0
                busy1, total1 = machine_busy()
                out = {
                    "machine_busy": (busy1 - busy0) / max(1, total1 - total0),
                    "readings_per_s": n / took,
                    "seconds": took,
                    "publish_s": published,
                    "envgrid_cpu_s": sum(tree_cpu_s(h.proc.pid) for h in hosts if h.proc)
                    - hosts_before,
                    "publisher_cpu_s": time.process_time() - pub_before,
                }
                for k, p in servers.items():
                    if p:
                        out[f"{k}_cpu_s"] = tree_cpu_s(p) - before[k]  # postgres: its backends too
                return out
            finally:
                for h in hosts:
                    await h.close()
        finally:
            pg.cleanup()


async def main(n: int, workers: int) -> int:
    cores = len(os.sched_getaffinity(0))
    print(f"cluster bench: {n} readings, --workers {workers} per member, {cores} cores shared")
    results = {}
    for members in (1, 2):
        with tempfile.TemporaryDirectory(prefix="envgrid-cluster-bench-") as tmp:
            results[members] = await run(members, n, workers, Path(tmp))
        r = results[members]
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in r.items() if k.endswith("_cpu_s"))
        print(
            f"{members} member(s): {r['readings_per_s']:,.0f} readings/s "
            f"({r['seconds']:.1f} s; published in {r['publish_s']:.1f} s); CPU s: {cpu}"
        )
    for members, r in results.items():
        ours = sum(v for k, v in r.items() if k.endswith("_cpu_s")) / r["seconds"]
        print(
            f"{members} member(s): our processes kept {ours:.2f} of {cores} cores busy; "
            f"the machine as a whole (other users included) was {r['machine_busy']:.0%} busy"
        )
    print(f"two members vs one: x{results[2]['readings_per_s'] / results[1]['readings_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=40_000)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    sys.exit(asyncio.run(main(a.readings, a.workers)))
