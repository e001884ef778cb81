"""Which markets get priced at an as-of time, and an explicit reason code for every one that does not.

The original's universe filters and per-market gates (seed_system.md §3.8–3.9) with its defaults as settings,
plus data-quality gates. The first failing check names the row's `skip_reason`, in this order:

| code | when |
|---|---|
| `missing_contract` | a quote for a market the catalog does not know |
| `series_filtered` / `inactive_status` | outside the tracked series / status not tradable (`active`/`open`) |
| `missing_settlement_ts` | no close time |
| `expired_contract` | close < now − 5 s |
| `horizon_out_of_range` | close > now + 6 h |
| `strike_pending` | a KXBTC15M market whose strike (the opening 60 s average) is not published yet |
| `unsupported_strike_type` | a strike type we do not price: `functional`, `custom`, `structured` (or one unknown) |
| `missing_bounds` | the strike type's bound(s) missing, cap ≤ floor, or no strike type at all |
| `spot_missing` | no spot at the as-of time |
| `missing_quote` | no quote within `quote_max_age_s` (300 s), or a quote without prices |
| `crossed_market` / `locked_market` | bid > ask, YES ask + NO ask < 100 / bid = ask |
| `off_tick_grid` | a price off the market's tick grid |
| `missing_both_sides` | neither ask tradable (1–99 ¢) |
| `spread_too_wide` | YES spread above `max_spread_cents` (off by default, as the original) |
| `spot_stale` | spot older than `max_spot_age_s`, or older than the quote by more than `max_spot_quote_lag_s` |
| `outside_strike_band` | not within `pct_band` % of spot, nor among the `top_n` nearest when the band is too thin |
| `sigma_not_ready` | no usable σ (set by the engine) |
| `window_prints_missing` | inside the settlement window but the fixed prints are unknown (set by the engine) |
| `invalid_edge` | the probability or both EVs could not be computed (set by the engine) |

`missing_yes_ask` / `missing_no_ask` are not skips: that side's ask is nulled, so its EV is null
(`yes_side_reason` / `no_side_reason`).
"""

from __future__ import annotations

import functools

import polars as pl

from kbtc.edge.ev import no_ask_cents
from kbtc.edge.params import EdgeParams
from kbtc.edge.probability import GREATER_TYPES, LESS_TYPES, PRICED_STRIKE_TYPES
from kbtc.edge.quality import crossed, locked

SKIP_REASONS = (
    "missing_contract",
    "series_filtered",
    "inactive_status",
    "missing_settlement_ts",
    "expired_contract",
    "horizon_out_of_range",
    "strike_pending",
    "unsupported_strike_type",
    "missing_bounds",
    "spot_missing",
    "missing_quote",
    "crossed_market",
    "locked_market",
    "off_tick_grid",
    "missing_both_sides",
    "spread_too_wide",
    "spot_stale",
    "outside_strike_band",
    "sigma_not_ready",
    "window_prints_missing",
    "invalid_edge",
)
SIDE_REASONS = ("missing_yes_ask", "missing_no_ask")


def unsupported_strike_type() -> pl.Expr:
    """True for a market whose strike type is set but not one we price (`PRICED_STRIKE_TYPES`)."""
    strike_type = pl.col("strike_type")
    return (strike_type.is_not_null() & ~strike_type.is_in(PRICED_STRIKE_TYPES)).fill_null(False)


def bounds_ok() -> pl.Expr:
    strike_type, floor, cap = pl.col("strike_type"), pl.col("floor_strike"), pl.col("cap_strike")
    return (
        pl.when(strike_type.is_in(GREATER_TYPES))
        .then(floor.is_finite())
        .when(strike_type.is_in(LESS_TYPES))
        .then(cap.is_finite())
        .when(strike_type == "between")
        .then(floor.is_finite() & cap.is_finite() & (cap > floor))
        .otherwise(False)
        .fill_null(False)
    )


def _tradable(ask: pl.Expr, params: EdgeParams) -> pl.Expr:
    return ((ask >= params.min_ask_cents) & (ask <= params.max_ask_cents)).fill_null(False)


def gate(frame: pl.LazyFrame, params: EdgeParams) -> pl.LazyFrame:
    """Add `skip_reason` (pre-pricing gates), side reasons, the tradable asks and `distance_pct`.

    `frame` has the engine's joined columns: market fields, `asof_ts`, `known_market`, `spot_usd`, `spot_ts`,
    the quote fields, `off_grid` (bool) and `model_spot_usd`.
    """
    return frame.with_columns(gate_expressions(params))


