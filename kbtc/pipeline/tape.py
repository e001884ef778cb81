"""The tape: an append-only, rotating, gzip-compressed JSON-lines record of every frame a collector received.

Layout: `<root>/<feed>/<YYYY-MM-DD>/<feed>-<YYYYMMDDTHH>-<writer_id>.jsonl.gz`, one file per feed, UTC hour
and writer (process + session), so concurrent collectors never interleave inside a file. Each line is
`{"received_ts": <ms>, "feed": "...", "connection_id": "...", "raw": "<the frame exactly as received>"}`.

Crash safety: the writer flushes the compressor (`Z_SYNC_FLUSH`) at most every `flush_interval_s` and on
close, so a kill -9 loses at most the frames since the last flush; `read_tape` reads every complete line of a
truncated file and stops quietly at the damaged tail.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_CHUNK_LINES = 256
_json_str = json.encoder.encode_basestring  # JSON string literal, non-ASCII kept (ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class TapeRecord:
    """One received frame."""

    received_ts: int
    feed: str
    connection_id: str
    raw: str


def tape_path(root: Path, feed: str, received_ts: int, writer_id: str) -> Path:
    """The file a frame received at `received_ts` (ms) belongs to."""
    moment = datetime.fromtimestamp(received_ts / 1000.0, tz=UTC)
    return root / feed / moment.strftime("%Y-%m-%d") / f"{feed}-{moment.strftime('%Y%m%dT%H')}-{writer_id}.jsonl.gz"


class TapeWriter:
    """Append frames of one feed to hourly gzip JSON-lines files (not thread-safe: one writer per collector)."""

    def __init__(self, root: Path, feed: str, *, writer_id: str | None = None, flush_interval_s: float = 1.0) -> None:
        self.root = root
        self.feed = feed
        self.writer_id = writer_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.flush_interval_s = flush_interval_s
        self.frames_written = 0
        self._path: Path | None = None
        self._file: gzip.GzipFile | None = None
        self._last_flush = time.monotonic()
        # The UTC hour [start, end) in ms the open file covers: most frames skip the path computation.
        self._hour_start_ts = 0
        self._hour_end_ts = 0
        # Lines are compressed in chunks (one gzip write per chunk, not per frame); `flush` drains them, so the
        # crash guarantee is unchanged: what was flushed is readable.
        self._pending: list[str] = []

    @property
    def path(self) -> Path | None:
        """The file currently written to (None before the first frame)."""
        return self._path

    def write(self, raw: str | bytes, received_ts: int, connection_id: str = "") -> None:
        """Append one frame (text or bytes, kept exactly) received at `received_ts` (ms)."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not self._hour_start_ts <= received_ts < self._hour_end_ts or self._file is None:
            path = tape_path(self.root, self.feed, received_ts, self.writer_id)
            if path != self._path or self._file is None:
                self._open(path)
            self._hour_start_ts = received_ts - received_ts % 3_600_000
            self._hour_end_ts = self._hour_start_ts + 3_600_000
        # The same JSON as json.dumps(..., ensure_ascii=False, separators=(",", ":")), built without the
        # generic encoder: this runs once per received frame.
        self._pending.append(
            f'{{"received_ts":{int(received_ts)},"feed":{_json_str(self.feed)},'
            f'"connection_id":{_json_str(connection_id)},"raw":{_json_str(text)}}}\n'
        )
        if len(self._pending) >= _CHUNK_LINES:
            self._drain()
        self.frames_written += 1
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval_s:
            self.flush()

    def write_many(self, frames: Iterable[tuple[str | bytes, int, str]]) -> None:
        """Append `(raw, received_ts, connection_id)` frames."""
        for raw, received_ts, connection_id in frames:
            self.write(raw, received_ts, connection_id)

    def _drain(self) -> None:
        if self._pending and self._file is not None:
            self._file.write("".join(self._pending).encode("utf-8"))
        self._pending.clear()

    def flush(self) -> None:
        """Make everything written so far readable after a crash."""
        self._drain()
        if self._file is not None:
            self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close the current file."""
        self._drain()
        if self._file is not None:
            self._file.close()
        self._file = None
        self._path = None

    def _open(self, path: Path) -> None:
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Append mode adds a new gzip member when a writer id is reused; readers handle multi-member files.
        self._file = gzip.open(path, "ab", compresslevel=6)  # noqa: SIM115 — lives until rotation/close
        self._path = path

    def __enter__(self) -> TapeWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def tape_files(root: Path, feed: str | None = None) -> list[Path]:
    """Every tape file under `root` (of one feed, or all), in name order (= time order within a writer)."""
    base = root / feed if feed is not None else root
    return sorted(base.rglob("*.jsonl.gz")) if base.exists() else []


def read_tape(paths: Iterable[Path]) -> Iterator[TapeRecord]:
    """Yield the records of tape files in order; a truncated or damaged tail ends that file quietly."""
    for path in paths:
        with gzip.open(path, "rb") as handle:
            try:
                for line in handle:
                    record = _parse_line(line)
                    if record is not None:
                        yield record
            except (EOFError, zlib.error, gzip.BadGzipFile):
                # The writer was killed mid-member: everything before the last sync flush was read.
                continue


def _parse_line(line: bytes) -> TapeRecord | None:
    try:
        data = json.loads(line)
        return TapeRecord(int(data["received_ts"]), str(data["feed"]), str(data["connection_id"]), str(data["raw"]))
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line
