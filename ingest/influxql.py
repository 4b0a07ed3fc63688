"""A small typed async InfluxQL client over HTTP ``/query`` (the v1 query API).

InfluxDB 1.x serves ``/query`` natively; 2.x (through its DBRP mapping: database = bucket) and
3.x answer the same endpoint, so reports, dashboards tests and rollups query every version alike.
Timestamps come back as epoch milliseconds (``epoch=ms``). Every problem, whether InfluxDB's own
error message, an HTTP error or an unreachable server, raises :class:`QueryError` with one clear
line; credentials never appear in it.

    async with InfluxQLClient(settings.influx) as client:
        rows = await client.query('SELECT mean("pm25_ug_m3") FROM "air_quality" GROUP BY "site"')
        # [{"time": 0, "mean": 41.2, "site": "清江浦区监测站1"}, ...]: tags merged into each row
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ingest.config import InfluxSettings, redact_url

Value = str | int | float | bool | None
Row = dict[str, Value]

# Enough of a failing query to recognise it in a log line without flooding it.
_QUERY_SHOWN = 200


class QueryError(RuntimeError):
    """InfluxDB refused or failed a query; ``str()`` is one line with InfluxDB's own message.

    ``status`` is the HTTP status (None when InfluxDB was not reached) and ``query`` the InfluxQL.
    """

    def __init__(self, message: str, *, query: str = "", status: int | None = None) -> None:
        shown = " ".join(query.split())
        if len(shown) > _QUERY_SHOWN:
            shown = shown[: _QUERY_SHOWN - 1] + "…"
        super().__init__(f"{message} (query: {shown})" if shown else message)
        self.message = message
        self.query = query
        self.status = status

    @property
    def unreachable(self) -> bool:
        """True when InfluxDB did not answer at all (network, timeout): worth retrying."""
        return self.status is None


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a statement's result: measurement name, its tags and its rows."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Value]]

    def rows(self) -> list[Row]:
        """The rows as dicts, each with this series' tags merged in (a column wins a clash)."""
        out: list[Row] = []
        for values in self.values:
            row: Row = dict(self.tags)
            row.update(zip(self.columns, values, strict=True))
            out.append(row)
        return out


@dataclass(frozen=True, slots=True)
class Result:
    """The answer to one statement of a query (a query may hold several, split by ``;``)."""

    statement_id: int
    series: list[Series] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def rows(self) -> list[Row]:
        """Every row of every series, tags merged in."""
        return [row for s in self.series for row in s.rows()]


