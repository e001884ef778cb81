"""EV, break-even, Kelly and depth-aware EV: the worked examples of model_math.md §3.2–3.3, and the batch API."""

from __future__ import annotations

import polars as pl
import pytest

from kbtc.edge import EdgeParams
from kbtc.edge.batch import BatchInputError, price_rows
from kbtc.edge.ev import book_asks, depth_ev
from kbtc.edge.fees import with_fees


def row(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "spot": 100_000.0, "sigma": 0.5, "strike_type": "greater", "floor_strike": 100_000.0, "cap_strike": None,
        "seconds_to_close": 3600.0, "yes_bid": 40.0, "yes_ask": 42.0,
    }
    base.update(overrides)
    return base


def test_worked_examples_of_model_math() -> None:
    frame = pl.DataFrame({"ask": [55.0, 62.0], "contracts": [10.0, 10.0], "fee_type": "quadratic", "fee_multiplier": 1.0})
    out = with_fees(frame.lazy(), {"fee": "ask"}).collect()
    assert out["fee"].to_list() == [0.18, 0.17]
    # YES: q = 0.60 at 55 ¢ × 10 → +3.2 ¢/contract; NO: q_yes = 0.30, bid 38 → no-ask 62 → +6.3 ¢/contract.
    ev_yes = 10 * (0.60 - 0.55) - 0.18
    ev_no = 10 * (0.70 - 0.62) - 0.17
    assert ev_yes / 10 == pytest.approx(0.032) and ev_no / 10 == pytest.approx(0.063)


def test_batch_prices_rows_with_the_engine_math() -> None:
    rows = pl.DataFrame([
        row(contracts=10.0),
        row(yes_bid=38.0, yes_ask=40.0, contracts=10.0, floor_strike=100_500.0),
        row(strike_type="between", floor_strike=99_000.0, cap_strike=None),
        row(sigma=None),
        row(yes_bid=0.0, yes_ask=100.0),
        row(yes_bid=50.0, yes_ask=45.0),
        row(spot=None),
        row(fee_type="mystery"),
        row(strike_type="functional"),
    ], infer_schema_length=None)
    out = price_rows(rows)
    first = out.row(0, named=True)
    q = first["p_model"]
    assert first["fee_yes_dollars"] == 0.18  # ⌈0.07·10·0.42·0.58·100⌉ = ⌈17.05⌉ = 18 ¢
    assert first["ev_yes_dollars"] == pytest.approx(10 * (q - 0.42) - 0.18)
    assert first["ev_no_dollars"] == pytest.approx(10 * ((1 - q) - 0.60) - first["fee_no_dollars"])
    assert first["breakeven_yes"] == pytest.approx(0.42 + 0.018)
    # Only one side can have positive EV (ask ≥ bid).
    assert not (first["ev_yes_dollars"] > 0 and first["ev_no_dollars"] > 0)
    second = out.row(1, named=True)
    cost = 0.62 + second["fee_no_dollars"] / 10  # no-ask = 100 − 38
    assert second["kelly_no"] == pytest.approx(0.25 * ((1 - second["p_model"]) - cost) / (1 - cost))
    assert second["kelly_yes"] == 0.0
    assert out["skip_reason"].to_list() == [None, None, "missing_bounds", "sigma_not_ready", "missing_both_sides",
                                            "crossed_market", "spot_missing", "invalid_edge", "unsupported_strike_type"]


def test_batch_point_mode_and_window_average() -> None:
    rows = pl.DataFrame([row(seconds_to_close=30.0, fixed_avg_usd=100_050.0), row(seconds_to_close=30.0)])
    avg = price_rows(rows)
    point = price_rows(rows, EdgeParams(settlement="point"))
    # 30 prints fixed at +50 $ lift the average-settled probability; the point formula ignores them.
    assert avg["p_model"][0] > avg["p_model"][1] > 0.4
    assert point["p_model"][0] == point["p_model"][1]


@pytest.mark.parametrize("settlement", ["average", "point"])
def test_batch_non_finite_horizon_or_fixed_average_is_invalid_edge(settlement: str) -> None:
    nan = float("nan")
    rows = pl.DataFrame([row(seconds_to_close=nan), row(seconds_to_close=float("inf")),
                         row(seconds_to_close=-float("inf")), row(seconds_to_close=30.0, fixed_avg_usd=nan)])
    out = price_rows(rows, EdgeParams(settlement=settlement))  # type: ignore[arg-type]
    # The point formula ignores the fixed prints, so only the averaged settlement rejects a NaN average.
    expected = ["invalid_edge"] * 4 if settlement == "average" else ["invalid_edge"] * 3 + [None]
    assert out["skip_reason"].to_list() == expected
    assert out["p_model"].to_list()[:3] == [None] * 3


def test_batch_point_mode_with_zero_sigma_is_invalid_edge_as_the_original() -> None:
    out = price_rows(pl.DataFrame([row(sigma=0.0), row(sigma=0.0, seconds_to_close=0.0)]),
                     EdgeParams(settlement="point"))
    assert out["skip_reason"].to_list() == ["invalid_edge", None]  # at T ≤ 0 the step does not need σ
    assert out["p_model"][1] == 1.0 - 1e-12  # spot ≥ lower


def test_batch_rejects_missing_columns() -> None:
    with pytest.raises(BatchInputError, match="yes_ask"):
        price_rows(pl.DataFrame([row()]).drop("yes_ask"))


def test_depth_aware_ev_walks_the_levels() -> None:
    # NO bids 55 × 3 and 54 × 10 → YES asks 45 × 3 then 46 × 10; YES bids 40 × 5 → NO ask 60 × 5.
    books = pl.DataFrame({"asof_ts": [1] * 3, "market_ticker": ["M"] * 3, "side": ["no", "no", "yes"],
                          "price_cents": [55.0, 54.0, 40.0], "size": [3.0, 10.0, 5.0]})
    priced = pl.DataFrame({"asof_ts": [1], "market_ticker": ["M"], "p_model": [0.6], "fee_type": ["quadratic"],
                           "fee_multiplier": [1.0]})
    out = depth_ev(book_asks(books), priced, 8.0).sort("side")
    no, yes = out.row(0, named=True), out.row(1, named=True)
    assert yes["filled_contracts"] == 8.0 and yes["avg_price_cents"] == pytest.approx((3 * 45 + 5 * 46) / 8)
    fees = 0.06 + 0.09  # ⌈0.07·3·.45·.55⌉ = 6 ¢, ⌈0.07·5·.46·.54⌉ = 9 ¢
    assert yes["fee_dollars"] == pytest.approx(fees)
    assert yes["ev_dollars"] == pytest.approx(3 * (0.6 - 0.45) + 5 * (0.6 - 0.46) - fees)
    assert no["filled_contracts"] == 5.0  # the book is thinner than the order
    assert no["ev_per_contract"] == pytest.approx((5 * (0.4 - 0.6) - 0.09) / 5)
