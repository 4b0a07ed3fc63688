"""The spool under trouble: a failing disk, a second writer, a status reader beside a writer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolBusy, inspect


def test_a_failed_append_leaves_no_partial_record(tmp_path: Path) -> None:
    # A real short write: RLIMIT_FSIZE makes the kernel stop the file at 4 KiB (EFBIG), as a
    # full disk would. In a child process, so the limit touches nothing else.
    script = textwrap.dedent(
        f"""
        import resource, signal
        from pathlib import Path
        from ingest.spool import Spool
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        s = Spool(Path({str(tmp_path)!r}), 1 << 20)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        ok = 0
        try:
            for i in range(100):
                s.append(b"batch %03d " % i + b"x" * 990)
                ok += 1
        except OSError as e:
            print("failed", ok, e.errno, Path({str(tmp_path)!r}, "000000000001.seg").stat().st_size)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        s.append(b"after the failure")
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    word, ok, _, size = r.stdout.split()
    assert word == "failed" and int(ok) == 4  # 4 records of 1,012 bytes fit in 4 KiB
    assert int(size) == 4 * 1012  # the 48 bytes of the fifth that did fit were cut off at once
    s = Spool(tmp_path, 1 << 20)
    got = []
    while (o := s.oldest()) is not None:
        got += o[1]
        s.drop(o[0])
    assert got == [b"batch %03d " % i + b"x" * 990 for i in range(4)] + [b"after the failure"]


def test_exclusive_spool_refuses_a_second_writer(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20, exclusive=True)
    with pytest.raises(SpoolBusy, match="in use by another process"):
        Spool(tmp_path, 1 << 20, exclusive=True)
    s.close()
    Spool(tmp_path, 1 << 20, exclusive=True).close()  # free again once released


def test_inspect_reads_without_touching(tmp_path: Path) -> None:
    s = Spool(tmp_path, 1 << 20)
    s.append(b"a v=1 1")
    s.append(b"a v=2 2")
    seg = next(tmp_path.glob("*.seg"))
    with seg.open("ab") as f:
        f.write(b"EGS1\x00\x00\x00\x50part")  # an append in progress, as a reader may see it
    size = seg.stat().st_size
    st = inspect(tmp_path, 1 << 20)
    assert (st.segments, st.records, st.bytes) == (1, 2, size)
    assert seg.stat().st_size == size  # not cut: the writer may be about to finish it