@functools.lru_cache(maxsize=64)
def gate_expressions(params: EdgeParams) -> tuple[pl.Expr, ...]:
    """The expressions `gate` adds, built once per setting (kbtc.edge.stages)."""
    asof = pl.col("asof_ts")
    close = pl.col("close_ts")
    yes_bid, yes_ask = pl.col("yes_bid_cents"), pl.col("yes_ask_cents")
    no_bid = pl.col("no_bid_cents")
    no_ask = no_ask_cents(pl.col("no_ask_cents"), yes_bid)
    yes_ok = _tradable(yes_ask, params)
    no_ok = _tradable(no_ask, params)
    quote_age_s = (asof - pl.col("quote_ts")) / 1000.0
    spot_age_s = (asof - pl.col("spot_ts")) / 1000.0
    spot_behind_quote_s = (pl.col("quote_ts") - pl.col("spot_ts")) / 1000.0
    no_prices = yes_bid.is_null() & yes_ask.is_null() & pl.col("no_bid_cents").is_null() & pl.col(
        "no_ask_cents"
    ).is_null()
    status_ok = pl.col("status").is_null() | pl.col("status").is_in(params.statuses)
    spread = yes_ask - yes_bid
    spread_cap = params.max_spread_cents
    too_wide = pl.lit(False) if spread_cap is None else (spread > spread_cap).fill_null(False)
    reason = (
        pl.when(~pl.col("known_market"))
        .then(pl.lit("missing_contract"))
        .when(~pl.col("series_ticker").is_in(params.series))
        .then(pl.lit("series_filtered"))
        .when(~status_ok)
        .then(pl.lit("inactive_status"))
        .when(close.is_null())
        .then(pl.lit("missing_settlement_ts"))
        .when(close < asof - round(params.expired_tolerance_s * 1000))
        .then(pl.lit("expired_contract"))
        .when(close > asof + round(params.max_horizon_s * 1000))
        .then(pl.lit("horizon_out_of_range"))
        .when(pl.col("series_ticker").is_in(params.pending_strike_series) & pl.col("floor_strike").is_null())
        .then(pl.lit("strike_pending"))
        .when(unsupported_strike_type())
        .then(pl.lit("unsupported_strike_type"))
        .when(~bounds_ok())
        .then(pl.lit("missing_bounds"))
        .when(~(pl.col("spot_usd").is_finite() & (pl.col("spot_usd") > 0)).fill_null(False))
        .then(pl.lit("spot_missing"))
        .when(pl.col("quote_ts").is_null() | (quote_age_s > params.quote_max_age_s) | no_prices)
        .then(pl.lit("missing_quote"))
        .when(crossed(yes_bid, yes_ask, no_bid, no_ask))
        .then(pl.lit("crossed_market"))
        .when(locked(yes_bid, yes_ask, no_bid, no_ask))
        .then(pl.lit("locked_market"))
        .when(pl.col("off_grid"))
        .then(pl.lit("off_tick_grid"))
        .when(~yes_ok & ~no_ok)
        .then(pl.lit("missing_both_sides"))
        .when(too_wide)
        .then(pl.lit("spread_too_wide"))
        .when((spot_age_s > params.max_spot_age_s) | (spot_behind_quote_s > params.max_spot_quote_lag_s))
        .then(pl.lit("spot_stale"))
    )
    reference = (
        pl.when(pl.col("strike_type") == "between")
        .then((pl.col("floor_strike") + pl.col("cap_strike")) / 2.0)
        .when(pl.col("strike_type").is_in(LESS_TYPES))
        .then(pl.col("cap_strike"))
        .otherwise(pl.col("floor_strike"))
    )
    return (
        reason.alias("skip_reason"),
        pl.when(yes_ok).then(yes_ask).alias("yes_ask_used_cents"),
        pl.when(no_ok).then(no_ask).alias("no_ask_used_cents"),
        pl.when(~yes_ok).then(pl.lit("missing_yes_ask")).alias("yes_side_reason"),
        pl.when(~no_ok).then(pl.lit("missing_no_ask")).alias("no_side_reason"),
        ((reference - pl.col("model_spot_usd")).abs() / pl.col("model_spot_usd") * 100.0).alias("distance_pct"),
        quote_age_s.alias("quote_age_s"),
        spot_age_s.alias("spot_age_s"),
    )


def select_band(frame: pl.LazyFrame, params: EdgeParams) -> pl.LazyFrame:
    """Mark survivors outside the strike band `outside_strike_band` (the original's pct-band / top-N rule).

    Per as-of time, among markets with no skip reason yet, ranked by (distance, ticker): all within `pct_band` %
    are kept when they number at least `min(top_n, candidates)`; otherwise the `top_n` nearest are kept.
    """
    ranks, reason = _band_expressions(params.pct_band, params.top_n)
    return frame.with_columns(ranks).with_columns(reason).drop("_rank", "_candidates", "_in_band")


@functools.lru_cache(maxsize=64)
def _band_expressions(pct_band: float, top_n: int) -> tuple[tuple[pl.Expr, ...], pl.Expr]:
    candidate = pl.col("skip_reason").is_null()
    # Non-candidates rank last; ties keep row order, which the engine sorts by ticker.
    distance = pl.when(candidate).then(pl.col("distance_pct")).otherwise(float("inf")).fill_null(float("inf"))
    ranks = (
        distance.rank("ordinal").over("asof_ts").alias("_rank"),
        candidate.sum().over("asof_ts").alias("_candidates"),
        (candidate & (pl.col("distance_pct") <= pct_band)).sum().over("asof_ts").alias("_in_band"),
    )
    use_band = pl.col("_in_band") >= pl.min_horizontal(pl.lit(top_n), pl.col("_candidates"))
    keep = pl.when(use_band).then(pl.col("distance_pct") <= pct_band).otherwise(pl.col("_rank") <= top_n)
    reason = (
        pl.when(candidate & ~keep.fill_null(False))
        .then(pl.lit("outside_strike_band"))
        .otherwise(pl.col("skip_reason"))
        .alias("skip_reason")
    )
    return ranks, reason
