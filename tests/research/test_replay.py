"""`kbtc replay`: the same input gives the same database; the multi-as-of path equals the live tick; no
as-of computation sees a later row (perturbing the future changes nothing before it)."""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from replay_support import (
    START_MS,
    lifecycle_message,
    recording_lines,
    seed_catalog,
    tickers,
    write_jsonl,
)
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.edge import EdgeParams
from kbtc.pipeline import replay
from kbtc.pipeline.edge_history import edges_over, load_history
from kbtc.pipeline.edges import EdgeSettings, compute_edge_tick
from kbtc.pipeline.replay import ingest, run_replay
from kbtc.pipeline.replay_sources import read_inputs
from kbtc.pipeline.tape import TapeRecord, TapeWriter

SETTINGS = EdgeSettings(params=EdgeParams(series=("KXBTCD",)))
TABLES = {
    "quotes": "market_ticker, quote_ts, source",
    "spot_ticks": "tick_ts, source",
    "edges": "asof_ts, market_ticker",
    "edge_snapshots": "asof_ts, market_ticker",
    "snapshot_scores": "asof_ts, market_ticker",
    "vol_estimates": "asof_ts",
    "markets": "market_ticker",
}


def fresh_engine(path: Path) -> Engine:
    url = f"sqlite:///{path}"
    upgrade_database(url)
    engine = make_engine(url)
    seed_catalog(engine)
    return engine


def dump(engine: Engine) -> dict[str, pl.DataFrame]:
    return {table: read_frame(engine, f"SELECT * FROM {table} ORDER BY {order}").drop("id", strict=False)
            for table, order in TABLES.items()}


def settlements_csv(path: Path) -> Path:
    path.write_text("ticker,result,expiration_value\n" + "".join(
        f"{ticker},{'yes' if i < 3 else 'no'},100100.5\n" for i, ticker in enumerate(tickers())))
    return path


def test_same_input_gives_identical_output_and_replaying_twice_adds_nothing(tmp_path: Path) -> None:
    recording = write_jsonl(tmp_path / "rec.jsonl", recording_lines())
    settlements = settlements_csv(tmp_path / "settled.csv")
    dumps = []
    for name in ("a", "b"):
        engine = fresh_engine(tmp_path / f"{name}.sqlite")
        result = run_replay(engine, [recording], SETTINGS, cadence_s=10, settlements=settlements)
        assert result.snapshots_written > 0 and result.score is not None and result.score.inserted > 0
        dumps.append(dump(engine))
        if name == "b":
            run_replay(engine, [recording], SETTINGS, cadence_s=10, settlements=settlements)
            dumps.append(dump(engine))
        engine.dispose()
    for table in TABLES:
        assert dumps[0][table].height > 0, table
        assert_frame_equal(dumps[0][table].drop("updated_ts", strict=False),
                           dumps[1][table].drop("updated_ts", strict=False), check_exact=True)
        assert_frame_equal(dumps[1][table], dumps[2][table], check_exact=True)
    scores = dumps[0]["snapshot_scores"]
    assert scores["scored_ts"].unique().to_list() == [START_MS + 599_015]  # the period's end, not the wall clock


def test_multi_asof_path_equals_the_live_tick(tmp_path: Path) -> None:
    engine = fresh_engine(tmp_path / "db.sqlite")
    ingest(engine, [write_jsonl(tmp_path / "rec.jsonl", recording_lines())], series=("KXBTCD",))
    asofs = [START_MS + s * 1000 for s in (5, 65, 300, 451, 599)]
    inputs = load_history(engine, asofs[0], asofs[-1], SETTINGS)
    batched = pl.concat([batch.edges for batch in edges_over(inputs, asofs, SETTINGS, chunk_rows=10)])
    assert batched["asof_ts"].unique().sort().to_list() == asofs
    for asof in asofs:
        live = compute_edge_tick(engine, asof, SETTINGS).edges
        # Floats agree to rounding: a different batch shape may change a SIMD summation order.
        assert_frame_equal(batched.filter(pl.col("asof_ts") == asof), live, check_exact=False, rel_tol=1e-12, abs_tol=0)
    engine.dispose()


