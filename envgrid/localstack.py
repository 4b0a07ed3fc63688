"""Real local servers for `envgrid demo` and the test fixtures.

Each server is the real Debian-packaged binary (``mosquitto``, ``influxdb``,
``victoria-metrics``) bound to 127.0.0.1 on a free port, with its config, data and
log inside one data directory::

    with LocalMosquitto(tmp / "mqtt") as broker, LocalInfluxDB(tmp / "influx") as db:
        db.create_database("envgrid")
        ...  # broker.url == "mqtt://127.0.0.1:PORT", db.url == "http://127.0.0.1:PORT"

Servers start in their own session (a Ctrl-C in the demo's terminal reaches the demo,
which then stops them in order), stop with SIGTERM (SIGKILL after a timeout) on
``stop()`` and ``__exit__``, and an ``atexit`` hook stops whatever is still running
when the interpreter exits, so an aborted test run leaves no orphan processes.

Besides the standard library it uses only envgrid's one InfluxQL quoting
(``ingest.influxql.quote_ident``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from envgrid.ports import LOCALHOST, free_port
from ingest.influxql import quote_ident

__all__ = [
    "InfluxQueryError",
    "LocalInfluxDB",
    "LocalMosquitto",
    "LocalPostgres",
    "LocalServer",
    "LocalServerError",
    "LocalVictoriaMetrics",
    "free_port",
    "mosquitto_conf",
]


# Where Debian puts the binaries; /usr/sbin is often not on a normal user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")


class LocalServerError(RuntimeError):
    """A local server could not be found, started or talked to."""


class InfluxQueryError(RuntimeError):
    """InfluxDB answered a query or write with an error."""


# --------------------------------------------------------------------------- helpers

# No proxies for loopback traffic, whatever http_proxy/HTTP_PROXY say.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body) for every status, raises OSError on I/O."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    headers: dict[str, str] = {}
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read()


def _tcp_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on 127.0.0.1:``port``.

    Stops a foreign listener on the port from passing for our server during start-up.
    Reads /proc (Linux); elsewhere it answers True and the readiness probe decides.
    """
    proc_tcp = Path("/proc/net/tcp")
    if not proc_tcp.exists():
        return True
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in proc_tcp.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[1] in wanted and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return True  # cannot look (another user): let the readiness probe decide
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                return True
    return False


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps PostgreSQL's server binaries off PATH, per major version: newest first.
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    folders: list[Path] = [Path(f) for f in _EXTRA_BIN_DIRS] + versions
    for folder in folders:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _tail(path: Path, lines: int, since: int = 0) -> str:
    """The last ``lines`` lines of a file, looking only at bytes from offset ``since``."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(since, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


# ------------------------------------------------------------------------ base class

_running: set[LocalServer] = set()


def _stop_all_at_exit() -> None:
    """Last resort for servers nobody stopped: SIGTERM all, then SIGKILL stragglers."""
    servers = [s for s in list(_running) if s.is_running()]
    for server in servers:
        server._signal(signal.SIGTERM)
        server._signal(signal.SIGCONT)  # a paused server must wake up to exit
    deadline = time.monotonic() + 5.0
    for server in servers:
        try:
            server._wait_exit(max(0.1, deadline - time.monotonic()))
        except LocalServerError:
            server.kill()
    _running.clear()


atexit.register(_stop_all_at_exit)


class LocalServer:
    """A server process on 127.0.0.1 with its config, data and log in ``data_dir``.

    Subclasses set the class attributes and implement ``_write_config``, ``_command``
    and ``_ready``. ``start()`` returns once the server answers (or raises
    LocalServerError with the tail of its log); ``stop()`` is SIGTERM and a wait.
    """

    name: ClassVar[str]  # short name, also the log file name
    binary_name: ClassVar[str]
    debian_package: ClassVar[str]
    start_timeout: ClassVar[float] = 30.0
    stop_timeout: ClassVar[float] = 15.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        *,
        binary: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._port_given = port is not None
        self.port = port if port is not None else free_port()
        self.binary = binary
        self.log_file = self.data_dir / f"{self.name}.log"
        self.startup_seconds: float | None = None  # how long the last start() took
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- what subclasses provide

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _write_config(self) -> None:
        """Write config files into data_dir (called before every start)."""

    def _command(self, binary: str) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _pick_new_ports(self) -> None:
        """Choose fresh ports after a lost race for an automatically chosen port."""
        self.port = free_port()

    # -- lifecycle

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the process exists (also while paused)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float | None = None) -> Self:
        """Start the server and wait until it answers. No-op if it already runs."""
        if self.is_running():
            return self
        binary = _find_binary(self.binary or self.binary_name)
        if binary is None:
            raise LocalServerError(
                f"{self.name}: binary {self.binary or self.binary_name!r} not found; "
                f"install it with: apt-get install {self.debian_package}"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A port chosen by free_port() can be taken by someone else before the server
        # binds it; then try fresh ports. An explicit port (or a restart) never moves.
        attempts = 1 if (self._port_given or self.startup_seconds is not None) else 3
        for attempt in range(attempts):
            try:
                self._start_once(binary, timeout if timeout is not None else self.start_timeout)
                return self
            except LocalServerError as exc:
                if attempt + 1 >= attempts or "address already in use" not in str(exc).lower():
                    raise
                self._pick_new_ports()
        raise AssertionError("unreachable")

    def _start_once(self, binary: str, timeout: float) -> None:
        self._write_config()
        command = self._command(binary)
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        began = time.monotonic()
        with self.log_file.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    command,
                    cwd=self.data_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._environment(),
                    start_new_session=True,  # Ctrl-C in the terminal is the demo's to handle
                )
            except OSError as exc:
                raise LocalServerError(
                    f"{self.name}: cannot run {binary}: {exc}; "
                    f"install it with: apt-get install {self.debian_package}"
                ) from exc
        _running.add(self)
        self._paused = False
        deadline = began + timeout
        pause = 0.01
        while True:
            code = self._proc.poll()
            if code is not None:
                _running.discard(self)
                raise self._start_error(
                    f"exited with code {code} during start-up", command, log_offset
                )
            # The port must be held by our process, not by whoever else might listen.
            if _listens(self._proc.pid, self.port) and self._ready():
                self.startup_seconds = time.monotonic() - began
                return
            if time.monotonic() > deadline:
                self.kill()
                raise self._start_error(f"not ready after {timeout:.0f} s", command, log_offset)
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)

    def _start_error(self, what: str, command: list[str], log_offset: int) -> LocalServerError:
        tail = self.log_tail(40, since=log_offset) or "(log is empty)"
        return LocalServerError(
            f"{self.name} on port {self.port} {what}\n"
            f"command: {' '.join(command)}\n"
            f"log {self.log_file} (last lines):\n{tail}"
        )

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not exit in time."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)  # a paused process only sees SIGTERM once resumed
            try:
                self._wait_exit(timeout if timeout is not None else self.stop_timeout)
            except LocalServerError:
                self.kill()
        self._forget()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing saved."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGKILL)
            self._wait_exit(10.0)
        self._forget()

    def restart(self, timeout: float | None = None) -> Self:
        """stop() then start() on the same port and data dir."""
        self.stop()
        return self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP: the process stays alive but answers nothing (a hung server)."""
        if self.is_running():
            self._signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.is_running():
            self._signal(signal.SIGCONT)
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused and self.is_running()

    def log_tail(self, lines: int = 40, *, since: int = 0) -> str:
        """The last ``lines`` lines of the server log (from byte offset ``since``)."""
        return _tail(self.log_file, lines, since)

    def _signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def _wait_exit(self, timeout: float) -> None:
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise LocalServerError(f"{self.name} did not exit within {timeout} s") from exc

    def _forget(self) -> None:
        self._paused = False
        _running.discard(self)

    # -- context manager

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {self.url} {state} data_dir={str(self.data_dir)!r}>"


