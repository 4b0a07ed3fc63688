"""make bench: envgrid end to end, beside the publisher's ceiling measured in the same run.

Self-contained: starts its own InfluxDB 1.x and a fresh mosquitto per measurement (loopback,
free ports, no persistence, unbounded per-client queue, mosquitto's default 20 in flight as
in the shared harness), publishes with paho-mqtt from a child process (QoS 1, the shared
harness's workload: bench/workload.py) and runs ``envgrid run`` as a subprocess configured by
ENVGRID_* variables, exactly as an operator would. Every figure counts what InfluxDB holds.

Phases (``--only`` picks some):

ceiling   the publisher alone (no subscriber): N messages, QoS 1, every PUBACK awaited.
burst     envgrid running: N messages as fast as the publisher goes; throughput = stored /
          (first publish → the moment InfluxDB's written-points counter reached N, 0.1 s).
preload   envgrid SIGSTOPped (its whole process tree) while the broker takes the N messages,
          then SIGCONTed: drain = stored / (resume → last point).
workers   the same as preload with ``envgrid run --workers W``.
latency   a steady R msg/s for D seconds; each reading's ``ts`` is its publish time (wall
          clock, ms). InfluxDB is polled every 50 ms with count() per 100 ms bucket of ``ts``
          over the oldest bucket not yet complete; the k-th stored reading of a bucket is
          matched with the k-th published one (time order), so its latency = the poll that
          first saw k readings − its publish time. Resolution: the bucket width plus one poll
          (±0.15 s); the polls themselves cost InfluxDB some CPU, as any observer would.
queued    a persistent session is created, envgrid stopped (SIGTERM, clean exit), Q readings
          published while it is away (the broker queues them), envgrid started again:
          drain = Q / (process start → last point); also from its first point.
devices   a burst from D distinct device ids (default 100,000): peak RSS against the number of
          devices (registry caches must stay bounded).

For each: loss = N − readings stored (count() per measurement, the largest field count);
CPU µs/message = user+system CPU of envgrid's whole process tree (/proc, every 0.1 s, pids
that exited keep their last value) from just before publishing to the last point, ÷ stored;
peak RSS = the largest summed RSS of the tree. Ratios are against the ceiling of the same run.

    .venv/bin/python bench/run.py [-n 50000] [--runs 3] [--only burst,preload] [--smoke]
    .venv/bin/python bench/run.py --only preload --profile var/bench/profile  # py-spy
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workload  # noqa: E402
from envgrid.localstack import LocalInfluxDB, LocalMosquitto, free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PHASES = ("ceiling", "burst", "preload", "workers", "latency", "queued", "devices")
# One field every reading of a kind carries in this workload: count() of it = readings stored.
COUNT_FIELD = {
    "water_quality": "ph",
    "air_quality": "pm25_ug_m3",
    "pv_inverter": "ac_power_w",
    "ev_charger": "power_kw",
    "shore_power": "voltage_v",
}


def log(msg: str) -> None:
    """Progress on stderr (the figures go to stdout)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# ------------------------------------------------------------------------ /proc accounting


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime+stime ticks, rss bytes) of a pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = s[s.rfind(")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[21]) * PAGE


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))) is not None:
            children.setdefault(st[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class TreeMeter:
    """CPU ticks (per pid ever seen, so exited workers still count) and peak summed RSS."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.ticks: dict[int, int] = {}
        self.peak_rss = 0
        self.lock = threading.Lock()

    def sample(self) -> None:
        rss = 0
        for pid in _tree(self.root):
            st = _stat(pid)
            if st is None:
                continue
            with self.lock:
                self.ticks[pid] = max(self.ticks.get(pid, 0), st[1])
            rss += st[2]
        with self.lock:
            self.peak_rss = max(self.peak_rss, rss)

    def cpu_s(self) -> float:
        with self.lock:
            return sum(self.ticks.values()) / CLK_TCK

    def reset_peak(self) -> None:
        with self.lock:
            self.peak_rss = 0


# ------------------------------------------------------------------------------- InfluxDB


class Influx:
    """The few InfluxDB 1.x calls the bench needs (stdlib HTTP)."""

    def __init__(self, server: LocalInfluxDB, db: str) -> None:
        self.server = server
        self.db = db

    def processed(self) -> int:
        """Points InfluxDB's HTTP service handled (written, failed or dropped) since it started."""
        res = self.server.query("SHOW STATS FOR 'httpd'", epoch=None)
        total = 0
        for ser in res["results"][0].get("series", []):
            for row in ser.get("values", []):
                for col, v in zip(ser["columns"], row, strict=True):
                    if col in ("pointsWrittenOK", "pointsWrittenFail", "pointsWrittenDropped"):
                        total += int(v or 0)
        return total

    def stored(self) -> dict[str, int]:
        """Readings stored per measurement (count of the field every reading carries)."""
        q = "; ".join(f'SELECT count("{f}") FROM "{m}"' for m, f in COUNT_FIELD.items())
        res = self.server.query(q, self.db)
        out = {}
        for m, r in zip(COUNT_FIELD, res.get("results", []), strict=True):
            n = 0
            for ser in r.get("series", []) or []:
                for row in ser.get("values", []):
                    n = max(n, int(row[1] or 0))
            out[m] = n
        return out

    def buckets(self, lo_ms: int, hi_ms: int, width_ms: int) -> dict[int, int]:
        """Readings stored per ``width_ms`` bucket of their timestamp in [lo, hi)."""
        q = "; ".join(
            f'SELECT count("{f}") FROM "{m}" WHERE time >= {lo_ms}ms AND time < {hi_ms}ms '
            f"GROUP BY time({width_ms}ms)"
            for m, f in COUNT_FIELD.items()
        )
        res = self.server.query(q, self.db)
        out: dict[int, int] = {}
        for r in res.get("results", []):
            for ser in r.get("series", []) or []:
                for t, n in ser.get("values", []):
                    if n:
                        out[int(t) // width_ms] = out.get(int(t) // width_ms, 0) + int(n)
        return out


# ------------------------------------------------------------------------------ publisher


@dataclass
class PubSpec:
    """What the publisher child sends: workload, pacing and timestamps."""

    host: str
    port: int
    n: int
    devices: int
    seed: int = 42
    rate: float = 0.0  # messages per second; 0 = as fast as possible
    live_ts: bool = False  # ts = publish time (ms, per device strictly increasing)
    window: int = 20_000  # unacknowledged publishes at most (paho keys them by 16-bit id)
    # paho's in-flight limit, as in the shared harness: paho queues the rest itself (a larger
    # limit makes its per-PUBACK bookkeeping quadratic: 870 msg/s measured with 20,000).
    inflight: int = 20


def _publisher(
    spec: PubSpec, conn: Connection, stamps: Any, sent: Any
) -> None:  # pragma: no cover - runs in the child
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    w = workload.make(spec.n, spec.devices, spec.seed)
    base = workload.base_ms()
    acked = [0]
    done = threading.Event()
    lock = threading.Lock()

    def on_publish(c: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
        with lock:
            acked[0] += 1
            if acked[0] >= spec.n:
                done.set()

    connected = threading.Event()
    c = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", clean_session=True
    )
    c.max_inflight_messages_set(spec.inflight)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.on_connect = lambda *a: connected.set()
    c.connect(spec.host, spec.port, keepalive=120)
    c.loop_start()
    if not connected.wait(10):
        conn.send({"error": "publisher could not connect"})
        return
    conn.send({"ready": True})
    conn.recv()  # go
    pub = c.publish
    topics, payload = w.topics, w.payload
    last = [0] * spec.devices
    t0 = time.monotonic()
    wall0 = time.time()
    for i in range(spec.n):
        if (i & 15) == 0:
            if spec.rate:
                ahead = t0 + i / spec.rate - time.monotonic()
                if ahead > 0.0005:
                    time.sleep(ahead)
            while i - acked[0] >= spec.window:
                time.sleep(0.0005)
        if spec.live_ts:
            k = i % spec.devices
            ts = max(int(time.time() * 1000), last[k] + 1)
            last[k] = ts
            stamps[i] = ts
            sent.value = i + 1
        else:
            ts = base + i
        pub(topics[i], payload(i, ts), qos=1)
    t_sent = time.monotonic()
    ok = done.wait(600)
    t_acked = time.monotonic()
    c.disconnect()
    c.loop_stop()
    conn.send(
        {
            "t0": t0,
            "wall0": wall0,
            "t_sent": t_sent,
            "t_acked": t_acked,
            "acked": acked[0],
            "ok": ok,
        }
    )


class Publisher:
    """The publisher in a child process (its GIL and CPU apart from the bench's samplers)."""

    def __init__(self, spec: PubSpec) -> None:
        ctx = mp.get_context("spawn")
        self.spec = spec
        self.conn, child = ctx.Pipe()
        self.stamps = ctx.Array("q", spec.n if spec.live_ts else 1, lock=False)
        self.sent = ctx.Value("q", 0, lock=False)
        self.proc = ctx.Process(
            target=_publisher, args=(spec, child, self.stamps, self.sent), daemon=True
        )
        self.proc.start()
        first = self._recv(120)
        if "error" in first:
            raise RuntimeError(first["error"])

    def _recv(self, timeout: float) -> dict[str, Any]:
        if not self.conn.poll(timeout):
            raise RuntimeError("publisher child did not answer")
        msg: dict[str, Any] = self.conn.recv()
        return msg

    def go(self) -> None:
        self.conn.send("go")

    def result(self, timeout: float = 900) -> dict[str, Any]:
        res = self._recv(timeout)
        self.proc.join(10)
        if not res.get("ok"):
            raise RuntimeError(f"publisher: only {res.get('acked')} of {self.spec.n} PUBACKs")
        return res

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ------------------------------------------------------------------------------- envgrid


class Envgrid:
    """``envgrid run`` as a subprocess in its own process group, configured by environment."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: Path, http_port: int, log_file: Path
    ) -> None:
        self.argv, self.env, self.cwd, self.http_port = argv, env, cwd, http_port
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ready(self, timeout: float = 60) -> float:
        """Wait until /readyz answers 200 (connected and subscribed); seconds it took."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"envgrid exited during start-up:\n{self.tail()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=1) as r,
            ):
                if r.status == 200:
                    return time.monotonic() - self.started
            time.sleep(0.05)
        raise RuntimeError(f"envgrid not ready after {timeout} s:\n{self.tail()}")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM to the group (SIGCONT first: a stopped process sees it only then)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group
        return self.proc.returncode

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# --------------------------------------------------------------------------------- results


@dataclass
class Result:
    """One measurement."""

    phase: str
    run: int
    n: int
    publish_rate: float = 0.0
    stored: int | None = None
    lost: int | None = None
    throughput: float | None = None  # burst: stored / (first publish → last point)
    drain: float | None = None  # preload/workers/queued: stored / (resume → last point)
    cpu_us: float | None = None
    peak_rss_mb: float | None = None
    stop: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bench:
    """Shared state of one ``make bench`` invocation."""

    args: argparse.Namespace
    work: Path
    influxd: LocalInfluxDB
    results: list[Result] = field(default_factory=list)
    seq: int = 0

    def next_id(self) -> int:
        self.seq += 1
        return self.seq


@contextlib.contextmanager
def broker(b: Bench, tag: str) -> Iterator[LocalMosquitto]:
    """A fresh mosquitto for one measurement, like the shared harness's."""
    with LocalMosquitto(b.work / f"mosquitto-{tag}", persistence=False, max_queued_messages=0) as m:
        yield m


def new_db(b: Bench, tag: str) -> Influx:
    name = f"bench_{tag}"
    with contextlib.suppress(Exception):
        b.influxd.drop_database(name)
    b.influxd.create_database(name)
    return Influx(b.influxd, name)


def envgrid(
    b: Bench,
    m: LocalMosquitto,
    db: Influx,
    tag: str,
    extra_args: list[str] = (),  # type: ignore[assignment]
) -> Envgrid:
    run_dir = b.work / f"envgrid-{tag}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVGRID_")}
    env.update(
        {
            "ENVGRID_MQTT__URL": m.url,
            "ENVGRID_MQTT__CLIENT_ID": f"envgrid-bench-{tag}",
            "ENVGRID_INFLUX__URL": b.influxd.url,
            "ENVGRID_INFLUX__API": "v1",
            "ENVGRID_INFLUX__DATABASE": db.db,
            "ENVGRID_HTTP__PORT": str(port),
        }
    )
    for kv in b.args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    argv = [*b.args.envgrid, *extra_args]
    if "/" in argv[0]:
        argv[0] = os.path.abspath(argv[0])  # envgrid runs elsewhere; keep venv symlinks
    return Envgrid(argv, env, run_dir, port, b.work / f"envgrid-{tag}.log")


