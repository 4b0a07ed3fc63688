"""Operators, passwords, session cookies and CSRF tokens of the operator console.

Operators live in a YAML file (``ENVGRID_CONSOLE__OPERATORS``) written by ``envgrid operators
add``: a name, a display name and a bcrypt hash each, and a ``role``: ``operator`` (the
default), ``auditor`` (may also review data, docs/review.md) or ``admin`` (may also act on the
notification receivers, send test messages). ``admin: true``, the earlier flag, reads as
``role: admin``. The service re-reads the file when it
changes, so adding or removing an operator needs no restart, and a session ends when its
operator is removed or their password changes (the cookie carries a fingerprint of the hash).

Session cookies are signed with itsdangerous (HMAC-SHA1 over a key of 32+ characters) and
expire after ``session_lifetime``; each carries the session's CSRF token, which every POST form
sends back. Passwords and hashes are never logged.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from itsdangerous import BadSignature, URLSafeTimedSerializer

from devices.errors import yaml_value

log = logging.getLogger("envgrid.console")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ROLES = ("operator", "auditor", "admin")
MIN_PASSWORD = 8
MAX_PASSWORD_BYTES = 72  # bcrypt only reads 72 bytes; a longer password would be truncated


@functools.cache
def _dummy_hash() -> bytes:
    # Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
    return bcrypt.hashpw(b"envgrid-no-such-operator", bcrypt.gensalt(rounds=12))


class OperatorsError(ValueError):
    """An operators file that cannot be used; the message names the file, line and fix."""


@dataclass(frozen=True, slots=True)
class Operator:
    """One person who may sign in to the console."""

    name: str
    display_name: str
    password_hash: str = ""  # bcrypt; never logged
    # May send receivers' test messages: the same as role "admin", which it follows (the role is
    # the one source; `admin=True` is kept so callers that set the flag keep working).
    admin: bool = False
    role: str = "operator"  # operator | auditor | admin

    def __post_init__(self) -> None:
        if self.admin and self.role == "operator":
            object.__setattr__(self, "role", "admin")
        object.__setattr__(self, "admin", self.role == "admin")

    @property
    def fingerprint(self) -> str:
        """A short digest of the hash: sessions signed before a password change stop working."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]

    def label(self) -> str:
        """How the console shows the operator: display name and login name."""
        if self.display_name and self.display_name != self.name:
            return f"{self.display_name} ({self.name})"
        return self.name


