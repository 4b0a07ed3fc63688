"""Building blocks of every settings section: strict sections and the one duration grammar."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")

_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(v: Any) -> Any:
    """Accept 90, "90s", "15m", "12h", "7d" besides ISO 8601 ("P7D")."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return timedelta(seconds=v)
    if isinstance(v, str) and (m := _DURATION.match(v)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    return v


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")
