"""Rollups follow recovered HJ 212 data: when a re-request (2061/2051/2031) brings data back, the
windows it fills are recomputed, so the day whose missing hours came back becomes valid.

The composition root wires it because ``hj212`` and ``rollups`` never import each other.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from hj212.commands import Command, CommandError, parse_time
from hj212.dispatch import Dispatcher
from ingest.influxql import QueryError
from rollups.runner import Rollup

__all__ = ["recompute_recovered"]

log = logging.getLogger("envgrid.hj212.backfill")

_SPAN = {"2061": timedelta(hours=1), "2051": timedelta(minutes=1), "2031": timedelta(days=1)}


def recompute_recovered(dispatcher: Dispatcher, rollup: Rollup, delay_s: float = 10.0) -> None:
    """Recompute the rollups of every period a succeeded re-request covered, ``delay_s`` after
    its 9012 (the data it brought passes the broker and the intake's batch first)."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(cmd: Command) -> None:
        station = dispatcher.stations.get(cmd.mn)
        if station is None:
            return
        try:
            begin = parse_time(cmd.params["BeginTime"]).replace(tzinfo=station.tz)
            end = parse_time(cmd.params["EndTime"]).replace(tzinfo=station.tz) + _SPAN[cmd.cn]
        except (KeyError, CommandError):
            return
        await asyncio.sleep(delay_s)
        try:
            report = await rollup.run_range(begin, end)
        except QueryError as e:
            log.warning("rollups after recovered data of MN %s: %s", cmd.mn, e)
            return
        log.info(
            "recovered data of MN %s: %d rollup windows recomputed (%d points)",
            cmd.mn,
            report.tasks,
            report.points,
        )

    def finished(cmd: Command) -> None:
        if cmd.cn in _SPAN and cmd.status == "succeeded" and cmd.packets:
            task = asyncio.create_task(run(cmd))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    dispatcher.on_finished.append(finished)
