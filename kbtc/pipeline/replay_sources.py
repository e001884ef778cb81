"""Recorded frames for a replay: our own tape, and a documented JSON-lines format of venue messages.

Every line of an input file (`.jsonl`, or gzip-compressed `.jsonl.gz`; a directory means every such file under
it, in name order) is one JSON object, one of (docs/RESEARCH.md "Replay input"):

1. a tape record (kbtc.pipeline.tape): `{"received_ts": <ms>, "feed": "kalshi"|"coinbase", "connection_id": "…",
   "raw": "<the frame as text>"}`;
2. the same with `raw` an object (the message itself rather than its text);
3. a bare venue message: a Kalshi WebSocket message (`{"type": "ticker", "sid": …, "seq": …, "msg": {…}}`), a
   Coinbase Exchange message (`{"type": "ticker"|"match"|"last_match", …, "time": "…"}`) or an Advanced Trade
   envelope (`{"channel": "ticker", "timestamp": "…", "events": […]}`). The feed is told by the shape; the
   receive time is the line's `received_ts` when present, else the message's own time (Kalshi `msg.ts_ms`,
   `msg.ts` in seconds, or `sending_ts_ms`; Coinbase `time`/`timestamp`).

A line that is not such an object, or has no time, is a `RejectRecord` naming the file and line number. A torn
last line or a truncated gzip member (a killed writer) ends that file quietly, as `read_tape` does.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from kbtc.pipeline.tape import TapeRecord
from kbtc.venues.coinbase.messages import FrameError, rfc3339_to_ns
from kbtc.venues.records import RejectRecord

KALSHI = "kalshi"
COINBASE = "coinbase"
REJECT_SOURCE = "replay.input"


def input_files(paths: Iterable[Path]) -> list[Path]:
    """The files to read: each path itself, or every `*.jsonl`/`*.jsonl.gz` under a directory, in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.name.endswith((".jsonl", ".jsonl.gz"))))
        else:
            files.append(path)
    return files


def _open(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is a binary file object
    return path.open("rb")


def _feed_of(message: dict[str, Any]) -> str:
    if "channel" in message or "msg" not in message:
        return COINBASE
    return KALSHI


def _message_ts(message: dict[str, Any], feed: str) -> int | None:
    """The message's own time in epoch ms, when it has one."""
    if feed == KALSHI:
        msg = message.get("msg")
        if isinstance(msg, dict):
            if isinstance(msg.get("ts_ms"), int):
                return int(msg["ts_ms"])
            if isinstance(msg.get("ts"), int | float) and not isinstance(msg.get("ts"), bool):
                return int(msg["ts"] * 1000)
        sent = message.get("sending_ts_ms")
        return int(sent) if isinstance(sent, int) else None
    stamp = message.get("time", message.get("timestamp"))
    try:
        return rfc3339_to_ns(stamp) // 1_000_000 if stamp is not None else None
    except FrameError:
        return None


def parse_line(line: bytes) -> TapeRecord | str:
    """One input line → a record, or the reason it is not one."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    raw = data.get("raw")
    if raw is not None:
        message = raw if isinstance(raw, dict) else None
        text = orjson.dumps(raw).decode() if isinstance(raw, dict) else raw
        if not isinstance(text, str):
            return "raw must be a string or an object"
        feed = data.get("feed") or (_feed_of(message) if message is not None else None)
    else:
        message, text, feed = data, line.decode("utf-8", "replace").strip(), _feed_of(data)
    if feed not in (KALSHI, COINBASE):
        return f"unknown feed {feed!r}"
    received = data.get("received_ts")
    if received is None and message is not None:
        received = _message_ts(message, feed)
    if not isinstance(received, int) or isinstance(received, bool):
        return "no receive time (received_ts) and no message time"
    return TapeRecord(received, feed, str(data.get("connection_id") or ""), text)


_BLOCK_BYTES = 4 << 20


def _split_lines(data: bytes) -> list[bytes]:
    """`data` cut after each newline, as iterating a binary file cuts it (each piece keeps its b"\\n")."""
    if b"\r" not in data:  # bytes.splitlines cuts at \r too; without one, exactly where iteration does (in C)
        return data.splitlines(keepends=True)
    pieces = data.split(b"\n")
    lines = [piece + b"\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _file_lines(handle: BinaryIO) -> Iterator[list[bytes]]:
    """The file's lines in runs, read in blocks of a few MiB (a line at a time cost ~1 µs a line in gzip's
    Python `readline`: a tenth of a day's replay). A truncated gzip member ends the file: the complete lines
    before it are kept, a line it cut off is not (as line-by-line reading loses it)."""
    read = getattr(handle, "read1", handle.read)
    pending = b""
    try:
        while block := read(_BLOCK_BYTES):
            data = pending + block if pending else block
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            if cut:
                yield _split_lines(data[:cut])
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return
    if pending:
        yield [pending]  # a last line without a newline


def read_line_chunks(paths: Iterable[Path], chunk_lines: int) -> Iterator[tuple[Path, int, list[bytes]]]:
    """Yield `(file, number of its first line, lines)` of every input file in order, at most `chunk_lines` at a
    time; lines as read (blank ones included, so numbers stay right), a truncated gzip member ending its file."""
    for path in input_files(paths):
        with _open(path) as handle:
            lines: list[bytes] = []
            first = 1
            for run in _file_lines(handle):
                lines.extend(run)
                while len(lines) >= chunk_lines:
                    yield path, first, lines[:chunk_lines]
                    first += chunk_lines
                    del lines[:chunk_lines]
            if lines:
                yield path, first, lines


def line_record(path: Path, number: int, line: bytes) -> TapeRecord | RejectRecord | None:
    """One input line → its record, a reject naming the file and line, or None (blank, or a torn last line)."""
    if not line.strip():
        return None
    parsed = parse_line(line)
    if isinstance(parsed, TapeRecord):
        return parsed
    if line.endswith(b"\n"):
        return RejectRecord(REJECT_SOURCE, f"{path.name}:{number}: {parsed}", 0, line.decode("utf-8", "replace")[:4096])
    return None  # a torn last line of a killed writer, as read_tape


def read_inputs(paths: Iterable[Path]) -> Iterator[TapeRecord | RejectRecord]:
    """Yield the records of every input file in order, and a reject for each unusable line."""
    for path, first, lines in read_line_chunks(paths, 4096):
        for number, line in enumerate(lines, start=first):
            record = line_record(path, number, line)
            if record is not None:
                yield record
