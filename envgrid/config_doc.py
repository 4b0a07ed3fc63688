"""The README's configuration table, generated from the settings class so it cannot drift."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from envgrid.settings import Settings


def _default(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, timedelta):
        s = value.total_seconds()
        for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
            if s >= n and s % n == 0:
                return f"`{int(s // n)}{unit}`"
        return f"`{s:g}s`"
    if isinstance(value, SecretStr):
        return "—"
    if isinstance(value, Path):
        return f"`{value}`"
    return f"`{value}`"


# Descriptions of settings declared without Field(description=...): kept here, beside the
# generator, so config.py stays compact. test_readme fails when a setting has neither.
DESCRIPTIONS: dict[str, str] = {
    "mqtt.url": "broker URL: `mqtt://[user:pass@]host[:port]`, `mqtts://` for TLS",
    "mqtt.topic_prefix": "first topic segment of readings, dead letters and alerts",
    "mqtt.client_id": "stable client id of the persistent session (default `envgrid-<host>`)",
    "mqtt.password_file": "file holding the MQTT password (preferred over the URL)",
    "mqtt.keepalive_s": "MQTT keepalive in seconds",
    "mqtt.session_expiry": "how long the broker keeps the session and its queued messages",
    "mqtt.receive_maximum": "MQTT v5 Receive Maximum: unacked messages in flight (covers a batch)",
    "mqtt.topics": "extra topic routes (`[[mqtt.topics]] pattern, kind`); TOML only",
    "mqtt.shared_group": "subscribe through `$share/<group>/` (set by `--workers`)",
    "mqtt.tls_ca": "CA bundle for `mqtts://`",
    "mqtt.tls_insecure": "skip TLS certificate checks (testing only)",
    "mqtt.connect_timeout_s": "seconds to wait for CONNACK",
    "influx.url": "InfluxDB base URL",
    "influx.api": "`v1` (`/write`: InfluxDB 1.x, 2.x, 3.x) or `v2` (`/api/v2/write`)",
    "influx.database": "v1 database",
    "influx.retention_policy": "v1 retention policy (default: the database's default)",
    "influx.bucket": "v2 bucket",
    "influx.org": "v2 organisation",
    "influx.token": "API token (v2, or v1 on InfluxDB 2.x/3.x); never logged",
    "influx.token_file": "file holding the token (preferred)",
    "influx.username": "v1 basic-auth user",
    "influx.password": "v1 basic-auth password; never logged",
    "influx.timeout_s": "seconds before a write counts as failed (and is spooled)",
    "ingest.batch_size": "lines per InfluxDB write",
    "ingest.write_concurrency": "InfluxDB writes in flight at once (acks stay in arrival order)",
    "ingest.flush_interval": "longest a reading waits for its batch",
    "ingest.max_age": "oldest accepted reading (stations back-fill after an outage)",
    "ingest.max_future": "how far ahead of the clock a reading may be",
    "ingest.max_payload_bytes": "larger payloads are dead-lettered unparsed",
    "ingest.spool_dir": "where batches wait while InfluxDB is unreachable",
    "ingest.spool_max_bytes": "spool size limit",
    "ingest.spool_high_water": "fill fraction at which consumption pauses and /readyz is 503",
    "ingest.shutdown_grace": "time to flush or spool on SIGTERM before exiting",
    "ingest.stats_interval": "how often `envgrid_stats` is written",
    "ingest.replay_backoff_max": "longest wait between spool replay attempts",
    "devices.registry": "device registry YAML (site, county, facts)",
    "http.host": "HTTP API listen address",
    "http.port": "HTTP API port (0 = any free port)",
    "http.token": "bearer token for the JSON API's write calls; never logged",
    "standards.timezone": "the city's time zone: decides a reading's date and rollup windows",
    "standards.aqi_edition": "force HJ 633 `2012` or `2026` (default: by each date)",
}


def config_table() -> str:
    """A Markdown table: environment variable, TOML key, default, description."""
    rows = ["| environment variable | TOML | default | what it sets |", "|---|---|---|---|"]

    def walk(model: type[BaseModel], env: str, section: str) -> None:
        for name, field in model.model_fields.items():
            if isinstance(field.default, BaseModel):
                walk(type(field.default), f"{env}{name.upper()}__", name)
                continue
            desc = (field.description or DESCRIPTIONS.get(f"{section}.{name}", "")).replace(
                "|", "\\|"
            )
            default = _default(field.get_default(call_default_factory=True))
            rows.append(f"| `{env}{name.upper()}` | `[{section}] {name}` | {default} | {desc} |")

    walk(Settings, "ENVGRID_", "")
    return "\n".join(rows)


def undocumented() -> list[str]:
    """Settings with no description anywhere (the README table would show a blank)."""
    return [
        line.split("|")[1].strip()
        for line in config_table().splitlines()[2:]
        if not line.split("|")[4].strip()
    ]


def update_readme(path: Path) -> bool:
    """Rewrite the README's config-table block; True when it changed."""
    text = path.read_text(encoding="utf-8")
    begin, end = "<!-- config-table:begin -->\n", "<!-- config-table:end -->"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    new = f"{head}{begin}{config_table()}\n{end}{tail}"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # python -m envgrid.config_doc README.md
    import sys

    changed = update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
    print("README config table " + ("updated" if changed else "already current"))