def check_name(name: str) -> str:
    """The name if it is a valid operator name; ValueError with the rule otherwise."""
    if not NAME.fullmatch(name):
        raise ValueError(
            f"operator name {name!r} is not valid: use 1-64 letters, digits, '.', '_', '-' or '@', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> None:
    """ValueError if the password is too short or too long for bcrypt."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(
            f"the password is longer than {MAX_PASSWORD_BYTES} bytes (bcrypt's limit); "
            "choose a shorter one"
        )


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash of a password that passed :func:`check_password`."""
    check_password(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches the bcrypt hash (False for a malformed hash or input)."""
    raw = password.encode()
    if not password_hash or len(raw) > MAX_PASSWORD_BYTES:
        bcrypt.checkpw(b"x", _dummy_hash())  # same cost as a real check
        return False
    try:
        return bcrypt.checkpw(raw, password_hash.encode())
    except ValueError:
        return False


def verify_unknown() -> None:
    """Spend the time of one password check (for a name that does not exist)."""
    bcrypt.checkpw(b"x", _dummy_hash())


# ----------------------------------------------------------------------- the file


def load_operators(path: Path) -> dict[str, Operator]:
    """Operators from a YAML file (empty if it does not exist); OperatorsError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise OperatorsError(f"{path}: cannot read the operators file ({e.strerror})") from None
    return parse_operators(text, str(path))


def parse_operators(text: str, source: str) -> dict[str, Operator]:
    """Operators from the text of an operators file; OperatorsError names the line."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise OperatorsError(
            f"{source}{line}: not valid YAML ({getattr(e, 'problem', e)})"
        ) from None
    if data is None:
        return {}
    ops_node = yaml_value(root, "operators")
    if not isinstance(data, Mapping) or set(data) != {"operators"} or ops_node is None:
        raise OperatorsError(
            f"{source}:1: expected a top-level 'operators:' mapping of name → "
            "{display_name, password_hash}; write it with `envgrid operators add NAME`"
        )
    raw = data["operators"] or {}
    if not isinstance(raw, Mapping) or not isinstance(ops_node, yaml.MappingNode | yaml.ScalarNode):
        raise OperatorsError(
            f"{source}:{ops_node.start_mark.line + 1}: 'operators' must be a mapping"
        )
    lines = (
        {str(k.value): k.start_mark.line + 1 for k, _ in ops_node.value}
        if isinstance(ops_node, yaml.MappingNode)
        else {}
    )
    out: dict[str, Operator] = {}
    for name, entry in raw.items():
        where = f"{source}:{lines.get(str(name), 1)}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise OperatorsError(
                f"{where}: operator name {name!r} is not valid (letters, digits, . _ - @)"
            )
        if not isinstance(entry, Mapping):
            raise OperatorsError(f"{where}: operator {name!r} needs display_name and password_hash")
        extra = set(entry) - {"display_name", "password_hash", "admin", "role"}
        if extra:
            raise OperatorsError(
                f"{where}: operator {name!r}: unknown key {sorted(extra)[0]!r}; "
                "allowed: display_name, password_hash, role (admin)"
            )
        admin = entry.get("admin", False)
        if not isinstance(admin, bool):
            raise OperatorsError(
                f"{where}: operator {name!r}: admin must be true or false, not {admin!r}"
            )
        role = entry.get("role", "admin" if admin else "operator")
        if role not in ROLES:
            raise OperatorsError(
                f"{where}: operator {name!r}: role must be one of {', '.join(ROLES)}, not {role!r}"
            )
        if admin and role != "admin":
            raise OperatorsError(
                f"{where}: operator {name!r}: admin: true contradicts role: {role}; "
                "keep only the role"
            )
        h = entry.get("password_hash")
        if not isinstance(h, str) or not h.startswith(("$2a$", "$2b$", "$2y$")):
            raise OperatorsError(
                f"{where}: operator {name!r}: password_hash is not a bcrypt hash; "
                f"set it with `envgrid operators add {name}`"
            )
        display = entry.get("display_name") or name
        out[name] = Operator(name, str(display), h, role=role)
    return out


def save_operators(path: Path, operators: Mapping[str, Operator]) -> None:
    """Write the operators file atomically, readable by its owner only (it holds hashes)."""
    body = {
        "operators": {
            o.name: {
                "display_name": o.display_name,
                "password_hash": o.password_hash,
                **({"role": o.role} if o.role != "operator" else {}),
            }
            for o in sorted(operators.values(), key=lambda o: o.name)
        }
    }
    text = (
        "# envgrid console operators: edit with `envgrid operators add|remove NAME`.\n"
        + yaml.safe_dump(body, allow_unicode=True, sort_keys=False)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".operators-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class OperatorBook:
    """The operators file as the running service sees it: re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None  # (mtime, size) of the last read attempt
        self._ops: dict[str, Operator] = {}
        self._broken: str | None = None
        self._started = False
        self.refresh()
        self._started = True

    @property
    def problem(self) -> str | None:
        """Why the file could not be read last time (None when it could)."""
        return self._broken

    def refresh(self) -> None:
        """Re-read the file if it changed; a broken file keeps the last good list (logged once)."""
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._seen:
            return
        self._seen = stamp
        try:
            self._ops, self._broken = load_operators(self.path), None
        except OperatorsError as e:
            self._broken = str(e)
            if self._started:  # at start-up the caller reports it
                log.warning("console: %s (keeping the previous operators)", e)

    def get(self, name: str) -> Operator | None:
        """The operator called ``name``, or None."""
        self.refresh()
        return self._ops.get(name)

    def __len__(self) -> int:
        self.refresh()
        return len(self._ops)

    def labels(self) -> dict[str, str]:
        """Every operator's name → display label."""
        self.refresh()
        return {n: o.label() for n, o in self._ops.items()}

    def label(self, name: str | None) -> str:
        """Display label for a name recorded in the store (others, e.g. 'api', shown as is)."""
        if not name:
            return ""
        op = self._ops.get(name)
        return op.label() if op else name


# ----------------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in operator and the CSRF token of their session."""

    operator: Operator
    csrf: str


def load_secret(value: str | None, path: Path) -> bytes:
    """The signing key: the configured one, else the key file (created, mode 600, if missing)."""
    if value:
        return value.encode()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = ""
    if len(text) >= 32:
        return text.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process made it first (or it is too short to use): read what is there.
        text = path.read_text(encoding="utf-8").strip()
        if len(text) < 32:
            raise OSError(
                f"{path}: the console session key is shorter than 32 characters; delete the file "
                "(a new one is made) or set ENVGRID_CONSOLE__SESSION_SECRET"
            ) from None
        return text.encode()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    log.info("console: created a session key in %s", path)
    return key.encode()


class Sessions:
    """Issues and reads signed session cookies; a signed-out session stays ended.

    A cookie is signed, so it cannot be forged, but a copy of it would otherwise work until it
    expires. Signing out records the session's id (a digest of it: the file holds nothing a
    cookie could be made from) until the cookie would have expired; with ``signed_out_file``
    the record survives a restart.
    """

    COOKIE = "envgrid_session"

    def __init__(
        self,
        secret: bytes,
        lifetime_s: float,
        book: OperatorBook,
        signed_out_file: Path | None = None,
    ) -> None:
        self._codec = URLSafeTimedSerializer(secret, salt="envgrid-console-session")
        self.lifetime_s = lifetime_s
        self.book = book
        self.signed_out_file = signed_out_file
        self._ended: dict[str, float] = {}  # digest of a session id → when its cookie expires
        self._load_ended()

    @staticmethod
    def _digest(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()[:32]

    def _load_ended(self) -> None:
        if self.signed_out_file is None:
            return
        try:
            text = self.signed_out_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("console: cannot read %s (%s)", self.signed_out_file, e.strerror)
            return
        now = time.time()
        for line in text.splitlines():
            digest, _, until = line.partition(" ")
            with contextlib.suppress(ValueError):
                if float(until) > now:
                    self._ended[digest] = float(until)
        self._save_ended()  # drops the expired ones

    def _save_ended(self) -> None:
        if self.signed_out_file is None:
            return
        text = "".join(f"{d} {u:.0f}\n" for d, u in self._ended.items())
        try:
            self.signed_out_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=".signed-out-", dir=self.signed_out_file.parent, text=True
            )
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.signed_out_file)
        except OSError as e:
            log.warning(
                "console: cannot record a sign-out in %s (%s): it holds until the next restart",
                self.signed_out_file,
                e.strerror,
            )

    def issue(self, op: Operator) -> tuple[str, Session]:
        """A new cookie value and the session it stands for."""
        csrf = secrets.token_urlsafe(24)
        value = self._codec.dumps({"n": op.name, "f": op.fingerprint, "c": csrf})
        return value, Session(op, csrf)

    def end(self, session: Session) -> None:
        """Sign a session out: its cookie is refused from now on, by this and later runs."""
        now = time.time()
        self._ended = {d: u for d, u in self._ended.items() if u > now}
        self._ended[self._digest(session.csrf)] = now + self.lifetime_s
        self._save_ended()

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or None (missing, forged, expired, signed out, or gone)."""
        if not cookie:
            return None
        try:
            data: Any = self._codec.loads(cookie, max_age=int(self.lifetime_s))
        except BadSignature:  # SignatureExpired is a BadSignature too
            return None
        if not isinstance(data, dict):
            return None
        session_id = str(data.get("c", ""))
        if not session_id or self._digest(session_id) in self._ended:
            return None
        op = self.book.get(str(data.get("n", "")))
        if op is None or not hmac.compare_digest(op.fingerprint, str(data.get("f", ""))):
            return None
        return Session(op, session_id)


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


class LoginLimiter:
    """Slows password guessing without handing anyone a way to lock an operator out.

    Failures count per (source address, name): someone guessing from elsewhere slows down
    only themself, never the operator at their own desk. After ``free`` failures each further
    try waits a back-off that doubles from ``base_s`` up to ``max_s``; while it runs the
    password is not checked at all (the answer is 429 with the wait). A source failing across
    many names (password spraying) is slowed as a whole after ``source_free`` failures. A pair
    is forgotten ``window_s`` after its last failure, or at once on success. Memory is bounded:
    the oldest entries go first.
    """

    def __init__(
        self,
        free: int = 5,
        base_s: float = 1.0,
        max_s: float = 300.0,
        window_s: float = 900.0,
        source_free: int = 30,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.base_s, self.max_s, self.window_s = free, base_s, max_s, window_s
        self.source_free, self.max_keys, self.clock = source_free, max_keys, clock
        self._fails: dict[tuple[str, str], tuple[int, float]] = {}  # key → (failures, last)

    @staticmethod
    def _keys(source: str, name: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return (source, name.lower()), (source, "\0any")

    def _delay(self, failures: int, free: int) -> float:
        if failures < free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** min(failures - free, 32))

    def wait_s(self, source: str, name: str) -> float:
        """Seconds before this source may try this name again (0: now)."""
        now = self.clock()
        wait = 0.0
        for key, free in zip(self._keys(source, name), (self.free, self.source_free), strict=True):
            entry = self._fails.get(key)
            if entry is None:
                continue
            count, last = entry
            if now - last > self.window_s:
                del self._fails[key]
                continue
            wait = max(wait, last + self._delay(count, free) - now)
        return wait

    def failed(self, source: str, name: str) -> None:
        """Count one failed sign-in."""
        now = self.clock()
        for key in self._keys(source, name):
            count, last = self._fails.pop(key, (0, now))
            if now - last > self.window_s:
                count = 0
            while len(self._fails) >= self.max_keys:
                self._fails.pop(next(iter(self._fails)))  # the least recently failed
            self._fails[key] = (count + 1, now)

    def succeeded(self, source: str, name: str) -> None:
        """Forget this pair's failures once it signs in (the source's spraying count stays)."""
        self._fails.pop(self._keys(source, name)[0], None)
