"""What every ``envgrid`` sub-command shares: the --config option, one-line failures, dates,
settings, logging and the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from envgrid.settings import ConfigError, Settings, load_settings

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (env vars override it).", envvar="ENVGRID_CONFIG"
    ),
]
T = TypeVar("T")


def setup_logging(level: str = "INFO", file: Path | None = None, tag: str = "") -> None:
    """Plain timestamped lines on stderr (or a file); no secrets are ever passed to them.

    ``tag`` (e.g. "[worker 1] ") prefixes the logger name: --workers children share stderr."""
    handler: logging.Handler = logging.FileHandler(file) if file else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear line for the operator (no traceback) and exit."""
    typer.echo(f"envgrid: {message}", err=True)
    return typer.Exit(code)


def parse_date(option: str, text: str) -> date:
    """A YYYY-MM-DD option value, or exit with one line naming the option."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise fail(f"{option} {text!r} is not a date: write it as YYYY-MM-DD") from None


def settings_or_exit(config: Path | None, **overrides: Any) -> Settings:
    """Load settings, or exit with the problems listed one per line."""
    try:
        return load_settings(config, **overrides)
    except ConfigError as e:
        raise fail(str(e)) from None


def run_async(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on uvloop when available."""
    try:
        import uvloop

        return uvloop.run(coro())
    except ImportError:
        return asyncio.run(coro())
