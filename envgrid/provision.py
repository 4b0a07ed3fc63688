"""``envgrid devices provision``: a Mosquitto setup in which a device speaks only for itself.

The broker gets two listeners (``per_listener_settings true``), each with its own password
and ACL file:

* the **devices' listener** (``--device-port``, 1883): one generated credential per device of
  the registry; a device may publish on its own topic (``<prefix>/<kind>/<id>``, or
  ``<prefix>/hj212/<MN>`` for an HJ 212 station) and on nothing else, and may subscribe to
  nothing. ``use_username_as_clientid true`` replaces whatever client id a device sends with its
  user name, so no device can take over envgrid's persistent session (its client id is not a
  device's name: :func:`check_device_user` refuses ids that could collide).
* the **services' listener** (``--service-port``, 1884, loopback unless ``--service-bind``):
  envgrid's own user, which reads readings, raw HJ 212 and dead letters and publishes alerts,
  dead letters and commands. Device credentials do not exist here.

Files written to the output folder (secrets mode 600, every write atomic):
``mosquitto.conf``, ``devices.passwd``, ``devices.acl``, ``services.passwd``, ``services.acl``,
``credentials.csv`` (device user, password, topic: for the installers), ``envgrid.password``
(for ``ENVGRID_MQTT__PASSWORD_FILE``) and, with ``simulator``, ``simulator.password``.
Running it again keeps every existing password (and its hash, so the files do not churn),
adds new devices, and keeps devices that left the registry unless ``prune`` is given.
docs/security.md describes the set-up, and TLS client certificates as the stronger option.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import io
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devices.registry import Device
from envgrid.localstack import LOCALHOST, LocalMosquitto, free_port, mosquitto_conf

SERVICE_USER = "envgrid"
SIMULATOR_USER = "simulator"
# Client ids envgrid's own processes use start with this (envgrid-<host>, -alerts, -sim-…):
# a device user with such a name would, as its forced client id, collide with one of them.
RESERVED_PREFIX = "envgrid"
CSV_FIELDS = ("user", "password", "role", "kind", "device_id", "topic")
# mosquitto_passwd's own default; the passwords are 32 random characters, so guessing them
# is out of reach whatever the iteration count, and a higher count costs the broker per CONNECT.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12
# Characters that would break a password file line (':'), an ACL line (blanks), a topic
# (wildcards, levels) or mosquitto's ACL patterns ('%').
_USER_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


class ProvisionError(ValueError):
    """A registry or output folder that cannot be provisioned; the message names the fix."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One broker user: who, their password, and the topics they may publish on."""

    user: str
    password: str = field(repr=False)
    role: str  # device | simulator | service
    kind: str = ""
    device_id: str = ""
    topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What a run did."""

    out: Path
    added: tuple[str, ...]
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    stale: tuple[str, ...]  # in the files but no longer in the registry (kept: no --prune)


# ----------------------------------------------------------------------- passwords


def password_hash(password: str, salt: bytes | None = None) -> str:
    """Mosquitto 2.x's PBKDF2-SHA512 form: ``$7$<iterations>$<salt b64>$<hash b64>``."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def hash_matches(encoded: str, password: str) -> bool:
    """Whether a ``$7$`` hash (from here or ``mosquitto_passwd``) is of this password."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        rounds = int(parts[2])
        salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds, len(want))
    return hmac.compare_digest(got, want)


def new_password() -> str:
    """32 URL-safe random characters (192 bits)."""
    return secrets.token_urlsafe(24)


# ----------------------------------------------------------------------- who may do what


def check_device_user(device_id: str, where: str = "registry") -> str:
    """The device id if it can be a broker user name and a topic level; ProvisionError if not."""
    if not _USER_OK.fullmatch(device_id):
        raise ProvisionError(
            f"{where}: device id {device_id!r} cannot be a broker user and topic level: use "
            "letters, digits, '.', '_', '-' or '@' (no blanks, '/', '+', '#', ':' or '%')"
        )
    if device_id.lower().startswith(RESERVED_PREFIX) or device_id == SIMULATOR_USER:
        raise ProvisionError(
            f"{where}: device id {device_id!r} starts with {RESERVED_PREFIX!r} or is "
            f"{SIMULATOR_USER!r}: as a client id it could take over one of envgrid's own "
            "sessions; rename the device"
        )
    return device_id


def device_topic(device: Device, prefix: str) -> str:
    """The one topic a device may publish on: its HJ 212 MN topic if a station, else its own."""
    mn = device.facts.get("mn")
    if mn:
        mn_s = str(mn)
        if not _USER_OK.fullmatch(mn_s):
            raise ProvisionError(
                f"registry: station {device.id!r} has an MN {mn_s!r} that cannot be a topic level"
            )
        return f"{prefix}/hj212/{mn_s}"
    if not device.kind:
        raise ProvisionError(
            f"registry: device {device.id!r} has no kind, so it has no topic; add 'kind:'"
        )
    return f"{prefix}/{device.kind}/{device.id}"


def simulator_topics(prefix: str, kinds: Iterable[str]) -> tuple[str, ...]:
    """Every device topic (the simulated fleet publishes for all of them from one client)."""
    return (*(f"{prefix}/{k}/+" for k in kinds), f"{prefix}/hj212/+")


def device_acl(creds: Sequence[Credential]) -> str:
    """The devices' listener's ACL: publish on one's own topic(s), nothing else."""
    out = [
        "# envgrid devices' listener ACL (written by `envgrid devices provision`; edits are lost).",
        "# A user with no line here may do nothing; no device may subscribe.",
    ]
    for c in sorted(creds, key=lambda c: c.user):
        out += ["", f"user {c.user}", *(f"topic write {t}" for t in c.topics)]
    return "\n".join(out) + "\n"


