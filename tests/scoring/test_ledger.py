"""Ledger rules: every reason code, side choice, Kelly, and shadow positions from TAKEs."""

from __future__ import annotations

import polars as pl
import pytest
from scoring_factories import MINUTE, NOW, snapshot

from kbtc.scoring.ledger import LedgerParams, decide, positions_from_takes
from kbtc.scoring.settlement import pnl_per_contract, settle_positions

NO_POSITIONS = pl.DataFrame(schema={"market_ticker": pl.String, "side": pl.String})
NO_TAKES = pl.DataFrame(schema={"market_ticker": pl.String, "side": pl.String, "eval_ts": pl.Int64})


def _frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, infer_schema_length=None)


def _reasons(decisions: pl.DataFrame, side: str = "YES") -> dict[str, str | None]:
    picked = decisions.filter(side=side)
    return dict(zip(picked["market_ticker"], picked["reasons"], strict=True))


def test_data_model_and_side_gates() -> None:
    # A good YES: p 0.70 vs ask 57 ¢ + 2 ¢ fee → ev_raw 0.11, ev_net 0.10.
    good = {"p_model": 0.70, "yes_bid": 55.0, "yes_ask": 57.0}
    snaps = _frame([
        snapshot("KXBTCD-X-T1", **good),
        snapshot("KXBTCD-X-T2", **{**good, "p_model": None}),
        snapshot("KXBTCD-X-T3", **good, spot_age_s=30.0),
        snapshot("KXBTCD-X-T4", **good, quote_age_s=None),
        snapshot("KXBTCD-X-T5", **good, sigma_status="fallback_default"),
        snapshot("KXBTCD-X-T6", **good, close_ts=NOW + 5 * MINUTE),  # daily: needs 10 min
        snapshot("KXBTC15M-X-T7", **good, series="KXBTC15M", close_ts=NOW + 5 * MINUTE),  # 15-min: 4 min is enough
        snapshot("KXBTC15M-X-T8", **good, series="KXBTC15M", close_ts=NOW + 3 * MINUTE),
        snapshot("KXBTCD-X-T9", p_model=0.55, yes_bid=50.0, yes_ask=52.0),  # ev_net 0.00
        snapshot("KXBTCD-X-TA", p_model=0.14, yes_bid=6.0, yes_ask=8.0, fee_yes=0.01),  # tail: ev_net 0.04
        snapshot("KXBTCD-X-TB", p_model=0.70, yes_bid=55.0, yes_ask=None),
        snapshot("KXBTCD-X-TC", p_model=0.70, yes_bid=55.0, yes_ask=57.0, fee_yes=None, ev_yes_dollars=None),
        snapshot("KXBTCD-X-TD", **{**good, "p_model": None}, spot_age_s=None, sigma_status=None),
    ])
    params = LedgerParams(both_sides=True, max_takes_per_tick=10)
    decisions = decide(snaps, NO_POSITIONS, NO_TAKES, params)
    assert decisions.height == 2 * snaps.height  # both sides, every snapshot recorded
    assert _reasons(decisions) == {
        "KXBTCD-X-T1": None,
        "KXBTCD-X-T2": "missing_prob",
        "KXBTCD-X-T3": "spot_stale",
        "KXBTCD-X-T4": "quote_stale",
        "KXBTCD-X-T5": "sigma_not_ready",
        "KXBTCD-X-T6": "near_expiry",
        "KXBTC15M-X-T7": None,
        "KXBTC15M-X-T8": "near_expiry",
        "KXBTCD-X-T9": "ev_below_threshold",
        "KXBTCD-X-TA": "tail_ev_below_threshold",
        "KXBTCD-X-TB": "missing_yes_ask",
        "KXBTCD-X-TC": "missing_fee",
        "KXBTCD-X-TD": "missing_prob,spot_stale,sigma_not_ready",
    }
    take = decisions.filter(market_ticker="KXBTCD-X-T1", side="YES").row(0, named=True)
    assert take["decision"] == "TAKE" and take["eligible"]
    assert take["ev_raw_dollars"] == pytest.approx(0.11) and take["ev_net_dollars"] == pytest.approx(0.10)
    assert take["price_cents"] == 57.0 and take["bid_cents"] == 55.0 and take["spread_cents"] == 2.0
    assert take["p_market"] == pytest.approx(0.56) and take["tau_s"] == 3600.0
    # Kelly: c = 0.57 + 0.02 = 0.59, f* = (0.70 − 0.59)/(1 − 0.59), times κ = 0.25.
    assert take["kelly_fraction"] == pytest.approx(0.25 * 0.11 / 0.41)
    assert take["model_version"] == "gbm-avg-1" and '"min_ev_dollars": 0.03' in take["params_json"]
    # The NO side of the same snapshot: 0.30 − 0.45 − 0.02 < 0.
    assert _reasons(decisions, "NO")["KXBTCD-X-T1"] == "ev_below_threshold"
    assert decisions.filter(pl.col("reasons").is_not_null())["decision"].unique().to_list() == ["PASS"]


def test_best_side_mode_keeps_the_better_side() -> None:
    snaps = _frame([
        snapshot("KXBTCD-Y-T1", p_model=0.20, yes_bid=40.0, yes_ask=42.0),  # NO: 0.80 − 0.60 − 0.02 = 0.18
        snapshot("KXBTCD-Y-T2", p_model=None),  # neither side evaluable → the YES row, with its reason
    ])
    decisions = decide(snaps, NO_POSITIONS, NO_TAKES, LedgerParams())
    assert decisions.select("market_ticker", "side", "decision", "reasons").rows() == [
        ("KXBTCD-Y-T1", "NO", "TAKE", None),
        ("KXBTCD-Y-T2", "YES", "PASS", "missing_prob"),
    ]
    no_take = decisions.row(0, named=True)
    assert no_take["price_cents"] == 60.0 and no_take["ev_raw_dollars"] == pytest.approx(0.18)


