"""A typed InfluxQL query for grafana-foundation-sdk panels, and the helpers that write queries.

grafana-foundation-sdk has typed queries for Prometheus, Loki and others but none for InfluxDB.
Grafana's InfluxDB datasource runs a raw InfluxQL string (``rawQuery: true``) in ``query`` and
fills in ``$timeFilter``, ``$__interval`` and the template variables; :class:`InfluxQLTarget`
is that target and :class:`InfluxQL` its builder.

Every query here quotes identifiers with double quotes and strings with single quotes, so a
test can read the measurements, fields and tags a query names without an InfluxQL parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.dashboard import AnnotationTarget, DataSourceRef

from ingest.influxql import quote_ident, quote_string

ResultFormat = Literal["time_series", "table", "logs"]

TIME_FILTER = "$timeFilter"  # Grafana: time >= <from>ms and time <= <to>ms
INTERVAL = "$__interval"  # Grafana: the panel's bucket width, e.g. 1m
# Target alias naming each time-series field by its column: without an alias Grafana names it
# "<measurement>.<column>" (dashboards/queries.py, "field names"), which overrides, field
# filters and transformations written with the column's name do not match.
COL = "$col"
# A device is offline when its last reading is older than this (the city's definition).
ONLINE_WINDOW = "10m"
RECENT = f"time > now() - {ONLINE_WINDOW}"


@dataclass
class InfluxQLTarget(Dataquery):
    """One raw InfluxQL query of a panel (Grafana's InfluxDB datasource in InfluxQL mode)."""

    query: str
    ref_id: str = "A"
    result_format: ResultFormat = "time_series"
    alias: str | None = None
    hide: bool = False
    datasource: DataSourceRef | None = None

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it in dashboard JSON."""
        out: dict[str, object] = {"refId": self.ref_id}
        if self.datasource is not None:
            out["datasource"] = self.datasource
        out.update(query=self.query, rawQuery=True, resultFormat=self.result_format)
        if self.alias is not None:
            out["alias"] = self.alias
        if self.hide:
            out["hide"] = True
        return out


class InfluxQL(Builder[InfluxQLTarget]):
    """Builder of :class:`InfluxQLTarget`: ``InfluxQL(q).ref_id("B").table()``."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLTarget(query=" ".join(query.split()))

    def build(self) -> InfluxQLTarget:
        """The target."""
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        """Query letter within the panel (A, B, …)."""
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        """Return one table (tags become columns) instead of one series per tag set."""
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        """Series name pattern, e.g. ``$tag_site``."""
        self._internal.alias = alias
        return self

    def datasource(self, ref: DataSourceRef) -> Self:
        """The InfluxDB datasource this target queries."""
        self._internal.datasource = ref
        return self


class InfluxAnnotationTarget(AnnotationTarget):
    """An annotation query of the InfluxDB datasource: rows become events on every graph."""

    def __init__(self, query: str, text_column: str, tags_column: str) -> None:
        super().__init__()
        self.query = " ".join(query.split())
        self.text_column = text_column
        self.tags_column = tags_column

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it (columns named as the InfluxDB editor names them)."""
        return {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "resultFormat": "table",
            "textColumn": self.text_column,
            "tagsColumn": self.tags_column,
        }


class InfluxAnnotation(Builder[AnnotationTarget]):
    """Builder of :class:`InfluxAnnotationTarget` for ``AnnotationQuery.target``."""

    def __init__(self, query: str, text_column: str, tags_column: str) -> None:
        self._internal = InfluxAnnotationTarget(query, text_column, tags_column)

    def build(self) -> AnnotationTarget:
        """The target."""
        return self._internal


# envgrid's one InfluxQL quoting, under the short names the dashboard builders write.
ident = quote_ident
literal = quote_string


def matches(tag: str, variable: str) -> str:
    """``"tag" =~ /^$variable$/``: a (multi-value, All = ``.*``) template variable filter."""
    return f"{ident(tag)} =~ /^${variable}$/"


def where(*conditions: str) -> str:
    """Conditions joined with AND."""
    return " AND ".join(c for c in conditions if c)


def group_by(*tags: str, interval: str | None = None) -> str:
    """``GROUP BY time(<interval>), "tag", …`` (either part may be absent)."""
    parts = ([f"time({interval})"] if interval else []) + [ident(t) for t in tags]
    return ("GROUP BY " + ", ".join(parts)) if parts else ""


def count_latest(
    measurement: str,
    *,
    value: str,
    condition: str,
    scope: str,
    series: tuple[str, ...],
    hits: str,
    total: str,
    pick: str | None = None,
    share: str | None = None,
) -> str:
    """How many series' latest ``value`` meets ``condition``, and how many series there are.

    Answers 0, not "no data", when none does: InfluxQL returns nothing for a count of nothing,
    so a zero-valued ``hit`` from a second subquery keeps the sum defined. Counts are summed as
    floats because InfluxDB 1.x sums integer columns merged from several subqueries to null.
    When ``value`` is a tag, ``pick`` names the field whose latest point decides the series'
    latest tag value. ``share`` adds hits as a percentage of the series.
    """
    m, g = ident(measurement), group_by(*series)
    field = ident(pick or value)
    latest = (
        f"last({field}) AS {ident('p')}, {ident(value)} AS {ident('v')}"
        if pick
        else f"last({field}) AS {ident('v')}"
    )
    pct = f", 100 * sum({ident('hit')}) / count({ident('all')}) AS {ident(share)}" if share else ""
    return (
        f"SELECT sum({ident('hit')}) AS {ident(hits)}, count({ident('all')}) AS {ident(total)}"
        f"{pct} FROM (SELECT last({field}) AS {ident('all')} FROM {m} WHERE {scope} {g}), "
        f"(SELECT count({field}) * 0.0 AS {ident('hit')} FROM {m} WHERE {scope}), "
        f"(SELECT count({ident('v')}) * 1.0 AS {ident('hit')} FROM "
        f"(SELECT {latest} FROM {m} WHERE {scope} {g}) WHERE {ident('v')} {condition})"
    )