def service_acl(prefix: str) -> str:
    """The services' listener's ACL: envgrid reads and writes everything under the prefix."""
    return "\n".join(
        [
            "# envgrid services' listener ACL (written by `envgrid devices provision`).",
            f"user {SERVICE_USER}",
            f"topic readwrite {prefix}/#",
            # The service also subscribes here, to dead-letter topics that miss the pattern.
            f"topic read /{prefix}/#",
            # Mosquitto 2.0 grants every subscription (shared ones of --workers too) and checks
            # read access per message against its topic: these lines cover both.
            "topic read $SYS/#",
            "",
        ]
    )


def passwd_text(creds: Sequence[Credential], previous: dict[str, str]) -> str:
    """A mosquitto password file; a user's old hash is kept while it still matches."""
    lines = []
    for c in sorted(creds, key=lambda c: c.user):
        old = previous.get(c.user)
        h = old if old and hash_matches(old, c.password) else password_hash(c.password)
        lines.append(f"{c.user}:{h}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------- the broker's config


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    """Where the broker listens and where it finds the files (paths as the broker sees them)."""

    device_port: int = 1883
    device_bind: str | None = None  # None: every interface
    service_port: int = 1884
    service_bind: str | None = LOCALHOST
    conf_dir: str = ""  # the output folder as the broker sees it ("" = the folder itself)
    persistence_location: str = "/var/lib/mosquitto/"
    log_file: str | None = None  # None: stdout
    user: str | None = None


def broker_conf(layout: BrokerLayout, conf_dir: str) -> str:
    """mosquitto.conf: envgrid's shared settings, then the devices' and services' listeners."""
    d = conf_dir.rstrip("/")
    base = mosquitto_conf(
        port=layout.device_port,
        bind_address=layout.device_bind,
        persistence_location=layout.persistence_location,
        password_file=f"{d}/devices.passwd",
        log_file=layout.log_file,
        user=layout.user,
        extra=[
            f"acl_file {d}/devices.acl",
            # Whatever client id a device sends, the broker uses its user name: a device can
            # neither take envgrid's session nor another device's.
            "use_username_as_clientid true",
            "",
            "# envgrid's own processes (service, workers, alerts, HJ 212 gateway)",
            f"listener {layout.service_port} {layout.service_bind}"
            if layout.service_bind
            else f"listener {layout.service_port}",
            "allow_anonymous false",
            f"password_file {d}/services.passwd",
            f"acl_file {d}/services.acl",
        ],
    ).splitlines()
    head = [
        "# envgrid mosquitto configuration for a provisioned fleet "
        "(written by `envgrid devices provision`)",
        # Each listener has its own users and ACL; must come before the first listener.
        "per_listener_settings true",
        "",
        "# devices (one credential each, docs/security.md)",
    ]
    return "\n".join(head + base[1:]) + "\n"


# ----------------------------------------------------------------------- files


def _write(path: Path, text: str, mode: int) -> None:
    """Atomically replace ``path`` with ``text`` at ``mode`` (fsynced: it holds credentials)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_passwd(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        user, sep, h = line.partition(":")
        if sep and not line.startswith("#"):
            out[user] = h
    return out


def read_credentials(path: Path) -> dict[str, Credential]:
    """The credentials of an earlier run, by user (empty if there was none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    rows = list(csv.DictReader(io.StringIO(text)))
    out: dict[str, Credential] = {}
    for n, row in enumerate(rows, start=2):
        if set(CSV_FIELDS) - set(row) or not row["user"] or not row["password"]:
            raise ProvisionError(
                f"{path}:{n}: expected columns {', '.join(CSV_FIELDS)} with a user and a "
                "password; restore the file from a backup or move it away to start afresh"
            )
        topics = tuple(t for t in (row["topic"] or "").split(" ") if t)
        out[row["user"]] = Credential(
            row["user"], row["password"], row["role"], row["kind"], row["device_id"], topics
        )
    return out


def _credentials_csv(creds: Sequence[Credential]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for c in sorted(creds, key=lambda c: (c.role != "device", c.user)):
        w.writerow([c.user, c.password, c.role, c.kind, c.device_id, " ".join(c.topics)])
    return buf.getvalue()


def provision(
    devices: Iterable[Device],
    out: Path,
    *,
    prefix: str = "envgrid",
    kinds: Iterable[str] = (),
    layout: BrokerLayout | None = None,
    simulator: bool = False,
    prune: bool = False,
) -> ProvisionReport:
    """Write (or bring up to date) the broker set-up for these devices in ``out``."""
    layout = layout or BrokerLayout()
    out.mkdir(parents=True, exist_ok=True)
    old = read_credentials(out / "credentials.csv")
    wanted: dict[str, Credential] = {}
    for d in devices:
        user = check_device_user(d.id)
        if user in wanted:
            raise ProvisionError(f"registry: device id {user!r} appears twice")
        prev = old.get(user)
        wanted[user] = Credential(
            user,
            prev.password if prev else new_password(),
            "device",
            d.kind or "",
            d.id,
            (device_topic(d, prefix),),
        )
    if simulator:
        prev = old.get(SIMULATOR_USER)
        wanted[SIMULATOR_USER] = Credential(
            SIMULATOR_USER,
            prev.password if prev else new_password(),
            "simulator",
            topics=simulator_topics(prefix, kinds),
        )
    stale = tuple(
        sorted(u for u, c in old.items() if u not in wanted and c.role in ("device", "simulator"))
    )
    if not prune:
        for u in stale:
            wanted[u] = old[u]
    service_prev = old.get(SERVICE_USER)
    service = Credential(
        SERVICE_USER, service_prev.password if service_prev else new_password(), "service"
    )
    fleet = list(wanted.values())
    conf_dir = layout.conf_dir or str(out.resolve())
    _write(out / "devices.passwd", passwd_text(fleet, _read_passwd(out / "devices.passwd")), 0o600)
    _write(out / "devices.acl", device_acl(fleet), 0o644)
    _write(
        out / "services.passwd",
        passwd_text([service], _read_passwd(out / "services.passwd")),
        0o600,
    )
    _write(out / "services.acl", service_acl(prefix), 0o644)
    _write(out / "credentials.csv", _credentials_csv([*fleet, service]), 0o600)
    _write(out / "envgrid.password", service.password + "\n", 0o600)
    if SIMULATOR_USER in wanted:
        _write(out / "simulator.password", wanted[SIMULATOR_USER].password + "\n", 0o600)
    _write(out / "mosquitto.conf", broker_conf(layout, conf_dir), 0o644)
    known = {u for u, c in old.items() if c.role != "service"}
    return ProvisionReport(
        out=out,
        added=tuple(sorted(u for u in wanted if u not in known)),
        kept=tuple(sorted(u for u in wanted if u in known and u not in stale)),
        removed=stale if prune else (),
        stale=() if prune else stale,
    )


# ----------------------------------------------------------------------- a local broker


class FleetMosquitto(LocalMosquitto):
    """A local mosquitto running a provisioned set-up (the demo and the tests).

    ``url`` is the devices' listener; ``service_url`` envgrid's own.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        provisioned: Path,
        *,
        max_inflight_messages: int = 20,
    ) -> None:
        super().__init__(data_dir, max_inflight_messages=max_inflight_messages)
        self.provisioned = provisioned.resolve()
        self.service_port = free_port()

    @property
    def service_url(self) -> str:
        return f"mqtt://{SERVICE_USER}@{LOCALHOST}:{self.service_port}"

    @property
    def service_password_file(self) -> Path:
        return self.provisioned / "envgrid.password"

    def _pick_new_ports(self) -> None:
        super()._pick_new_ports()
        self.service_port = free_port()

    def conf_text(self) -> str:
        layout = BrokerLayout(
            device_port=self.port,
            device_bind=LOCALHOST,
            service_port=self.service_port,
            service_bind=LOCALHOST,
            conf_dir=str(self.provisioned),
            persistence_location=str(self.data_dir),
            log_file=str(self.log_file),
            # As root mosquitto drops to user "mosquitto", who cannot read the files.
            user="root" if os.geteuid() == 0 else None,
        )
        return broker_conf(layout, str(self.provisioned))
