"""The gateway's framing: ## … CR LF frames out of arbitrary TCP reads, with bounded memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hj212.codec import MAX_FRAME_LEN
from hj212.gateway import (
    CUT_AT_CLOSE,
    JUNK_KEEP,
    OUTSIDE,
    OVERSIZE,
    TRUNCATED,
    Framer,
    Junk,
    peek_header,
)

EXAMPLE = (
    b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&1C80\r\n"
)


def frames(items: list[bytes | Junk]) -> list[bytes]:
    return [i for i in items if isinstance(i, bytes)]


def junk(items: list[bytes | Junk]) -> list[Junk]:
    return [i for i in items if isinstance(i, Junk)]


def test_one_frame_split_at_every_byte() -> None:
    for cut in range(1, len(EXAMPLE)):
        f = Framer()
        out = f.feed(EXAMPLE[:cut]) + f.feed(EXAMPLE[cut:])
        assert out == [EXAMPLE], cut
        assert f.flush() is None


def test_several_frames_in_one_read() -> None:
    f = Framer()
    assert f.feed(EXAMPLE * 3) == [EXAMPLE] * 3


def test_garbage_between_frames_is_one_run_per_gap() -> None:
    f = Framer()
    out = f.feed(b"hello" + EXAMPLE + b"GET / HTTP/1.1\r\n\r\n" + EXAMPLE)
    assert frames(out) == [EXAMPLE, EXAMPLE]
    runs = junk(out)
    assert [(r.head, r.size, r.reason) for r in runs] == [
        (b"hello", 5, OUTSIDE),
        (b"GET / HTTP/1.1\r\n\r\n", 18, OUTSIDE),
    ]
    # Order is kept: the first run comes before the first frame.
    assert out[0] == runs[0] and out[1] == EXAMPLE


def test_blank_bytes_between_frames_are_not_worth_a_dead_letter() -> None:
    f = Framer()
    out = f.feed(EXAMPLE + b"\r\n\x00 " + EXAMPLE)
    assert frames(out) == [EXAMPLE, EXAMPLE]
    assert [r.blank for r in junk(out)] == [True]
    assert not Junk(b"x", 1, OUTSIDE).blank


def test_oversize_frame_is_dropped_and_the_stream_resyncs() -> None:
    f = Framer()
    big = b"##9999" + b"A" * 5000 + b"\r\n"
    out = []
    for i in range(0, len(big), 700):  # arrives in reads
        out += f.feed(big[i : i + 700])
        assert len(f.buf) < MAX_FRAME_LEN  # never holds more than one frame's bytes
    out += f.feed(EXAMPLE)
    assert frames(out) == [EXAMPLE]
    (run,) = junk(out)
    assert run.reason == OVERSIZE and run.size == len(big)
    assert len(run.head) == JUNK_KEEP and run.head == big[:JUNK_KEEP]


def test_endless_garbage_keeps_memory_bounded() -> None:
    f = Framer()
    for _ in range(1000):
        assert f.feed(b"x" * 4096) == []
        assert len(f.buf) <= 1 and f.garbage_pending > 0
    assert f.garbage_pending == 4096 * 1000
    run = f.flush()
    assert run is not None and run.size == 4096 * 1000 and len(run.head) == JUNK_KEEP


def test_frame_cut_off_by_a_new_frame() -> None:
    f = Framer()
    out = f.feed(EXAMPLE[:60] + EXAMPLE)
    assert frames(out) == [EXAMPLE]
    (run,) = junk(out)
    assert (run.head, run.reason) == (EXAMPLE[:60], TRUNCATED)


def test_partial_frame_at_close() -> None:
    f = Framer()
    assert f.feed(EXAMPLE[:50]) == []
    run = f.flush()
    assert run is not None and (run.head, run.reason) == (EXAMPLE[:50], CUT_AT_CLOSE)
    assert f.flush() is None


def test_a_lone_hash_waits_for_its_pair() -> None:
    f = Framer()
    out = f.feed(b"zz#")
    assert out == [] and f.buf == b"#"
    out = f.feed(EXAMPLE[1:])
    assert frames(out) == [EXAMPLE]
    assert [r.head for r in junk(out)] == [b"zz"]


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.just(EXAMPLE),
            st.binary(max_size=40).filter(lambda b: b"#" not in b),
        ),
        max_size=12,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=30),
)
def test_any_chunking_gives_the_same_frames(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    f = Framer()
    out: list[bytes | Junk] = []
    i = 0
    for c in cuts:
        out += f.feed(stream[i : i + c])
        i += c
    out += f.feed(stream[i:])
    tail = f.flush()
    assert frames(out) == [p for p in parts if p == EXAMPLE]
    dropped = sum(r.size for r in junk(out)) + (tail.size if tail else 0)
    assert dropped + len(EXAMPLE) * len(frames(out)) == len(stream)


def test_peek_header_of_a_broken_frame() -> None:
    broken = EXAMPLE.replace(b"1C80", b"ZZZZ")
    assert peek_header(broken) == {
        "QN": "20160801085857223",
        "ST": "32",
        "CN": "1062",
        "PW": "100000",
        "MN": "010000A8900016F000169DC0",
        "Flag": "5",
    }
    assert peek_header(b"##0000garbage") == {}
