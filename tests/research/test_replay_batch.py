"""The replay's vectorised ticker path gives exactly the per-frame parser's rows, or leaves the line to it.

For every line: if `ticker_batch` takes it, `KalshiStream.handle_frame` on the same frame yields one quote
equal to the batch's row; if the per-frame parser rejects the frame, the batch never takes it. Checked on
simulator-shaped frames (with and without the legacy cent fields), on generated frames (shuffled keys, nulls,
empty strings, legacy cents, numbers for strings, off-grid and out-of-range prices, huge integers, escapes)
and end to end: an ingest with the batch path writes the same rows as one without it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline import replay
from kbtc.pipeline.replay_batch import TickerBatch, lines_text, ticker_batch
from kbtc.pipeline.replay_sources import parse_line
from kbtc.pipeline.tape import TapeRecord
from kbtc.sim.kalshi.venue import dollars, fp
from kbtc.sim.kalshi.ws_messages import market_id, with_legacy_fields
from kbtc.venues.kalshi.marketdata import QuoteRecord
from kbtc.venues.kalshi.ws import KalshiStream

TICKER = "KXBTCD-26NOV20H00-T100250.00"
TS = 1_795_046_400_123


def tape_line(frame: dict[str, Any] | str, received_ts: int = TS + 20, connection_id: str = "c-1") -> bytes:
    """Our tape's line for a frame (as TapeWriter writes it)."""
    raw = frame if isinstance(frame, str) else json.dumps(frame, separators=(",", ":"))
    line = {"received_ts": received_ts, "feed": "kalshi", "connection_id": connection_id, "raw": raw}
    return (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def sim_frame(ts_ms: int, yes_bid: int, yes_ask: int, *, legacy: bool = False, seq: int | None = None) -> dict[str, Any]:
    """A ticker frame as the simulator's venue sends it (kbtc.sim.kalshi.ws_messages.ticker_msg, session.data)."""
    msg: dict[str, Any] = {
        "market_ticker": TICKER, "market_id": market_id(TICKER), "price_dollars": dollars(yes_bid + 100),
        "yes_bid_dollars": dollars(yes_bid), "yes_ask_dollars": dollars(yes_ask), "volume_fp": fp(12_345),
        "open_interest_fp": fp(678), "dollar_volume": 123, "dollar_open_interest": 45,
        "yes_bid_size_fp": fp(1000), "yes_ask_size_fp": fp(250), "last_trade_size_fp": fp(100),
        "ts": ts_ms // 1000, "ts_ms": ts_ms, "time": "2026-11-19T00:00:00.123Z",
    }
    envelope: dict[str, Any] = {"type": "ticker", "sid": 3}
    if seq is not None:
        envelope["seq"] = seq
    envelope["sending_ts_ms"] = ts_ms + 1
    envelope["msg"] = with_legacy_fields("ticker", msg) if legacy else msg
    return envelope


def per_frame(line: bytes) -> list[Any]:
    """What the per-frame path makes of a line: the reader's record, then the stream's items."""
    record = parse_line(line)
    if not isinstance(record, TapeRecord):
        return [record]
    return KalshiStream("replay://kalshi").handle_frame(record.raw, record.received_ts)


def batch_of(lines: list[bytes]) -> TickerBatch:
    return ticker_batch(lines_text(lines))


def assert_equivalent(lines: list[bytes]) -> TickerBatch:
    """Every taken line's row is the per-frame quote; every line the per-frame parser rejects is not taken."""
    batch = batch_of(lines)
    rows = dict(zip(batch.index.tolist(), batch.quotes.rows(), strict=True))
    for position, line in enumerate(lines):
        items = per_frame(line)
        if position in rows:
            assert len(items) == 1, (line, items)
            assert isinstance(items[0], QuoteRecord), (line, items)
            assert tuple(items[0]) == rows[position], (line, items[0], rows[position])
    return batch


def test_simulator_frames_are_taken_and_equal() -> None:
    lines = [tape_line(sim_frame(TS + i, 4000 + 100 * (i % 50), 4200 + 100 * (i % 50), seq=i if i % 2 else None))
             for i in range(200)]
    batch = assert_equivalent(lines)
    assert batch.index.tolist() == list(range(200))


def test_legacy_twins_and_benchmark_shape() -> None:
    legacy = [tape_line(sim_frame(TS + i, 4000, 4300, legacy=True)) for i in range(5)]
    bench = [tape_line(f'{{"type":"ticker","sid":2,"seq":{i},"msg":{{"market_ticker":"{TICKER}",'
                       f'"yes_bid_dollars":"0.4900","yes_ask_dollars":"0.5100","yes_bid_size_fp":"10.00",'
                       f'"yes_ask_size_fp":"10.00","ts_ms":{TS + i}}}}}') for i in range(5)]
    batch = assert_equivalent(legacy + bench)
    assert batch.index.tolist() == list(range(5, 10))  # legacy frames go through the per-frame parser


@pytest.mark.parametrize("change", [
    {"yes_bid_dollars": "0.12345"},  # finer than $0.0001: rejected per frame
    {"yes_bid_dollars": "1.0001"},  # above $1
    {"yes_ask_dollars": "-0.0100"},  # below $0
    {"yes_bid_dollars": "-0.00"},  # zero, negative sign
    {"yes_bid_dollars": ""}, {"yes_bid_dollars": None}, {"yes_ask_dollars": None, "yes_bid_size_fp": ""},
    {"yes_bid_dollars": 0.45},  # a number where a string is expected
    {"yes_bid_size_fp": "1" * 400},  # infinite as a float
    {"ts_ms": 10**20},  # beyond Int64
    {"ts_ms": "1795046400123"}, {"ts_ms": None}, {"market_ticker": ""}, {"market_ticker": "T\u00e9"},
    {"market_ticker": 'T"x'}, {"yes_bid": 45}, {"price_dollars": "0.0000"}, {"volume_fp": "-3.50"},
])
def test_adversarial_values(change: dict[str, Any]) -> None:
    frame = sim_frame(TS, 4000, 4300)
    frame["msg"].update(change)
    assert_equivalent([tape_line(frame)])


def test_malformed_lines_are_left_to_the_reader() -> None:
    good = tape_line(sim_frame(TS, 4000, 4300))
    lines = [good[:-30] + b"\n", good.replace(b'"feed":"kalshi"', b'"feed":"coinbase"'), b"\xff\xfe" + good,
             good.replace(b'"received_ts":', b'"received_ts":-'), good.replace(b"\n", b" \r\n"),
             good.replace(b'"type\\":\\"ticker', b'"type\\":\\"trade'), b'  \n', good.replace(b",", b", ", 1)]
    batch = assert_equivalent(lines)
    assert set(batch.index.tolist()) <= {3, 4, 7}


_DECIMALS = st.one_of(
    st.sampled_from(["", "0", "1", "0.5", "0.4900", "1.0000", "0.00001", "-0.0000", "2", "0.12345", "99.99"]),
    st.decimals(min_value=-2, max_value=2, places=5, allow_nan=False).map(str),
)
_VALUES = st.one_of(_DECIMALS, st.none(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2))
_KEYS = ["market_ticker", "market_id", "price_dollars", "yes_bid_dollars", "yes_ask_dollars", "volume_fp",
         "open_interest_fp", "dollar_volume", "dollar_open_interest", "yes_bid_size_fp", "yes_ask_size_fp",
         "last_trade_size_fp", "ts", "ts_ms", "time", "yes_bid", "price", "volume", "other"]


@settings(max_examples=300, deadline=None)
@given(
    values=st.dictionaries(st.sampled_from(_KEYS), st.one_of(_DECIMALS, _VALUES), max_size=6),
    drop=st.sets(st.sampled_from(_KEYS), max_size=4),
    shuffle=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_generated_frames(values: dict[str, Any], drop: set[str], shuffle: bool, seed: int) -> None:
    frame = sim_frame(TS, 4000, 4300)
    msg = {k: v for k, v in {**frame["msg"], **values}.items() if k not in drop}
    if shuffle:
        items = list(msg.items())
        random.Random(seed).shuffle(items)
        msg = dict(items)
    frame["msg"] = msg
    assert_equivalent([tape_line(frame)])


def _tables(path: Path) -> dict[str, pl.DataFrame]:
    engine = make_engine(f"sqlite:///{path}")
    out = {table: read_frame(engine, f"SELECT * FROM {table} ORDER BY id").drop("id")
           for table in ("quotes", "rejects")}
    engine.dispose()
    return out


def test_ingest_with_and_without_the_batch_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    lines = []
    for i in range(3000):
        frame = sim_frame(TS + int(rng.integers(0, 5_000)), 4000, 4300 if i % 7 else 3000)  # some crossed
        if i % 11 == 0:
            frame["msg"]["yes_bid_dollars"] = "0.40001"  # a reject, between batch quotes
        if i % 13 == 0:
            frame["msg"]["yes_bid"] = 40  # a legacy twin: the per-frame path, same table
        lines.append(tape_line(frame, received_ts=TS + i))
    lines.append(b"not json\n")
    tape = tmp_path / "day.jsonl"
    tape.write_bytes(b"".join(lines))
    results = {}
    for name in ("batch", "per_frame"):
        if name == "per_frame":
            empty = TickerBatch(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), batch_of([]).quotes)
            monkeypatch.setattr(replay, "ticker_batch", lambda _lines, empty=empty: empty)
        db = tmp_path / f"{name}.sqlite"
        upgrade_database(f"sqlite:///{db}")
        engine = make_engine(f"sqlite:///{db}")
        summary = replay.ingest(engine, [tape], series=("KXBTCD",), from_ts=TS + 100, to_ts=TS + 2_900,
                                chunk_lines=500)
        engine.dispose()
        results[name] = (summary, _tables(db))
    assert results["batch"][0] == results["per_frame"][0]
    for table, frame in results["batch"][1].items():
        assert frame.equals(results["per_frame"][1][table]), table
    assert results["batch"][0].quotes > 2000