def quote_ident(name: str) -> str:
    """An InfluxQL identifier (measurement, field, tag key, database) in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal (tag values, time strings) in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def time_literal(when: datetime | int) -> str:
    """A time for a WHERE clause: an aware datetime or epoch ms, as an RFC 3339 UTC literal.

    RFC 3339 strings are the time form every InfluxQL version accepts.
    """
    if isinstance(when, int):
        when = datetime.fromtimestamp(when / 1000, tz=UTC)
    if when.tzinfo is None:
        raise ValueError("time_literal needs an aware datetime (naive times have no zone)")
    text = when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return quote_string(text)


def auth_headers(settings: InfluxSettings) -> dict[str, str]:
    """The Authorization header for these settings: a token, else basic auth, else none."""
    token = settings.auth_token()
    if token:
        return {"Authorization": f"Token {token}"}
    if settings.username:
        pw = settings.password.get_secret_value() if settings.password else ""
        cred = base64.b64encode(f"{settings.username}:{pw}".encode()).decode()
        return {"Authorization": f"Basic {cred}"}
    return {}


class InfluxQLClient:
    """Runs InfluxQL against one InfluxDB; ``database`` defaults to the configured one.

    For ``api = "v2"`` settings the database is the bucket (InfluxDB 2.x maps it with DBRP).
    """

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        database: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        default_db = settings.database if settings.api == "v1" else settings.bucket
        self.database = default_db if database is None else database
        self.url = settings.url + "/query"
        self.timeout_s = settings.timeout_s if timeout_s is None else timeout_s
        self._headers = {"Accept": "application/json", **auth_headers(settings)}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> InfluxQLClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    async def query(
        self,
        q: str,
        *,
        database: str | None = None,
        params: Mapping[str, Value] | None = None,
        chunk_size: int | None = None,
    ) -> list[Row]:
        """Rows of every statement and series of ``q``, as dicts with their series' tags merged.

        ``params`` binds ``$name`` placeholders (InfluxDB 1.x); ``chunk_size`` streams a large
        answer in chunks instead of risking InfluxDB's max-row-limit truncation.
        """
        results = await self.results(q, database=database, params=params, chunk_size=chunk_size)
        return [row for r in results for row in r.rows()]

    async def series(
        self,
        q: str,
        *,
        database: str | None = None,
        params: Mapping[str, Value] | None = None,
        chunk_size: int | None = None,
    ) -> list[Series]:
        """Every series of every statement of ``q`` (name, tags, columns, values)."""
        results = await self.results(q, database=database, params=params, chunk_size=chunk_size)
        return [s for r in results for s in r.series]

    async def execute(self, q: str, *, database: str | None = None) -> None:
        """Run statements whose answer is only success or an error (CREATE, DROP, DELETE...)."""
        await self.results(q, database=database)

    async def results(
        self,
        q: str,
        *,
        database: str | None = None,
        params: Mapping[str, Value] | None = None,
        chunk_size: int | None = None,
    ) -> list[Result]:
        """One :class:`Result` per statement of ``q``; QueryError on any error in the answer."""
        form: dict[str, str] = {"q": q, "epoch": "ms"}
        db = self.database if database is None else database
        if db:
            form["db"] = db
        if self.settings.api == "v1" and self.settings.retention_policy:
            form["rp"] = self.settings.retention_policy
        if params:
            form["params"] = json.dumps(dict(params))
        if chunk_size is not None:
            if chunk_size < 1:
                raise ValueError("chunk_size must be >= 1")
            form["chunked"] = "true"
            form["chunk_size"] = str(chunk_size)
        try:
            # POST: the only method 1.x accepts for statements that change data (DROP, SELECT
            # INTO...), and it keeps long queries out of URLs and access logs.
            async with self._client().post(self.url, data=form, headers=self._headers) as resp:
                status = resp.status
                body = await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            reason = f"{type(e).__name__}: {e}".rstrip(": ")
            # The query is beside the point when nothing answered: keep it out of the message.
            err = QueryError(
                f"InfluxDB at {redact_url(self.settings.url)} did not answer ({reason})"
            )
            err.query = q
            raise err from None
        return _parse(status, body, q, chunked=chunk_size is not None)


def _parse(status: int, body: bytes, q: str, *, chunked: bool) -> list[Result]:
    """Decode an answer (one JSON object, or one per line when chunked) into results."""
    text = body.decode("utf-8", "replace")
    objects: list[Any] = []
    try:
        if chunked:
            objects = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif text.strip():
            objects = [json.loads(text)]
    except ValueError:
        shown = " ".join(text.split())[:300] or "(empty body)"
        raise QueryError(
            f"InfluxDB answered HTTP {status}: {shown}", query=q, status=status
        ) from None
    for obj in objects:
        if isinstance(obj, dict) and obj.get("error"):
            raise QueryError(f"InfluxDB: {obj['error']}", query=q, status=status)
        if isinstance(obj, dict) and obj.get("message") and status >= 300:
            raise QueryError(f"InfluxDB: {obj['message']}", query=q, status=status)  # 2.x/3.x
    if status >= 300:
        raise QueryError(f"InfluxDB answered HTTP {status}", query=q, status=status)
    by_id: dict[int, Result] = {}
    for obj in objects:
        for raw in obj.get("results", []) if isinstance(obj, dict) else []:
            if raw.get("error"):
                raise QueryError(f"InfluxDB: {raw['error']}", query=q, status=status)
            sid = int(raw.get("statement_id", 0))
            result = by_id.setdefault(sid, Result(statement_id=sid))
            for m in raw.get("messages") or []:
                result.messages.append(str(m.get("text", m)))
            for s in raw.get("series") or []:
                _add_series(result, s)
            if raw.get("partial") and not chunked:
                # Only a non-chunked answer cut short by max-row-limit is partial on its own.
                raise QueryError(
                    "InfluxDB truncated the answer (max-row-limit): pass chunk_size or narrow "
                    "the time range",
                    query=q,
                    status=status,
                )
    return [by_id[k] for k in sorted(by_id)]


def _add_series(result: Result, raw: Mapping[str, Any]) -> None:
    name = str(raw.get("name", ""))
    tags = {str(k): "" if v is None else str(v) for k, v in (raw.get("tags") or {}).items()}
    columns = [str(c) for c in raw.get("columns", [])]
    values: list[list[Value]] = [list(v) for v in raw.get("values") or []]
    last = result.series[-1] if result.series else None
    if last is not None and last.name == name and last.tags == tags and last.columns == columns:
        # A chunked answer splits a long series across chunks: stitch it back together.
        last.values.extend(values)
        return
    result.series.append(Series(name=name, tags=tags, columns=columns, values=values))


def finite(value: Value) -> float | None:
    """A row value as a finite float, or None for missing, non-numeric and non-finite values."""
    if value is None or isinstance(value, bool | str):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


__all__ = [
    "InfluxQLClient",
    "QueryError",
    "Result",
    "Row",
    "Series",
    "Value",
    "auth_headers",
    "finite",
    "quote_ident",
    "quote_string",
    "time_literal",
]
