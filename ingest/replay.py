"""Spool replay: write the oldest spooled segment to InfluxDB, drop it once all of it is stored.

One function for the service's background replay and ``envgrid spool replay``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ingest.seams import Writer
from ingest.spool import Spool
from ingest.writer import Delivery, Outcome


@dataclass(slots=True)
class SegmentReplay:
    """What replaying one segment did: points stored and lines refused for good, or the write
    that failed (the segment is then kept whole; what was written goes again, idempotently)."""

    written: int = 0
    writes: int = 0
    rejected: int = 0
    failed: Delivery | None = None


Refused = Callable[[str, str], Awaitable[None]]


async def replay_oldest(spool: Spool, writer: Writer, refused: Refused) -> SegmentReplay | None:
    """Replay the spool's oldest segment; None when the spool is empty.

    ``refused(line, reason)`` makes a line InfluxDB refuses for good durable elsewhere (a dead
    letter); it is awaited before the segment is dropped, so a crash loses nothing.
    """
    oldest = await asyncio.to_thread(spool.oldest)
    if oldest is None:
        return None
    segment, records = oldest
    step = SegmentReplay()
    for body in records:
        lines = body.decode().split("\n")
        d = await writer.deliver(lines)
        if d.outcome is not Outcome.OK:
            step.failed = d
            return step
        step.writes += 1
        step.written += len(lines) - len(d.rejected)
        step.rejected += len(d.rejected)
        for i, reason in d.rejected:
            await refused(lines[i], reason)
    await asyncio.to_thread(spool.drop, segment)
    return step
