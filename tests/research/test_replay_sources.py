"""Input files read in blocks give exactly the lines, and the chunks, that reading line by line gives: every
line ending, blank lines, a last line without a newline, and a truncated gzip member (a killed writer)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbtc.pipeline import replay_sources
from kbtc.pipeline.replay_sources import read_line_chunks

PIECES = [b"a", b"{}", b"\n", b"\r", b"\r\n", b"\n\n", b"\x85", b"\x0b", b"\x1c", b"\xff"]


def lines_one_by_one(path: Path) -> list[bytes]:
    """The reference: iterate the (possibly gzip) file object, a truncated member ending it."""
    lines: list[bytes] = []
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        try:
            for line in handle:
                lines.append(line)
        except (EOFError, zlib.error, gzip.BadGzipFile):
            pass
    return lines


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.tuples(st.sampled_from(PIECES), st.integers(1, 40)), max_size=200),
    block_bytes=st.sampled_from([1, 5, 64, 4096]),
    chunk_lines=st.integers(1, 30),
    compressed=st.booleans(),
    cut=st.floats(0.0, 1.0),
)
def test_blocks_give_the_lines_and_chunks_of_line_by_line_reading(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[tuple[bytes, int]], block_bytes: int, chunk_lines: int,
    compressed: bool, cut: float,
) -> None:
    data = b"".join(piece * count for piece, count in pieces)
    folder = tmp_path_factory.mktemp("lines")
    if compressed:
        packed = gzip.compress(data)
        if cut < 0.5:  # a truncated member somewhere past the header
            packed = packed[: 10 + round(cut * 2 * (len(packed) - 10))]
        path = folder / "in.jsonl.gz"
        path.write_bytes(packed)
    else:
        path = folder / "in.jsonl"
        path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay_sources, "_BLOCK_BYTES", block_bytes)
        chunks = list(read_line_chunks([path], chunk_lines))
    expected = lines_one_by_one(path)
    assert [line for _, _, lines in chunks for line in lines] == expected
    assert all(len(lines) == chunk_lines for _, _, lines in chunks[:-1])
    assert [first for _, first, _ in chunks] == [1 + chunk_lines * n for n in range(len(chunks))]
