"""The opportunity ledger's rules: one tick of snapshots + open positions + recent takes → TAKE/PASS rows.

Pure and vectorised (no I/O, no row loops): `decide` returns one row per evaluated (snapshot, side) in the
shape of the `opportunities` table. Rules follow the original's opportunity engine
(`reference/seed_system.md` §4.2), with every non-trade carrying its reason codes, comma-joined in this order:

data and model gates (per snapshot; any of them makes a row ineligible)
  `missing_prob`       no model probability
  `spot_stale`         spot age unknown or > max_spot_age_s
  `quote_stale`        quote age unknown or > max_quote_age_s
  `sigma_not_ready`    the volatility estimate is not in a ready status (a fallback σ priced it)
  `near_expiry`        time to close < the series' minimum (KXBTC15M 4 min, KXBTC and KXBTCD 10 min)
side gates (per side; make the side ineligible)
  `missing_yes_ask` / `missing_no_ask`   no ask, or the ask outside [min_ask, max_ask]
  `missing_fee`        no stored taker fee for the side, so no fee-aware EV
  `ev_below_threshold`                   ev_net < min_ev
  `tail_ev_below_threshold`              ask ≤ 10 ¢ or ≥ 90 ¢ and ev_net < tail_min_ev (longshot wings)
portfolio gates (only on otherwise eligible rows; the row stays `eligible`)
  `position_open`                 an open shadow position on the same market and side
  `position_open_opposite_side`   an open shadow position on the other side of the market
  `cooldown_active`               a TAKE on the same market and side within cooldown_s
  `take_cap`                      more than max_takes_per_tick survive, ranked by ev_net

Input: `edge_snapshots` rows with their model params joined on: `params_json` (recorded in each ledger row)
and `contracts` (`model_params.contracts`; 1 for a snapshot without params).
Sizes: the edge engine prices an order of `contracts`, so the snapshot's `fee_*_dollars` and `ev_*_dollars` are
order totals. A TAKE records that order: `contracts`, the side's ask (the NO ask is `100 − yes_bid` when no NO
ask is quoted) and the order's taker fee `fee_dollars`.
EV per contract: `ev_raw` is the snapshot's EV / contracts (recomputed as `p_side − ask/100 − fee/contracts`
when the snapshot has none), `ev_net = ev_raw − cost_buffer`. Best-side mode keeps, per snapshot, the side
with the higher ev_net (YES when neither is evaluable); `both_sides` keeps both. Kelly: the snapshot's
`kelly_yes`/`kelly_no` (fractional, capped per event by the edge engine), else `κ·f*` with
`f* = (q − c)/(1 − c)`, `c = ask/100 + fee/contracts`, `q` the model probability of the side (model_math.md §3.3).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import polars as pl

from kbtc.scoring.metrics import market_mid, no_ask_cents, no_bid_cents

SIDES = ("YES", "NO")
_SIDE_ORDER = {"YES": 0, "NO": 1}


def _default_min_tau() -> dict[str, float]:
    # Seed §4.2: near_expiry when tau (minutes) < 4 for KXBTC15M, 10 for KXBTC and KXBTCD.
    return {"KXBTC15M": 240.0, "KXBTC": 600.0, "KXBTCD": 600.0}


@dataclass(frozen=True, slots=True)
class LedgerParams:
    """Thresholds of the ledger rules (defaults: the original's live settings)."""

    min_ev_dollars: float = 0.03
    cost_buffer_dollars: float = 0.01
    both_sides: bool = False
    min_ask_cents: float = 1.0
    max_ask_cents: float = 99.0
    max_spot_age_s: float = 10.0
    max_quote_age_s: float = 10.0
    tail_low_cents: float = 10.0
    tail_high_cents: float = 90.0
    tail_min_ev_dollars: float = 0.06
    min_tau_s_by_series: dict[str, float] = field(default_factory=_default_min_tau)
    default_min_tau_s: float = 600.0
    cooldown_s: float = 120.0
    max_takes_per_tick: int = 1
    kelly_multiplier: float = 0.25
    sigma_ready_statuses: tuple[str, ...] = ("ok",)

    def to_json(self) -> str:
        """The parameters as canonical JSON (stored with every ledger row)."""
        return json.dumps(asdict(self), sort_keys=True)


def _side_rows(snapshots: pl.LazyFrame, side: str, kelly_multiplier: float) -> pl.LazyFrame:
    yes = side == "YES"
    prefix = "yes" if yes else "no"
    p_side = pl.col("p_model") if yes else 1.0 - pl.col("p_model")
    price = pl.col("yes_ask_cents") if yes else no_ask_cents()
    bid = pl.col("yes_bid_cents") if yes else no_bid_cents()
    contracts = pl.col("contracts")
    fee = pl.col(f"fee_{prefix}_dollars")  # order total for `contracts`
    fee_per_contract = fee / contracts
    ev_raw = pl.coalesce(pl.col(f"ev_{prefix}_dollars") / contracts, p_side - price / 100.0 - fee_per_contract)
    cost = price / 100.0 + fee_per_contract
    own_kelly = kelly_multiplier * ((p_side - cost) / (1.0 - cost)).clip(lower_bound=0.0)
    return snapshots.select(
        pl.col("asof_ts"), pl.col("market_ticker"), pl.lit(side).alias("side"),
        pl.col("event_ticker"), pl.col("series_ticker"), pl.col("close_ts"),
        pl.col("spot_usd"), pl.col("sigma_annual"), pl.col("sigma_status"),
        pl.col("spot_age_s"), pl.col("quote_age_s"), pl.col("p_model"),
        pl.coalesce(pl.col("p_market"), market_mid()).alias("p_market"),
        price.alias("price_cents"),
        bid.alias("bid_cents"),
        (price - bid).alias("spread_cents"),
        fee.alias("fee_dollars"),
        ev_raw.alias("ev_raw_dollars"),
        # The edge engine's Kelly (already fractional and capped per event) when it has one.
        pl.coalesce(pl.col(f"kelly_{prefix}"), own_kelly).alias("kelly_fraction"),
        contracts,
        pl.col("model_version"), pl.col("params_json").alias("_model_params"),
    )


def _reason(condition: pl.Expr, code: str) -> pl.Expr:
    return pl.when(condition).then(pl.lit(code))


def _join_reasons(parts: list[pl.Expr]) -> pl.Expr:
    joined = pl.concat_str(parts, separator=",", ignore_nulls=True)
    return pl.when(joined == "").then(None).otherwise(joined)


def decide(
    snapshots: pl.DataFrame,
    open_positions: pl.DataFrame,
    recent_takes: pl.DataFrame,
    params: LedgerParams,
) -> pl.DataFrame:
    """Evaluate one tick of `edge_snapshots` rows (with `params_json` and `contracts` of their model params);
    return `opportunities` rows (TAKE and PASS).

    `open_positions`: market_ticker, side of open shadow positions. `recent_takes`: market_ticker, side,
    eval_ts of earlier TAKEs (any age; the cooldown window is applied here). The evaluation time of a row
    is its snapshot's as-of time, which makes the ledger's key (eval_ts, market, side) stable on re-runs.
    """
    lazy = snapshots.lazy()
    sides = pl.concat([_side_rows(lazy, side, params.kelly_multiplier) for side in SIDES])
    tau_s = (pl.col("close_ts") - pl.col("asof_ts")) / 1000.0
    min_tau = pl.col("series_ticker").replace_strict(
        params.min_tau_s_by_series, default=params.default_min_tau_s, return_dtype=pl.Float64
    )
    ev_net = pl.col("ev_raw_dollars") - params.cost_buffer_dollars
    price = pl.col("price_cents")
    ask_missing = price.is_null() | (price < params.min_ask_cents) | (price > params.max_ask_cents)
    ask_code = pl.when(pl.col("side") == "YES").then(pl.lit("missing_yes_ask")).otherwise(pl.lit("missing_no_ask"))
    in_tail = (price <= params.tail_low_cents) | (price >= params.tail_high_cents)
    gate_reasons = [
        _reason(pl.col("p_model").is_null(), "missing_prob"),
        _reason(pl.col("spot_age_s").is_null() | (pl.col("spot_age_s") > params.max_spot_age_s), "spot_stale"),
        _reason(pl.col("quote_age_s").is_null() | (pl.col("quote_age_s") > params.max_quote_age_s), "quote_stale"),
        _reason(~pl.col("sigma_status").is_in(list(params.sigma_ready_statuses)).fill_null(False), "sigma_not_ready"),
        _reason(tau_s.is_null() | (tau_s < min_tau), "near_expiry"),
        pl.when(ask_missing).then(ask_code),
        _reason(~ask_missing & pl.col("fee_dollars").is_null(), "missing_fee"),
        _reason(ev_net < params.min_ev_dollars, "ev_below_threshold"),
        _reason(in_tail & (ev_net >= params.min_ev_dollars) & (ev_net < params.tail_min_ev_dollars),
                "tail_ev_below_threshold"),
    ]
    rows = sides.with_columns(
        tau_s.alias("tau_s"),
        ev_net.alias("ev_net_dollars"),
        _join_reasons(gate_reasons).alias("_gates"),
        pl.col("side").replace_strict(_SIDE_ORDER, return_dtype=pl.Int8).alias("_side_order"),
    )
    if not params.both_sides:
        # Best side: the higher ev_net among evaluable sides; YES when neither side has an EV.
        rows = rows.sort(["asof_ts", "market_ticker", "ev_net_dollars", "_side_order"],
                         descending=[False, False, True, False], nulls_last=True)
        rows = rows.unique(["asof_ts", "market_ticker"], keep="first", maintain_order=True)

    opened = open_positions.lazy().select("market_ticker", "side").unique()
    same = opened.with_columns(pl.lit(True).alias("_open_same"))
    opposite = opened.select(
        "market_ticker",
        pl.when(pl.col("side") == "YES").then(pl.lit("NO")).otherwise(pl.lit("YES")).alias("side"),
        pl.lit(True).alias("_open_opposite"),
    ).unique()
    takes = recent_takes.lazy().select("market_ticker", "side", pl.col("eval_ts").alias("_take_ts"))
    rows = rows.join(same, on=["market_ticker", "side"], how="left").join(
        opposite, on=["market_ticker", "side"], how="left"
    )
    cooling = (
        rows.select("asof_ts", "market_ticker", "side")
        .join(takes, on=["market_ticker", "side"])
        .filter((pl.col("_take_ts") < pl.col("asof_ts"))
                & (pl.col("_take_ts") >= pl.col("asof_ts") - int(params.cooldown_s * 1000)))
        .select("asof_ts", "market_ticker", "side", pl.lit(True).alias("_cooling"))
        .unique()
    )
    rows = rows.join(cooling, on=["asof_ts", "market_ticker", "side"], how="left")
    eligible = pl.col("_gates").is_null()
    portfolio = _join_reasons([
        _reason(eligible & pl.col("_open_same").fill_null(False), "position_open"),
        _reason(eligible & pl.col("_open_opposite").fill_null(False), "position_open_opposite_side"),
        _reason(eligible & pl.col("_cooling").fill_null(False), "cooldown_active"),
    ])
    rows = rows.with_columns(eligible.alias("eligible"), portfolio.alias("_portfolio"))
    candidate = pl.col("eligible") & pl.col("_portfolio").is_null()
    # take_cap: rank the surviving candidates of each tick by ev_net (ticker, then side, breaks ties).
    rows = (
        rows.with_columns(candidate.alias("_candidate"))
        .sort(["asof_ts", "ev_net_dollars", "market_ticker", "_side_order"],
              descending=[False, True, False, False], nulls_last=True)
        .with_columns((pl.int_range(pl.len()).over("asof_ts", "_candidate") + 1).alias("_rank"))
        .with_columns(
            _reason(pl.col("_candidate") & (pl.col("_rank") > params.max_takes_per_tick), "take_cap").alias("_cap")
        )
    )
    reasons = _join_reasons([pl.col("_gates"), pl.col("_portfolio"), pl.col("_cap")])
    ledger_json = params.to_json()
    return (
        rows.with_columns(reasons.alias("reasons"))
        .with_columns(
            pl.col("asof_ts").alias("eval_ts"),
            pl.col("asof_ts").alias("snapshot_asof_ts"),
            pl.when(pl.col("reasons").is_null()).then(pl.lit("TAKE")).otherwise(pl.lit("PASS")).alias("decision"),
            pl.lit(params.cost_buffer_dollars).alias("cost_buffer_dollars"),
            pl.concat_str([pl.lit('{"ledger": ' + ledger_json + ', "model": '),
                           pl.col("_model_params").fill_null("null"), pl.lit("}")]).alias("params_json"),
        )
        .select(OPPORTUNITY_COLUMNS)
        .sort(["eval_ts", "market_ticker", "side"])
        .collect()
    )


OPPORTUNITY_COLUMNS = [
    "eval_ts", "market_ticker", "side", "decision", "reasons", "eligible", "snapshot_asof_ts", "event_ticker",
    "series_ticker", "close_ts", "tau_s", "spot_usd", "sigma_annual", "p_model", "p_market", "price_cents",
    "bid_cents", "spread_cents", "fee_dollars", "ev_raw_dollars", "ev_net_dollars", "cost_buffer_dollars",
    "kelly_fraction", "contracts", "model_version", "params_json",
]


def positions_from_takes(decisions: pl.DataFrame) -> pl.DataFrame:
    """Shadow positions opened by TAKE rows: one contract each, at the ask, with the entry taker fee."""
    return decisions.filter(pl.col("decision") == "TAKE").select(
        "market_ticker",
        "side",
        pl.col("eval_ts").alias("opened_ts"),
        pl.col("contracts"),
        pl.col("price_cents").alias("entry_price_cents"),
        pl.col("fee_dollars").alias("entry_fee_dollars"),
        pl.lit("open").alias("status"),
    )
