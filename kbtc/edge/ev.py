"""Fee-aware expected value, break-even and fractional Kelly of buying YES or NO (model_math.md §3.2–3.3).

Per order of `C` contracts paying $1, with `q` = P(YES), the YES ask `a` and the NO ask `a_no` in dollars:
`EV_yes = C·(q − a) − fee(a, C)` and `EV_no = C·((1 − q) − a_no) − fee(a_no, C)`. The NO ask is the quoted
`no_ask` or, when absent, `100 − yes_bid` ¢ (a NO bought at the no-ask is a YES sold at the bid).
Break-even probability of a side: `c = a + fee/C` (the all-in cost per contract). Kelly for a $1 binary:
`f* = (q − c)/(1 − c)` when `q > c`, else 0, scaled by the Kelly multiplier and then capped per event, because
strikes of one event are nested or mutually exclusive, never independent.
"""

from __future__ import annotations

import polars as pl

from kbtc.edge.fees import with_fees
from kbtc.edge.params import FeeRounding
from kbtc.edge.probability import at_least, fill_nan


def no_ask_cents(no_ask: pl.Expr, yes_bid: pl.Expr) -> pl.Expr:
    """The NO ask: the quoted one, else `100 − yes_bid`."""
    return pl.coalesce(no_ask, 100.0 - yes_bid)


def breakeven_probability(ask_cents: pl.Expr, fee: pl.Expr, contracts: pl.Expr) -> pl.Expr:
    """The probability at which buying at `ask_cents` (fee included) has zero EV: the all-in cost per contract."""
    return ask_cents / 100.0 + fee / contracts


def kelly_fraction(q_side: pl.Expr, cost: pl.Expr, multiplier: float, *, edge: pl.Expr | None = None) -> pl.Expr:
    """Fractional Kelly stake (fraction of bankroll) of a $1 binary bought at all-in `cost`; 0 without edge.

    Null when either input is null; an all-in cost of exactly $1 (0/0) is no edge. `edge`: `q_side − cost`
    when the caller has it already.
    """
    edge = q_side - cost if edge is None else edge
    return fill_nan(at_least(edge, 0.0) / (1.0 - cost), 0.0) * multiplier


def capped_event_exposure(cap: float, *, group: tuple[str, ...]) -> tuple[pl.Expr, pl.Expr]:
    """`kelly_yes`/`kelly_no` scaled so the total stake per `group` (e.g. as-of × event) is at most `cap`.

    Only one side of a market can have positive EV (`ask ≥ bid`), so a market's stake is the larger of the two.
    """
    stake = pl.max_horizontal(pl.col("kelly_yes").fill_null(0.0), pl.col("kelly_no").fill_null(0.0))
    total = stake.sum().over(group)
    scale = pl.when(total > cap).then(cap / total).otherwise(1.0)
    return pl.col("kelly_yes") * scale, pl.col("kelly_no") * scale


BOOK_KEY = ("asof_ts", "market_ticker")


def book_asks(books: pl.DataFrame) -> pl.DataFrame:
    """Ask ladders from bid ladders: a YES ask at 100 − (NO bid), a NO ask at 100 − (YES bid).

    `books` has asof_ts, market_ticker, side ("yes"/"no"), price_cents, size: the resting *bids* of each side
    (Kalshi books carry bids only). Returns the same columns with `side` the side you buy, best ask first.
    """
    return (
        books.select(
            *BOOK_KEY,
            pl.when(pl.col("side") == "yes").then(pl.lit("no")).otherwise(pl.lit("yes")).alias("side"),
            (100.0 - pl.col("price_cents")).alias("price_cents"),
            pl.col("size").cast(pl.Float64),
        )
        .filter(pl.col("size") > 0)
        .sort(*BOOK_KEY, "side", "price_cents")
    )


def depth_ev(
    asks: pl.DataFrame, priced: pl.DataFrame, contracts: float, *, rounding: FeeRounding = "cent"
) -> pl.DataFrame:
    """EV of buying up to `contracts` by walking the ask ladder, per (asof_ts, market_ticker, side).

    `asks` is `book_asks` output; `priced` has asof_ts, market_ticker, p_model, fee_type, fee_multiplier. Each
    level's fill is its own trade with its own rounded taker fee. Returns the key, side, filled_contracts (less
    than asked when the book is thin), avg_price_cents, fee_dollars, ev_dollars (for the filled size) and
    `ev_per_contract`.
    """
    levels = (
        asks.lazy()
        .join(
            priced.lazy().select(*BOOK_KEY, "p_model", "fee_type", "fee_multiplier"), on=list(BOOK_KEY), how="inner"
        )
        .sort(*BOOK_KEY, "side", "price_cents")  # a join does not keep row order: best ask first again
        .with_columns(pl.col("size").cum_sum().over(*BOOK_KEY, "side").alias("_cum"))
        .with_columns((pl.col("_cum") - pl.col("size")).alias("_before"))
        .filter(pl.col("_before") < contracts)
        .with_columns(pl.min_horizontal(pl.col("size"), contracts - pl.col("_before")).alias("fill"))
    )
    levels = with_fees(levels, {"_fee": "price_cents"}, contracts="fill", rounding=rounding)
    q_side = pl.when(pl.col("side") == "yes").then(pl.col("p_model")).otherwise(1.0 - pl.col("p_model"))
    return (
        levels.group_by(*BOOK_KEY, "side", maintain_order=True)
        .agg(
            pl.col("fill").sum().alias("filled_contracts"),
            ((pl.col("fill") * pl.col("price_cents")).sum() / pl.col("fill").sum()).alias("avg_price_cents"),
            pl.col("_fee").sum().alias("fee_dollars"),
            (pl.col("fill") * (q_side - pl.col("price_cents") / 100.0)).sum().alias("_gross"),
        )
        .with_columns((pl.col("_gross") - pl.col("fee_dollars")).alias("ev_dollars"))
        .with_columns((pl.col("ev_dollars") / pl.col("filled_contracts")).alias("ev_per_contract"))
        .drop("_gross")
        .collect()
    )
