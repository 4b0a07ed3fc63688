"""Memory through an InfluxDB outage, and the replay rate once it returns.

Starts its own mosquitto and influxd (free ports, temporary folder) and ``envgrid run`` as a
subprocess configured by ``ENVGRID_*`` variables, with the shipped defaults otherwise. Publishes
the simulated fleet at a steady rate (QoS 1), stops influxd for the outage, starts it again and
keeps publishing until the spool is drained. Reports the service's RSS (sampled every 0.5 s, and
the kernel's VmHWM peak), what was spooled, how long the drain took and the replay rate
(points replayed from the spool per second while live data keeps flowing), then checks that
InfluxDB holds every published reading.

    .venv/bin/python bench/outage.py [--rate 2000] [--outage 120] [--warmup 10] [--no-alerts]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.simulator import SimMessage, generate, publish_all
from testkit.mqtt import mqtt_client
from testkit.service_proc import FLEET, Service, stored_total


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """A memory figure of /proc/<pid>/status in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


async def main(rate: float, outage: float, warmup: float, alerts: bool) -> int:
    """Run the scenario; the exit code."""
    with tempfile.TemporaryDirectory(prefix="envgrid-outage-") as tmp_s:
        tmp = Path(tmp_s)
        with LocalMosquitto(tmp / "mosquitto") as broker, LocalInfluxDB(tmp / "influx") as influx:
            influx.create_database("envgrid")
            svc = Service(tmp, broker, influx.url, "envgrid")
            svc.env.pop("ENVGRID_INGEST__FLUSH_INTERVAL")  # shipped defaults
            svc.env.pop("ENVGRID_INGEST__REPLAY_BACKOFF_MAX")
            svc.env.pop("ENVGRID_INFLUX__TIMEOUT_S")
            if not alerts:
                svc.env["ENVGRID_ALERTS__ENABLED"] = "false"
            svc.start()
            try:
                await svc.ready()
                assert svc.proc is not None
                pid = svc.proc.pid
                return await scenario(svc, pid, broker, influx, rate, outage, warmup)
            finally:
                await svc.close()


async def scenario(
    svc: Service,
    pid: int,
    broker: LocalMosquitto,
    influx: LocalInfluxDB,
    rate: float,
    outage: float,
    warmup: float,
) -> int:
    """Warm-up, outage, recovery; print the figures."""
    total = int(rate * (warmup + outage + 900))  # more than needed; stopped below
    step = 1000
    start = (int(time.time()) - total // len(FLEET) - 120) * 1000
    published: list[SimMessage] = []
    stop = asyncio.Event()

    def messages() -> Iterator[SimMessage]:
        for m in generate(FLEET, total, start_ms=start, step_ms=step, seed=11):
            if stop.is_set():
                return
            yield m

    async with mqtt_client(broker, client_id="outage-publisher") as pub:
        t0 = time.monotonic()
        task = asyncio.create_task(
            publish_all(pub, messages(), window=4000, rate=rate, on_sent=published.append)
        )
        await asyncio.sleep(warmup)
        rss_before = rss_kib(pid)
        await asyncio.to_thread(influx.stop)
        t_down = time.monotonic()
        peak = rss_before
        series: list[str] = []  # RSS every 20 s: flat means bounded, a slope means it grows
        while (elapsed := time.monotonic() - t_down) < outage:
            rss = rss_kib(pid)
            peak = max(peak, rss)
            if elapsed >= 20 * len(series):
                series.append(f"{elapsed:.0f}s {rss / 1024:.0f}")
            await asyncio.sleep(0.5)
        m = await svc.metrics()
        spool_bytes, spooled = m["envgrid_spool_bytes"], m["envgrid_spooled_points_total"]
        sent_down = len(published)
        await asyncio.to_thread(influx.start)
        t_up = time.monotonic()
        first: tuple[float, float] | None = None
        while True:
            m = await svc.metrics()
            now = time.monotonic()
            peak = max(peak, rss_kib(pid))
            replayed = m["envgrid_replayed_points_total"]
            if first is None and replayed > 0:
                first = (now, replayed)
            if first is not None and m["envgrid_spool_records"] == 0:
                break
            if now - t_up > 900:
                print("spool not drained after 15 minutes", file=sys.stderr)
                return 1
            await asyncio.sleep(0.25)
        t_drained = time.monotonic()
        assert first is not None
        replay_s = max(t_drained - first[0], 0.25)
        replay_rate = (replayed - first[1]) / replay_s if replayed > first[1] else replayed / 0.25
        stop.set()
        await task
        achieved = len(published) / (time.monotonic() - t0)
    n = len(published)
    deadline = time.monotonic() + 120
    while (got := stored_total(influx, "envgrid")) < n and time.monotonic() < deadline:
        await asyncio.sleep(1)
    hwm = rss_kib(pid, "VmHWM")
    print(f"published            {n} readings at {achieved:.0f} msg/s (asked {rate:.0f})")
    print(f"outage               {outage:.0f} s; {sent_down} published by its end")
    print(f"RSS before outage    {rss_before / 1024:.1f} MiB")
    print(f"RSS peak (sampled)   {peak / 1024:.1f} MiB   VmHWM {hwm / 1024:.1f} MiB")
    print(f"RSS during outage    {', '.join(series)} (MiB)")
    print(f"spooled              {spooled:.0f} points, {spool_bytes / 1e6:.1f} MB on disk")
    print(
        f"drained              {t_drained - t_up:.1f} s after influxd started "
        f"(first replay after {first[0] - t_up:.1f} s: replay backoff)"
    )
    print(f"replay rate          {replay_rate:,.0f} points/s (live data flowing meanwhile)")
    print(f"stored               {got} of {n}")
    return 0 if got == n else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=2000.0, help="messages per second")
    ap.add_argument("--outage", type=float, default=120.0, help="seconds without InfluxDB")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before the outage")
    ap.add_argument("--no-alerts", action="store_true", help="ingest alone, no alert engine")
    args = ap.parse_args()
    sys.exit(asyncio.run(main(args.rate, args.outage, args.warmup, not args.no_alerts)))