# ------------------------------------------------------------------------- mosquitto


def mosquitto_conf(
    *,
    port: int = 1883,
    bind_address: str | None = LOCALHOST,
    persistence_location: str | None = "/mosquitto/data/",
    persistence: bool = True,
    max_queued_messages: int = 0,
    max_inflight_messages: int = 20,
    password_file: str | None = None,
    log_file: str | None = None,
    user: str | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The envgrid mosquitto.conf; LocalMosquitto, the demo and docker-compose share it.

    ``log_file=None`` logs to stdout (containers); ``bind_address=None`` listens on all
    interfaces; ``user`` is mosquitto's privilege drop target when started as root; ``extra``
    lines are appended as they are (e.g. ``max_packet_size 600``, ``acl_file …``).
    """
    lines = [
        "# envgrid mosquitto configuration (generated by envgrid.localstack.mosquitto_conf)",
        f"listener {port} {bind_address}" if bind_address else f"listener {port}",
    ]
    if password_file:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines.append("allow_anonymous true")
    if persistence and persistence_location:
        location = persistence_location.rstrip("/") or "/"  # 2.x adds the "/" itself
        lines += [
            # Sessions, subscriptions and queued QoS 1/2 messages survive a restart.
            # mosquitto writes the whole file on a clean exit (SIGTERM) and on SIGUSR1;
            # in between, autosave_on_changes false makes autosave_interval a timer in
            # whole seconds, so a crash (SIGKILL) loses up to the last ~2 s. Counting
            # changes instead would rewrite the whole file every N messages under
            # load and never save a quiet broker.
            "persistence true",
            f"persistence_location {location}",
            "persistence_file mosquitto.db",
            "autosave_interval 1",
            "autosave_on_changes false",
        ]
    else:
        lines.append("persistence false")
    lines += [
        # 0 = unlimited. mosquitto's default of 1000 silently drops QoS 1 messages for a
        # persistent session that falls further behind (an ingest restart or a database
        # outage), which breaks "never silently dropped". Memory is the bound instead.
        f"max_queued_messages {max_queued_messages}",
        # Outgoing QoS 1/2 messages in flight per client; an MQTT v5 client's own
        # Receive Maximum can lower it (mosquitto's default is 20).
        f"max_inflight_messages {max_inflight_messages}",
        # Acks and PUBACKs are small packets: with Nagle on, a publisher that waits for its
        # PUBACK (the HJ 212 gateway's reply) waited seconds under load (docs/hj212.md).
        "set_tcp_nodelay true",
    ]
    lines.append(f"log_dest file {log_file}" if log_file else "log_dest stdout")
    lines += [
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]
    if user:
        lines.append(f"user {user}")
    lines += extra
    return "\n".join(lines) + "\n"


class LocalMosquitto(LocalServer):
    """A mosquitto broker on ``mqtt://127.0.0.1:PORT`` with persistence in data_dir."""

    name = "mosquitto"
    binary_name = "mosquitto"
    debian_package = "mosquitto"
    start_timeout = 15.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        *,
        persistence: bool = True,
        max_queued_messages: int = 0,
        max_inflight_messages: int = 20,
        password_file: str | os.PathLike[str] | None = None,
        binary: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        super().__init__(data_dir, port, binary=binary)
        self.extra = tuple(extra)
        if any(ch.isspace() for ch in str(self.data_dir)):
            # mosquitto.conf values end at the first blank.
            raise LocalServerError(f"mosquitto data dir must not contain blanks: {self.data_dir}")
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        self.password_file = Path(password_file).resolve() if password_file else None
        self.conf_file = self.data_dir / "mosquitto.conf"

    @property
    def url(self) -> str:
        return f"mqtt://{LOCALHOST}:{self.port}"

    @property
    def host(self) -> str:
        return LOCALHOST

    @property
    def persistence_file(self) -> Path:
        return self.data_dir / "mosquitto.db"

    def conf_text(self) -> str:
        """This broker's mosquitto.conf (see mosquitto_conf() for other targets)."""
        return mosquitto_conf(
            port=self.port,
            bind_address=LOCALHOST,
            persistence_location=str(self.data_dir),
            persistence=self.persistence,
            max_queued_messages=self.max_queued_messages,
            max_inflight_messages=self.max_inflight_messages,
            password_file=str(self.password_file) if self.password_file else None,
            log_file=str(self.log_file),
            # As root mosquitto drops to user "mosquitto", who cannot write data_dir.
            user="root" if os.geteuid() == 0 else None,
            extra=self.extra,
        )

    def save(self, timeout: float = 5.0) -> None:
        """Write the persistence file now (SIGUSR1) and wait until it is replaced.

        For tests that kill() the broker and must not depend on the autosave timer.
        """
        if not self.persistence:
            raise LocalServerError("mosquitto runs without persistence: nothing to save")
        before = self._persistence_stamp()
        self._signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while self._persistence_stamp() == before:
            if time.monotonic() > deadline or not self.is_running():
                raise LocalServerError(f"mosquitto did not save {self.persistence_file}")
            time.sleep(0.01)

    def _persistence_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.persistence_file.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _write_config(self) -> None:
        self.conf_file.write_text(self.conf_text())

    def _command(self, binary: str) -> list[str]:
        return [binary, "-c", str(self.conf_file)]

    def _ready(self) -> bool:
        return _tcp_accepts(self.port)


# -------------------------------------------------------------------------- influxdb


class LocalInfluxDB(LocalServer):
    """An InfluxDB 1.x server (``influxd``) on ``http://127.0.0.1:PORT``."""

    name = "influxdb"
    binary_name = "influxd"
    debian_package = "influxdb"
    start_timeout = 60.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        *,
        binary: str | None = None,
    ) -> None:
        super().__init__(data_dir, port, binary=binary)
        self.rpc_port = free_port()  # backup/restore RPC service: must not be 8088
        self.conf_file = self.data_dir / "influxdb.conf"

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def conf_text(self) -> str:
        def q(path: Path | str) -> str:
            return json.dumps(str(path))  # a TOML basic string

        return "\n".join(
            [
                "# envgrid local InfluxDB 1.x configuration (generated by envgrid.localstack)",
                "reporting-disabled = true",
                "reporting-enabled = false  # Debian's influxd renamed the key",
                f"bind-address = {q(f'{LOCALHOST}:{self.rpc_port}')}",
                "",
                "[meta]",
                f"  dir = {q(self.data_dir / 'meta')}",
                "  logging-enabled = false",
                "",
                "[data]",
                f"  dir = {q(self.data_dir / 'data')}",
                f"  wal-dir = {q(self.data_dir / 'wal')}",
                '  wal-fsync-delay = "0s"',
                "  query-log-enabled = false",
                "",
                "[http]",
                "  enabled = true",
                f"  bind-address = {q(f'{LOCALHOST}:{self.port}')}",
                "  auth-enabled = false",
                "  log-enabled = false",
                "  pprof-enabled = false",
                "",
                "[monitor]",
                "  store-enabled = false",
                "",
                "[subscriber]",
                "  enabled = false",
                "",
                "[continuous_queries]",
                "  enabled = false",
                "",
                "[logging]",
                '  level = "info"',
                "  suppress-logo = true",
                "",
            ]
        )

    def _write_config(self) -> None:
        self.conf_file.write_text(self.conf_text())

    def _command(self, binary: str) -> list[str]:
        return [binary, "run", "-config", str(self.conf_file)]

    def _environment(self) -> dict[str, str]:
        # INFLUXDB_* variables override the config file: keep the caller's out.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _pick_new_ports(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()

    def _ready(self) -> bool:
        try:
            status, _ = _http("GET", f"{self.url}/ping", timeout=1.0)
        except OSError:
            return False
        return status == 204

    # -- API

    def query(self, q: str, db: str | None = None, epoch: str | None = "ms") -> dict[str, Any]:
        """Run InfluxQL (POST /query); raise InfluxQueryError on any error in the answer."""
        form = {"q": q}
        if db:
            form["db"] = db
        if epoch:
            form["epoch"] = epoch
        status, body = _http("POST", f"{self.url}/query", form=form, timeout=30.0)
        try:
            answer: dict[str, Any] = json.loads(body) if body else {}
        except ValueError as exc:
            raise InfluxQueryError(f"HTTP {status} for {q!r}: {body[:500]!r}") from exc
        if "error" in answer:
            raise InfluxQueryError(f"{answer['error']} (query {q!r})")
        for result in answer.get("results", []):
            if "error" in result:
                raise InfluxQueryError(f"{result['error']} (query {q!r})")
        if status >= 300:
            raise InfluxQueryError(f"HTTP {status} for {q!r}: {body[:500]!r}")
        return answer

    def create_database(self, name: str) -> None:
        self.query(f"CREATE DATABASE {quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.query(f"DROP DATABASE {quote_ident(name)}")

    def databases(self) -> list[str]:
        return [row["name"] for row in self.points("SHOW DATABASES", db="")]

    def write(self, lines: bytes | str, db: str, precision: str = "ms") -> None:
        """Write line protocol (POST /write); raise InfluxQueryError unless 204."""
        data = lines.encode() if isinstance(lines, str) else lines
        status, body = _http(
            "POST",
            f"{self.url}/write",
            params={"db": db, "precision": precision},
            body=data,
            timeout=30.0,
        )
        if status != 204:
            raise InfluxQueryError(f"write to {db!r} failed: HTTP {status}: {body[:500]!r}")

    def points(self, q: str, db: str) -> list[dict[str, Any]]:
        """Rows of every series of every result as dicts, each with its series' tags."""
        rows: list[dict[str, Any]] = []
        for result in self.query(q, db or None).get("results", []):
            for series in result.get("series", []):
                tags: dict[str, Any] = series.get("tags") or {}
                columns: list[str] = series["columns"]
                for values in series.get("values", []):
                    row = dict(tags)
                    row.update(zip(columns, values, strict=True))
                    rows.append(row)
        return rows

    def count(self, measurement: str, db: str, field: str = "*") -> int:
        """Points in a measurement: COUNT(field), the largest over fields for ``*``."""
        selector = "*" if field == "*" else quote_ident(field)
        rows = self.points(f"SELECT COUNT({selector}) FROM {quote_ident(measurement)}", db)
        counts = [
            int(value)
            for row in rows
            for key, value in row.items()
            if key.startswith("count") and isinstance(value, int | float)
        ]
        return max(counts, default=0)


# ------------------------------------------------------------------- victoria-metrics


class LocalVictoriaMetrics(LocalServer):
    """A single-node VictoriaMetrics on ``http://127.0.0.1:PORT``.

    It accepts InfluxDB line protocol on ``/write`` and ``/api/v2/write`` and stores
    each field as the series ``<measurement>_<field>`` with the tags as labels.
    """

    name = "victoria-metrics"
    binary_name = "victoria-metrics"
    debian_package = "victoria-metrics"
    start_timeout = 30.0

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    def _command(self, binary: str) -> list[str]:
        return [
            binary,
            f"-httpListenAddr={LOCALHOST}:{self.port}",
            f"-storageDataPath={self.storage_dir}",
            "-retentionPeriod=100y",
            # Points are visible to queries at once, not 30 s later.
            "-search.latencyOffset=0s",
            # No rollup result cache: a test reading back what it just wrote (or
            # backfilled) must not see a cached answer.
            "-search.disableCache",
        ]

    def _ready(self) -> bool:
        try:
            status, _ = _http("GET", f"{self.url}/health", timeout=1.0)
        except OSError:
            return False
        return status == 200

    # -- API

    def flush(self) -> None:
        """Make rows still buffered in memory searchable (/internal/force_flush)."""
        status, body = _http("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            raise LocalServerError(f"force_flush failed: HTTP {status}: {body[:300]!r}")

    def write(self, lines: bytes | str, precision: str = "ms") -> None:
        """POST InfluxDB line protocol to /api/v2/write.

        VictoriaMetrics answers 204 even for lines it cannot parse (it only logs them).
        """
        data = lines.encode() if isinstance(lines, str) else lines
        status, body = _http(
            "POST", f"{self.url}/api/v2/write", params={"precision": precision}, body=data
        )
        if status != 204:
            raise LocalServerError(f"write failed: HTTP {status}: {body[:300]!r}")

    def export(
        self, match: str, *, start: float | None = None, end: float | None = None
    ) -> list[dict[str, Any]]:
        """Raw series matching a selector via /api/v1/export, sorted by labels.

        Flushes first, and defaults ``end`` to an hour from now: the server's notion of
        "now" is cached with one second resolution, so with the default end a point
        written in the last second would be missing.
        """
        self.flush()
        params = {
            "match[]": match,
            "start": str(0 if start is None else start),
            "end": str(time.time() + 3600 if end is None else end),
        }
        status, body = _http("POST", f"{self.url}/api/v1/export", form=params, timeout=30.0)
        if status != 200:
            raise LocalServerError(f"export {match!r} failed: HTTP {status}: {body[:300]!r}")
        series = [json.loads(line) for line in body.splitlines() if line.strip()]
        series.sort(key=lambda s: sorted(s["metric"].items()))
        return series


# ------------------------------------------------------------------------ postgresql


class LocalPostgres(LocalServer):
    """A PostgreSQL server on ``postgresql://envgrid@127.0.0.1:PORT/envgrid`` (trust auth).

    ``initdb`` runs on the first start. PostgreSQL refuses to run as root, so as root the
    cluster lives in a folder of its own under the system temp folder, owned by the
    ``postgres`` user (else ``nobody``), and the server runs as that user through ``setpriv``
    (which execs, so the process we watch is the server itself). ``cleanup()`` removes it.
    """

    name = "postgres"
    binary_name = "postgres"
    debian_package = "postgresql"
    start_timeout = 60.0

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        *,
        binary: str | None = None,
        database: str = "envgrid",
        user: str = "envgrid",
    ) -> None:
        super().__init__(data_dir, port, binary=binary)
        self.database = database
        self.user = user
        self._run_as: tuple[int, int] | None = None
        self.cluster_dir = self.data_dir / "pgdata"
        if os.geteuid() == 0:
            import pwd
            import tempfile

            for name in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    continue
                self._run_as = (pw.pw_uid, pw.pw_gid)
                break
            if self._run_as is None:
                raise LocalServerError("postgres: running as root and no 'postgres' user")
            # pytest's temp folders are 0700 root: an unprivileged server cannot reach them.
            self.cluster_dir = Path(tempfile.mkdtemp(prefix="envgrid-pg-")) / "pgdata"
            os.chown(self.cluster_dir.parent, *self._run_as)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{LOCALHOST}:{self.port}/{self.database}"

    def _as_user(self, argv: list[str]) -> list[str]:
        if self._run_as is None:
            return argv
        uid, gid = self._run_as
        setpriv = _find_binary("setpriv") or "setpriv"
        return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]

    def _write_config(self) -> None:
        if (self.cluster_dir / "PG_VERSION").exists():
            return
        initdb = _find_binary("initdb")
        if initdb is None:
            raise LocalServerError("postgres: initdb not found; apt-get install postgresql")
        done = subprocess.run(
            self._as_user(
                [
                    initdb,
                    "-D",
                    str(self.cluster_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",  # a test server: speed over crash safety of its catalog
                ]
            ),
            capture_output=True,
            cwd=self.cluster_dir.parent,
            check=False,
        )
        if done.returncode != 0:
            raise LocalServerError(
                f"postgres: initdb failed: {done.stderr.decode(errors='replace').strip()}"
            )

    def _command(self, binary: str) -> list[str]:
        return self._as_user(
            [
                binary,
                "-D",
                str(self.cluster_dir),
                "-p",
                str(self.port),
                "-h",
                LOCALHOST,
                "-k",
                str(self.cluster_dir),  # the Unix socket stays inside the cluster folder
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ]
        )

    def _ready(self) -> bool:
        isready = _find_binary("pg_isready")
        if isready is None:
            return _tcp_accepts(self.port)
        args = [isready, "-q", "-h", LOCALHOST, "-p", str(self.port), "-U", self.user]
        if subprocess.run([*args, "-d", "postgres"], check=False).returncode != 0:
            return False
        created = self.cluster_dir.parent / ".created"
        if not created.exists():
            # The database of our URL, made once (createdb is a client: no user switch needed).
            createdb = _find_binary("createdb") or "createdb"
            subprocess.run(
                [createdb, "-h", LOCALHOST, "-p", str(self.port), "-U", self.user, self.database],
                capture_output=True,
                check=False,
            )
            created.touch()
        return True

    def cleanup(self) -> None:
        """Stop the server and remove its cluster folder."""
        self.stop()
        shutil.rmtree(self.cluster_dir.parent if self._run_as else self.cluster_dir, True)
