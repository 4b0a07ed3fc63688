"""The cluster's settings section (``[cluster]``): unset ``database`` means one host, as before."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from devices.config import Duration, Section


class ClusterSettings(Section):
    """Hosts sharing one broker group: member leases and session adoption (docs/deploy.md)."""

    database: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL `postgresql://user:pass@host/db`: member leases and the "
        "alert store; unset: one host, no cluster; never logged",
    )
    database_file: Path | None = Field(
        default=None, description="file holding that URL (preferred: keeps the password out of env)"
    )
    member_id: str = Field(
        default="",
        description="this host's stable member id (default: the host name); worker client ids "
        "derive from it",
    )
    failover: Duration = Field(
        default=timedelta(seconds=30),
        description="a member silent this long loses its lease: survivors adopt its sessions",
    )
    renew: Duration = Field(
        default=timedelta(seconds=5), description="how often a member renews its lease"
    )
    drain_quiet: Duration = Field(
        default=timedelta(seconds=2),
        description="an adopted session counts as drained after this long without a message",
    )

    @field_validator("database")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and urlsplit(v.get_secret_value()).scheme not in (
            "postgresql",
            "postgres",
        ):
            raise ValueError("expected postgresql://user:password@host:port/database")
        return v

    @field_validator("member_id")
    @classmethod
    def _member(cls, v: str) -> str:
        if v and not all(c.isalnum() or c in "-_." for c in v):
            raise ValueError("use letters, digits, '-', '_' or '.': it becomes part of client ids")
        return v

    @model_validator(mode="after")
    def _timing(self) -> ClusterSettings:
        if self.renew <= timedelta(0) or self.renew * 3 > self.failover:
            raise ValueError("renew must be positive and at most a third of failover")
        return self

    @property
    def enabled(self) -> bool:
        """Whether a cluster database is configured."""
        return self.database is not None or self.database_file is not None

    def database_url(self) -> str:
        """The URL, from the file when one is given; never log it."""
        if self.database_file is not None:
            return self.database_file.read_text(encoding="utf-8").strip()
        assert self.database is not None
        return self.database.get_secret_value()

    def member(self) -> str:
        """This host's member id."""
        return self.member_id or socket.gethostname()
