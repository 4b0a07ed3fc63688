"""The on-disk spool: batches InfluxDB could not take, kept durable until they are replayed.

Append-only segment files of length-prefixed, CRC-checked records, fsynced before the caller
acks the broker. A torn record at the tail (a crash mid-append) was never acknowledged, so it is
cut off on open. Segments are replayed oldest-first and deleted once all their records are
written; a replay interrupted midway writes some records twice, which the idempotent point
writes (same series and timestamp overwrite) absorb.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("envgrid.spool")

_HEADER = struct.Struct(">4sII")  # magic, body length, CRC-32 of the body
_MAGIC = b"EGS1"


class SpoolFull(Exception):
    """The spool cannot take a batch without passing its size limit."""


class SpoolBusy(OSError):
    """Another process (a running service, a replay) holds the spool."""


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What an operator wants to know about the spool."""

    directory: Path
    segments: int
    records: int
    bytes: int
    max_bytes: int

    @property
    def fill(self) -> float:
        """Used fraction of the size limit."""
        return self.bytes / self.max_bytes if self.max_bytes else 0.0


class Spool:
    """A directory of segment files; thread-safe, so fsyncs can run off the event loop."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 16 << 20,
        *,
        exclusive: bool = False,
    ) -> None:
        """Open (and recover) the spool; ``exclusive`` holds it against other processes.

        Raises SpoolBusy if ``exclusive`` and another process holds it.
        """
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._lockfile: int | None = None
        if exclusive:
            # Two writers (the service and `envgrid spool replay`, or two services given the
            # same directory) would replay and delete each other's segments. The kernel drops
            # the lock when the process dies, kill -9 included.
            fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise SpoolBusy(
                    f"spool {directory} is in use by another process (a running envgrid "
                    "service replays its spool itself; stop it first, or give each service "
                    "its own ENVGRID_INGEST__SPOOL_DIR)"
                ) from None
            self._lockfile = fd
        self._segments: list[Path] = sorted(directory.glob("*.seg"))
        self._records: dict[Path, int] = {}
        self._bytes = 0
        for seg in self._segments:
            self._records[seg] = self._recover(seg)
            self._bytes += seg.stat().st_size
        self._active: Path | None = None  # never append to a segment left by an earlier run

    def close(self) -> None:
        """Release the exclusive hold, if any."""
        if self._lockfile is not None:
            os.close(self._lockfile)
            self._lockfile = None

    def _recover(self, seg: Path) -> int:
        n, good = 0, 0
        with seg.open("rb") as f:
            data = f.read()
        pos = 0
        while pos + _HEADER.size <= len(data):
            magic, length, crc = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if (
                magic != _MAGIC
                or end > len(data)
                or zlib.crc32(data[pos + _HEADER.size : end]) != crc
            ):
                break
            n, good, pos = n + 1, end, end
        if good != len(data):
            log.warning(
                "spool segment %s: cut a torn tail of %d bytes (never acknowledged)",
                seg.name,
                len(data) - good,
            )
            with seg.open("r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        return n

    def status(self) -> SpoolStatus:
        """Segments, records and bytes held."""
        with self._lock:
            return SpoolStatus(
                self.directory,
                len(self._segments),
                sum(self._records.values()),
                self._bytes,
                self.max_bytes,
            )

    @property
    def size_bytes(self) -> int:
        """Bytes held on disk."""
        return self._bytes

    def __len__(self) -> int:
        return sum(self._records.values())

    def append(self, body: bytes) -> None:
        """Append one batch and fsync it; raise SpoolFull past the size limit."""
        record = _HEADER.pack(_MAGIC, len(body), zlib.crc32(body)) + body
        with self._lock:
            if self._bytes + len(record) > self.max_bytes:
                raise SpoolFull(f"spool at {self._bytes} of {self.max_bytes} bytes")
            if self._active is None or self._active.stat().st_size >= self.segment_bytes:
                self._rotate_locked()
            assert self._active is not None
            fd = os.open(self._active, os.O_WRONLY | os.O_APPEND)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(record)
                    while view:  # unbuffered: a short write is seen here, not at close()
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    # Disk full or failing: a partial record would hide every later record of
                    # the segment from replay. Cut it off and use a fresh segment next time.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    self._active = None
                    raise
            finally:
                os.close(fd)
            self._records[self._active] += 1
            self._bytes += len(record)

    def _rotate_locked(self) -> None:
        last = int(self._segments[-1].stem) if self._segments else 0
        seg = self.directory / f"{last + 1:012d}.seg"
        seg.touch()
        _fsync_dir(self.directory)
        self._segments.append(seg)
        self._records[seg] = 0
        self._active = seg

    def oldest(self) -> tuple[Path, list[bytes]] | None:
        """The oldest segment and its records, sealing it if it is the one being appended to."""
        with self._lock:
            if not self._segments:
                return None
            seg = self._segments[0]
            if seg == self._active:
                self._active = None  # seal: new appends go to a new segment
            data = seg.read_bytes()
        return seg, list(_records(data))

    def drop(self, seg: Path) -> None:
        """Delete a segment whose records are all written."""
        with self._lock:
            if seg not in self._records:
                return
            self._bytes -= seg.stat().st_size
            seg.unlink()
            _fsync_dir(self.directory)
            self._segments.remove(seg)
            del self._records[seg]
            if self._active == seg:
                self._active = None


def inspect(directory: Path, max_bytes: int) -> SpoolStatus:
    """The status of a spool without opening it for writing: safe while a service appends."""
    segments, records, size = 0, 0, 0
    for seg in sorted(directory.glob("*.seg")):
        with contextlib.suppress(FileNotFoundError):  # replayed and deleted meanwhile
            data = seg.read_bytes()
            segments, size = segments + 1, size + len(data)
            records += sum(1 for _ in _records(data))
    return SpoolStatus(directory, segments, records, size, max_bytes)


def _records(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, pos)
        start, end = pos + _HEADER.size, pos + _HEADER.size + length
        if magic != _MAGIC or end > len(data) or zlib.crc32(data[start:end]) != crc:
            return
        yield data[start:end]
        pos = end


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