def test_no_look_ahead_perturbing_the_future_changes_nothing_before_it(tmp_path: Path) -> None:
    # Rows count from their venue time, as in the live loaders: cut where no frame is in flight (every frame
    # received by the cut was sent before it, every frame sent after it is received after it).
    cut = START_MS + 299_500
    lines = recording_lines()
    perturbed = [line for line in lines if line[0] <= cut]
    perturbed += [(ts, feed, msg) for ts, feed, msg in recording_lines(seed=99, spot_shift=400.0) if ts > cut]
    # The future also settles and deactivates a market: status and result must not leak backwards.
    perturbed.append((cut + 5_000, "kalshi", lifecycle_message(tickers()[2], "deactivated", cut + 5_000)))
    perturbed.append((cut + 9_000, "kalshi", lifecycle_message(tickers()[1], "determined", cut + 9_000,
                                                               result="yes", determination_ts=(cut + 9_000) // 1000)))
    frames = {}
    for name, recording in (("same", lines), ("perturbed", sorted(perturbed, key=lambda line: line[0]))):
        engine = fresh_engine(tmp_path / f"{name}.sqlite")
        run_replay(engine, [write_jsonl(tmp_path / f"{name}.jsonl", recording)], SETTINGS, cadence_s=10,
                   to_ts=START_MS + 600_000)
        frames[name] = read_frame(engine, "SELECT * FROM edges ORDER BY asof_ts, market_ticker")
        engine.dispose()
    before = {name: frame.filter(pl.col("asof_ts") <= cut) for name, frame in frames.items()}
    assert before["same"].height > 0
    assert_frame_equal(before["same"], before["perturbed"], check_exact=True, check_dtypes=False)
    after = {name: frame.filter(pl.col("asof_ts") > cut + 10_000) for name, frame in frames.items()}
    assert not after["same"].equals(after["perturbed"])  # the perturbation is visible once it happened
    inactive = after["perturbed"].filter(pl.col("market_ticker") == tickers()[2])["skip_reason"].unique().to_list()
    assert inactive == ["inactive_status"]


def test_inputs_formats_rejects_with_line_numbers_and_a_torn_tape(tmp_path: Path) -> None:
    with TapeWriter(tmp_path / "tape", "coinbase", writer_id="w") as writer:
        writer.write('{"type":"heartbeat"}', START_MS, "c9")
    tape_file = next((tmp_path / "tape").rglob("*.jsonl.gz"))
    with gzip.open(tape_file, "ab") as handle:
        handle.write(b'{"received_ts": 1, "feed": "kal')  # a killed writer's torn last line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"received_ts": 5, "feed": "kalshi", "raw": "{}"}\nnot json\n[1]\n'
                   '{"type": "ticker", "msg": {"market_ticker": "X"}}\n'
                   '{"feed": "nyse", "raw": "{}", "received_ts": 3}\n')
    records = list(read_inputs([tmp_path / "tape", bad]))
    good = [r for r in records if isinstance(r, TapeRecord)]
    assert [(r.feed, r.connection_id, r.received_ts) for r in good] == [("coinbase", "c9", START_MS), ("kalshi", "", 5)]
    reasons = [r.reason for r in records if not isinstance(r, TapeRecord)]
    assert reasons == ["bad.jsonl:2: not JSON", "bad.jsonl:3: not a JSON object",
                       "bad.jsonl:4: no receive time (received_ts) and no message time",
                       "bad.jsonl:5: unknown feed 'nyse'"]


def test_bare_messages_take_their_own_time_and_matches_become_ticks(tmp_path: Path) -> None:
    engine = fresh_engine(tmp_path / "db.sqlite")
    path = tmp_path / "bare.jsonl"
    match = {"type": "match", "trade_id": 1, "sequence": 7, "product_id": "BTC-USD", "price": "100001.50",
             "size": "0.01", "side": "buy", "time": "2026-11-18T11:06:40.250000Z"}
    ticker = {"type": "ticker", "sid": 1, "seq": 1,
              "msg": {"market_ticker": tickers()[0], "yes_bid_dollars": "0.4100", "yes_ask_dollars": "0.4300",
                      "ts": 1_795_000_001}}
    path.write_text(json.dumps(match) + "\n" + json.dumps(ticker) + "\n")
    summary = ingest(engine, [path], series=("KXBTCD",))
    assert (summary.ticks, summary.quotes, summary.first_ts, summary.last_ts) == (1, 1, 1_795_000_000_250,
                                                                                 1_795_000_001_000)
    spot = read_frame(engine, "SELECT source, price, best_bid FROM spot_ticks")
    assert spot.rows() == [("coinbase_exchange_matches", 100001.5, None)]
    engine.dispose()


def test_replay_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("KALSHI_SERIES", "KXBTCD")
    upgrade_database(url)
    engine = make_engine(url)
    seed_catalog(engine)
    engine.dispose()
    recording = write_jsonl(tmp_path / "rec.jsonl", recording_lines(seconds=120))
    runner = CliRunner()
    result = runner.invoke(app, ["replay", "--tape", str(recording), "--cadence", "30s",
                                 "--settlements", str(settlements_csv(tmp_path / "s.csv"))])
    assert result.exit_code == 0, result.output
    assert "as-of times" in result.output and "snapshots" in result.output
    assert re.search(r"time: ingest [0-9.]+ s, edges [0-9.]+ s, score [0-9.]+ s", result.output), result.output
    bad = runner.invoke(app, ["replay", "--tape", str(recording), "--from", "yesterday-ish"])
    assert bad.exit_code == 2 and "not a time" in bad.output


def test_replay_command_bulk_loads_only_a_database_it_creates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kbtc.db.engine

    opened: list[bool] = []

    def recording_make_engine(url: str, **kwargs: Any) -> Engine:
        opened.append(kwargs.get("bulk_load", False))
        return make(url, **kwargs)

    make = kbtc.db.engine.make_engine
    monkeypatch.setattr(kbtc.db.engine, "make_engine", recording_make_engine)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'new.sqlite'}")
    recording = write_jsonl(tmp_path / "rec.jsonl", recording_lines(seconds=60))
    for creates in (True, False):  # the first run creates the file, the second writes into it
        opened.clear()
        result = CliRunner().invoke(app, ["replay", "--tape", str(recording), "--cadence", "30s"])
        assert result.exit_code == 0, result.output
        assert (True in opened) is creates


def test_status_follows_lifecycle_events_received_by_each_asof_time(tmp_path: Path) -> None:
    engine = fresh_engine(tmp_path / "db.sqlite")
    late = tickers()[4]
    # A market that opens mid-period, paused before it opens and activated later; one batch spans all of it.
    with engine.begin() as conn:
        conn.execute(text("UPDATE markets SET open_ts = :o WHERE market_ticker = :t"),
                     {"o": START_MS + 200_000, "t": late})
    lines = recording_lines()
    lines.append((START_MS + 150_000, "kalshi", lifecycle_message(late, "deactivated", START_MS + 150_000)))
    lines.append((START_MS + 400_000, "kalshi", lifecycle_message(late, "activated", START_MS + 400_000)))
    run_replay(engine, [write_jsonl(tmp_path / "rec.jsonl", sorted(lines, key=lambda line: line[0]))], SETTINGS,
               cadence_s=10, chunk_rows=10_000)
    rows = read_frame(engine, "SELECT asof_ts, skip_reason FROM edges WHERE market_ticker = :t ORDER BY asof_ts",
                      {"t": late})
    before_open = rows.filter(pl.col("asof_ts") < START_MS + 200_000)
    paused = rows.filter(pl.col("asof_ts").is_between(START_MS + 200_000, START_MS + 399_999))
    active = rows.filter(pl.col("asof_ts") >= START_MS + 400_000)
    assert before_open.height == 0  # not open: not evaluated
    assert paused.height == 20 and paused["skip_reason"].unique().to_list() == ["inactive_status"]
    assert active.height > 0 and active["skip_reason"].null_count() == active.height
    engine.dispose()


def test_a_period_sees_the_history_before_it(tmp_path: Path) -> None:
    recording = write_jsonl(tmp_path / "rec.jsonl", recording_lines())
    frames = {}
    for name, start in (("whole", None), ("late", START_MS + 300_000)):
        engine = fresh_engine(tmp_path / f"{name}.sqlite")
        run_replay(engine, [recording], SETTINGS, cadence_s=10, from_ts=start, to_ts=START_MS + 600_000)
        frames[name] = read_frame(engine, "SELECT * FROM edges ORDER BY asof_ts, market_ticker")
        engine.dispose()
    assert frames["late"]["asof_ts"].min() == START_MS + 300_000
    # The warm-up ingests what came before the period: the same edges as a replay of everything.
    whole = frames["whole"].filter(pl.col("asof_ts") >= START_MS + 300_000)
    assert_frame_equal(frames["late"], whole, check_exact=True, check_dtypes=False)


def test_an_early_close_counts_from_its_receive_time(tmp_path: Path) -> None:
    # A market listed (`created`) with a close an hour away, moved earlier by `close_date_updated` at `moved`.
    market, listed_close, new_close = tickers()[3], START_MS + 3_600_000, START_MS + 450_000
    moved = START_MS + 304_500
    created = (START_MS + 1_000, "kalshi", lifecycle_message(market, "created", START_MS + 1_000,
                                                             close_ts=listed_close // 1000))
    update = (moved, "kalshi", lifecycle_message(market, "close_date_updated", moved, close_ts=new_close // 1000))
    runs = {"listed": [created], "moved": [created, update], "again": [created, update], "no_created": [update]}
    frames: dict[str, dict[str, pl.DataFrame]] = {}
    for name, extra in runs.items():
        engine = fresh_engine(tmp_path / f"{name}.sqlite")
        recording = sorted(recording_lines() + extra, key=lambda line: line[0])
        run_replay(engine, [write_jsonl(tmp_path / f"{name}.jsonl", recording)], SETTINGS, cadence_s=10,
                   to_ts=START_MS + 600_000)
        catalog_close = read_frame(engine, "SELECT close_ts FROM markets WHERE market_ticker = :t", {"t": market})
        assert catalog_close.item() == (new_close if update in extra else listed_close)  # only the latest is kept
        frames[name] = {table: read_frame(engine, f"SELECT * FROM {table} ORDER BY asof_ts, market_ticker")
                        for table in ("edges", "edge_snapshots")}
        engine.dispose()
    for table in ("edges", "edge_snapshots"):
        assert_frame_equal(frames["moved"][table], frames["again"][table], check_exact=True)  # deterministic
        before = {name: frame[table].filter(pl.col("asof_ts") < moved) for name, frame in frames.items()}
        assert before["listed"].filter(pl.col("market_ticker") == market).height == 30
        # Before the venue announced it the early close is unknown: horizon, skips, probabilities as without it.
        assert_frame_equal(before["listed"], before["moved"], check_exact=True)
    # The other markets' edges are untouched (their snapshots' Kelly stakes are capped per event, with this market).
    others = {name: frame["edges"].filter(pl.col("market_ticker") != market) for name, frame in frames.items()}
    assert_frame_equal(others["listed"], others["moved"], check_exact=True)
    snapshots = frames["moved"]["edge_snapshots"].filter(pl.col("market_ticker") == market)
    after = snapshots.filter(pl.col("asof_ts") >= moved)
    assert after.height > 0 and after["asof_ts"].max() == new_close  # not evaluated once closed, as live
    assert after["close_ts"].unique().to_list() == after["settlement_ts"].unique().to_list() == [new_close]
    assert after["horizon_s"].to_list() == ((new_close - after["spot_ts"]) / 1000.0).to_list()
    assert snapshots.filter(pl.col("asof_ts") < moved)["close_ts"].unique().to_list() == [listed_close]
    # Without a stored `created` event the first close time is the catalog's: already the latest (documented).
    early = frames["no_created"]["edge_snapshots"].filter((pl.col("market_ticker") == market)
                                                         & (pl.col("asof_ts") < moved))
    assert early["close_ts"].unique().to_list() == [new_close]


def test_a_period_without_markets_gives_no_edges(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    upgrade_database(url)
    engine = make_engine(url)
    inputs = load_history(engine, START_MS, START_MS + 60_000, SETTINGS)
    assert [batch.edges.height for batch in edges_over(inputs, [START_MS, START_MS + 10_000], SETTINGS)] == [0]
    engine.dispose()


def test_a_market_closed_retroactively_trades_in_the_period_until_the_news(tmp_path: Path) -> None:
    # The catalog's (latest) close is before the period; until the update was received the market was open.
    market, listed_close, new_close = tickers()[3], START_MS + 3_600_000, START_MS + 200_000
    moved, start = START_MS + 304_500, START_MS + 250_000
    created = (START_MS + 1_000, "kalshi", lifecycle_message(market, "created", START_MS + 1_000,
                                                             close_ts=listed_close // 1000))
    update = (moved, "kalshi", lifecycle_message(market, "close_date_updated", moved, close_ts=new_close // 1000))
    frames = {}
    for name, extra in (("listed", [created]), ("moved", [created, update])):
        engine = fresh_engine(tmp_path / f"{name}.sqlite")
        recording = sorted(recording_lines() + extra, key=lambda line: line[0])
        run_replay(engine, [write_jsonl(tmp_path / f"{name}.jsonl", recording)], SETTINGS, cadence_s=10,
                   from_ts=start, to_ts=START_MS + 600_000)
        frames[name] = read_frame(engine, "SELECT * FROM edges WHERE market_ticker = :t ORDER BY asof_ts",
                                  {"t": market})
        engine.dispose()
    before = {name: frame.filter(pl.col("asof_ts") < moved) for name, frame in frames.items()}
    assert before["moved"].height == 6
    assert_frame_equal(before["listed"], before["moved"], check_exact=True)
    assert frames["moved"]["asof_ts"].max() < moved


def writer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "kbtc-replay-writer"]


def test_a_failed_write_stops_the_ingest_and_its_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[int] = []

    def failing_quotes(_engine: Engine, rows: list[Any]) -> int:
        written.append(len(rows))
        if len(written) == 2:
            time.sleep(0.5)  # the next batches are queued meanwhile: none may be written after this failure
            raise RuntimeError("disk full")
        return len(rows)

    monkeypatch.setattr(replay, "write_quotes", failing_quotes)
    engine = fresh_engine(tmp_path / "db.sqlite")
    recording = write_jsonl(tmp_path / "rec.jsonl", recording_lines(), style="tape")
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(engine, [recording], series=("KXBTCD",), batch_rows=50, chunk_lines=100)
    assert len(written) == 2  # nothing written after the failure
    assert not writer_threads()
    engine.dispose()


def test_a_failed_decode_stops_the_writer_without_writing_what_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_batch(_lines: pl.Series) -> Any:
        raise ValueError("a decoder bug")

    monkeypatch.setattr(replay, "ticker_batch", failing_batch)
    engine = fresh_engine(tmp_path / "db.sqlite")
    with pytest.raises(ValueError, match="decoder bug"):
        ingest(engine, [write_jsonl(tmp_path / "rec.jsonl", recording_lines())], series=("KXBTCD",))
    assert not writer_threads()
    assert read_frame(engine, "SELECT COUNT(*) AS n FROM quotes")["n"].item() == 0
    engine.dispose()


def test_a_write_failing_at_the_last_flush_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_ticks(_engine: Engine, _rows: list[Any]) -> int:
        raise RuntimeError("read-only file")

    monkeypatch.setattr(replay, "write_ticks", failing_ticks)
    engine = fresh_engine(tmp_path / "db.sqlite")
    with pytest.raises(RuntimeError, match="read-only"):  # every batch waits for the end: one flush, one failure
        ingest(engine, [write_jsonl(tmp_path / "rec.jsonl", recording_lines())], series=("KXBTCD",),
               batch_rows=1_000_000)
    assert not writer_threads()
    engine.dispose()
