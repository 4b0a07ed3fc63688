"""InfluxDB writes over HTTP (v1 ``/write`` and v2 ``/api/v2/write``) with typed outcomes.

Every answer is classified in one place, :func:`classify`, into what the caller must do next:
OK, RETRY (spool it, try later), THROTTLE (same, and wait as told), SPLIT (the batch holds a line
InfluxDB refuses: bisect to find it) or REJECT (a single line InfluxDB refuses: dead-letter it).
"""

from __future__ import annotations

import base64
import enum
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from ingest.config import InfluxSettings

log = logging.getLogger("envgrid.writer")


class Outcome(enum.Enum):
    """What a write's answer means for the batch."""

    OK = "ok"
    RETRY = "retry"
    THROTTLE = "throttle"
    SPLIT = "split"
    REJECT = "reject"


@dataclass(slots=True)
class WriteResult:
    """The outcome of one HTTP write and what InfluxDB said."""

    outcome: Outcome
    status: int | None
    message: str
    retry_after_s: float | None = None
    latency_s: float = 0.0


def classify(status: int | None, body: str, lines: int) -> Outcome:
    """Decide what an answer means: the single place where write outcomes are decided."""
    if status is None:
        return Outcome.RETRY  # unreachable, reset, timeout
    if 200 <= status < 300:
        return Outcome.OK
    if status in (429, 503):
        return Outcome.THROTTLE
    # 400 is the batch's fault (parse error, field type conflict, partial write), 413 its size.
    if status in (400, 413, 422):
        return Outcome.SPLIT if lines > 1 else Outcome.REJECT
    # 401/403/404 are configuration (token, database): keep the data and keep trying.
    return Outcome.RETRY


@dataclass(slots=True)
class Delivery:
    """Result of delivering a batch: its outcome, and single lines InfluxDB refused for good."""

    outcome: Outcome
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, reason)
    message: str = ""
    retry_after_s: float | None = None
    writes: int = 0
    latency_s: float = 0.0


class InfluxWriter:
    """Writes line protocol batches to one InfluxDB endpoint."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        if settings.api == "v1":
            self.url = settings.url + "/write"
            self.params = {"db": settings.database, "precision": "ms"}
            if settings.retention_policy:
                self.params["rp"] = settings.retention_policy
        else:
            self.url = settings.url + "/api/v2/write"
            self.params = {"org": settings.org, "bucket": settings.bucket, "precision": "ms"}
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        token = settings.auth_token()
        if token:
            self.headers["Authorization"] = f"Token {token}"
        elif settings.username:
            pw = settings.password.get_secret_value() if settings.password else ""
            cred = base64.b64encode(f"{settings.username}:{pw}".encode()).decode()
            self.headers["Authorization"] = f"Basic {cred}"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> InfluxWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    async def write(self, body: bytes, lines: int) -> WriteResult:
        """One HTTP write of ``lines`` lines; never raises for network trouble."""
        t0 = time.perf_counter()
        try:
            async with self._client().post(
                self.url, params=self.params, data=body, headers=self.headers
            ) as resp:
                text = await resp.text() if resp.status >= 300 else ""
                status: int | None = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            status, text, retry_after = None, f"{type(e).__name__}: {e}".rstrip(": "), None
        outcome = classify(status, text, lines)
        return WriteResult(
            outcome, status, _error_text(text), retry_after, time.perf_counter() - t0
        )

    async def deliver(self, lines: Sequence[str]) -> Delivery:
        """Write a batch; bisect on SPLIT so one refused line does not keep the rest out."""
        d = Delivery(Outcome.OK)
        await self._deliver(lines, 0, d)
        return d

    async def _deliver(self, lines: Sequence[str], offset: int, d: Delivery) -> bool:
        res = await self.write(("\n".join(lines)).encode("utf-8"), len(lines))
        d.writes += 1
        d.latency_s += res.latency_s
        if res.outcome is Outcome.OK:
            return True
        if res.outcome is Outcome.REJECT:
            d.rejected.append((offset, f"InfluxDB {res.status}: {res.message}"))
            return True
        if res.outcome is Outcome.SPLIT:
            # InfluxDB 1.x stores the good points of a partial write; rewriting them is idempotent.
            mid = len(lines) // 2
            return await self._deliver(lines[:mid], offset, d) and await self._deliver(
                lines[mid:], offset + mid, d
            )
        d.outcome, d.message, d.retry_after_s = res.outcome, _describe(res), res.retry_after_s
        return False

    async def ping(self) -> bool:
        """Whether InfluxDB answers its health endpoint."""
        try:
            async with self._client().get(self.settings.url + "/ping") as resp:
                return resp.status < 300
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False


def _describe(res: WriteResult) -> str:
    return f"HTTP {res.status}: {res.message}" if res.status else res.message


def _error_text(text: str) -> str:
    try:
        obj = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(obj, dict):
        return str(obj.get("error") or obj.get("message") or obj)[:500]
    return text.strip()[:500]


def _retry_after(v: str | None) -> float | None:
    try:
        return float(v) if v else None
    except ValueError:
        return None
