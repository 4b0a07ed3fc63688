"""A real PostgreSQL for the cluster tests (initdb in a temp folder, like InfluxDB's fixture).

Import the fixtures into a test module: ``from tests.cluster_support import pg_url, postgres``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from envgrid.localstack import LocalPostgres


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A PostgreSQL server shared by the session; use ``pg_url`` for a database."""
    server = LocalPostgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(postgres: LocalPostgres) -> Iterator[str]:
    """The URL of a new, empty database on the session PostgreSQL; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres.url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ----------------------------------------------------------------- hosts as network namespaces


class NetHost:
    """A Linux network namespace joined to this one by a veth pair: one "host" of a cluster.

    The host is ``10.221.<n>.2``; this side of its cable is ``10.221.<n>.1``. Servers started by
    the fixtures listen on 127.0.0.1 only, so :func:`forward` relays a port of ``10.221.<n>.1``
    to them. :meth:`cut` takes the cable down (the host's sockets go silent, nothing is closed);
    :meth:`mend` puts it back. Needs root (CAP_NET_ADMIN) and ``ip``.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.name = f"envgrid-t{os.getpid() % 10000}-{n}"
        self.link = f"eg{os.getpid() % 10000}h{n}"
        self.outside = f"10.221.{n}.1"
        self.inside = f"10.221.{n}.2"

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside the host."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> None:
        inner = self.link + "i"
        for cmd in (
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.link, "type", "veth", "peer", "name", inner],
            ["ip", "link", "set", inner, "netns", self.name],
            ["ip", "addr", "add", f"{self.outside}/24", "dev", self.link],
            ["ip", "link", "set", self.link, "up"],
            [*self.prefix, "ip", "addr", "add", f"{self.inside}/24", "dev", inner],
            [*self.prefix, "ip", "link", "set", inner, "up"],
            [*self.prefix, "ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True, timeout=10)

    def cut(self) -> None:
        subprocess.run(["ip", "link", "set", self.link, "down"], check=True, timeout=10)

    def mend(self) -> None:
        subprocess.run(["ip", "link", "set", self.link, "up"], check=True, timeout=10)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


def netns_unavailable() -> str | None:
    """Why hosts cannot be network namespaces here (None: they can)."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = NetHost(250)
    try:
        probe.create()
    except (subprocess.CalledProcessError, OSError) as e:
        err = getattr(e, "stderr", b"") or b""
        return f"the kernel refused a network namespace: {err.decode(errors='replace').strip()}"
    finally:
        probe.remove()
    return None


async def forward(host: str, port: int, target: int) -> asyncio.Server:
    """Relay ``host:port`` to ``127.0.0.1:target`` (a byte pipe per connection)."""

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            w.close()
            return
        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    return await asyncio.start_server(handle, host, port)


async def wire(
    net: NetHost, env: dict[str, str], pg_url: str, broker_port: int, influx_port: int
) -> list[asyncio.Server]:
    """Point a host's settings (``env``: ``section__key`` names) at the broker, InfluxDB and
    PostgreSQL through relays on its cable's far end; the relays (close them afterwards)."""
    pg_port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
    relays = [await forward(net.outside, 0, port) for port in (broker_port, influx_port, pg_port)]
    mqtt, influx, pg = (r.sockets[0].getsockname()[1] for r in relays)
    env["mqtt__url"] = f"mqtt://{net.outside}:{mqtt}"
    env["influx__url"] = f"http://{net.outside}:{influx}"
    env["cluster__database"] = pg_url.replace(f"127.0.0.1:{pg_port}", f"{net.outside}:{pg}")
    return relays


def processes(group: int, marker: str) -> list[int]:
    """Live (not zombie) processes of process group ``group`` whose command line holds
    ``marker``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state != "Z" and marker in cmd:
            found.append(int(d.name))
    return found
