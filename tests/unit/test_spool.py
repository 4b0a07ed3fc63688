"""The spool: durable, ordered, size-limited, and safe against a torn tail."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolFull


def test_append_replay_order_and_drop(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    for i in range(5):
        s.append(f"m v={i} {i}".encode() * 10)
    assert len(s) == 5 and s.status().segments >= 2
    seen = []
    while (o := s.oldest()) is not None:
        seg, records = o
        seen += [r.split(b" ")[1] for r in records]
        s.drop(seg)
    assert seen == [f"v={i}".encode() for i in range(5)]
    assert len(s) == 0 and s.size_bytes == 0


def test_survives_restart_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    s.append(b"a v=1 1")
    s.append(b"a v=2 2")
    seg = next(tmp_path.glob("*.seg"))
    with seg.open("ab") as f:
        f.write(b"EGS1\x00\x00\x00\x50partial")  # a crash mid-append
    s2 = Spool(tmp_path, max_bytes=1 << 20)
    assert len(s2) == 2
    o = s2.oldest()
    assert o is not None and o[1] == [b"a v=1 1", b"a v=2 2"]
    s2.append(b"a v=3 3")  # new appends go to a new segment, never after a recovered tail
    assert s2.status().segments == 2


def test_size_limit(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=200)
    s.append(b"x" * 100)
    with pytest.raises(SpoolFull):
        s.append(b"x" * 100)
    assert len(s) == 1