def test_portfolio_gates_and_take_cap() -> None:
    good = {"yes_bid": 55.0, "yes_ask": 57.0}
    snaps = _frame([
        snapshot("KXBTCD-Z-T1", p_model=0.70, **good),
        snapshot("KXBTCD-Z-T2", p_model=0.72, **good),
        snapshot("KXBTCD-Z-T3", p_model=0.75, **good),
        snapshot("KXBTCD-Z-T4", p_model=0.80, **good),
        snapshot("KXBTCD-Z-T5", p_model=0.71, **good),
        snapshot("KXBTCD-Z-T6", p_model=0.74, **good),
    ])
    positions = pl.DataFrame({"market_ticker": ["KXBTCD-Z-T1", "KXBTCD-Z-T2"], "side": ["YES", "NO"]})
    takes = pl.DataFrame({
        "market_ticker": ["KXBTCD-Z-T3", "KXBTCD-Z-T6"],
        "side": ["YES", "YES"],
        "eval_ts": [NOW - 60_000, NOW - 121_000],  # inside / outside the 120 s cooldown
    })
    decisions = decide(snaps, positions, takes, LedgerParams(max_takes_per_tick=1))
    assert _reasons(decisions) == {
        "KXBTCD-Z-T1": "position_open",
        "KXBTCD-Z-T2": "position_open_opposite_side",
        "KXBTCD-Z-T3": "cooldown_active",
        "KXBTCD-Z-T4": None,  # the best ev_net of the surviving candidates
        "KXBTCD-Z-T5": "take_cap",
        "KXBTCD-Z-T6": "take_cap",
    }
    # Portfolio gates do not make a row ineligible: the model and data said yes.
    assert decisions["eligible"].all()
    positions_opened = positions_from_takes(decisions)
    assert positions_opened.to_dicts() == [{
        "market_ticker": "KXBTCD-Z-T4", "side": "YES", "opened_ts": NOW, "contracts": 1.0,
        "entry_price_cents": 57.0, "entry_fee_dollars": 0.02, "status": "open",
    }]


def test_settlement_pnl_signs_with_fees() -> None:
    positions = pl.DataFrame({
        "market_ticker": ["A", "A", "B", "B", "C"],
        "side": ["YES", "NO", "YES", "NO", "YES"],
        "opened_ts": [1, 2, 3, 4, 5],
        "contracts": [1.0, 1.0, 2.0, 1.0, 1.0],
        "entry_price_cents": [55.0, 38.0, 30.0, 72.0, 50.0],
        "entry_fee_dollars": [0.02, 0.02, 0.03, 0.02, 0.02],
        "status": ["open"] * 5,
    })
    outcomes = pl.DataFrame({"market_ticker": ["A", "B", "C"], "outcome": [1, 0, None], "settled_ts": [10, 20, None]})
    settled = settle_positions(positions, outcomes)
    assert settled["market_ticker"].to_list() == ["A", "A", "B", "B"]  # C has no outcome: stays open
    assert settled["side"].to_list() == ["NO", "YES", "NO", "YES"]
    assert settled["pnl_dollars"].to_list() == pytest.approx([
        0 - 0.38 - 0.02,  # NO lost
        1 - 0.55 - 0.02,  # YES won
        1 - 0.72 - 0.02,  # NO won
        2 * (0 - 0.30) - 0.03,  # YES lost, 2 contracts, one order fee
    ])
    assert settled.select(pnl_per_contract())["pnl_dollars"][3] == pytest.approx(-0.315)
    assert set(settled["status"]) == {"settled"} and settled["outcome"].to_list() == [1, 1, 0, 0]


def test_order_size_fees_and_implied_no_ask() -> None:
    # The edge engine priced a 10-contract order: fee 18 ¢ for the order, EV 10·(0.65 − 0.55) − 0.18.
    ten = snapshot("KXBTCD-W-T1", p_model=0.65, yes_bid=53.0, yes_ask=55.0, fee_yes=0.18,
                   ev_yes_dollars=0.82, kelly_yes=0.04, contracts=10.0, params={"kelly_multiplier": 0.25})
    # No NO ask quoted: buying NO costs 100 − yes_bid = 60 ¢; NO bid 100 − yes_ask = 58 ¢.
    implied = snapshot("KXBTCD-W-T2", p_model=0.20, yes_bid=40.0, yes_ask=42.0, no_ask_cents=None, no_bid_cents=None,
                       ev_no_dollars=None)
    decisions = decide(_frame([ten, implied]), NO_POSITIONS, NO_TAKES, LedgerParams(max_takes_per_tick=5))
    big = decisions.row(0, named=True)
    assert (big["side"], big["decision"], big["contracts"], big["fee_dollars"]) == ("YES", "TAKE", 10.0, 0.18)
    assert big["ev_raw_dollars"] == pytest.approx(0.082) and big["kelly_fraction"] == 0.04
    no_row = decisions.row(1, named=True)
    assert (no_row["side"], no_row["price_cents"], no_row["bid_cents"]) == ("NO", 60.0, 58.0)
    assert no_row["ev_raw_dollars"] == pytest.approx(0.80 - 0.60 - 0.02)
    opened = positions_from_takes(decisions).filter(market_ticker="KXBTCD-W-T1")
    settled = settle_positions(opened, pl.DataFrame({"market_ticker": ["KXBTCD-W-T1"], "outcome": [1],
                                                     "settled_ts": [NOW]}))
    assert settled["pnl_dollars"][0] == pytest.approx(10 * (1 - 0.55) - 0.18)
