"""The engine: every skip reason is reachable, priced rows are complete, replay = concatenated live ticks."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from _frames import prob_frame, probabilities
from polars.testing import assert_frame_equal

from kbtc.edge import EDGE_COLUMNS, EdgeParams, compute_edges, market_state, quotes_asof
from kbtc.edge.engine import MARKET_SCHEMA, typed
from kbtc.edge.pricing import pricing_steps
from kbtc.edge.quality import PriceGrids, price_grids
from kbtc.edge.selection import SKIP_REASONS, gate_expressions

A = 1_795_000_000_000
S = 100_000.0
HOUR = 3_600_000


def market(ticker: str, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "market_ticker": ticker,
        "event_ticker": "KXBTCD-E1",
        "series_ticker": "KXBTCD",
        "status": "active",
        "strike_type": "greater",
        "floor_strike": S + 100.0,
        "cap_strike": None,
        "open_ts": A - HOUR,
        "close_ts": A + HOUR,
        "fee_type": "quadratic",
        "fee_multiplier": 1.0,
        "price_level_structure": "linear_cent",
        "price_ranges": None,
    }
    row.update(overrides)
    return row


MARKETS = [
    market("OK-1"),
    market("OK-NO-YES-SIDE"),
    market("ETH-1", series_ticker="KXETH"),
    market("CLOSED-1", status="closed"),
    market("NOCLOSE-1", close_ts=None),
    market("EXPIRED-1", close_ts=A - 30_000),
    market("FAR-1", close_ts=A + 7 * HOUR),
    market("15M-PENDING", series_ticker="KXBTC15M", strike_type="greater_or_equal", floor_strike=None),
    market("BOUNDS-1", strike_type="between", cap_strike=None),
    market("FUNCTIONAL-1", strike_type="functional"),
    market("CUSTOM-1", strike_type="custom"),
    market("STRUCTURED-1", strike_type="structured"),
    market("NOTYPE-1", strike_type=None),
    market("NOQUOTE-1"),
    market("CROSSED-1"),
    market("LOCKED-1"),
    market("OFFGRID-1"),
    market("NOSIDES-1"),
    market("BADFEE-1", fee_type="mystery"),
    market("WINDOW-1", close_ts=A + 30_000, price_level_structure="tapered_deci_cent"),
]
QUOTES = {
    # ticker: (yes_bid, yes_ask)
    "OK-1": (45.0, 47.0),
    "OK-NO-YES-SIDE": (45.0, 100.0),
    "ETH-1": (45.0, 47.0),
    "CLOSED-1": (45.0, 47.0),
    "NOCLOSE-1": (45.0, 47.0),
    "EXPIRED-1": (45.0, 47.0),
    "FAR-1": (45.0, 47.0),
    "15M-PENDING": (45.0, 47.0),
    "BOUNDS-1": (45.0, 47.0),
    "FUNCTIONAL-1": (45.0, 47.0),
    "CUSTOM-1": (45.0, 47.0),
    "STRUCTURED-1": (45.0, 47.0),
    "NOTYPE-1": (45.0, 47.0),
    "CROSSED-1": (50.0, 45.0),
    "LOCKED-1": (50.0, 50.0),
    "OFFGRID-1": (45.5, 47.0),
    "NOSIDES-1": (0.0, 100.0),
    "BADFEE-1": (45.0, 47.0),
    "WINDOW-1": (4.5, 5.3),  # sub-cent prices are on the tapered grid below 10 ¢
    "UNKNOWN-1": (45.0, 47.0),
}


def quote_history() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "market_ticker": list(QUOTES),
            "quote_ts": [A - 2_000] * len(QUOTES),
            "yes_bid_cents": [q[0] for q in QUOTES.values()],
            "yes_ask_cents": [q[1] for q in QUOTES.values()],
        }
    )


def spot_ticks(end_ts: int = A) -> pl.DataFrame:
    ts = np.arange(A - 600_000, end_ts + 1, 500)
    return pl.DataFrame({"ts": ts, "price": S + np.sin(ts / 7e4) * 20.0})


def vol(asofs: list[int], sigma: float | None = 0.5) -> pl.DataFrame:
    return pl.DataFrame(
        {"asof_ts": asofs, "sigma_annual": [sigma] * len(asofs), "sigma_status": ["ok"] * len(asofs)},
        schema={"asof_ts": pl.Int64, "sigma_annual": pl.Float64, "sigma_status": pl.String},
    )


def run(asofs: list[int], *, spot: pl.DataFrame | None = None, sigma: float | None = 0.5,
        params: EdgeParams | None = None, prints: bool = True) -> pl.DataFrame:
    spot = spot_ticks() if spot is None else spot
    state = market_state(spot, asofs, vol(asofs, sigma))
    return compute_edges(
        pl.DataFrame(MARKETS), quotes_asof(quote_history(), asofs), state,
        prints=spot if prints else None, params=params,
    )


def reasons(frame: pl.DataFrame) -> dict[str, str | None]:
    return dict(frame.select("market_ticker", "skip_reason").iter_rows())


def test_each_market_gets_its_reason() -> None:
    got = reasons(run([A]))
    assert got == {
        "OK-1": None,
        "OK-NO-YES-SIDE": None,
        "ETH-1": "series_filtered",
        "CLOSED-1": "inactive_status",
        "NOCLOSE-1": "missing_settlement_ts",
        "EXPIRED-1": "expired_contract",
        "FAR-1": "horizon_out_of_range",
        "15M-PENDING": "strike_pending",
        "BOUNDS-1": "missing_bounds",
        "FUNCTIONAL-1": "unsupported_strike_type",
        "CUSTOM-1": "unsupported_strike_type",
        "STRUCTURED-1": "unsupported_strike_type",
        "NOTYPE-1": "missing_bounds",
        "NOQUOTE-1": "missing_quote",
        "CROSSED-1": "crossed_market",
        "LOCKED-1": "locked_market",
        "OFFGRID-1": "off_tick_grid",
        "NOSIDES-1": "missing_both_sides",
        "BADFEE-1": "invalid_edge",
        "WINDOW-1": None,
        "UNKNOWN-1": "missing_contract",
    }


def test_every_skip_reason_is_reachable() -> None:
    seen = set(reasons(run([A])).values())
    seen |= set(reasons(run([A], prints=False)).values())  # WINDOW-1 without prints
    seen |= set(reasons(run([A], sigma=None)).values())
    seen |= set(reasons(run([A + 20_000])).values())  # spot 20 s old
    seen |= set(reasons(run([A - 700_000])).values())  # before any spot tick
    seen |= set(reasons(run([A], params=EdgeParams(max_spread_cents=1.0))).values())
    seen |= set(reasons(run([A], params=EdgeParams(pct_band=0.05, top_n=1))).values())
    assert seen - {None} == set(SKIP_REASONS)


def test_price_grids_kept_across_calls_give_the_same_edges() -> None:
    # A live loop passes the grids of its catalog read: a superset of a later tick's markets (expired ones
    # dropped), one-range and several-range (tapered) grids alike.
    asofs = [A]
    state = market_state(spot_ticks(), asofs, vol(asofs))
    markets, quotes = pl.DataFrame(MARKETS), quotes_asof(quote_history(), asofs)
    extra = markets.head(1).with_columns(pl.lit("GONE-1").alias("market_ticker"),
                                         pl.lit("tapered_deci_cent").alias("price_level_structure"))
    grids = PriceGrids.of(price_grids(typed(pl.concat([markets, extra]), MARKET_SCHEMA)))
    assert grids.single.height and grids.several.height
    fresh = compute_edges(markets, quotes, state, prints=spot_ticks())
    kept = compute_edges(markets, quotes, state, prints=spot_ticks(), grids=grids)
    assert_frame_equal(kept, fresh)
    assert reasons(kept)["OFFGRID-1"] == "off_tick_grid" and reasons(kept)["WINDOW-1"] is None


def test_expressions_built_once_per_setting_serve_each_setting_alone() -> None:
    # The engine's expressions are built once per EdgeParams and reused: a later tick with other settings
    # must not see the first one's, and a repeat of the first settings must give the first result again.
    assert pricing_steps(EdgeParams()) is pricing_steps(EdgeParams())
    assert gate_expressions(EdgeParams()) is gate_expressions(EdgeParams())
    other = EdgeParams(contracts=50.0, kelly_multiplier=1.0, fee_rounding="ten_thousandth", settlement="point",
                       top_n=1, pct_band=0.0)
    first, second, again = run([A]), run([A], params=other), run([A])
    assert_frame_equal(again, first)
    assert second["contracts"].unique().to_list() == [50.0]
    assert sorted(reasons(second).items(), key=str) != sorted(reasons(first).items(), key=str)  # the band of 1
    assert not second.select("ev_yes_dollars", "kelly_yes").equals(first.select("ev_yes_dollars", "kelly_yes"))


def test_priced_rows_are_complete_and_one_sided_markets_keep_the_other_side() -> None:
    edges = run([A])
    assert edges.columns == list(EDGE_COLUMNS)
    ok = edges.filter(pl.col("market_ticker") == "OK-1").row(0, named=True)
    assert 0 < ok["p_model"] < 1 and ok["ev_yes_dollars"] is not None and ok["ev_no_dollars"] is not None
    assert ok["fee_yes_dollars"] == 0.02 and ok["no_ask_used_cents"] == 55.0  # no-ask derived: 100 − yes_bid
    assert ok["ev_yes_dollars"] == pytest.approx(ok["p_model"] - 0.47 - 0.02)
    assert ok["horizon_s"] == 3600.0 and ok["spot_age_s"] == 0.0 and ok["quote_age_s"] == 2.0
    one_sided = edges.filter(pl.col("market_ticker") == "OK-NO-YES-SIDE").row(0, named=True)
    assert one_sided["yes_side_reason"] == "missing_yes_ask" and one_sided["ev_yes_dollars"] is None
    assert one_sided["ev_no_dollars"] is not None and one_sided["skip_reason"] is None
    skipped = edges.filter(pl.col("skip_reason").is_not_null())
    assert skipped["p_model"].null_count() == skipped.height


def test_a_market_listed_twice_is_evaluated_once_with_its_last_row() -> None:
    spot = spot_ticks()
    state = market_state(spot, [A], vol([A]))
    markets = pl.DataFrame([market("OK-1", floor_strike=S + 900.0), *MARKETS])  # OK-1's later row wins
    edges = compute_edges(markets, quotes_asof(quote_history(), [A]), state, prints=spot)
    assert edges.height == run([A]).height and edges["market_ticker"].n_unique() == edges.height
    assert edges.filter(pl.col("market_ticker") == "OK-1")["floor_strike"].to_list() == [S + 100.0]
    assert edges["strike_type"].dtype == pl.String and edges["fee_type"].dtype == pl.String


def test_inside_window_uses_the_fixed_prints() -> None:
    row = run([A]).filter(pl.col("market_ticker") == "WINDOW-1").row(0, named=True)
    assert row["prints_left"] == 30.0
    ticks = spot_ticks()
    expected = sum(
        ticks.filter(pl.col("ts") <= A + 30_000 - j * 1000)["price"][-1] for j in range(30, 60)
    )
    assert row["fixed_sum_usd"] == pytest.approx(expected)


def test_basis_moves_spot_and_fixed_prints() -> None:
    asofs = [A]
    spot = spot_ticks()
    basis = pl.DataFrame({"asof_ts": asofs, "basis_usd": [15.0], "basis_std_usd": [4.0], "basis_status": ["ok"]})
    state = market_state(spot, asofs, vol(asofs), basis)
    edges = compute_edges(pl.DataFrame(MARKETS), quotes_asof(quote_history(), asofs), state, prints=spot)
    plain = run(asofs)
    with_basis = edges.filter(pl.col("market_ticker") == "WINDOW-1").row(0, named=True)
    without = plain.filter(pl.col("market_ticker") == "WINDOW-1").row(0, named=True)
    assert with_basis["model_spot_usd"] == pytest.approx(without["spot_usd"] + 15.0)
    assert with_basis["fixed_sum_usd"] == pytest.approx(without["fixed_sum_usd"] + 30 * 15.0)
    assert with_basis["basis_std_usd"] == 4.0 and with_basis["model_var"] > without["model_var"]


def test_replay_of_many_asof_times_equals_single_ticks() -> None:
    asofs = [A - 20_000, A - 10_000, A]
    replay = run(asofs).sort("asof_ts", "market_ticker")
    ticks = pl.concat([run([t]) for t in asofs]).sort("asof_ts", "market_ticker")
    assert replay.equals(ticks)


def test_band_selection_keeps_the_nearest() -> None:
    markets = [market(f"M{i}", floor_strike=S + 500.0 * i) for i in range(6)]
    quotes = pl.DataFrame({"market_ticker": [m["market_ticker"] for m in markets], "quote_ts": [A - 1000] * 6,
                           "yes_bid_cents": [40.0] * 6, "yes_ask_cents": [42.0] * 6})
    state = market_state(spot_ticks(), [A], vol([A]))
    # Band 0.3 % holds M0 (≈0 %) only: fewer than top_n = 3, so the 3 nearest are kept.
    edges = compute_edges(pl.DataFrame(markets), quotes_asof(quotes, [A]), state,
                          params=EdgeParams(pct_band=0.3, top_n=3))
    assert reasons(edges) == {"M0": None, "M1": None, "M2": None, "M3": "outside_strike_band",
                              "M4": "outside_strike_band", "M5": "outside_strike_band"}
    # A wide band keeps everything in it, even beyond top_n.
    edges = compute_edges(pl.DataFrame(markets), quotes_asof(quotes, [A]), state,
                          params=EdgeParams(pct_band=3.0, top_n=3))
    assert set(reasons(edges).values()) == {None}


def test_kelly_is_capped_per_event() -> None:
    markets = [market(f"K{i}", floor_strike=S - 2000.0 - 10 * i) for i in range(4)]  # deep ITM: p ≈ 1
    quotes = pl.DataFrame({"market_ticker": [m["market_ticker"] for m in markets], "quote_ts": [A - 1000] * 4,
                           "yes_bid_cents": [60.0] * 4, "yes_ask_cents": [62.0] * 4})
    state = market_state(spot_ticks(), [A], vol([A], 0.3))
    edges = compute_edges(pl.DataFrame(markets), quotes_asof(quotes, [A]), state,
                          params=EdgeParams(kelly_multiplier=0.5, event_exposure_cap=0.2))
    assert edges["kelly_yes"].sum() == pytest.approx(0.2)
    uncapped = compute_edges(pl.DataFrame(markets), quotes_asof(quotes, [A]), state,
                             params=EdgeParams(kelly_multiplier=0.5, event_exposure_cap=10.0))
    expected = [0.5 * (p - 0.64) / 0.36 for p in uncapped["p_model"]]  # all-in cost 62 ¢ + 2 ¢ fee
    assert uncapped["kelly_yes"].to_list() == pytest.approx(expected)
    assert edges["kelly_yes"].to_list() == pytest.approx([k * 0.2 / sum(expected) for k in expected])


def test_depth_aware_ev_with_a_book() -> None:
    state = market_state(spot_ticks(), [A], vol([A]))
    books = pl.DataFrame({"asof_ts": [A, A, A], "market_ticker": ["OK-1", "OK-1", "CROSSED-1"],
                          "side": ["no", "no", "no"], "price_cents": [53.0, 52.0, 50.0], "size": [1.0, 10.0, 5.0]})
    edges = compute_edges(pl.DataFrame(MARKETS), quotes_asof(quote_history(), [A]), state, prints=spot_ticks(),
                          books=books, params=EdgeParams(contracts=4.0))
    ok = edges.filter(pl.col("market_ticker") == "OK-1").row(0, named=True)
    fees = 0.02 + 0.06  # 1 × 47 ¢ then 3 × 48 ¢: ⌈1.74⌉ = 2 ¢ and ⌈5.24⌉ = 6 ¢
    assert ok["depth_filled_yes"] == 4.0
    assert ok["depth_ev_yes_dollars"] == pytest.approx(4 * ok["p_model"] - 0.47 - 3 * 0.48 - fees)
    assert ok["depth_filled_no"] is None  # no YES bids in the book: nothing to buy NO from
    others = edges.filter(pl.col("market_ticker") != "OK-1")
    assert others["depth_ev_yes_dollars"].null_count() == others.height  # skipped markets get no depth EV


def test_replay_inputs_never_look_ahead() -> None:
    history = pl.DataFrame({"market_ticker": ["M", "M", "M"], "quote_ts": [A - 5_000, A, A + 1],
                            "yes_bid_cents": [40.0, 41.0, 99.0], "yes_ask_cents": [42.0, 43.0, 99.5]})
    quotes = quotes_asof(history, [A - 1, A, A + 10_000])
    assert quotes.select("asof_ts", "yes_bid_cents").rows() == [(A - 1, 40.0), (A, 41.0), (A + 10_000, 99.0)]
    spot = pl.DataFrame({"ts": [A - 2_000, A, A + 1], "price": [1.0, 2.0, 3.0]})
    state = market_state(spot, [A - 1, A, A - 5_000], vol([A - 1, A, A - 5_000]))
    assert state.sort("asof_ts").select("asof_ts", "spot_usd", "spot_ts").rows() == [
        (A - 5_000, None, None), (A - 1, 1.0, A - 2_000), (A, 2.0, A)]


def test_a_quote_with_only_no_prices_is_mirrored_to_yes() -> None:
    quotes = pl.DataFrame({"asof_ts": [A], "market_ticker": ["OK-1"], "quote_ts": [A - 1_000],
                           "no_bid_cents": [52.0], "no_ask_cents": [55.0]})
    state = market_state(spot_ticks(), [A], vol([A]))
    row = compute_edges(pl.DataFrame([market("OK-1")]), quotes, state).row(0, named=True)
    assert (row["yes_bid_cents"], row["yes_ask_cents"]) == (45.0, 48.0)
    assert row["skip_reason"] is None and row["yes_ask_used_cents"] == 48.0 and row["no_ask_used_cents"] == 55.0


@pytest.mark.parametrize("horizon_s", [59.5, 59.0, 60.0, 61.0])
def test_the_first_second_of_the_window_prices_with_no_print_fixed(horizon_s: float) -> None:
    # The window (close − 60 s, close] opens at 60 s; its first print (close − 59 s) is fixed only at 59 s.
    # In between nothing is fixed yet: Σ = 0, not `window_prints_missing`.
    close = A + round(horizon_s * 1000)
    markets = [market("W", close_ts=close, floor_strike=S)]
    quotes = pl.DataFrame({"market_ticker": ["W"], "quote_ts": [A - 1000], "yes_bid_cents": [40.0],
                           "yes_ask_cents": [42.0]})
    spot = spot_ticks()
    state = market_state(spot, [A], vol([A]))
    row = compute_edges(pl.DataFrame(markets), quotes_asof(quotes, [A]), state, prints=spot).row(0, named=True)
    assert row["skip_reason"] is None and row["horizon_s"] == horizon_s
    assert row["prints_left"] == (59.0 if horizon_s == 59.0 else 60.0)
    if horizon_s == 59.0:  # one print fixed: the spot at the as-of time itself
        assert row["fixed_sum_usd"] == pytest.approx(spot.filter(pl.col("ts") <= A)["price"][-1])
    else:  # nothing fixed: priced as before the window (Σ = 0)
        assert row["fixed_sum_usd"] is None
        [expected] = probabilities(prob_frame(spot=row["model_spot_usd"], sigma=0.5, horizon_s=horizon_s,
                                              strike_type="greater", floor=S, fixed_sum=0.0))
        assert row["p_model_raw"] == pytest.approx(expected, rel=1e-12)


def test_fixed_window_prints_before_the_first_print_are_zero() -> None:
    from kbtc.edge.window import fixed_window_prints

    close = A + 60_000
    keys = pl.DataFrame({"info_ts": [A, A + 500, A + 1_000, A + 1_500], "close_ts": [close] * 4})
    fixed = fixed_window_prints(spot_ticks(A + 2_000), keys).sort("info_ts")
    # 60 s and 59.5 s before the close: no print fixed; 59 s: the first; 58.5 s: still one.
    assert fixed["fixed_count"].to_list() == [0, 0, 1, 1]
    assert fixed["fixed_sum_usd"][:2].to_list() == [0.0, 0.0] and fixed["fixed_sum_usd"][2] is not None


def index_ticks(start: int, end: int, level: float = S + 37.0) -> pl.DataFrame:
    ts = np.arange(start, end + 1, 1000)
    return pl.DataFrame({"ts": ts, "price": np.full(ts.size, level)})


def test_fresh_index_prints_are_the_spot_and_the_fixed_prints() -> None:
    spot = spot_ticks()
    index = index_ticks(A - 120_000, A)
    basis = pl.DataFrame({"asof_ts": [A], "basis_usd": [15.0], "basis_std_usd": [4.0], "basis_status": ["references"]})
    state = market_state(spot, [A], vol([A]), basis, index_prints=index)
    assert state.select("spot_source", "spot_usd", "spot_ts", "basis_usd", "basis_std_usd", "basis_status").row(0) == (
        "index", S + 37.0, A, 0.0, 0.0, "spot_is_index")
    edges = compute_edges(pl.DataFrame(MARKETS), quotes_asof(quote_history(), [A]), state, prints=spot,
                          index_prints=index)
    window = edges.filter(pl.col("market_ticker") == "WINDOW-1").row(0, named=True)
    # In settlement units already: no basis on the spot or on the 30 fixed prints (the index's own prints).
    assert window["skip_reason"] is None and window["spot_source"] == "index"
    assert window["model_spot_usd"] == S + 37.0 and window["fixed_sum_usd"] == pytest.approx(30 * (S + 37.0))
    coinbase = run([A]).filter(pl.col("market_ticker") == "WINDOW-1").row(0, named=True)
    assert coinbase["spot_source"] == "coinbase" and coinbase["model_var"] > 0
    assert window["model_var"] == pytest.approx(coinbase["model_var"], rel=1e-12)  # no basis variance (±4 ignored)


def test_index_spot_falls_back_to_coinbase_when_stale_or_just_started() -> None:
    spot = spot_ticks()
    basis = pl.DataFrame({"asof_ts": [A], "basis_usd": [15.0], "basis_std_usd": [4.0], "basis_status": ["references"]})
    for index in (index_ticks(A - 120_000, A - 11_000),  # newest print 11 s old: stale
                  index_ticks(A - 40_000, A)):  # printing for 40 s only: the window's early prints are unknown
        state = market_state(spot, [A], vol([A]), basis, index_prints=index)
        row = state.row(0, named=True)
        assert row["spot_source"] == "coinbase" and row["spot_usd"] == pytest.approx(spot["price"][-1])
        assert (row["basis_usd"], row["basis_std_usd"], row["basis_status"]) == (15.0, 4.0, "references")
    # A replay mixes both: each as-of time decides for itself, with no look-ahead.
    index = index_ticks(A - 120_000, A - 20_000)
    state = market_state(spot, [A - 30_000, A], vol([A - 30_000, A]), index_prints=index).sort("asof_ts")
    assert state["spot_source"].to_list() == ["index", "coinbase"]
