"""The edges step end to end on a database: one tick writes edges and snapshots once per (market, as-of time),
re-running replaces them, and the commands (`compute-edges`, `run-live-edges --once`, `price`) work."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import count_rows, read_frame, upsert
from kbtc.edge import EdgeParams
from kbtc.edge.engine import with_depth
from kbtc.pipeline.edge_inputs import MarketCatalogCache, load_latest_books, load_markets
from kbtc.pipeline.edges import (
    EdgeSettings,
    LiveTickCache,
    compute_edge_tick,
    edge_rows,
    sanity_lines,
    snapshot_rows,
    write_edges,
)

HOUR = 3_600_000


def seed_database(engine: Engine, asof: int) -> None:
    """Markets of the three series, their quotes, and an hour of 1 Hz Coinbase ticks ending at `asof`."""
    base = {"event_ticker": "KXBTCD-E", "series_ticker": "KXBTCD", "status": "active", "strike_type": "greater",
            "open_ts": asof - HOUR, "close_ts": asof + HOUR, "first_seen_ts": 0, "updated_ts": 0,
            "fee_type": "quadratic", "fee_multiplier": 1.0, "price_level_structure": "linear_cent"}
    markets = [{**base, "market_ticker": f"KXBTCD-E-T{k}", "floor_strike": float(k)} for k in (99_749.99, 99_999.99,
                                                                                               100_249.99, 120_000)]
    markets.append({**base, "market_ticker": "KXBTC15M-Q-00", "event_ticker": "KXBTC15M-Q",
                    "series_ticker": "KXBTC15M", "strike_type": "greater_or_equal", "floor_strike": None,
                    "close_ts": asof + 600_000})
    upsert(engine, "markets", markets)
    tickers = [m["market_ticker"] for m in markets]
    upsert(engine, "quotes", pl.DataFrame({
        "market_ticker": tickers, "quote_ts": [asof - 3_000] * len(tickers), "received_ts": [asof - 2_900] * len(tickers),
        "source": "ws", "yes_bid_cents": [60.0, 45.0, 30.0, 1.0, 50.0], "yes_ask_cents": [62.0, 47.0, 32.0, 2.0, 52.0],
    }))
    rng = np.random.default_rng(1)
    ts = np.arange(asof - HOUR, asof + 1, 1000)
    price = 100_000 * np.exp(np.cumsum(rng.normal(0, 0.5 / 5615.7, ts.size)))
    price *= 100_000 / price[-1]
    upsert(engine, "spot_ticks", pl.DataFrame({
        "product_id": "BTC-USD", "source": "coinbase_advanced", "tick_ts": ts, "venue_time_ns": ts * 1_000_000,
        "received_ts": ts, "price": price, "best_bid": price - 0.005, "best_ask": price + 0.005,
    }))


@pytest.fixture
def engine(migrated_url: str) -> Engine:
    eng = make_engine(migrated_url)
    yield eng  # type: ignore[misc]
    eng.dispose()


def test_tick_writes_edges_and_snapshots_idempotently(engine: Engine) -> None:
    asof = 1_795_000_000_000
    seed_database(engine, asof)
    tick = compute_edge_tick(engine, asof)
    assert tick.skip_counts() == {"priced": 4, "strike_pending": 1}
    assert count_rows(engine, "edges") == 5 and count_rows(engine, "edge_snapshots") == 4
    snaps = read_frame(engine, "SELECT s.*, p.params_json, p.contracts, p.model_version AS params_version, "
                               "p.first_seen_ts FROM edge_snapshots s JOIN model_params p ON p.params_id = s.params_id "
                               "WHERE s.market_ticker = 'KXBTCD-E-T99999.99'")
    row = snaps.row(0, named=True)  # the at-the-money strike
    assert row["spot_usd"] == pytest.approx(100_000.0) and row["spot_age_s"] == 0.0 and row["quote_age_s"] == 3.0
    assert row["sigma_status"] is not None and 0.1 < row["sigma_annual"] < 3.0
    assert row["basis_std_usd"] > 0 and row["fee_type"] == "quadratic" and row["fee_yes_dollars"] == 0.02
    assert row["no_ask_cents"] == 55.0 and row["no_bid_cents"] == 53.0 and row["p_market"] == pytest.approx(0.46)
    assert 0.3 < row["p_model"] < 0.7 and row["ev_yes_dollars"] == pytest.approx(row["p_model"] - 0.47 - 0.02)
    params = json.loads(row["params_json"])
    assert params["model_version"] == row["model_version"] and params["settlement"] == "average"
    assert row["params_id"] == EdgeSettings().param_set().params_id and len(row["params_id"]) == 16
    assert (row["contracts"], row["params_version"], row["first_seen_ts"]) == (1.0, row["model_version"], asof)
    assert count_rows(engine, "model_params") == 1
    assert count_rows(engine, "vol_estimates") == 1
    # Same as-of time again: rows are replaced, not duplicated.
    compute_edge_tick(engine, asof)
    assert count_rows(engine, "edges") == 5 and count_rows(engine, "edge_snapshots") == 4
    assert tick.edges["depth_ev_yes_dollars"].null_count() == 5  # no book stored: no depth-aware EV
    lines = sanity_lines(tick)
    assert any(line.startswith("quote freshness: 5 markets quoted") for line in lines)
    assert sum(line.startswith("top EV YES") for line in lines) == 4
    assert lines[-1] == "outcomes: priced=4, strike_pending=1"


def test_point_settlement_setting_is_recorded(engine: Engine) -> None:
    asof = 1_795_000_000_000
    seed_database(engine, asof)
    tick = compute_edge_tick(engine, asof, EdgeSettings(params=EdgeParams(settlement="point"), persist_vol=False))
    assert tick.snapshots_written == 4
    stored = read_frame(engine, "SELECT p.params_json FROM edge_snapshots s "
                                "JOIN model_params p ON p.params_id = s.params_id")["params_json"].to_list()
    assert len(stored) == 4 and {json.loads(p)["settlement"] for p in stored} == {"point"}


@pytest.mark.parametrize("any_db_url", ["sqlite"], indirect=True)
def test_commands(engine: Engine, migrated_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    now = int(time.time() * 1000)
    seed_database(engine, now)
    runner = CliRunner()
    result = runner.invoke(app, ["compute-edges"])
    assert result.exit_code == 0, result.output
    assert "top EV YES" in result.output and "quote freshness" in result.output
    result = runner.invoke(app, ["run-live-edges", "--once", "--interval-seconds", "10"])
    assert result.exit_code == 0, result.output
    assert "1 ticks, 0 failed" in result.output
    assert count_rows(engine, "edge_snapshots") >= 4

    rows = tmp_path / "rows.csv"
    pl.DataFrame({
        "spot": [100_000.0, 100_000.0], "sigma": [0.5, 0.5], "strike_type": ["greater", "between"],
        "floor_strike": [100_000.0, 99_000.0], "cap_strike": [None, 99_500.0], "seconds_to_close": [3600.0, 30.0],
        "yes_bid": [45.0, 1.0], "yes_ask": [47.0, 2.0], "contracts": [10.0, 1.0],
    }).write_csv(rows)
    out = tmp_path / "priced.parquet"
    result = runner.invoke(app, ["price", "--input", str(rows), "--output", str(out), "--settlement", "point"])
    assert result.exit_code == 0, result.output
    priced = pl.read_parquet(out)
    assert priced.height == 2 and priced["skip_reason"].to_list() == [None, None]
    assert priced["fee_yes_dollars"][0] == 0.18  # ⌈0.07·10·0.47·0.53⌉ = 18 ¢
    fine = tmp_path / "fine.csv"
    result = runner.invoke(app, ["price", "--input", str(rows), "--output", str(fine), "--fee-rounding", "ten_thousandth"])
    assert result.exit_code == 0, result.output
    assert pl.read_csv(fine)["fee_yes_dollars"][0] == 0.1744  # 0.07·10·0.47·0.53 = 0.17437 → up to $0.0001
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"spot": [1.0]}).write_csv(bad)
    result = runner.invoke(app, ["price", "--input", str(bad), "--output", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "required column" in result.output


def test_tick_uses_the_latest_book_for_depth_aware_ev(engine: Engine) -> None:
    asof = 1_795_000_000_000
    seed_database(engine, asof)
    ticker = "KXBTCD-E-T99999.99"
    upsert(engine, "orderbook_snapshots", [
        {"market_ticker": ticker, "book_ts": asof - 60_000, "received_ts": asof - 60_000, "source": "ws",
         "yes_bids_json": "[[10.0, 1.0]]", "no_bids_json": "[[10.0, 1.0]]"},  # too old: ignored
        {"market_ticker": ticker, "book_ts": asof - 2_000, "received_ts": asof - 2_000, "source": "ws",
         "yes_bids_json": "[[45.0, 2.0]]", "no_bids_json": "[[53.0, 1.0], [52.0, 5.0]]"},
    ])
    tick = compute_edge_tick(engine, asof, EdgeSettings(params=EdgeParams(contracts=3.0), persist_vol=False))
    row = tick.edges.filter(pl.col("market_ticker") == ticker).row(0, named=True)
    assert row["depth_filled_yes"] == 3.0 and row["depth_filled_no"] == 2.0
    fees = 0.02 + 0.04  # 1 × 47 ¢ (⌈1.74⌉ = 2 ¢) then 2 × 48 ¢ (⌈3.49⌉ = 4 ¢)
    assert row["depth_ev_yes_dollars"] == pytest.approx(3 * row["p_model"] - 0.47 - 2 * 0.48 - fees)



def test_tick_reads_the_books_of_the_priced_markets_only_and_equals_the_engine_with_every_book(engine: Engine) -> None:
    asof = 1_795_000_000_000
    seed_database(engine, asof)
    tickers = read_frame(engine, "SELECT market_ticker FROM markets ORDER BY market_ticker")["market_ticker"].to_list()
    upsert(engine, "orderbook_snapshots", [
        {"market_ticker": ticker, "book_ts": asof - 1_000 - i, "received_ts": asof - 1_000, "source": "ws",
         "yes_bids_json": f"[[{40 + i}.0, 2.0], [30.0, 9.0]]", "no_bids_json": f"[[{50 - i}.0, 1.0]]"}
        for i, ticker in enumerate(tickers)
    ])
    settings = EdgeSettings(params=EdgeParams(contracts=3.0), persist_vol=False)
    tick = compute_edge_tick(engine, asof, settings)
    priced = tick.edges.filter(pl.col("skip_reason").is_null())["market_ticker"].to_list()
    assert 0 < len(priced) < len(tickers)
    every = load_latest_books(engine, asof, settings.params.series, max_age_ms=30_000)
    only = load_latest_books(engine, asof, settings.params.series, max_age_ms=30_000, tickers=priced)
    assert set(every["market_ticker"]) > set(only["market_ticker"]) == set(priced)
    order = ["market_ticker", "side", "price_cents"]
    assert_frame_equal(only.sort(order), every.filter(pl.col("market_ticker").is_in(priced)).sort(order))
    assert load_latest_books(engine, asof, settings.params.series, max_age_ms=30_000, tickers=[]).height == 0
    assert tick.edges["depth_filled_yes"].null_count() == tick.edges.height - len(priced)
    expected = with_depth(tick.edges, every.with_columns(pl.lit(asof, pl.Int64).alias("asof_ts")), settings.params)
    assert_frame_equal(tick.edges, expected)



def test_tick_stores_its_volatility_estimate_with_its_edges(engine: Engine) -> None:
    asof = 1_795_000_000_000
    seed_database(engine, asof)
    compute_edge_tick(engine, asof, EdgeSettings(persist_vol=False))
    assert count_rows(engine, "vol_estimates") == 0
    for _ in range(2):  # a re-run replaces its row
        tick = compute_edge_tick(engine, asof, EdgeSettings())
    stored = read_frame(engine, "SELECT product_id, asof_ts, status, sigma_annual FROM vol_estimates")
    assert stored.rows() == [("BTC-USD", asof, "ok", tick.edges["sigma_annual"].drop_nulls()[0])]


ASOF = 1_795_000_000_000


def _tables(url: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    engine = make_engine(url)
    try:
        return tuple(  # type: ignore[return-value]
            read_frame(engine, f"SELECT * FROM {table} ORDER BY {order}").drop("id", strict=False)
            for table, order in (("edges", "asof_ts, market_ticker"), ("edge_snapshots", "asof_ts, market_ticker"),
                                 ("model_params", "params_id"))
        )
    finally:
        engine.dispose()


def test_write_edges_matches_per_table_upserts(migrated_url: str, tmp_path: Path) -> None:
    engine = make_engine(migrated_url)
    seed_database(engine, ASOF)
    settings = EdgeSettings(persist_vol=False)
    edges = compute_edge_tick(engine, ASOF, settings).edges
    engine.dispose()
    other_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    upgrade_database(other_url)
    other = make_engine(other_url)
    upsert(other, "edges", edge_rows(edges))
    params = settings.param_set()
    upsert(other, "model_params", [params.row(ASOF)])
    upsert(other, "edge_snapshots", snapshot_rows(edges, params.params_id))
    other.dispose()
    ours, reference = _tables(migrated_url), _tables(other_url)
    assert ours[0].height == 5 and ours[1].height == 4 and ours[2].height == 1
    for mine, theirs in zip(ours, reference, strict=True):
        assert_frame_equal(mine, theirs, check_dtypes=False)


def test_write_edges_replaces_and_handles_no_snapshots(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    seed_database(engine, ASOF)
    edges = compute_edge_tick(engine, ASOF, EdgeSettings(persist_vol=False)).edges
    changed = edges.with_columns(pl.lit("missing_both_sides").alias("skip_reason"), pl.col("p_model") * 0.5)
    params = EdgeSettings().param_set()
    assert write_edges(engine, changed, params) == (5, 0)  # nothing selected: no snapshot statement at all
    stored = read_frame(engine, "SELECT market_ticker, skip_reason, p_model FROM edges ORDER BY market_ticker")
    expected = changed.sort("market_ticker").select("market_ticker", "skip_reason", "p_model")
    assert_frame_equal(stored, expected, check_dtypes=False)
    assert read_frame(engine, "SELECT COUNT(*) AS n FROM edge_snapshots")["n"][0] == 4  # earlier rows kept
    # Rows without a price go through the narrower upsert: it still clears the price a stored row had.
    unpriced = changed.with_columns(pl.lit(None, pl.Float64).alias(c) for c in ("p_model", "ev_yes_dollars",
                                                                              "ev_no_dollars"))
    assert write_edges(engine, unpriced, params) == (5, 0)
    stored = read_frame(engine, "SELECT * FROM edges ORDER BY market_ticker")
    assert_frame_equal(stored, edge_rows(unpriced).sort("market_ticker"), check_dtypes=False)
    assert write_edges(engine, edges.clear(), params) == (0, 0)
    engine.dispose()


def test_catalog_cache_matches_fresh_reads_and_reloads_on_change(engine: Engine) -> None:
    seed_database(engine, ASOF)
    catalog = MarketCatalogCache()

    def both(asof: int) -> pl.DataFrame:
        with engine.connect() as conn:
            cached, fresh = catalog.load(conn, asof, ["KXBTCD", "KXBTC15M"]), load_markets(conn, asof, ["KXBTCD", "KXBTC15M"])
        assert_frame_equal(cached, fresh)
        return cached

    def change(assignments: str) -> None:  # as the catalog writers do: every change stamps updated_ts
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE markets SET {assignments} WHERE market_ticker = 'KXBTCD-E-T99999.99'"))

    assert both(ASOF).height == 5 and catalog.hits == 0
    assert both(ASOF + 10_000).height == 5 and catalog.hits == 1
    assert both(ASOF + 610_000).height == 4 and catalog.hits == 2  # KXBTC15M-Q-00 closed: dropped as SQL would
    change("cap_strike = 5.0, updated_ts = 7")
    assert both(ASOF + 620_000)["cap_strike"].drop_nulls().to_list() == [5.0] and catalog.hits == 2  # re-read
    change("catalog_status = 'vanished', updated_ts = 8")
    assert both(ASOF + 630_000).height == 3 and catalog.hits == 2
    assert both(ASOF + 640_000).height == 3 and catalog.hits == 3
    assert both(ASOF).height == 4 and catalog.hits == 3  # back in time (a replay): re-read


def test_tick_with_live_cache_equals_tick_without(engine: Engine) -> None:
    seed_database(engine, ASOF)
    settings = EdgeSettings(persist_vol=False)
    cache = LiveTickCache()
    compute_edge_tick(engine, ASOF - 1_000, settings, cache)
    cached = compute_edge_tick(engine, ASOF, settings, cache).edges
    assert cache.catalog.hits == 1 and cache.quotes.hits == (1 if engine.dialect.name == "sqlite" else 0)
    assert_frame_equal(cached, compute_edge_tick(engine, ASOF, settings).edges)


def seed_old_references(engine: Engine, asof: int, gap_usd: float = 8.0) -> int:
    """Flat Coinbase ticks from 2 h 10 min to 1 h before `asof`, and settled KXBTC15M markets whose published
    strikes and expiration values (65–120 min old) sit `gap_usd` above Coinbase; return how many minutes."""
    ts = np.arange(asof - 130 * 60_000, asof - HOUR, 1000)
    upsert(engine, "spot_ticks", pl.DataFrame({
        "product_id": "BTC-USD", "source": "coinbase_advanced", "tick_ts": ts, "venue_time_ns": ts * 1_000_000,
        "received_ts": ts, "price": 100_000.0, "best_bid": 99_999.995, "best_ask": 100_000.005,
    }))
    opens = [asof - 120 * 60_000 + 15 * 60_000 * k for k in range(3)]  # windows end 120, 105, 90 and 75 min ago
    upsert(engine, "markets", [
        {"market_ticker": f"KXBTC15M-OLD-{k}", "event_ticker": f"KXBTC15M-OLD-{k}", "series_ticker": "KXBTC15M",
         "status": "finalized", "strike_type": "greater_or_equal", "floor_strike": 100_000.0 + gap_usd,
         "expiration_value": 100_000.0 + gap_usd, "open_ts": open_ts, "close_ts": open_ts + 900_000,
         "determined_ts": open_ts + 930_000, "first_seen_ts": 0, "updated_ts": 0}
        for k, open_ts in enumerate(opens)
    ])
    return len(opens) + 1


def test_live_basis_sees_references_older_than_the_spot_lookback_as_a_replay_does(engine: Engine) -> None:
    from kbtc.edge.basis import BasisParams, estimate_basis
    from kbtc.pipeline.edge_history import edges_over, load_history

    asof = ASOF
    seed_database(engine, asof)
    minutes = seed_old_references(engine, asof)
    settings = EdgeSettings(persist_vol=False)
    live = compute_edge_tick(engine, asof, settings).edges
    row = live.filter(pl.col("market_ticker") == "KXBTCD-E-T99999.99").row(0, named=True)
    # Every reference minute (up to 2 h old) has its Coinbase average: the basis is the references' gap,
    # shrunk toward the prior (0 ± 10) by 2 pseudo-observations — not the prior alone.
    assert row["basis_status"] == "references"
    history = load_history(engine, asof, asof, settings)
    expected = estimate_basis(history.spot, [asof], references=history.references, params=BasisParams())
    assert expected["basis_n"][0] == minutes
    assert row["basis_usd"] == pytest.approx(expected["basis_usd"][0], rel=1e-12) and 5.0 < row["basis_usd"] < 8.0
    # The live tick equals the replay of the same as-of time.
    [batch] = edges_over(history, [asof], settings)
    assert_frame_equal(batch.edges, live, check_exact=False, rel_tol=1e-12, abs_tol=0)


def test_stored_index_prints_are_the_spot_and_recorded_in_the_snapshot(engine: Engine) -> None:
    asof = ASOF
    seed_database(engine, asof)
    upsert(engine, "index_prices", [
        {"index_id": "BRTI", "value_ts": asof - 1000 * i, "received_ts": asof - 1000 * i + 200,
         "value_usd": 100_012.0} for i in range(300)
    ])
    tick = compute_edge_tick(engine, asof, EdgeSettings(persist_vol=False))
    snaps = read_frame(engine, "SELECT spot_source, spot_usd, basis_usd, basis_std_usd, model_version "
                               "FROM edge_snapshots")
    assert snaps.height == 4 and set(snaps["spot_source"]) == {"index"}
    assert set(snaps["spot_usd"]) == {100_012.0} and set(snaps["basis_usd"]) == {0.0}
    assert set(snaps["basis_std_usd"]) == {0.0} and tick.edges["basis_status"].unique().to_list() == ["spot_is_index"]
    # Switched off (or without index prints) the spot is Coinbase plus the basis estimate.
    off = compute_edge_tick(engine, asof + 1, EdgeSettings(params=EdgeParams(index_spot=False), persist_vol=False))
    row = off.edges.filter(pl.col("skip_reason").is_null()).row(0, named=True)
    assert row["spot_source"] == "coinbase" and row["spot_usd"] == pytest.approx(100_000.0, abs=0.01)
    assert row["basis_status"] == "index"  # the index still measures the basis
    stored = read_frame(engine, f"SELECT DISTINCT spot_source FROM edge_snapshots WHERE asof_ts = {asof + 1}")
    assert stored["spot_source"].to_list() == ["coinbase"]


@pytest.mark.parametrize("any_db_url", ["sqlite"], indirect=True)
def test_commands_switch_the_basis_and_the_sigma_fallback(engine: Engine, migrated_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    now = int(time.time() * 1000)
    seed_database(engine, now)
    runner = CliRunner()
    result = runner.invoke(app, ["compute-edges", "--no-basis"])
    assert result.exit_code == 0, result.output
    snaps = read_frame(engine, "SELECT s.basis_usd, s.basis_std_usd, p.params_json FROM edge_snapshots s "
                               "JOIN model_params p ON p.params_id = s.params_id")
    assert set(snaps["basis_usd"]) == {0.0} and set(snaps["basis_std_usd"]) == {0.0}
    assert {json.loads(p)["basis"]["enabled"] for p in snaps["params_json"]} == {False}
    # Five minutes of spot: σ is not ready. With EDGE_SIGMA_FALLBACK=none the markets are skipped, not priced
    # at the prior σ.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM spot_ticks WHERE tick_ts < :t"), {"t": now - 300_000})
    monkeypatch.setenv("EDGE_SIGMA_FALLBACK", "none")
    result = runner.invoke(app, ["run-live-edges", "--once", "--debug"])
    assert result.exit_code == 0, result.output
    assert "'sigma_not_ready': 4" in result.output
    result = runner.invoke(app, ["run-live-edges", "--once", "--sigma-fallback", "prior"])
    assert result.exit_code == 0 and "'priced': 4" in result.output, result.output