class Watch:
    """Samples InfluxDB's processed-points counter and envgrid's tree every 0.1 s."""

    def __init__(self, db: Influx, meter: TreeMeter | None) -> None:
        self.db, self.meter = db, meter
        self.base = db.processed()
        self.samples: list[tuple[float, int, float]] = []  # (t, points since base, cpu_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            with contextlib.suppress(Exception):
                if self.meter is not None:
                    self.meter.sample()
                cpu = self.meter.cpu_s() if self.meter is not None else 0.0
                self.samples.append((t, self.db.processed() - self.base, cpu))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def save(self, path: Path, t0: float) -> None:
        """The timeline (seconds from t0, points written, CPU s) as CSV, for diagnosis."""
        with path.open("w") as f:
            f.write("t_s,points,cpu_s\n")
            for t, v, cpu in self.samples:
                f.write(f"{t - t0:.2f},{v},{cpu:.2f}\n")

    def points(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def reached(self, n: int) -> tuple[float, float] | None:
        """(time, cpu_s) of the first sample with ``n`` points written, if any."""
        for t, v, cpu in self.samples:
            if v >= n:
                return t, cpu
        return None


def wait_stored(
    db: Influx, watch: Watch, n: int, alive: Callable[[], bool], timeout: float, idle: float = 20
) -> tuple[int, str]:
    """Poll until n readings are stored, nothing moved for ``idle`` s, or ``timeout``."""
    deadline = time.monotonic() + timeout
    last, last_move, last_count = -1, time.monotonic(), 0.0
    stored = 0
    while True:
        now = time.monotonic()
        pts = watch.points()
        if pts != last:
            last, last_move = pts, now
        if (pts >= n and now - last_count > 0.3) or now - last_count > 2:
            stored = sum(db.stored().values())
            last_count = time.monotonic()
            if stored >= n:
                return stored, "complete"
        if not alive():
            return sum(db.stored().values()), "envgrid-exited"
        if now - last_move > idle:
            return sum(db.stored().values()), "stalled"
        if now > deadline:
            return sum(db.stored().values()), "timeout"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------- phases


def phase_ceiling(b: Bench, run: int) -> Result:
    tag = f"ceiling{b.next_id()}"
    with broker(b, tag) as m:
        pub = Publisher(PubSpec(m.host, m.port, b.args.n, b.args.devices))
        try:
            pub.go()
            res = pub.result()
        finally:
            pub.close()
    rate = b.args.n / (res["t_acked"] - res["t0"])
    return Result("ceiling", run, b.args.n, publish_rate=rate, stop="no-sut")


def _measure(
    b: Bench,
    phase: str,
    run: int,
    n: int,
    *,
    devices: int,
    preload: bool,
    extra_args: list[str] = (),  # type: ignore[assignment]
    profile: bool = False,
) -> Result:
    tag = f"{phase}{b.next_id()}"
    with broker(b, tag) as m:
        db = new_db(b, tag)
        eg = envgrid(b, m, db, tag, list(extra_args))
        pub = Publisher(PubSpec(m.host, m.port, n, devices))
        eg.start()
        spy: subprocess.Popen[bytes] | None = None
        try:
            startup = eg.ready()
            time.sleep(b.args.settle if not extra_args else max(b.args.settle, 2.0))
            meter = TreeMeter(eg.pid)
            meter.sample()
            cpu0 = meter.cpu_s()
            meter.reset_peak()
            watch = Watch(db, meter)
            if preload:
                eg.signal(signal.SIGSTOP)
            try:
                pub.go()
                res = pub.result()
            finally:
                if preload:
                    t_resume = time.monotonic()
                    if profile:
                        spy = start_profile(b, eg.pid)
                    eg.signal(signal.SIGCONT)
            stored, stop = wait_stored(
                db, watch, n, lambda: eg.proc is not None and eg.proc.poll() is None, 600
            )
            time.sleep(0.25)
            watch.stop()
            end = watch.reached(min(stored, n)) or (time.monotonic(), meter.cpu_s())
            watch.save(b.work / f"progress-{tag}.csv", t_resume if preload else res["t0"])
        finally:
            pub.close()
            if spy is not None:
                stop_profile(b, spy)
            code = eg.stop()
        per = db.stored()
    t0, t_acked = res["t0"], res["t_acked"]
    r = Result(
        phase,
        run,
        n,
        publish_rate=n / (t_acked - t0),
        stored=stored,
        lost=n - stored,
        cpu_us=(end[1] - cpu0) / max(stored, 1) * 1e6,
        peak_rss_mb=meter.peak_rss / 2**20,
        stop=stop,
        extra={"startup_s": round(startup, 2), "exit_code": code, "per_measurement": per},
    )
    if preload:
        r.drain = stored / max(end[0] - t_resume, 1e-3)
    else:
        r.throughput = stored / max(end[0] - t0, 1e-3)
    if code not in (0, None):
        r.stop += f" (exit {code})"
    if stop != "complete":
        log(f"{phase} run {run}: {stop}; envgrid log:\n{eg.tail()}")
    return r


def phase_burst(b: Bench, run: int) -> Result:
    return _measure(b, "burst", run, b.args.n, devices=b.args.devices, preload=False)


def phase_preload(b: Bench, run: int) -> Result:
    return _measure(
        b,
        "preload",
        run,
        b.args.n,
        devices=b.args.devices,
        preload=True,
        profile=bool(b.args.profile) and run == 1,
    )


def phase_workers(b: Bench, run: int) -> Result:
    r = _measure(
        b,
        "workers",
        run,
        b.args.n,
        devices=b.args.devices,
        preload=True,
        extra_args=["--workers", str(b.args.workers)],
    )
    r.extra["workers"] = b.args.workers
    return r


def phase_devices(b: Bench, run: int) -> Result:
    n = max(b.args.n, 2 * b.args.many_devices)
    r = _measure(b, "devices", run, n, devices=b.args.many_devices, preload=False)
    r.extra["devices"] = b.args.many_devices
    return r


def phase_queued(b: Bench, run: int) -> Result:
    n = b.args.queued
    tag = f"queued{b.next_id()}"
    with broker(b, tag) as m:
        db = new_db(b, tag)
        eg = envgrid(b, m, db, tag)
        pub = Publisher(PubSpec(m.host, m.port, n, b.args.devices))
        try:
            eg.start()
            eg.ready()  # the persistent session and its subscriptions now exist
            first_exit = eg.stop()
            pub.go()
            res = pub.result()
            watch = Watch(db, None)
            eg.start()
            t_start = eg.started
            meter = TreeMeter(eg.pid)
            watch.meter = meter
            stored, stop = wait_stored(
                db, watch, n, lambda: eg.proc is not None and eg.proc.poll() is None, 900
            )
            time.sleep(0.25)
            watch.stop()
            end = watch.reached(min(stored, n)) or (time.monotonic(), meter.cpu_s())
            first = watch.reached(1)
        finally:
            pub.close()
            code = eg.stop()
    r = Result(
        "queued",
        run,
        n,
        publish_rate=n / (res["t_acked"] - res["t0"]),
        stored=stored,
        lost=n - stored,
        drain=stored / max(end[0] - t_start, 1e-3),
        cpu_us=end[1] / max(stored, 1) * 1e6,
        peak_rss_mb=meter.peak_rss / 2**20,
        stop=stop,
        extra={
            "first_exit_code": first_exit,
            "exit_code": code,
            "first_point_s": round(first[0] - t_start, 2) if first else None,
            "drain_after_first_point": (
                round(stored / (end[0] - first[0])) if first and end[0] - first[0] > 0.2 else None
            ),
        },
    )
    if stop != "complete":
        log(f"queued: {stop}; envgrid log:\n{eg.tail()}")
    return r


def phase_latency(b: Bench, run: int) -> Result:
    rate, secs = b.args.rate, b.args.latency_seconds
    n = int(rate * secs)
    width, poll = 100, 0.05
    tag = f"latency{b.next_id()}"
    with broker(b, tag) as m:
        db = new_db(b, tag)
        eg = envgrid(b, m, db, tag)
        pub = Publisher(PubSpec(m.host, m.port, n, b.args.devices, rate=rate, live_ts=True))
        eg.start()
        polls: list[tuple[float, dict[int, int]]] = []
        try:
            eg.ready()
            time.sleep(b.args.settle)
            meter = TreeMeter(eg.pid)
            meter.sample()
            cpu0 = meter.cpu_s()
            watch = Watch(db, meter)
            pub.go()
            stamps, sent = pub.stamps, pub.sent
            complete_upto = 0  # index of the first reading whose bucket is not yet complete
            deadline = time.monotonic() + secs + 60
            while time.monotonic() < deadline:
                k = sent.value
                if k == 0 or complete_upto >= k:
                    time.sleep(poll)
                    continue
                lo = stamps[complete_upto] // width * width
                hi = stamps[k - 1] + 1
                t_q = time.time()
                counts = db.buckets(lo, hi + width, width)
                polls.append((time.time(), counts))
                # Buckets whose every published reading is stored need no more polling.
                want: dict[int, int] = {}
                for i in range(complete_upto, k):
                    bk = stamps[i] // width
                    want[bk] = want.get(bk, 0) + 1
                j = complete_upto
                while j < k and counts.get(stamps[j] // width, 0) >= want[stamps[j] // width]:
                    if k < n and stamps[j] // width == stamps[k - 1] // width:
                        break  # the newest bucket may still grow
                    j += 1
                complete_upto = j
                if complete_upto >= n:
                    break
                time.sleep(max(0.0, poll - (time.time() - t_q)))
            res = pub.result()
            watch.stop()
            end = watch.reached(n) or (time.monotonic(), meter.cpu_s())
            per = db.stored()
        finally:
            pub.close()
            code = eg.stop()
    stored = sum(per.values())
    ts = sorted(stamps[:n])
    by_bucket: dict[int, list[int]] = {}
    for t in ts:
        by_bucket.setdefault(t // width, []).append(t)
    lat: list[float] = []
    for bk, members in by_bucket.items():
        for rank, t in enumerate(members, 1):
            seen = next((tp for tp, c in polls if c.get(bk, 0) >= rank), None)
            if seen is not None:
                lat.append(seen - t / 1000)
    lat.sort()

    def pct(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

    return Result(
        "latency",
        run,
        n,
        publish_rate=n / (res["t_acked"] - res["t0"]),
        stored=stored,
        lost=n - stored,
        cpu_us=(end[1] - cpu0) / max(stored, 1) * 1e6,
        peak_rss_mb=meter.peak_rss / 2**20,
        stop="complete" if stored >= n else "incomplete",
        extra={
            "rate": rate,
            "seconds": secs,
            "p50_s": pct(0.50),
            "p99_s": pct(0.99),
            "max_s": lat[-1] if lat else None,
            "matched": len(lat),
            "polls": len(polls),
            "exit_code": code,
        },
    )


# -------------------------------------------------------------------------------- profile


def start_profile(b: Bench, pid: int) -> subprocess.Popen[bytes]:
    """py-spy on envgrid (and its children) while it drains; raw stacks for summarise()."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(b.args.profile)
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "--subprocesses", "-r", "500", "-f", "raw",
         "-o", str(out.with_suffix(".txt")), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_profile(b: Bench, spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        spy.wait(30)
    path = Path(b.args.profile).with_suffix(".txt")
    if path.exists():
        print(summarise(path))


def summarise(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) stacks."""
    self_n: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        # "func (/path/to/file.py:123)" -> "func (file.py)": one row per function.
        frames = [re.sub(r" \((?:.*/)?([^/:]+)(?::\d+)?\)$", r" (\1)", f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        total += c
        if frames:
            self_n[frames[-1]] = self_n.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    lines = [f"py-spy profile of the drain ({total} busy samples): self %, inclusive %"]
    for f, c in sorted(self_n.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * c / total:5.1f}  {100 * incl[f] / total:5.1f}  {f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- report

RUNNERS: dict[str, Callable[[Bench, int], Result]] = {
    "ceiling": phase_ceiling,
    "burst": phase_burst,
    "preload": phase_preload,
    "workers": phase_workers,
    "latency": phase_latency,
    "queued": phase_queued,
    "devices": phase_devices,
}
REPEATED = ("ceiling", "burst", "preload", "workers")


def _med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(v: float | None, spec: str = ",.0f") -> str:
    return "–" if v is None else format(v, spec)


def report(b: Bench) -> str:
    """The figures as one Markdown table plus a summary line per target."""
    rs = b.results
    ceiling = _med([r.publish_rate for r in rs if r.phase == "ceiling"])
    rows = [
        "| phase | runs | N | publish msg/s | throughput pts/s | drain pts/s | ÷ ceiling "
        "| lost (worst) | CPU µs/msg | peak RSS MB | p50 / p99 s | stop |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for phase in PHASES:
        group = [r for r in rs if r.phase == phase]
        if not group:
            continue
        thr = _med([r.throughput for r in group])
        drn = _med([r.drain for r in group])
        rate = thr if thr is not None else drn
        lost = [r.lost for r in group if r.lost is not None]
        lat = ""
        if phase == "latency":
            e = group[0].extra
            lat = f"{_fmt(e['p50_s'], '.2f')} / {_fmt(e['p99_s'], '.2f')} at {e['rate']:,.0f}/s"
        name = {
            "workers": f"workers ({b.args.workers})",
            "devices": f"devices ({b.args.many_devices:,})",
            "queued": "queued (stopped envgrid)",
        }.get(phase, phase)
        pub = _fmt(_med([r.publish_rate for r in group]))
        rows.append(
            f"| {name} | {len(group)} | {group[0].n:,} | {pub} "
            f"| {_fmt(thr)} | {_fmt(drn)} "
            f"| {_fmt(rate / ceiling if rate and ceiling and phase != 'ceiling' else None, '.2f')} "
            f"| {max(lost) if lost else '–'} "
            f"| {_fmt(_med([r.cpu_us for r in group]), '.1f')} "
            f"| {_fmt(max((r.peak_rss_mb or 0) for r in group) or None, '.0f')} "
            f"| {lat or '–'} | {', '.join(sorted({r.stop for r in group}))} |"
        )
    lines = [
        f"envgrid bench, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}; "
        f"N = {b.args.n:,}, {b.args.devices:,} devices, {b.args.runs} run(s); medians; "
        "ratios against the publisher's ceiling measured in this run.",
        "",
        *rows,
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[2:]),
    )
    p.add_argument("-n", type=int, default=50_000, help="readings per measurement (50,000)")
    p.add_argument("--runs", type=int, default=3, help="runs of ceiling/burst/preload/workers")
    p.add_argument("--devices", type=int, default=1000, help="devices in the fleet (1,000)")
    p.add_argument("--rate", type=float, default=5000, help="latency phase: msg/s (5,000)")
    p.add_argument("--latency-seconds", type=float, default=20, help="latency phase length")
    p.add_argument("--queued", type=int, default=200_000, help="readings queued while stopped")
    p.add_argument("--workers", type=int, default=2, help="workers phase: --workers W")
    p.add_argument("--many-devices", type=int, default=100_000, help="devices phase fleet")
    p.add_argument("--only", default=",".join(PHASES), help=f"phases, comma-separated: {PHASES}")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after ready (1)")
    p.add_argument("--smoke", action="store_true", help="tiny N, one run: a few seconds each")
    p.add_argument("--json", type=Path, help="also write every result as JSON here")
    p.add_argument("--workdir", type=Path, help="keep servers' data and logs here")
    p.add_argument("--profile", help="py-spy the first preload drain; raw stacks to PATH.txt")
    p.add_argument(
        "--envgrid",
        type=shlex.split,
        default=[str(Path(sys.executable).parent / "envgrid"), "run"],
        help="the command that runs envgrid, e.g. '.venv/bin/envgrid run --role ingest' "
        "(default: this venv's envgrid run)",
    )
    p.add_argument(
        "--env", action="append", default=[], help="extra KEY=VALUE for envgrid (repeatable)"
    )
    a = p.parse_args(argv)
    if a.smoke:
        a.n, a.runs, a.queued, a.many_devices = 2000, 1, 4000, 3000
        a.rate, a.latency_seconds, a.settle = 1000.0, 3.0, 0.3
    if a.profile and not (
        shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists()
    ):
        p.error("--profile needs py-spy: .venv/bin/pip install py-spy (in the test extras)")
    unknown = set(a.only.split(",")) - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s) {', '.join(sorted(unknown))}: use {', '.join(PHASES)}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = [ph for ph in PHASES if ph in args.only.split(",")]
    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = args.workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="envgrid-bench-")))
        influxd = stack.enter_context(LocalInfluxDB(work / "influxdb"))
        b = Bench(args, work, influxd)
        for phase in only:
            runs = args.runs if phase in REPEATED else 1
            for run in range(1, runs + 1):
                log(f"{phase} run {run}/{runs} ...")
                r = RUNNERS[phase](b, run)
                b.results.append(r)
                shown = {k: v for k, v in asdict(r).items() if v not in (None, {}, "")}
                shown.pop("extra", None)
                log(f"{phase} run {run}: {shown} {r.extra if phase != 'ceiling' else ''}")
        table = report(b)
        print(table)
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in b.results], indent=1))
    bad = [r for r in b.results if r.lost]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
